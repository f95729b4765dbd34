"""Which tokenizer: build one from a name, load one from a file or a folder, and encode with it.

    build_tokenizer("char", text)          # a CharTokenizer of the text's characters
    load_tokenizer("gpt2")                 # GPT-2's BPE ($TINYGPT_DATA/gpt2, the cache, or downloaded)
    load_tokenizer("out-baby/ckpt-0002000/tokenizer.json")     # any tokenizer saved with tok.save
    load_tokenizer("gpt2-folder")          # a folder with GPT-2's encoder.json + vocab.bpe
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import tokenizer as tk
from tinytensor.errors import ConfigError

__all__ = ["HF_TOKENIZER_FILES", "TINYGPT_TOKENIZER_NAME", "TOKENIZER_FILES", "build_tokenizer", "encode", "load_tokenizer", "tokenizer_bytes"]

# what a GPT-2 folder holds for its tokenizer: OpenAI's names, or transformers' for the same two files
TOKENIZER_FILES = ("encoder.json", "vocab.bpe")
HF_TOKENIZER_FILES = ("vocab.json", "merges.txt")
TINYGPT_TOKENIZER_NAME = "tinygpt-tokenizer.json"   # a tokenizer saved into a model folder by save_pretrained


def load_tokenizer(source: str | os.PathLike, vocab_size: int | None = None) -> tk.Tokenizer:
    """The tokenizer at ``source``.

    Args:
        source: ``"gpt2"`` (``tokenizer.load_gpt2()``: ``$TINYGPT_DATA/gpt2``, the download cache, or
            OpenAI's files, checksum-verified), a file saved with ``tokenizer.save``, or a folder holding
            GPT-2's ``encoder.json`` + ``vocab.bpe`` (or transformers' ``vocab.json`` + ``merges.txt``, or a
            ``tinygpt-tokenizer.json`` written by ``save_pretrained``).
        vocab_size: the model's; a tokenizer with more ids than this is an error.

    Raises:
        FileNotFoundError: no tokenizer at ``source``.
        ConfigError: the tokenizer has more ids than ``vocab_size``.
    """
    src = Path(source).expanduser()
    if str(source) == "gpt2":
        tok = tk.load_gpt2()
    elif src.is_file():
        tok = tk.load(src)
    elif (src / TINYGPT_TOKENIZER_NAME).is_file():
        tok = tk.load(src / TINYGPT_TOKENIZER_NAME)
    elif all((src / f).is_file() for f in TOKENIZER_FILES):
        tok = tk.load_gpt2(src / TOKENIZER_FILES[0], src / TOKENIZER_FILES[1])
    elif all((src / f).is_file() for f in HF_TOKENIZER_FILES):
        tok = tk.load_gpt2(src / HF_TOKENIZER_FILES[0], src / HF_TOKENIZER_FILES[1])
    else:
        raise FileNotFoundError(
            f"no tokenizer at {str(src)!r}: give a folder with GPT-2's {' and '.join(TOKENIZER_FILES)} (or "
            f"{' and '.join(HF_TOKENIZER_FILES)}, or {TINYGPT_TOKENIZER_NAME}), gpt2 "
            f"(found in $TINYGPT_DATA/gpt2 or downloaded), or a saved tokenizer's JSON file")
    if vocab_size is not None and tok.vocab_size > vocab_size:
        raise ConfigError(f"the tokenizer has {tok.vocab_size} ids but the model's vocab_size is {vocab_size}: "
                          f"they do not belong together")
    return tok


def build_tokenizer(spec: str, text: str | None = None) -> tk.Tokenizer:
    """The tokenizer named by ``spec``: ``char`` (built from ``text``), or a :func:`load_tokenizer` source.

    Raises:
        ConfigError: ``spec`` is neither ``char``, ``gpt2`` nor an existing path, or ``char`` without text.
    """
    if spec == "char":
        if text is None:
            raise ConfigError("the char tokenizer is built from the training text; none given")
        return tk.CharTokenizer.from_text(text)
    if spec != "gpt2" and not Path(spec).expanduser().exists():
        raise ConfigError(f"the tokenizer must be char, gpt2 or the path of a saved tokenizer; got {spec!r}")
    return load_tokenizer(spec)


def tokenizer_bytes(tok: tk.Tokenizer) -> bytes:
    """The tokenizer's saved JSON file as bytes (its identity for caches and checkpoints)."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "tokenizer.json"
        tok.save(p)
        return p.read_bytes()


def encode(tok: tk.Tokenizer, text: str) -> list[int]:
    """Encode text with no special-token handling (special-token strings in the data are plain text)."""
    f = getattr(tok, "encode_ordinary", None)
    return f(text) if f is not None else tok.encode(text)
