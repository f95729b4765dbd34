"""Text from a model: a prompt's continuation, streamed piece by piece, from a checkpoint or a GPT-2 folder.

    model, tok, ckpt = load_model("out-baby")                      # gpt.checkpoint
    for piece in stream_text(model, tok, "ROMEO:", max_new_tokens=200, seed=1):
        print(piece, end="", flush=True)
    sample_pretrained("gpt2-folder", "Hello,", max_new_tokens=40, seed=0)
"""
from __future__ import annotations

import codecs
import os
import sys
from typing import Iterator, TextIO

import numpy as np

from tinytensor.errors import ConfigError

from . import hub
from .data import encode, load_tokenizer
from .model import GPT

__all__ = ["SAMPLE_SEPARATOR", "encode_prompt", "load_pretrained_with_tokenizer", "sample_pretrained", "sample_text", "stream_text",
           "write_samples"]

SAMPLE_SEPARATOR = "\n---------------\n"


def encode_prompt(tok, prompt: str) -> np.ndarray:
    """The prompt's ids as ``[T]`` int64; ConfigError if it encodes to nothing."""
    ids = encode(tok, prompt)
    if not ids:
        raise ConfigError(f"the prompt {prompt!r} encodes to no tokens; give a non-empty prompt")
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


def _check_counts(max_new_tokens: int, num_samples: int) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ConfigError(f"num_samples must be an int >= 1, got {num_samples!r}")


def write_samples(model: GPT, tok, prompt: str = "\n", max_new_tokens: int = 200, temperature: float = 0.8,
                  top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                  num_samples: int = 1, stream: TextIO | None = None) -> list[str]:
    """Write ``prompt`` + each sampled continuation to ``stream`` as it is made; returns the continuations.

    Samples are separated by a dashed line. One random stream serves all samples, so the first equals
    ``generate(seed=seed)`` and the same seed gives the same text.

    Args:
        model, tok: the model and its tokenizer.
        prompt: the text to continue.
        max_new_tokens, temperature, top_k, top_p: as :meth:`GPT.generate` (temperature 0 is greedy).
        seed: the seed of the one random stream.
        num_samples: how many continuations.
        stream: where to write (default ``sys.stdout``).
    """
    _check_counts(max_new_tokens, num_samples)
    encode_prompt(tok, prompt)           # a prompt the tokenizer cannot encode fails before anything is printed
    out = stream if stream is not None else sys.stdout
    rng = np.random.default_rng(seed)
    texts = []
    for k in range(num_samples):
        if k:
            out.write(SAMPLE_SEPARATOR)
        out.write(prompt)
        pieces = []
        for piece in stream_text(model, tok, prompt, max_new_tokens, temperature, top_k, top_p, rng):
            out.write(piece)
            out.flush()
            pieces.append(piece)
        out.write("\n")
        out.flush()
        texts.append("".join(pieces))
    return texts


def load_pretrained_with_tokenizer(model_dir: str | os.PathLike, tokenizer: str | os.PathLike | None = None
                                   ) -> tuple[GPT, object]:
    """GPT-2 by name or folder (in eval mode) and its tokenizer: ``tokenizer`` if given (see
    :func:`gpt.data.load_tokenizer`), else the folder's ``encoder.json`` + ``vocab.bpe``."""
    model = GPT.from_pretrained(model_dir)
    folder = hub.resolve_model(model_dir)
    return model, load_tokenizer(tokenizer if tokenizer is not None else folder, model.config.vocab_size)


def sample_pretrained(model_dir: str | os.PathLike, prompt: str = "\n", max_new_tokens: int = 200,
                      temperature: float = 0.8, top_k: int | None = None, top_p: float | None = None,
                      seed: int | None = None, num_samples: int = 1,
                      tokenizer: str | os.PathLike | None = None, stream: TextIO | None = None) -> list[str]:
    """Load a GPT-2 folder and :func:`write_samples` from it (generation uses the KV cache).

    Args:
        model_dir: the GPT-2 folder or a GPT-2 name (see :meth:`gpt.model.GPT.from_pretrained`).
        tokenizer: where the tokenizer comes from (see :func:`gpt.data.load_tokenizer`); default the
            folder's ``encoder.json`` + ``vocab.bpe``.
        others: as :func:`write_samples`.

    Returns:
        The continuations (without the prompt).
    """
    _check_counts(max_new_tokens, num_samples)
    model, tok = load_pretrained_with_tokenizer(model_dir, tokenizer)
    return write_samples(model, tok, prompt, max_new_tokens, temperature, top_k, top_p, seed, num_samples,
                         stream)
