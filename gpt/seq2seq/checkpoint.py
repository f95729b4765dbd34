"""A trained encoder–decoder on disk: ``model.safetensors`` (the parameters) and ``seq2seq.json`` (the
model config, the task, the vocabulary characters and the sha256 of the weights), nothing pickled.

Both are written atomically (``tinytensor.fileio``), weights first: ``seq2seq.json`` names the weights'
hash, so a crash between the two writes is caught on loading rather than pairing old JSON with new weights.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from tinytensor.errors import FileFormatError, UsageError
from tinytensor.fileio import atomic_write_bytes, atomic_write_text, read_json_object

from ..transformer import Transformer, TransformerConfig
from .tasks import CharVocab

__all__ = ["FORMAT", "load_seq2seq", "save_seq2seq"]

FORMAT = "tinygpt-seq2seq"
WEIGHTS, META = "model.safetensors", "seq2seq.json"


def save_seq2seq(out_dir: str | os.PathLike, model: Transformer, vocab: CharVocab, task: str,
                 extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` and its vocabulary to ``out_dir``; returns the JSON's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = st_save({k: np.ascontiguousarray(v) for k, v in model.state_dict().items()})
    atomic_write_bytes(out / WEIGHTS, data)
    meta = {"format": FORMAT, "version": 1, "task": task, "chars": vocab.chars,
            "model_config": dataclasses.asdict(model.config), "sha256": hashlib.sha256(data).hexdigest(),
            **(extra or {})}
    return atomic_write_text(out / META, json.dumps(meta, indent=1) + "\n")


def load_seq2seq(out_dir: str | os.PathLike) -> tuple[Transformer, CharVocab, dict[str, Any]]:
    """``(model in eval mode, vocabulary, the JSON)`` from a folder ``save_seq2seq`` wrote.

    Raises:
        FileFormatError: a missing or malformed file, weights that do not match their hash or the config.
    """
    out = Path(out_dir)
    try:
        meta = read_json_object(out / META)
        data = (out / WEIGHTS).read_bytes()
    except FileNotFoundError as e:
        raise FileFormatError(f"{out} holds no trained seq2seq model ({Path(e.filename).name} is missing; "
                              f"train one with tinygpt seq2seq train --out_dir {out})") from None
    except OSError as e:
        raise FileFormatError(f"{out}: unreadable ({e})") from None
    if meta.get("format") != FORMAT:
        raise FileFormatError(f"{out / META} is not a {FORMAT} file")
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise FileFormatError(f"{out / WEIGHTS} does not match the sha256 in {out / META} (a partial write?)")
    try:
        config = TransformerConfig(**meta["model_config"])
        weights = st_load(data)
        model = Transformer(config, seed=0)
        model.load_state_dict(weights)
    except (KeyError, TypeError, UsageError, SafetensorError) as e:
        raise FileFormatError(f"{out}: the weights do not fit the config in {META}: {e}") from None
    return model.eval(), CharVocab(meta["chars"]), meta
