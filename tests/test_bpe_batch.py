"""The batched BPE merge of a cold encode (``tokenizer.bpe_batch``): the same ids as the one-chunk reference
(:func:`tokenizer.bpe_merge`) on arbitrary rank tables, and as tiktoken through the tokenizer, compiled and
under ``NUMBA_DISABLE_JIT=1``."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tokenizer.bpe as bpe
from tokenizer import BPETokenizer, bpe_merge
from tokenizer.bpe_batch import RankTable, merge_pieces

tiktoken = pytest.importorskip("tiktoken")

REPO = Path(__file__).resolve().parents[1]
_LETTERS = list(b"abc\xc3\xa9 ")  # few distinct bytes, so pieces repeat pairs and merge often
_piece = st.lists(st.sampled_from(_LETTERS), min_size=1, max_size=40).map(bytes)

TEXT = (
    "To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer "
    "The slings and arrows of outrageous fortune, Or to take arms against a sea of troubles. "
    "Café naïve 東京 Привет 👍🏽 1234567 ...  \t\n\n"
)


@st.composite
def rank_tables(draw) -> dict[bytes, int]:
    """All 256 bytes and some multi-byte tokens, with the ids shuffled: tiktoken's rule must hold for any
    rank table, not only one made by merges (a token need not be the join of two lower-ranked ones)."""
    tokens = draw(st.lists(st.lists(st.sampled_from(_LETTERS), min_size=2, max_size=6).map(bytes),
                           unique=True, max_size=60))
    tokens = [bytes([x]) for x in range(256)] + [t for t in tokens]
    ids = draw(st.permutations(range(len(tokens))))
    return dict(zip(tokens, ids))


@settings(deadline=None, max_examples=200)
@given(ranks=rank_tables(), pieces=st.lists(_piece, max_size=12))
def test_batch_matches_the_one_chunk_merge(ranks, pieces):
    assert merge_pieces(pieces, RankTable(ranks)) == [bpe_merge(p, ranks) for p in pieces]


def test_batch_of_long_pieces_and_single_bytes():
    ranks = {bytes([x]): x for x in range(256)} | {b"ab": 256, b"abab": 257, b"ba": 258, b"aba": 259}
    pieces = [b"a", b"ab" * 200, b"ba" * 3 + b"a", bytes(range(256)), b"\xff\x00"]
    assert merge_pieces(pieces, RankTable(ranks)) == [bpe_merge(p, ranks) for p in pieces]


@pytest.fixture(scope="module")
def trained():
    tok = BPETokenizer("gpt2").train(TEXT * 3, 300)
    return tok, tok.to_tiktoken("batch-test")


def _long_text(n_words: int = 600) -> str:
    return TEXT + " ".join(f"w{i % 97}{'xyz'[i % 3]}q{i}" for i in range(n_words))


def test_long_text_goes_through_the_batch_and_matches_tiktoken(trained):
    tok, enc = trained
    text = _long_text()
    tok.clear_cache()
    assert tok.encode_ordinary(text) == enc.encode_ordinary(text)
    assert tok._rank_table, "a text with hundreds of distinct merged chunks should use the compiled batch"
    assert tok.encode_ordinary(text) == enc.encode_ordinary(text)  # now from the cache
    assert tok.encode_ordinary(text[::-1]) == enc.encode_ordinary(text[::-1])  # partly cached


def test_batch_respects_the_cache_bounds(monkeypatch, trained):
    tok, enc = trained
    monkeypatch.setattr(bpe, "_BATCH_MIN", 1)
    monkeypatch.setattr(bpe, "_CACHE_MAX_ENTRIES", 8)
    monkeypatch.setattr(bpe, "_CACHE_MAX_CHUNK", 6)
    tok.clear_cache()
    text = _long_text() + " " + "z" * 400  # one chunk too long to cache
    assert tok.encode_ordinary(text) == enc.encode_ordinary(text)
    assert len(tok._cache) <= 8 and all(len(c) <= 6 for c in tok._cache)
    tok.clear_cache()


def test_batch_with_surrogates_and_specials(monkeypatch, trained):
    tok, enc = trained
    monkeypatch.setattr(bpe, "_BATCH_MIN", 1)
    tok.clear_cache()
    text = _long_text(50) + " \ud800 lone \udfff and a pair \ud83d\ude00 end"
    assert tok.encode_ordinary(text) == enc.encode_ordinary(text)
    tok.clear_cache()


def test_batch_runs_without_the_jit():
    """``NUMBA_DISABLE_JIT=1``: the kernel is plain Python and gives the same ids."""
    code = (
        "import numba, tokenizer.bpe as bpe, tokenizer.bpe_batch as bb\n"
        "from tokenizer import BPETokenizer\n"
        f"text = {TEXT!r} * 3\n"
        "tok = BPETokenizer('gpt2').train(text, 300)\n"
        "ref = [bpe.bpe_merge(c.encode(), tok._ranks) for c in tok._split(text)]\n"
        "assert not isinstance(bb._merge_all, numba.core.dispatcher.Dispatcher)\n"
        "assert bb.merge_pieces([c.encode() for c in tok._split(text)], bb.RankTable(tok._ranks)) == ref\n"
        "bpe._BATCH_MIN = 1\n"
        "tok.clear_cache()\n"
        "assert tok.encode_ordinary(text) == [i for ids in ref for i in ids] and tok._rank_table\n"
        "print('ok')\n"
    )
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
