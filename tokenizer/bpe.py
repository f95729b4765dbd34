"""Byte-level BPE with a regex pre-split (GPT-2 / GPT-4 style), trainable, tiktoken-compatible.

How text becomes ids:

1. The pattern (``"gpt2"``, ``"gpt4"`` = cl100k, or any regex of the ``regex`` package) splits the text
   into chunks; text no match covers is dropped, as in tiktoken. Merges never cross chunk boundaries.
2. Each chunk's UTF-8 bytes are merged with tiktoken's rule (:func:`bpe_merge`): repeatedly join the
   adjacent pair whose joined bytes have the lowest rank, leftmost first, until no joined pair is a token.
   A token's rank is its id.
3. Results are cached per chunk, so a text that repeats its words costs one dict lookup per chunk.
   A long text first finds its distinct chunks that the cache lacks and merges them all in one compiled
   call (:func:`tokenizer.bpe_batch.merge_pieces`, the same rule), rather than one Python call each.

Training (:meth:`BPETokenizer.train`) pre-splits and counts the chunks here, then learns the merges
with :func:`tokenizer.bpe_train.learn_merges`.
"""
from __future__ import annotations

import heapq
import re
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import chain
from typing import Any

import regex

from tinytensor.errors import ConfigError, DTypeError, FileFormatError, UsageError

from .base import Tokenizer, _check_special_map, check_ids, special_token_regex, split_on_special
from .bpe_train import learn_merges

__all__ = [
    "GPT2_PATTERN",
    "GPT4_PATTERN",
    "PATTERNS",
    "BPETokenizer",
    "bpe_merge",
    "recover_merges",
    "resolve_pattern",
]

# tiktoken's r50k/gpt2 pattern: equivalent to GPT-2's original
# r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""" but faster
# (possessive quantifiers never backtrack).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
# tiktoken's cl100k_base pattern (GPT-3.5/GPT-4): case-insensitive contractions, digits in groups of at
# most three, one leading non-letter glued to a word, newlines kept apart from other whitespace.
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|"""
    r"""\s*[\r\n]|\s+(?!\S)|\s"""
)
PATTERNS: dict[str, str] = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN, "cl100k": GPT4_PATTERN}

# The same two patterns for pure-ASCII text, for the standard library's ``re``, which splits faster than
# ``regex`` (benchmarks/tokenizer.py): on ASCII, \p{L} is [A-Za-z], \p{N} is [0-9] and \s is these six
# (not \x1c-\x1f, which ``re``'s \s would take). Possessive quantifiers become greedy ones: each ends
# its alternative, where nothing could backtrack into it anyway. tests/test_tokenizer.py checks every
# ASCII character's class and fuzzes the splits against ``regex``.
_WS = r"\t\n\x0b\x0c\r "
_ASCII_TWINS: dict[str, str] = {
    GPT2_PATTERN: rf"""'(?:[sdmt]|ll|ve|re)| ?[A-Za-z]+| ?[0-9]+| ?[^{_WS}A-Za-z0-9]+|[{_WS}]+$"""
                  rf"""|[{_WS}]+(?![^{_WS}])|[{_WS}]""",
    GPT4_PATTERN: rf"""'(?i:[sdmt]|ll|ve|re)|[^\r\nA-Za-z0-9]?[A-Za-z]+|[0-9]{{1,3}}| ?[^{_WS}A-Za-z0-9]+[\r\n]*"""
                  rf"""|[{_WS}]+$|[{_WS}]*[\r\n]|[{_WS}]+(?![^{_WS}])|[{_WS}]""",
}

# A pair that is not a token ranks after every real token.
_NO_RANK = sys.maxsize
MAX_TOKEN_BYTES = 1 << 20   # a saved token longer than this is a damaged (or hostile) file, not a vocabulary
# Pieces longer than this take the heap path of bpe_merge (O(n log n)); shorter ones the list scan
# (O(n) per merge), which has less overhead per step.
_LARGE_PIECE = 24
# Chunk cache: cap on entries, and the longest chunk worth caching (characters).
_CACHE_MAX_ENTRIES = 1 << 17
_CACHE_MAX_CHUNK = 256
# A text of at least this many chunks fills the cache first (_prefill), and when at least this many of its
# distinct chunks need merging, they are merged in one compiled batch (tokenizer.bpe_batch). Below it the
# batch's fixed costs (and, in a new process, loading the compiled code) outweigh the Python merges.
_BATCH_MIN = 256


