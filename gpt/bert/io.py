"""Saving and loading a BERT run: safetensors for the weights, JSON for the rest, never pickle.

A run folder holds::

    bert.safetensors   the parameters by name (embeddings.wte.weight, encoder.0.self_attn.q_proj.weight, ...)
    tokenizer.json     the BPE with its [PAD] [CLS] [SEP] [MASK] (tokenizer.save format)
    bert.json          {"format": "tinygpt-bert", "version", "task": "mlm" | "classify", "config": BertConfig,
                        "files": {name: sha256}, ...the run's own state}

Every file goes through :func:`tinytensor.fileio.atomic_write_bytes` (temp, fsync, rename), and
``bert.json`` is written last: it names the sha256 of the two files beside it, so a load sees either a
whole run or a mismatch it reports (never a silent mix of two saves).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from tinytensor.errors import FileFormatError, UsageError
from tinytensor.fileio import atomic_write_bytes, read_json_object, sha256_file

from ..data import load_tokenizer, tokenizer_bytes
from .model import Bert, BertClassifier, BertConfig

FORMAT, VERSION = "tinygpt-bert", 1
META, WEIGHTS, TOKENIZER = "bert.json", "bert.safetensors", "tokenizer.json"


def save_bert(out_dir: str | os.PathLike, model: Bert | BertClassifier, tokenizer, state: dict[str, Any]) -> Path:
    """Write ``model``'s weights, ``tokenizer`` and ``state`` (JSON-able) into ``out_dir``; returns it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = st_save({k: np.ascontiguousarray(v) for k, v in model.state_dict().items()})
    tok = tokenizer_bytes(tokenizer)
    atomic_write_bytes(out_dir / WEIGHTS, weights)
    atomic_write_bytes(out_dir / TOKENIZER, tok)
    task = "classify" if isinstance(model, BertClassifier) else "mlm"
    doc = {"format": FORMAT, "version": VERSION, "task": task, "config": dataclasses.asdict(model.config),
           "files": {WEIGHTS: hashlib.sha256(weights).hexdigest(), TOKENIZER: hashlib.sha256(tok).hexdigest()},
           **state}
    if task == "classify":
        doc["num_classes"] = model.num_classes
    atomic_write_bytes(out_dir / META, (json.dumps(doc, indent=1) + "\n").encode())
    return out_dir


def read_meta(out_dir: str | os.PathLike) -> dict[str, Any]:
    """``bert.json`` of a run, checked (format, version, files' sha256).

    Raises:
        FileNotFoundError: no ``bert.json`` in ``out_dir`` (the message says how to make one).
        FileFormatError: not this format, or a file that does not match its recorded sha256.
    """
    path = Path(out_dir) / META
    if not path.is_file():
        raise FileNotFoundError(f"no BERT run in {str(out_dir)!r} (no {META}); make one with "
                                f"`tinygpt bert pretrain --data FILE --out_dir {out_dir}`")
    doc = read_json_object(path)
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise FileFormatError(f"{path} is not a {FORMAT} version {VERSION} file")
    for name, digest in (doc.get("files") or {}).items():
        if name not in (WEIGHTS, TOKENIZER):
            raise FileFormatError(f"{path}: unexpected file {name!r} in 'files'")
        f = path.parent / name
        if not f.is_file() or sha256_file(f) != digest:
            raise FileFormatError(f"{f} is missing or does not match the sha256 {path} records: the run is damaged")
    return doc


def load_bert(out_dir: str | os.PathLike, dropout: float | None = None):
    """A saved run's model (eval mode), tokenizer and ``bert.json``.

    Returns a :class:`Bert` for a pretraining run, a :class:`BertClassifier` for a fine-tuned one.
    ``dropout`` replaces the saved config's (to fine-tune with another rate).
    """
    doc = read_meta(out_dir)
    try:
        config = BertConfig(**doc["config"])
    except (KeyError, TypeError, UsageError) as e:
        raise FileFormatError(f"{Path(out_dir) / META}: bad config ({e})") from None
    if dropout is not None:
        config = dataclasses.replace(config, dropout=dropout)
    model: Bert | BertClassifier = Bert(config)
    if doc.get("task") == "classify":
        model = BertClassifier(model, int(doc["num_classes"]))
    arrays = st_load((Path(out_dir) / WEIGHTS).read_bytes())
    try:
        model.load_state_dict(arrays, strict=True)
    except (KeyError, UsageError) as e:
        raise FileFormatError(f"{Path(out_dir) / WEIGHTS} does not fit the config in {META}: {e}") from None
    model.eval()
    tok = load_tokenizer(Path(out_dir) / TOKENIZER, config.vocab_size)
    return model, tok, doc


__all__ = ["save_bert", "load_bert", "read_meta", "META", "WEIGHTS", "TOKENIZER"]
