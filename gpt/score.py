"""Zero-shot perplexity of any text file under a trained checkpoint or a GPT-2 folder.

    tinygpt eval --out_dir out-baby --data other.txt           # a tinygpt training run
    tinygpt eval --pretrained gpt2 --data the-verdict.txt       # GPT-2 by name or folder (its own tokenizer)

The text is encoded with the model's tokenizer and scored over sliding windows of the model's context
(:func:`gpt.windows.score_windows`): ``stride == block_size`` by default, so each scored token is
predicted once.
"""
from __future__ import annotations

import os

import numpy as np

from tinytensor.errors import FileFormatError, UsageError
from tinytensor.fileio import read_text

from .checkpoint import load_model
from .data import encode
from .sample import load_pretrained_with_tokenizer
from .windows import score_windows


def score_text(path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
               pretrained: str | os.PathLike | None = None, tokenizer: str | None = None,
               max_length: int | None = None, stride: int | None = None, batch_size: int = 8) -> dict:
    """Loss and perplexity of the text in ``path`` under a checkpoint (``out_dir``) or a GPT-2 folder.

    Args:
        path: a UTF-8 text file.
        out_dir: a training run's folder (its latest checkpoint and tokenizer), or
        pretrained: GPT-2 by name or a GPT-2 folder (see :meth:`gpt.model.GPT.from_pretrained`).
        tokenizer: with ``pretrained``: where its tokenizer comes from (see :func:`gpt.data.load_tokenizer`;
            default the folder's own files).
        max_length: window length (default and maximum: the model's ``block_size``).
        stride: distance between windows (default ``max_length``).
        batch_size: windows per forward pass.

    Returns:
        :func:`gpt.windows.score_windows`' dict plus ``"file"``.

    Raises:
        UsageError: not exactly one of ``out_dir`` / ``pretrained``, a window longer than the context,
            or a text too short for one window.
        FileFormatError: an empty or non-UTF-8 file.
    """
    if (out_dir is None) == (pretrained is None):
        raise UsageError("scoring a text needs --out_dir (a training run) or --pretrained (a GPT-2 folder), one")
    if pretrained is not None:
        model, tok = load_pretrained_with_tokenizer(pretrained, tokenizer)
    else:
        model, tok, _ = load_model(out_dir)
    block = model.config.block_size
    max_length = max_length or block
    if max_length > block:
        raise UsageError(f"max_length {max_length} is longer than the model's context (block_size {block})")
    text = read_text(path)
    if not text:
        raise FileFormatError(f"{path} is empty: nothing to score")
    ids = np.array(encode(tok, text), dtype=np.int64)
    if len(ids) <= max_length:
        raise UsageError(f"{path} has {len(ids)} tokens; scoring windows of {max_length} needs at least "
                         f"{max_length + 1} (a longer text, or a smaller max_length)")
    return {"file": str(path), **score_windows(model, ids, max_length, stride, batch_size)}


__all__ = ["score_text"]
