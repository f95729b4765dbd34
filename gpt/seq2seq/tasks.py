"""Offline sequence-to-sequence tasks, each a seeded generator of ``(source, target)`` strings with
disjoint train / validation / test splits, and the character vocabulary they share.

* ``copy``: a string of digits and letters -> itself.
* ``reverse``: a string of digits and letters -> it reversed.
* ``dates``: a date written one of several ways -> ISO 8601::

      "3rd of November 1999", "November 3, 1999", "03/11/1999", "3 Nov 1999", ... -> "1999-11-03"

Splits are decided by a hash of the *target* (crc32 mod 10: 0 test, 1 validation, else train), so a
held-out sequence (for ``dates``: a held-out day, in every spelling) never appears in training. Choose
models on ``"val"``; report on ``"test"``.
"""
from __future__ import annotations

import calendar
import datetime
import string
import zlib
from dataclasses import dataclass

import numpy as np

from tinytensor.errors import ConfigError, UsageError

__all__ = ["SPECIALS", "TASKS", "CharVocab", "Task", "get_task"]

SPECIALS = ("<pad>", "<bos>", "<eos>")          # ids 0, 1, 2 (TransformerConfig's defaults)
SPLITS = ("train", "val", "test")
_SYMBOLS = string.digits + string.ascii_lowercase


class CharVocab:
    """Characters <-> ids after the three special tokens; ``encode`` raises on an unknown character."""

    def __init__(self, chars: str):
        self.chars = "".join(sorted(set(chars)))
        self.itos = list(SPECIALS) + list(self.chars)
        self.stoi = {ch: i + len(SPECIALS) for i, ch in enumerate(self.chars)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        for i, ch in enumerate(text):
            if ch not in self.stoi:
                raise UsageError(f"character {ch!r} at index {i} of {text!r} is not in the vocabulary "
                                 f"{self.chars!r}")
        return [self.stoi[ch] for ch in text]

    def decode(self, ids) -> str:
        return "".join(self.itos[i] for i in ids if i >= len(SPECIALS))


def split_of(target: str) -> str:
    """``"test"``, ``"val"`` or ``"train"``, fixed by the target's crc32 (10 %, 10 %, 80 %)."""
    h = zlib.crc32(target.encode()) % 10
    return "test" if h == 0 else "val" if h == 1 else "train"


@dataclass
class Task:
    """A task: its name, vocabulary characters and a ``make(rng, length_range) -> (source, target)``."""
    name: str
    chars: str
    default_lengths: tuple[int, int]       # for copy / reverse: the symbol count; for dates: unused

    def make(self, rng: np.random.Generator, lengths: tuple[int, int]) -> tuple[str, str]:  # pragma: no cover
        raise NotImplementedError

    def longest(self, lengths: tuple[int, int] | None) -> int:
        """The most characters a source or target of ``make(rng, lengths)`` can have."""
        return (lengths or self.default_lengths)[1]

    def vocab(self) -> CharVocab:
        return CharVocab(self.chars)

    def sample(self, split: str, n: int, seed: int, lengths: tuple[int, int] | None = None) -> list[tuple[str, str]]:
        """``n`` pairs of ``split``, drawn from ``seed`` (same seed, same pairs), by rejection on the split."""
        if split not in SPLITS:
            raise UsageError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        lo, hi = lengths or self.default_lengths
        if not 1 <= lo <= hi:
            raise ConfigError(f"{self.name}: lengths must satisfy 1 <= lo <= hi, got ({lo}, {hi})")
        rng = np.random.default_rng([seed, SPLITS.index(split)])
        out = []
        while len(out) < n:
            src, tgt = self.make(rng, (lo, hi))
            if split_of(tgt) == split:
                out.append((src, tgt))
        return out


class _Symbols(Task):
    def __init__(self, name: str, reverse: bool):
        super().__init__(name, _SYMBOLS, (1, 30))
        self.reverse = reverse

    def make(self, rng, lengths):
        n = int(rng.integers(lengths[0], lengths[1] + 1))
        s = "".join(rng.choice(list(_SYMBOLS), size=n))
        return s, (s[::-1] if self.reverse else s)


_MONTHS = list(calendar.month_name)[1:]


def _ordinal(d: int) -> str:
    suffix = "th" if 11 <= d % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")
    return f"{d}{suffix}"


_FORMATS = (
    lambda d: f"{_ordinal(d.day)} of {_MONTHS[d.month - 1]} {d.year}",        # 3rd of November 1999
    lambda d: f"{_MONTHS[d.month - 1]} {d.day}, {d.year}",                    # November 3, 1999
    lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}",                          # 03/11/1999
    lambda d: f"{d.day} {_MONTHS[d.month - 1][:3]} {d.year}",                 # 3 Nov 1999
    lambda d: f"{d.day} {_MONTHS[d.month - 1].lower()} {d.year}",             # 3 november 1999
    lambda d: f"{_MONTHS[d.month - 1][:3]} {_ordinal(d.day)}, {d.year}",      # Nov 3rd, 1999
    lambda d: f"{d.day}.{d.month}.{d.year}",                                  # 3.11.1999
)
_FIRST, _DAYS = datetime.date(1900, 1, 1), (datetime.date(2099, 12, 31) - datetime.date(1900, 1, 1)).days + 1


class _Dates(Task):
    def __init__(self):
        chars = set(string.digits + " ,/.-of")
        for m in _MONTHS:
            chars |= set(m) | set(m.lower())
        chars |= set("stndrh")
        super().__init__("dates", "".join(chars), (1, 1))

    def longest(self, lengths):
        # day 30 ("30th"), September and a four-digit year are the longest in every format
        return max(len(f(datetime.date(2099, 9, 30))) for f in _FORMATS)

    def make(self, rng, lengths):
        d = _FIRST + datetime.timedelta(days=int(rng.integers(_DAYS)))
        return _FORMATS[int(rng.integers(len(_FORMATS)))](d), d.isoformat()


TASKS: dict[str, Task] = {t.name: t for t in (_Symbols("copy", False), _Symbols("reverse", True), _Dates())}


def get_task(name: str) -> Task:
    """The task called ``name``; a UsageError listing the names otherwise."""
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}; the tasks are: {', '.join(TASKS)}")
    return TASKS[name]
