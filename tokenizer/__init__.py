"""Tokenizers: char, simple word-level, and byte-level BPE (GPT-2/GPT-4 regex split)."""
