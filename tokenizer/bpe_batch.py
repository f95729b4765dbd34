"""Many chunks' BPE merges in one compiled call: the fast path of a cold encode.

:func:`tokenizer.bpe.bpe_merge` (tiktoken's list scan, in Python) costs ~5 µs per chunk, most of it
interpreter overhead; a cold encode of Tiny Shakespeare has ~7,400 distinct chunks that are not single
tokens. :func:`merge_pieces` runs the *same* list scan for a whole batch of chunks in one Numba call.

Data layout (:class:`RankTable`, built once per tokenizer, on first use):

* ``tok_bytes`` (uint8): every ordinary token's bytes, concatenated; token ``k`` is
  ``tok_bytes[tok_start[k]:tok_start[k + 1]]`` and has id ``tok_rank[k]``.
* ``slots`` (int64, a power of two at least twice the number of tokens): an open-addressing hash table
  (linear probing) from a byte string to its token ``k`` (``-1``: empty); ``slot_hash`` keeps each slot's
  hash so that a probe compares bytes only on a hash match.
* ``byte_rank`` (int64, 256): the id of each single byte.

The kernel, per chunk of ``n`` bytes (the loop nest of :func:`tokenizer.bpe._bpe_small`)::

    parts = the n single bytes;  pair[k] = rank of parts k, k+1 joined (hash lookup)
    repeat: k = leftmost argmin pair        # O(parts) scan, as tiktoken
            stop if pair[k] is no token
            join parts k, k+1 (shift the arrays left by one); re-look-up pair[k - 1] and pair[k]

Why it is fast: one call for the batch, arrays reused across chunks, and a lookup is a hash of a few
bytes and one probe, against a Python slice + dict lookup per pair. It is O(n^2) per chunk like the scan
it mirrors, so only chunks up to a few hundred bytes are sent here (the chunk cache's limit); longer
ones take the heap of :func:`tokenizer.bpe._bpe_large`.

The first call compiles (~1 s, then cached on disk in ``NUMBA_CACHE_DIR``, see :mod:`tinytensor.runtime`);
with ``NUMBA_DISABLE_JIT=1`` everything runs as plain Python (slowly) with the same results.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numba import njit

__all__ = ["NO_RANK", "RankTable", "merge_pieces"]

NO_RANK = np.iinfo(np.int64).max  # a pair that is not a token ranks after every token
_MAX_RANK = 1 << 62               # ids at or above this do not fit the kernel's int64 arrays
_JIT = dict(cache=True, nogil=True)


@njit(**_JIT, inline="always")
def _hash(buf, start, end):
    """32-bit FNV-1a of ``buf[start:end]`` (kept below 2**56 so it also runs as plain Python ints)."""
    h = 2166136261
    for i in range(start, end):
        h = ((h ^ int(buf[i])) * 16777619) & 0xFFFFFFFF
    return h


@njit(**_JIT)
def _fill_slots(tok_bytes, tok_start, slots, slot_hash):
    """Insert every token into the empty table (``slots`` all -1); ``len(slots)`` is a power of two."""
    mask = len(slots) - 1
    for k in range(len(tok_start) - 1):
        h = _hash(tok_bytes, tok_start[k], tok_start[k + 1])
        i = (h ^ (h >> 15)) & mask
        while slots[i] >= 0:
            i = (i + 1) & mask
        slots[i] = k
        slot_hash[i] = h


@njit(**_JIT, inline="always")
def _lookup(buf, start, end, tok_bytes, tok_start, tok_rank, slots, slot_hash):
    """The id of the token whose bytes are ``buf[start:end]``, or ``NO_RANK``."""
    mask = len(slots) - 1
    h = _hash(buf, start, end)
    i = (h ^ (h >> 15)) & mask
    n = end - start
    while True:
        k = slots[i]
        if k < 0:
            return NO_RANK
        if slot_hash[i] == h:
            a = tok_start[k]
            if tok_start[k + 1] - a == n:
                j = 0
                while j < n and tok_bytes[a + j] == buf[start + j]:
                    j += 1
                if j == n:
                    return tok_rank[k]
        i = (i + 1) & mask


@njit(**_JIT)
def _merge_all(buf, starts, tok_bytes, tok_start, tok_rank, slots, slot_hash, byte_rank, out, counts):
    """BPE-merge each piece ``buf[starts[p]:starts[p + 1]]``; its ids go to ``out`` (pieces one after the
    other), their number to ``counts[p]``. Returns the number of ids written."""
    longest = 0
    for p in range(len(starts) - 1):
        longest = max(longest, starts[p + 1] - starts[p])
    bounds = np.empty(longest + 1, np.int64)  # bounds[k]: where part k starts (in buf)
    part = np.empty(longest, np.int64)        # part[k]: the id of part k
    pair = np.empty(longest, np.int64)        # pair[k]: the id of parts k and k + 1 joined, or NO_RANK
    o = 0
    for p in range(len(starts) - 1):
        s0 = starts[p]
        m = starts[p + 1] - s0                # number of parts
        for k in range(m):
            bounds[k] = s0 + k
            part[k] = byte_rank[buf[s0 + k]]
        bounds[m] = s0 + m
        for k in range(m - 1):
            pair[k] = _lookup(buf, s0 + k, s0 + k + 2, tok_bytes, tok_start, tok_rank, slots, slot_hash)
        while m > 1:
            best = NO_RANK
            b = -1
            for k in range(m - 1):
                if pair[k] < best:            # subtle: strict <, so the leftmost of equal ranks wins
                    best = pair[k]
                    b = k
            if b < 0:
                break
            part[b] = best                    # parts b and b + 1 become one
            for k in range(b + 1, m - 1):
                part[k] = part[k + 1]
            for k in range(b + 1, m):
                bounds[k] = bounds[k + 1]
            for k in range(b, m - 2):
                pair[k] = pair[k + 1]
            m -= 1
            # only the pairs that touch the new part changed: (b - 1, b) and (b, b + 1)
            if b < m - 1:
                pair[b] = _lookup(buf, bounds[b], bounds[b + 2], tok_bytes, tok_start, tok_rank, slots, slot_hash)
            if b > 0:
                pair[b - 1] = _lookup(buf, bounds[b - 1], bounds[b + 1], tok_bytes, tok_start, tok_rank, slots,
                                      slot_hash)
        for k in range(m):
            out[o + k] = part[k]
        o += m
        counts[p] = m
    return o


class RankTable:
    """A rank table ``{token bytes: id}`` as the kernel's arrays (see the module docstring)."""

    __slots__ = ("tok_bytes", "tok_start", "tok_rank", "slots", "slot_hash", "byte_rank")

    def __init__(self, ranks: Mapping[bytes, int]) -> None:
        tokens = list(ranks)
        n = len(tokens)
        self.tok_bytes = np.frombuffer(b"".join(tokens), np.uint8)
        self.tok_start = np.zeros(n + 1, np.int64)
        np.cumsum(np.fromiter(map(len, tokens), np.int64, n), out=self.tok_start[1:])
        self.tok_rank = np.fromiter(ranks.values(), np.int64, n)
        size = 1 << max(4, (2 * n - 1).bit_length())  # at least 2n: short probe runs
        self.slots = np.full(size, -1, np.int64)
        self.slot_hash = np.zeros(size, np.int64)
        _fill_slots(self.tok_bytes, self.tok_start, self.slots, self.slot_hash)
        self.byte_rank = np.array([ranks[bytes([x])] for x in range(256)], np.int64)

    @staticmethod
    def fits(ranks: Mapping[bytes, int]) -> bool:
        """Can the kernel hold these ids (all below 2**62)?"""
        return not ranks or max(ranks.values()) < _MAX_RANK


def merge_pieces(pieces: list[bytes], table: RankTable) -> list[list[int]]:
    """``[bpe_merge(p, ranks) for p in pieces]`` in one compiled call; every piece must be non-empty.

    Example:
        >>> ranks = {bytes([i]): i for i in range(256)} | {b"aa": 256, b"ab": 257, b"aab": 258}
        >>> merge_pieces([b"aaab", b"ba"], RankTable(ranks))
        [[256, 257], [98, 97]]
    """
    if not pieces:
        return []
    starts = np.zeros(len(pieces) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, pieces), np.int64, len(pieces)), out=starts[1:])
    buf = np.frombuffer(b"".join(pieces), np.uint8)
    out = np.empty(len(buf), np.int64)
    counts = np.empty(len(pieces), np.int64)
    t = table
    n_out = _merge_all(buf, starts, t.tok_bytes, t.tok_start, t.tok_rank, t.slots, t.slot_hash, t.byte_rank,
                       out, counts)
    ids = out[:n_out].tolist()
    ends = np.cumsum(counts).tolist()
    return [ids[a:b] for a, b in zip([0, *ends[:-1]], ends)]