def resolve_pattern(pattern: str) -> str:
    """Return the regex for a pattern name (``"gpt2"``, ``"gpt4"``, ``"cl100k"``) or the regex itself.

    Example:
        >>> resolve_pattern("gpt2") == GPT2_PATTERN
        True
        >>> resolve_pattern(r"\\w+|\\W")
        '\\\\w+|\\\\W'
    """
    if not isinstance(pattern, str):
        raise DTypeError(f"pattern must be a name or a regex str, got {type(pattern).__name__}")
    return PATTERNS.get(pattern, pattern)


def _compile(pattern: str) -> regex.Pattern[str]:
    try:
        return regex.compile(pattern)
    except regex.error as e:
        raise ConfigError(f"invalid tokenizer pattern {pattern!r}: {e}") from None


def _bpe_small(piece: bytes, ranks: Mapping[bytes, int], max_rank: int = _NO_RANK) -> list[bytes]:
    """tiktoken's list scan: O(n) per merge, fast for short pieces. Returns the token byte strings."""
    get = ranks.get
    n = len(piece)
    # bounds[k] is where part k starts; part k is piece[bounds[k]:bounds[k + 1]].
    bounds = list(range(n + 1))
    # pair_rank[k] is the rank of part k joined with part k + 1.
    pair_rank = [get(piece[k : k + 2], _NO_RANK) for k in range(n - 1)]
    while pair_rank:
        best = min(pair_rank)
        if best >= max_rank:
            break
        k = pair_rank.index(best)  # subtle: index() finds the leftmost of equal ranks, as tiktoken does
        del bounds[k + 1]
        del pair_rank[k]
        # Only the pairs that touch the new part changed: (k-1, k) and (k, k+1).
        if k < len(pair_rank):
            pair_rank[k] = get(piece[bounds[k] : bounds[k + 2]], _NO_RANK)
        if k > 0:
            pair_rank[k - 1] = get(piece[bounds[k - 1] : bounds[k + 1]], _NO_RANK)
    return [piece[bounds[k] : bounds[k + 1]] for k in range(len(bounds) - 1)]


def _bpe_large(piece: bytes, ranks: Mapping[bytes, int]) -> list[bytes]:
    """Same result as :func:`_bpe_small` in O(n log n): a heap of candidate pairs over a linked list.

    A heap entry ``(rank, start, end)`` stands for joining the part that starts at ``start`` with the one
    after it, ending at ``end``. Entries go stale when a neighbour merges first; a popped entry is used
    only if ``start`` still begins a part whose next part still ends at ``end``.
    """
    get = ranks.get
    n = len(piece)
    nxt = list(range(1, n + 1))  # nxt[s]: start of the part after the part starting at s (n: none)
    prv = list(range(-1, n - 1))  # prv[s]: start of the part before it (-1: none)
    alive = [True] * n
    heap = []
    for s in range(n - 1):
        r = get(piece[s : s + 2])
        if r is not None:
            heap.append((r, s, s + 2))
    heapq.heapify(heap)
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        r, s, end = pop(heap)
        # (rank, start) ordering = lowest rank first, leftmost among equals: tiktoken's order.
        if not alive[s]:
            continue
        mid = nxt[s]
        if mid >= n or nxt[mid] != end:
            continue
        alive[mid] = False
        nxt[s] = end
        if end < n:
            prv[end] = s
            after = nxt[end]
            r2 = get(piece[s:after])
            if r2 is not None:
                push(heap, (r2, s, after))
        before = prv[s]
        if before >= 0:
            r2 = get(piece[before:end])
            if r2 is not None:
                push(heap, (r2, before, end))
    out = []
    s = 0
    while s < n:
        out.append(piece[s : nxt[s]])
        s = nxt[s]
    return out


