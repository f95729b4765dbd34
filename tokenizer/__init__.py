"""Tokenizers: char, simple word-level, and byte-level BPE (GPT-2/GPT-4 regex split).

Every tokenizer has ``encode`` / ``encode_batch`` / ``decode`` / ``decode_bytes``, ``vocab_size``,
``special_tokens``, ``save(path)``; :func:`load` reads any saved tokenizer back.
"""
from .base import Tokenizer, load
from .bpe import (
    GPT2_PATTERN,
    GPT4_PATTERN,
    PATTERNS,
    BPETokenizer,
    bpe_merge,
    recover_merges,
    resolve_pattern,
)
from .bpe_train import get_stats, learn_merges, merge
from .char import CharTokenizer
from .gpt2 import (
    bytes_to_unicode,
    gpt2_files,
    load_gpt2,
    load_tiktoken_ranks,
    save_tiktoken_ranks,
)
from .simple import SimpleTokenizer, simple_split

__all__ = [
    "BPETokenizer",
    "CharTokenizer",
    "GPT2_PATTERN",
    "GPT4_PATTERN",
    "PATTERNS",
    "SimpleTokenizer",
    "Tokenizer",
    "bpe_merge",
    "bytes_to_unicode",
    "get_stats",
    "gpt2_files",
    "learn_merges",
    "load",
    "load_gpt2",
    "load_tiktoken_ranks",
    "merge",
    "recover_merges",
    "resolve_pattern",
    "save_tiktoken_ranks",
    "simple_split",
]
