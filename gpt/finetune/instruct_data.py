"""Instruction data in, padded batches out: the Alpaca prompt, the book's split, and its collate.

After *Build a Large Language Model (From Scratch)*, ch. 7 (``format_input``, ``InstructionDataset``,
``custom_collate_fn``)::

    entries = load_instruction_data("instruction-data.json")     # [{"instruction", "input", "output"}]
    train, test, val = split_entries(entries)                     # 85 % / 10 % / 5 %, in file order
    data = InstructionDataset(train, tok, block_size=1024)        # token ids, with prompt lengths
    x, y = collate([data[0], data[1]], eos_id=50256)              # [B, T] inputs and shifted targets

An entry as text (:func:`format_entry`)::

    Below is an instruction that describes a task. Write a response that appropriately completes the request.

    ### Instruction:
    {instruction}

    ### Input:                    (only when the entry has a non-empty input)
    {input}

    ### Response:
    {output}
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinytensor.errors import ConfigError, FileFormatError, UsageError

from ..data import encode

PREAMBLE = ("Below is an instruction that describes a task. "
            "Write a response that appropriately completes the request.")
RESPONSE_HEADER = "\n\n### Response:\n"
IGNORE_INDEX = -1          # GPT.forward's ignore value (PyTorch and the book use -100)
EOT = "<|endoftext|>"
TRAIN_FRACTION, TEST_FRACTION = 0.85, 0.10


def format_entry(entry: dict) -> tuple[str, str, str]:
    """An entry in the Alpaca prompt format, as ``(prompt, header, output)``.

    ``prompt`` is the preamble, ``"\\n\\n### Instruction:\\n" + instruction`` and, when ``input`` is not
    empty, ``"\\n\\n### Input:\\n" + input`` (the book's ``format_input``); ``header`` is
    ``"\\n\\n### Response:\\n"``; ``output`` the reference answer. The whole text is
    ``prompt + header + output``; a model is asked with ``prompt + header``.
    """
    prompt = f"{PREAMBLE}\n\n### Instruction:\n{entry['instruction']}"
    if entry.get("input"):
        prompt += f"\n\n### Input:\n{entry['input']}"
    return prompt, RESPONSE_HEADER, entry["output"]


def load_instruction_data(path: str | os.PathLike) -> list[dict]:
    """The entries of a JSON file holding a list of ``{"instruction", "input" (optional), "output"}``.

    Raises:
        FileFormatError: no such file, an empty file, not JSON, not a non-empty list, or an entry that is
            not an object or lacks a string ``instruction`` / ``output`` (the message names the file and
            the entry's index).
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"no instruction data at {str(path)!r}: pass --data PATH to a JSON file")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise FileFormatError(f"{path} is empty: it should hold a JSON list of instruction entries")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise FileFormatError(f"{path} is not JSON ({e})") from None
    if not isinstance(data, list) or not data:
        raise FileFormatError(f"{path} must hold a non-empty JSON list of entries, got "
                              f"{type(data).__name__} {'(empty)' if data == [] else ''}".rstrip())
    for i, e in enumerate(data):
        if not isinstance(e, dict):
            raise FileFormatError(f"{path}: entry {i} is a {type(e).__name__}, not an object")
        missing = [k for k in ("instruction", "output") if not isinstance(e.get(k), str)]
        if missing or not isinstance(e.get("input", ""), str):
            raise FileFormatError(f"{path}: entry {i} needs string fields 'instruction' and 'output' (and an "
                                  f"optional string 'input'); missing or not a string: "
                                  f"{missing or ['input']} (keys: {sorted(e)})")
    return data


def split_entries(entries: list) -> tuple[list, list, list]:
    """``(train, test, val)``: the first 85 %, the next 10 %, the rest (the book's split, in file order).

    1,100 entries give 935 / 110 / 55.
    """
    n_train, n_test = int(len(entries) * TRAIN_FRACTION), int(len(entries) * TEST_FRACTION)
    return entries[:n_train], entries[n_train:n_train + n_test], entries[n_train + n_test:]


def eos_id(tok) -> int:
    """The tokenizer's ``<|endoftext|>`` id (the padding and the end of every response).

    Raises:
        UsageError: the tokenizer has no such special token.
    """
    special = getattr(tok, "special_tokens", {}) or {}
    if EOT not in special:
        raise UsageError(f"instruction fine-tuning needs an {EOT} token to end responses and pad batches; "
                         f"this {type(tok).__name__} has special tokens {sorted(special)}")
    return int(special[EOT])


@dataclass(frozen=True)
class EncodedEntry:
    """One entry's token ids and where its parts end.

    Attributes:
        ids: prompt, header and output tokens, ``[n]`` (no end-of-text: the collate appends it).
        n_prompt: tokens of the instruction (and input) part.
        n_query: tokens of prompt + response header (what a model is asked with).
    """
    ids: np.ndarray
    n_prompt: int
    n_query: int


def encode_entry(entry: dict, tok) -> EncodedEntry:
    """Encode the three parts of :func:`format_entry` one after another.

    Encoding the parts separately makes ``n_prompt`` and ``n_query`` exact; with GPT-2's BPE it gives the
    tokens of the whole text whenever a part boundary is a pre-tokenizer boundary (every entry of the
    book's instruction-data.json; ``tests/test_finetune_instruct.py`` checks it).
    """
    prompt, header, output = (encode(tok, s) for s in format_entry(entry))
    ids = np.array(prompt + header + output, dtype=np.int64)
    return EncodedEntry(ids, len(prompt), len(prompt) + len(header))


class InstructionDataset:
    """Encoded entries, checked against the model's context, with :meth:`batch` for ``EpochLoader``.

    Args:
        entries: entries as :func:`load_instruction_data` gives them.
        tok: the model's tokenizer (it must have ``<|endoftext|>``).
        block_size: the model's context; an entry with more tokens (end-of-text not counted: it is only
            a target) is an error,
            unless ``truncate`` (then the collate cuts it to ``block_size``, the book's
            ``allowed_max_length``).
        mask_prompt: targets of the instruction/input tokens are ignored (the book's exercise 7.2).
        source: the file's name, for error messages.

    Raises:
        UsageError: an entry longer than the context (its index, its length, the context).
    """

    def __init__(self, entries: list[dict], tok, block_size: int, mask_prompt: bool = False,
                 truncate: bool = False, source: str = "the data", first_index: int = 0):
        self.eos_id = eos_id(tok)
        self.block_size, self.mask_prompt = int(block_size), bool(mask_prompt)
        self.entries = list(entries)
        self.encoded = [encode_entry(e, tok) for e in self.entries]
        if not truncate:
            for i, e in enumerate(self.encoded):
                if len(e.ids) > self.block_size:   # the model reads len(ids) inputs; end-of-text is a target
                    raise UsageError(
                        f"{source}: entry {first_index + i} is {len(e.ids)} tokens, longer than the context "
                        f"({self.block_size}); pass --truncate to cut it, or drop the entry")

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, i: int) -> EncodedEntry:
        return self.encoded[i]

    def __repr__(self) -> str:
        return f"InstructionDataset({len(self)} entries, block_size={self.block_size})"

    def batch(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """The collated batch of entries ``indices`` (see :func:`collate`)."""
        return collate([self.encoded[int(i)] for i in indices], self.eos_id,
                       mask="prompt" if self.mask_prompt else None, max_length=self.block_size)


def collate(entries: list[EncodedEntry], eos_id: int, ignore_index: int = IGNORE_INDEX,
            mask: str | None = None, max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pad a batch of entries and make its inputs and next-token targets (the book's ``custom_collate_fn``).

    Each entry's ids get one end-of-text appended, then end-of-text padding up to the batch's longest
    entry plus one: ``padded [B, L + 1]`` with ``L = max len(ids)``. Then

    * ``inputs = padded[:, :-1]`` and ``targets = padded[:, 1:]`` (``[B, L]``, shifted by one);
    * in each row, every target equal to ``eos_id`` after the first is ``ignore_index`` (the first one
      teaches the model to end its answer; the rest are padding);
    * ``mask="prompt"``: the targets predicting the instruction/input tokens (``targets[:n_prompt - 1]``)
      are ignored too; ``mask="query"`` also ignores those of the response header, so only the answer
      and its end-of-text count (the response-token loss);
    * ``max_length``: inputs and targets are cut to their first ``max_length`` positions.

    Example (eos 0, entries ``[5, 6, 7]`` and ``[8]``)::

        inputs  [[5, 6, 7], [8, 0, 0]]
        targets [[6, 7, 0], [0, -1, -1]]

    Raises:
        UsageError: an empty batch, or an unknown ``mask``.
    """
    if not entries:
        raise UsageError("collate: an empty batch")
    if mask not in (None, "prompt", "query"):
        raise ConfigError(f"collate: mask must be None, 'prompt' or 'query', got {mask!r}")
    longest = max(len(e.ids) for e in entries)
    padded = np.full((len(entries), longest + 1), eos_id, dtype=np.int64)          # [B, L + 1]
    for b, e in enumerate(entries):
        padded[b, :len(e.ids)] = e.ids
    inputs, targets = padded[:, :-1].copy(), padded[:, 1:].copy()                  # [B, L] each
    for b, e in enumerate(entries):
        # subtle: the first end-of-text target sits at len(ids) - 1; only padding comes after it
        targets[b, len(e.ids):] = ignore_index
        n_masked = {None: 0, "prompt": e.n_prompt, "query": e.n_query}[mask]
        targets[b, :max(n_masked - 1, 0)] = ignore_index
    if max_length is not None:
        inputs, targets = inputs[:, :max_length], targets[:, :max_length]
    return inputs, targets


__all__ = ["PREAMBLE", "RESPONSE_HEADER", "IGNORE_INDEX", "format_entry", "load_instruction_data",
           "split_entries", "eos_id", "EncodedEntry", "encode_entry", "InstructionDataset", "collate"]