def bpe_merge(piece: bytes, ranks: Mapping[bytes, int]) -> list[int]:
    """Encode one chunk's bytes with tiktoken's rule and return the ids (ranks) of its tokens.

    Repeatedly join the adjacent pair whose joined bytes have the lowest rank (leftmost among equal
    ranks) until no adjacent pair joins into a token. Near-linear for long pieces.

    Example:
        >>> ranks = {bytes([i]): i for i in range(256)} | {b"aa": 256, b"ab": 257, b"aab": 258}
        >>> bpe_merge(b"aaab", ranks)  # "aa" (256) joins first, leftmost: aa|a|b -> aa|ab -> no "aaab"
        [256, 257]
    """
    if len(piece) <= 1:
        return [ranks[piece]] if piece else []
    parts = _bpe_small(piece, ranks) if len(piece) <= _LARGE_PIECE else _bpe_large(piece, ranks)
    return [ranks[p] for p in parts]


def recover_merges(ranks: Mapping[bytes, int]) -> list[tuple[int, int, int]]:
    """Rebuild the ``(left, right, new)`` merges behind a rank table such as a ``.tiktoken`` file.

    For each multi-byte token, BPE-encoding its bytes with only the lower-ranked tokens must end in
    exactly two parts: those are the pair it was merged from (the trick minbpe uses for cl100k).

    Example:
        >>> ranks = {bytes([i]): i for i in range(256)} | {b"ab": 256, b"abc": 257}
        >>> recover_merges(ranks)
        [(97, 98, 256), (256, 99, 257)]

    Raises:
        ValueError: a token cannot be made by merging two lower-ranked tokens.
    """
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) == 1:
            continue
        parts = _bpe_small(token, ranks, max_rank=rank)
        if len(parts) != 2:
            raise UsageError(
                f"token {token!r} (rank {rank}) is not the merge of two lower-ranked tokens; "
                f"BPE with lower ranks gives {len(parts)} parts"
            )
        merges.append((ranks[parts[0]], ranks[parts[1]], rank))
    return merges


class _ChunkCache(dict):
    """chunk str -> ids; a miss encodes the chunk (``__missing__``) and remembers it if it is short."""

    __slots__ = ("_ranks",)

    def __init__(self, ranks: Mapping[bytes, int]) -> None:
        super().__init__()
        self._ranks = ranks

    def __missing__(self, chunk: str) -> list[int]:
        piece = chunk.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError: see _encode_ordinary
        rank = self._ranks.get(piece)
        ids = [rank] if rank is not None else bpe_merge(piece, self._ranks)
        if len(chunk) <= _CACHE_MAX_CHUNK:
            if len(self) >= _CACHE_MAX_ENTRIES:
                self.clear()
            self[chunk] = ids
        return ids


