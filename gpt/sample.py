"""Sampling from a trained checkpoint, streamed as text, and evaluating one.

    model, tok, ckpt = load_model("out-baby")
    for piece in stream_text(model, tok, "ROMEO:", max_new_tokens=200, seed=1):
        print(piece, end="", flush=True)
"""
from __future__ import annotations

import codecs
import os
from typing import Iterator

import numpy as np

from .checkpoint import Checkpoint, load_checkpoint
from .data import encode, make_samplers, prepare_tokens, training_text
from .model import GPT
from .windows import make_window_samplers


def load_model(out_dir: str | os.PathLike) -> tuple[GPT, object, Checkpoint]:
    """The latest checkpoint's model (in eval mode), its tokenizer, and the checkpoint itself."""
    ckpt = load_checkpoint(out_dir)
    model = ckpt.build_model()
    model.eval()
    return model, ckpt.tokenizer, ckpt


def encode_prompt(tok, prompt: str) -> np.ndarray:
    """The prompt's ids as ``[T]`` int64; ValueError if it encodes to nothing."""
    ids = encode(tok, prompt)
    if not ids:
        raise ValueError(f"the prompt {prompt!r} encodes to no tokens; pass a non-empty --prompt")
    return np.array(ids, dtype=np.int64)


def stream_text(model: GPT, tok, prompt: str, max_new_tokens: int, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None,
                seed: int | np.random.Generator | None = None, stop_id: int | None = None) -> Iterator[str]:
    """Yield the continuation of ``prompt`` piece by piece as it is sampled.

    Token bytes go through an incremental UTF-8 decoder, so a character split across two BPE tokens is
    yielded whole once its last byte arrives. Sampling ``stop_id`` (e.g. end-of-text) ends the text
    without yielding it.
    """
    ids = encode_prompt(tok, prompt)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    to_bytes = getattr(tok, "decode_bytes", None)
    for i in model.generate_stream(ids, max_new_tokens, temperature, top_k, top_p, seed):
        if i == stop_id:
            break
        piece = decoder.decode(to_bytes([i])) if to_bytes is not None else tok.decode([i])
        if piece:
            yield piece
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def sample_text(model: GPT, tok, prompt: str, max_new_tokens: int, **kwargs) -> str:
    """The continuation of ``prompt`` as one string (see :func:`stream_text`)."""
    return "".join(stream_text(model, tok, prompt, max_new_tokens, **kwargs))


def evaluate(out_dir: str | os.PathLike, data: str | None = None, eval_iters: int | None = None,
             seed: int = 0) -> dict[str, float]:
    """Mean train and val loss of the latest checkpoint over ``eval_iters`` batches per split.

    The batches come from streams seeded with ``seed`` (not the training run's), so repeated calls give
    the same figures.
    """
    from .train import estimate_loss
    model, tok, ckpt = load_model(out_dir)
    cfg = ckpt.state["train_config"]
    text_path = training_text(ckpt.state, data)
    train_ids, val_ids, _ = prepare_tokens(text_path, tok, os.path.join(out_dir, "data"))
    if cfg.get("stride"):  # the run's own sliding windows (their order seeded with ``seed``)
        samplers = make_window_samplers(train_ids, val_ids, cfg["block_size"], cfg["batch_size"], cfg["stride"], seed)
    else:
        samplers = make_samplers(train_ids, val_ids, cfg["block_size"], cfg["batch_size"], seed)
    return estimate_loss(model, samplers, eval_iters or cfg["eval_iters"])
