"""Learning byte-level BPE merges: minbpe's two helpers, and the incremental trainer behind
:meth:`tokenizer.BPETokenizer.train`.

:func:`learn_merges` counts the unique chunks once and then keeps pair counts up to date after every
merge, touching only the chunks that hold the merged pair.
"""
from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping

from tqdm.auto import tqdm

__all__ = ["get_stats", "learn_merges", "merge"]


def get_stats(ids: Iterable[int], counts: dict[tuple[int, int], int] | None = None, weight: int = 1):
    """Count adjacent pairs of ``ids`` (overlapping), adding ``weight`` per pair into ``counts``.

    Example:
        >>> get_stats([1, 2, 3, 1, 2])
        {(1, 2): 2, (2, 3): 1, (3, 1): 1}
        >>> get_stats([7, 7, 7])
        {(7, 7): 2}
    """
    counts = {} if counts is None else counts
    ids = list(ids)
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge(ids: Iterable[int], pair: tuple[int, int], idx: int) -> list[int]:
    """Replace every non-overlapping occurrence of ``pair`` in ``ids``, left to right, by ``idx``.

    Example:
        >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
        [4, 3, 4]
        >>> merge([7, 7, 7], (7, 7), 8)  # the leftmost occurrence wins
        [8, 7]
    """
    ids = list(ids)
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(idx)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def learn_merges(
    chunk_counts: Mapping[bytes, int],
    n_tokens: int,
    vocab: Mapping[int, bytes] | None = None,
    *,
    progress: bool | None = None,
) -> list[tuple[int, int, int]]:
    """Learn up to ``n_tokens`` new tokens from chunks (as bytes) and their counts.

    Each step merges the most frequent adjacent pair, counted over all chunks weighted by their counts
    (overlapping pairs count, as in minbpe: ``aaa`` holds ``(a, a)`` twice).

    Tie-breaking: among pairs with the same count, the smallest ``(left id, right id)`` wins, i.e. the
    pair whose left token was learned first, bytes ordered by value. This uses only the counts and ids,
    so the result does not depend on dict or set order, nor on ``PYTHONHASHSEED``.

    If a pair joins into bytes that already are a token (``ab``+``c`` and ``a``+``bc``), the merge is
    recorded with the existing id and no new id is spent, so every token's bytes stay unique (what
    tiktoken requires). New ids follow the largest id of ``vocab`` (default: the 256 single bytes).

    How it stays fast: the unique chunks are counted once; a heap holds candidate pairs by count (stale
    entries are fixed when popped); an index pair -> chunks lets each merge visit only the chunks that
    hold the pair, and only the pairs next to each merged occurrence get their counts changed.

    Example:
        >>> learn_merges({b"aaabdaaabac": 1}, 3)
        [(97, 97, 256), (97, 98, 257), (256, 257, 258)]

    Args:
        chunk_counts: ``{chunk bytes: how often it occurs}``.
        n_tokens: how many new ids to create.
        vocab: ``{id: bytes}`` to start from; default the 256 single bytes with id = byte value.
        progress: show a tqdm bar (``None``: only for runs of 1,000+ merges on a terminal).

    Returns:
        The merges in order, ``(left id, right id, new id)``; fewer than ``n_tokens`` if the pairs run out.
    """
    vocab = {i: bytes([i]) for i in range(256)} if vocab is None else dict(vocab)
    ids_of = {b: i for i, b in vocab.items()}
    next_id = max(vocab, default=-1) + 1

    words: list[list[int]] = []
    counts: list[int] = []
    pair_count: defaultdict[tuple[int, int], int] = defaultdict(int)
    where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> indices of chunks holding it
    for chunk, c in chunk_counts.items():
        if c <= 0 or len(chunk) < 2:
            continue  # a 1-byte chunk has no pairs and never changes
        w = [ids_of[chunk[k : k + 1]] for k in range(len(chunk))]
        idx = len(words)
        words.append(w)
        counts.append(c)
        for pair in zip(w, w[1:]):
            pair_count[pair] += c
            where[pair].add(idx)

    # subtle: heap order (-count, (left, right)) is the documented tie-break: smallest pair first.
    heap = [(-c, pair) for pair, c in pair_count.items()]
    heapq.heapify(heap)
    merges: list[tuple[int, int, int]] = []
    made = 0
    show = progress if progress is not None else (None if n_tokens >= 1000 else False)
    bar = tqdm(total=n_tokens, desc="bpe merges", unit="tok", disable=(not show) if show is not None else None)
    pop, push = heapq.heappop, heapq.heappush
    while made < n_tokens:
        # Find the best pair; an entry is valid only if its count is the current one.
        while heap:
            neg, pair = heap[0]
            cur = pair_count.get(pair, 0)
            if cur == -neg:
                break
            pop(heap)
            if cur > 0:  # stale: a pair whose count grew was pushed again, so re-queue the true count
                push(heap, (-cur, pair))
        if not heap:
            break
        pop(heap)
        a, b = pair
        joined = vocab[a] + vocab[b]
        new = ids_of.get(joined)
        if new is None:
            new = next_id
            next_id += 1
            vocab[new] = joined
            ids_of[joined] = new
            made += 1
            bar.update(1)
        merges.append((a, b, new))
        del pair_count[pair]  # every occurrence gets merged, so the pair is gone

        touched: set[tuple[int, int]] = set()  # pairs that contain `new`: pushed once their counts are final
        for i in where.pop(pair):
            w = words[i]
            n = len(w)
            try:
                j = w.index(a)
            except ValueError:
                continue  # stale index entry: this chunk lost the pair in an earlier merge
            c = counts[i]
            out = w[:j]
            while j < n:
                if w[j] == a and j + 1 < n and w[j + 1] == b:
                    # subtle: the left neighbour is read from `out` (already merged), so in "a b a b" the
                    # second occurrence sees X on its left, not b: each old pair is decremented once.
                    if out:
                        p = out[-1]
                        if (p, a) != pair:
                            pair_count[p, a] -= c
                        pair_count[p, new] += c
                        touched.add((p, new))
                        where[p, new].add(i)
                    if j + 2 < n:
                        q = w[j + 2]
                        if (b, q) != pair:  # "a a a": the right neighbour pair is the merged pair itself
                            pair_count[b, q] -= c
                        pair_count[new, q] += c
                        touched.add((new, q))
                        where[new, q].add(i)
                    out.append(new)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
        for p2 in touched:
            c2 = pair_count[p2]
            if c2 > 0:
                push(heap, (-c2, p2))
    bar.close()
    return merges
