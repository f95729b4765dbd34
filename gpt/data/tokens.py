"""The token cache: a text encoded once into ``uint16`` ``.npy`` files, split into train and val.

Train is the first 90 % of the ids, val the last 10 % (nanoGPT's split). The files live in
``out_dir/data`` and are reused while the text and the tokenizer are unchanged (``meta.json`` records
both sha256s).

The three files are one unit: ``meta.json`` is written last and records the size and sha256 of
``train.npy`` and ``val.npy``, checked on every load, so a run killed between the writes (a new
``train.npy`` beside an old ``meta.json``) re-encodes instead of training on ids of another text.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from tinytensor.errors import FileFormatError
from tinytensor.fileio import atomic_save_npy, atomic_write_text, read_text, sha256_file

from .tokenizers import encode, tokenizer_bytes

__all__ = ["VAL_FRACTION", "prepare_tokens"]

VAL_FRACTION = 0.1


def _id_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def _read_meta(path: Path) -> dict | None:
    """``meta.json`` as a dict, or None if it is missing or unreadable (the cache is then rebuilt)."""
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _files_match(data_dir: Path, meta: dict) -> bool:
    """Whether ``train.npy`` and ``val.npy`` are the very files ``meta.json`` was written for."""
    files = meta.get("files")
    if not isinstance(files, dict):
        return False
    for name in ("train.npy", "val.npy"):
        rec, p = files.get(name), data_dir / name
        if not isinstance(rec, dict) or not p.is_file() or p.stat().st_size != rec.get("size") \
                or sha256_file(p) != rec.get("sha256"):
            return False
    return True


def prepare_tokens(text_path: str | os.PathLike, tok, data_dir: str | os.PathLike
                   ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Encode ``text_path`` with ``tok`` into ``data_dir/{train,val}.npy`` (reused when unchanged).

    Returns ``(train_ids, val_ids, meta)``: read-only memory-mapped ``uint16`` arrays (``uint32`` for a
    vocabulary above 65,536) and the ``meta.json`` dict (source, its sha256, token counts).
    """
    data_dir = Path(data_dir)
    text_sha = sha256_file(text_path)
    tok_sha = hashlib.sha256(tokenizer_bytes(tok)).hexdigest()
    meta_path = data_dir / "meta.json"
    want = {"text_sha256": text_sha, "tokenizer_sha256": tok_sha, "vocab_size": tok.vocab_size}
    meta = _read_meta(meta_path)
    if meta is not None and all(meta.get(k) == v for k, v in want.items()) and _files_match(data_dir, meta):
        try:
            return (np.load(data_dir / "train.npy", mmap_mode="r", allow_pickle=False),
                    np.load(data_dir / "val.npy", mmap_mode="r", allow_pickle=False), meta)
        except ValueError:
            pass                          # not a readable .npy after all: encode again
    text = read_text(text_path)
    if not text:
        raise FileFormatError(f"{text_path} is empty: there is no text to train on")
    ids = np.array(encode(tok, text), dtype=_id_dtype(tok.vocab_size))
    n_train = int(len(ids) * (1 - VAL_FRACTION))
    train, val = ids[:n_train], ids[n_train:]
    atomic_save_npy(data_dir / "train.npy", train)
    atomic_save_npy(data_dir / "val.npy", val)
    meta = {"source": str(text_path), **want, "dtype": str(ids.dtype),
            "n_train": int(train.size), "n_val": int(val.size),
            "files": {f"{s}.npy": {"size": (data_dir / f"{s}.npy").stat().st_size,
                                   "sha256": sha256_file(data_dir / f"{s}.npy")} for s in ("train", "val")}}
    atomic_write_text(meta_path, json.dumps(meta, indent=1) + "\n")
    return train, val, meta
