"""The token cache: a text encoded once into ``uint16`` ``.npy`` files, split into train and val.

Train is the first 90 % of the ids, val the last 10 % (nanoGPT's split). The files live in
``out_dir/data`` and are reused while the text and the tokenizer are unchanged (``meta.json`` records
both sha256s).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from tinytensor.fileio import atomic_save_npy, atomic_write_text, read_text, sha256_file

from .tokenizers import encode, tokenizer_bytes

__all__ = ["VAL_FRACTION", "prepare_tokens"]

VAL_FRACTION = 0.1


def _id_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


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
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if all(meta.get(k) == v for k, v in want.items()) and all(
                (data_dir / f"{s}.npy").is_file() for s in ("train", "val")):
            return (np.load(data_dir / "train.npy", mmap_mode="r", allow_pickle=False),
                    np.load(data_dir / "val.npy", mmap_mode="r", allow_pickle=False), meta)
    ids = np.array(encode(tok, read_text(text_path)), dtype=_id_dtype(tok.vocab_size))
    n_train = int(len(ids) * (1 - VAL_FRACTION))
    train, val = ids[:n_train], ids[n_train:]
    atomic_save_npy(data_dir / "train.npy", train)
    atomic_save_npy(data_dir / "val.npy", val)
    meta = {"source": str(text_path), **want, "dtype": str(ids.dtype),
            "n_train": int(train.size), "n_val": int(val.size)}
    atomic_write_text(meta_path, json.dumps(meta, indent=1) + "\n")
    return train, val, meta