class BPETokenizer(Tokenizer):
    """Byte-level BPE tokenizer with a regex pre-split; trainable, and tiktoken-compatible.

    A fresh tokenizer knows only the 256 single bytes (id = byte value); :meth:`train` learns merges,
    :meth:`from_ranks` adopts a rank table (``to_tiktoken_ranks()`` gives one back), and
    :func:`tokenizer.load_gpt2` reads OpenAI's GPT-2 files.

    Example:
        >>> tok = BPETokenizer(pattern="gpt4").train("aaabdaaabac", 256 + 3)
        >>> tok.encode("aaabdaaabac")
        [258, 100, 258, 97, 99]
        >>> tok.decode([258, 100])
        'aaabd'

    Args:
        pattern: ``"gpt2"``, ``"gpt4"`` (cl100k; ``"cl100k"`` too) or a regex for the ``regex`` package.
    """

    kind = "bpe"

    def __init__(self, pattern: str = "gpt4") -> None:
        super().__init__()
        self._set_pattern(pattern)
        self._set_vocab({i: bytes([i]) for i in range(256)}, [], {})

    # -- construction ------------------------------------------------------------------------------------
    def _set_pattern(self, pattern: str) -> None:
        self._pattern = resolve_pattern(pattern)
        self._regex = _compile(self._pattern)
        # subtle: findall returns groups, not whole matches, when the pattern has capture groups.
        self._has_groups = self._regex.groups > 0
        twin = _ASCII_TWINS.get(self._pattern)
        self._ascii_regex = re.compile(twin) if twin is not None else None

    def _set_vocab(
        self,
        vocab: Mapping[int, bytes],
        merges: list[tuple[int, int, int]] | None,
        special: Mapping[str, int],
    ) -> None:
        ranks: dict[bytes, int] = {}
        for i, b in vocab.items():
            if b in ranks:
                raise ConfigError(f"ids {ranks[b]} and {i} both stand for the bytes {b!r}; tokens must be unique")
            ranks[b] = i
        missing = [bytes([x]) for x in range(256) if bytes([x]) not in ranks]
        if missing:
            raise ConfigError(f"a byte-level BPE needs all 256 single bytes as tokens; missing {missing[:8]}")
        self._special = _check_special_map(special, vocab)
        self._vocab = dict(vocab)  # id -> bytes, ordinary tokens
        self._ranks = ranks  # bytes -> id
        self._merges = merges  # None: recover from the ranks when first asked
        self._decoder = dict(self._vocab)
        self._decoder.update((i, s.encode("utf-8")) for s, i in self._special.items())
        self._vocab_size = max(self._decoder) + 1
        self._cache = _ChunkCache(self._ranks)
        self._rank_table = None  # the arrays of tokenizer.bpe_batch, built by the first batch
        self._special_regex_cache = {}

    @classmethod
    def from_ranks(
        cls,
        ranks: Mapping[bytes, int],
        pattern: str = "gpt4",
        special_tokens: Mapping[str, int] | None = None,
        merges: Iterable[tuple[int, int, int]] | None = None,
    ) -> BPETokenizer:
        """Build a tokenizer from a tiktoken-style rank table ``{token bytes: id}``.

        Args:
            ranks: every ordinary token's bytes and id; must contain all 256 single bytes.
            pattern: pattern name or regex.
            special_tokens: ``{string: id}``; ids must not clash with ``ranks``.
            merges: the ``(left, right, new)`` merges, if known; otherwise recovered when needed.
        """
        if not isinstance(ranks, Mapping):
            raise DTypeError(f"ranks must be a mapping bytes -> int, got {type(ranks).__name__}")
        vocab: dict[int, bytes] = {}
        for b, i in ranks.items():
            if not isinstance(b, bytes) or isinstance(i, bool) or not isinstance(i, int) or i < 0:
                raise DTypeError(f"ranks must map bytes to non-negative int, got {b!r}: {i!r}")
            if i in vocab:
                raise ConfigError(f"rank {i} is given to both {vocab[i]!r} and {b!r}")
            vocab[i] = b
        tok = cls(pattern)
        tok._set_vocab(vocab, None if merges is None else [tuple(m) for m in merges], special_tokens or {})
        return tok

    def train(
        self,
        text: str,
        vocab_size: int,
        special_tokens: Iterable[str] | Mapping[str, int] | None = None,
        *,
        progress: bool | None = None,
    ) -> BPETokenizer:
        """Learn merges from ``text`` until the vocabulary has ``vocab_size`` ids; returns ``self``.

        Starts from the 256 single bytes (id = byte value), whatever was learned before. Special tokens
        count towards ``vocab_size`` and take the last ids (a mapping may give them explicit ids at or
        above the learned ones); their strings are cut out of ``text`` before counting, so no merge spans
        them. See :func:`learn_merges` for the tie-breaking rule. If ``text`` runs out of pairs first,
        a warning says how many tokens were learned.

        Raises:
            TypeError: ``text`` is not a str.
            ValueError: ``vocab_size`` is below 256 plus the number of special tokens.
        """
        if not isinstance(text, str):
            raise DTypeError(f"text must be str, got {type(text).__name__}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise DTypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
        if isinstance(special_tokens, str):
            raise DTypeError("special_tokens must be a collection of str, not a single str")
        specials = dict(special_tokens) if isinstance(special_tokens, Mapping) else None
        names = list(specials or special_tokens or ())
        if vocab_size < 256 + len(names):
            raise ConfigError(
                f"vocab_size must be at least 256 (the single bytes) + {len(names)} special tokens = "
                f"{256 + len(names)}, got {vocab_size}"
            )
        chunk_counts = self._count_chunks(text, names)
        n_learn = vocab_size - 256 - len(names)
        merges = learn_merges(chunk_counts, n_learn, progress=progress)
        vocab = {i: bytes([i]) for i in range(256)}
        for a, b, new in merges:
            vocab[new] = vocab[a] + vocab[b]
        if len(vocab) - 256 < n_learn:
            warnings.warn(
                f"training text ran out of pairs: learned {len(vocab) - 256} of {n_learn} tokens",
                stacklevel=2,
            )
        if specials is None:
            specials = {s: len(vocab) + k for k, s in enumerate(names)}
        self._set_vocab(vocab, merges, specials)
        return self

    def _count_chunks(self, text: str, specials: list[str]) -> Counter[bytes]:
        """``{chunk bytes: count}`` for the pre-split chunks of ``text``, special tokens cut out."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        pieces = [p for p, sp in split_on_special(text, special_token_regex(specials) if specials else None) if not sp]
        counts: Counter[str] = Counter()
        for piece in pieces:
            counts.update(self._split(piece))
        return Counter({chunk.encode("utf-8"): c for chunk, c in counts.items()})

    # -- properties --------------------------------------------------------------------------------------
    @property
    def pattern(self) -> str:
        """The pre-split regex (names are resolved: ``"gpt4"`` gives the cl100k regex)."""
        return self._pattern

    @property
    def vocab(self) -> dict[int, bytes]:
        """``{id: bytes}`` of the ordinary tokens."""
        return dict(self._vocab)

    @property
    def merges(self) -> list[tuple[int, int, int]]:
        """The merges in order, ``(left id, right id, new id)``."""
        if self._merges is None:
            self._merges = recover_merges(self._ranks)
        return list(self._merges)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def to_tiktoken_ranks(self) -> dict[bytes, int]:
        """The ``mergeable_ranks`` for ``tiktoken.Encoding``: ``{token bytes: id}``, specials excluded."""
        return dict(self._ranks)

    def to_tiktoken(self, name: str = "tinygpt"):
        """Build a ``tiktoken.Encoding`` with this tokenizer's pattern, ranks and special tokens."""
        import tiktoken  # optional dependency: only this method needs it

        return tiktoken.Encoding(
            name,
            pat_str=self._pattern,
            mergeable_ranks=self.to_tiktoken_ranks(),
            special_tokens=self.special_tokens,
        )

    def clear_cache(self) -> None:
        """Forget the cached chunk encodings (for benchmarks; results never change)."""
        self._cache.clear()

    # -- encoding and decoding ---------------------------------------------------------------------------
    def _split(self, text: str) -> list[str]:
        if self._ascii_regex is not None and text.isascii():     # isascii() is O(1) on a str
            return self._ascii_regex.findall(text)
        if self._has_groups:
            return [m.group() for m in self._regex.finditer(text)]
        return self._regex.findall(text)

    def _encode_ordinary(self, text: str) -> list[int]:
        try:
            return self._encode_chunks(self._split(text))
        except UnicodeEncodeError:
            # subtle: what tiktoken does with surrogates: a valid pair becomes its character, a lone
            # surrogate becomes U+FFFD. So "\ud800" encodes like "\ufffd" and does not round-trip.
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            return self._encode_chunks(self._split(text))

    def _encode_chunks(self, chunks: list[str]) -> list[int]:
        if len(chunks) >= _BATCH_MIN:
            self._prefill(chunks)
        # One C-level pass: each chunk is a dict lookup; misses are encoded by _ChunkCache.__missing__.
        return list(chain.from_iterable(map(self._cache.__getitem__, chunks)))

    def _prefill(self, chunks: list[str]) -> None:
        """Cache the distinct chunks of ``chunks`` that the cache lacks, merging them in one batch.

        Chunks too long to cache, and those past the cache's capacity, are left to ``__missing__``.
        """
        cache = self._cache
        distinct = [c for c in set(chunks) if len(c) <= _CACHE_MAX_CHUNK]
        new = [c for c in distinct if c not in cache]
        if len(new) > _CACHE_MAX_ENTRIES - len(cache):
            cache.clear()  # as __missing__ does when the cache is full
            new = distinct[:_CACHE_MAX_ENTRIES]
        pieces = [c.encode("utf-8") for c in new]  # a lone surrogate raises UnicodeEncodeError: see above
        found = list(map(self._ranks.get, pieces))  # the chunks that are one token
        merged = iter(self._merge_many([p for p, r in zip(pieces, found) if r is None]))
        cache.update(zip(new, [[r] if r is not None else next(merged) for r in found]))

    def _merge_many(self, pieces: list[bytes]) -> list[list[int]]:
        """``[bpe_merge(p, ranks) for p in pieces]``, in one compiled call when there are many."""
        if len(pieces) >= _BATCH_MIN:
            if self._rank_table is None:
                from . import bpe_batch  # imports numba: only when a batch is worth it

                self._rank_table = bpe_batch.RankTable(self._ranks) if bpe_batch.RankTable.fits(self._ranks) \
                    else False
            if self._rank_table:
                from .bpe_batch import merge_pieces

                return merge_pieces(pieces, self._rank_table)
        return [bpe_merge(p, self._ranks) for p in pieces]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of ``ids`` joined; special tokens give their UTF-8 strings.

        Raises:
            ValueError: an id is not in the vocabulary (named in the message).
        """
        ids = check_ids(ids)
        decoder = self._decoder
        try:
            return b"".join(map(decoder.__getitem__, ids))
        except KeyError as e:
            raise UsageError(
                f"token id {e.args[0]} is not in the vocabulary (vocab_size {self.vocab_size})"
            ) from None

    # -- save and load -----------------------------------------------------------------------------------
    def _to_dict(self) -> dict[str, Any]:
        byte_ids = [self._ranks[bytes([x])] for x in range(256)]
        return {
            "pattern": self._pattern,
            "special_tokens": self.special_tokens,
            "byte_ids": byte_ids,
            "merges": [list(m) for m in self.merges],
        }

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> BPETokenizer:
        byte_ids, merge_list = data.get("byte_ids", list(range(256))), data.get("merges")
        if not isinstance(merge_list, list):
            raise FileFormatError(f"saved BPE tokenizer: 'merges' must be a list, got {str(merge_list)[:80]}")
        if not isinstance(data.get("pattern"), str):
            raise FileFormatError("saved BPE tokenizer: 'pattern' must be a str")
        # ordinary ids are dense, as training and GPT-2's files make them: 256 bytes, then one per merge
        n_ids = 256 + len(merge_list)

        def is_id(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n_ids

        if not isinstance(byte_ids, list) or len(byte_ids) != 256 or not all(map(is_id, byte_ids)) \
                or len(set(byte_ids)) != 256:
            raise FileFormatError("saved BPE tokenizer: byte_ids must be 256 distinct ids")
        vocab = {int(i): bytes([x]) for x, i in enumerate(byte_ids)}
        merges = []
        for m in merge_list:
            if not isinstance(m, list) or len(m) != 3 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                               for v in m):
                raise FileFormatError(f"saved BPE tokenizer: a merge is [left, right, new], got {str(m)[:80]}")
            a, b, new = m
            if not all(map(is_id, m)):
                raise FileFormatError(f"saved BPE tokenizer: merge {m!r} uses an id not defined before it "
                                      f"(the ids of {len(merge_list)} merges are below {n_ids})")
            if a not in vocab or b not in vocab:
                raise FileFormatError(f"saved BPE tokenizer: merge {m!r} uses an id not defined before it")
            if len(vocab[a]) + len(vocab[b]) > MAX_TOKEN_BYTES:   # merging a token with itself doubles it
                raise FileFormatError(f"saved BPE tokenizer: merge {m!r} makes a token longer than "
                                      f"{MAX_TOKEN_BYTES} bytes")
            joined = vocab[a] + vocab[b]
            if vocab.setdefault(new, joined) != joined:
                raise FileFormatError(f"saved BPE tokenizer: merge {m!r} gives id {new} two different tokens")
            merges.append((a, b, new))
        tok = cls(data["pattern"])
        tok._set_vocab(vocab, merges, data.get("special_tokens", {}))
        return tok
