"""Tokenizers: char, simple (LLMs-from-scratch ch. 2) and byte-level BPE (training, tiktoken parity, save/load).

Everything here trains on a few KB made in this file, so it needs no data files; the GPT-2 files are
tested in test_tokenizer_gpt2.py.
"""
from __future__ import annotations

import doctest
import json
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tokenizer
from tinytensor import fileio
from tokenizer import (
    GPT2_PATTERN,
    GPT4_PATTERN,
    BPETokenizer,
    CharTokenizer,
    SimpleTokenizer,
    Tokenizer,
    learn_merges,
    load_tiktoken_ranks,
    save_tiktoken_ranks,
)

tiktoken = pytest.importorskip("tiktoken")

REPO = Path(__file__).resolve().parents[1]

# A few KB of varied text: prose, contractions in both cases, numbers, code with CRLF, runs of spaces,
# accents, combining marks, CJK, Cyrillic, emoji with skin tones and ZWJ sequences.
_PARAGRAPHS = [
    "The quick brown fox jumps over the lazy dog. It's not the fox's fault; they'll say it's the dog's.\n"
    "We've seen THE FOX'S DEN and I'm sure we'd go back. You're welcome, said the fox, who'd heard it all.",
    "In 1984, 2,048 people paid $3.50 each -- a total of 7168 dollars (approximately). Call 555-0123 now!!!\n\n"
    "Numbers: 0 1 12 123 1234 12345 123456 3.14159 1e-10 0x1F 100%",
    "def train(text, vocab_size=512):\r\n    for i in range(10):\r\n        print(f'step {i}: loss={i**2}')\r\n"
    "\treturn {\"ok\": True, 'n': [1, 2, 3]}  # done\r\n",
    "Café, naïve, résumé, coöperate; e\u0301 (e + combining acute), n\u0303, A\u030a\u0301.\n"
    "Привет, мир! Как дела? 東京は日本の首都です。 Ελληνικά γράμματα. مرحبا بالعالم",
    "Emoji: 👍 👍🏽 👨\u200d👩\u200d👧\u200d👦 🏳\ufe0f\u200d🌈 🇫🇷 ❤\ufe0f — "
    "so   many    spaces\t\ttabs \u00a0nbsp \u3000ideographic.\n"
    "   leading spaces, trailing spaces   \n\n\n\nfour newlines above; a line ending in CRLF\r\nand a lone CR\rhere.",
]
CORPUS = "\n\n".join(p.replace("fox", animal) for animal in ("fox", "cat", "owl", "yak") for p in _PARAGRAPHS)
SPECIALS = ["<|endoftext|>", "<|fim_middle|>"]

# Pieces that exercise the split patterns' corners; hypothesis glues them together at random.
FRAGMENTS = [
    "a", "Z", "é", "e\u0301", "'s", "'S", "'ll", "'Re", "'", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n",
    "\r", "1", "12", "1234", "!", "?!", "...", "--", "👍", "👍🏽", "👨\u200d👩\u200d👧", "東京", "\u00a0",
    "\u3000", "\u2028", "\x00", "\x85", "<|endoftext|>", "<|fim_middle|>", "<|", "|>", "the", " the", "fox",
]
fragment_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=3)), max_size=40).map("".join)
any_text = st.one_of(st.text(), fragment_text)


@pytest.fixture(scope="module")
def gpt4_tok() -> BPETokenizer:
    return BPETokenizer("gpt4").train(CORPUS, 420, special_tokens=SPECIALS)


@pytest.fixture(scope="module")
def gpt2_tok() -> BPETokenizer:
    return BPETokenizer("gpt2").train(CORPUS, 380, special_tokens=["<|endoftext|>"])


@pytest.fixture(scope="module")
def gpt4_enc(gpt4_tok):
    return gpt4_tok.to_tiktoken("ours-gpt4")


@pytest.fixture(scope="module")
def gpt2_enc(gpt2_tok):
    return gpt2_tok.to_tiktoken("ours-gpt2")


@pytest.fixture(scope="module")
def pairs(gpt4_tok, gpt4_enc, gpt2_tok, gpt2_enc):
    """Our trained tokenizers (gpt4 and gpt2 patterns), each with tiktoken built from its ranks."""
    return [(gpt4_tok, gpt4_enc), (gpt2_tok, gpt2_enc)]


# ----------------------------------------------------------------------------------------------- docs
@pytest.mark.parametrize("module", ["base", "char", "simple", "bpe", "bpe_train", "gpt2"])
def test_docstring_examples(module):
    mod = __import__(f"tokenizer.{module}", fromlist=["_"])
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_public_names_are_reexported():
    for name in tokenizer.__all__:
        assert hasattr(tokenizer, name), name


# --------------------------------------------------------------------------------------- BPE training
def test_minbpe_example():
    tok = BPETokenizer().train("aaabdaaabac", 256 + 3)
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"
    # With equal counts the smaller pair wins: (97, 98) before (256, 97) after the first merge.
    assert tok.merges == [(97, 97, 256), (97, 98, 257), (256, 257, 258)]
    assert tok.vocab_size == 259


def test_tie_break_is_smallest_pair():
    assert learn_merges({b"cd": 1, b"ab": 1}, 1) == [(97, 98, 256)]
    assert learn_merges({b"zy": 3, b"ba": 2, b"ab": 1, b"yz": 3}, 2) == [(121, 122, 256), (122, 121, 257)]


def test_merge_into_existing_bytes_reuses_the_id():
    """A pair whose bytes already are a token is merged into that token; no id is spent on it."""
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"ab"}
    merges = learn_merges({b"abab": 2, b"abc": 1}, 1, vocab=vocab)
    assert merges[0] == (97, 98, 256)  # (a, b) -> the existing "ab"
    assert merges[1:] == [(256, 256, 257)]  # then one new token, "abab" (count 2 beats (ab, c))


def _naive_merges(chunk_counts, n_tokens):
    """Reference trainer: recount every pair before every merge; same tie-break and duplicate rule."""
    vocab = {i: bytes([i]) for i in range(256)}
    ids_of = {b: i for i, b in vocab.items()}
    words = [(list(w), c) for w, c in chunk_counts.items()]
    merges, made = [], 0
    while made < n_tokens:
        stats = {}
        for w, c in words:
            for p in zip(w, w[1:]):
                stats[p] = stats.get(p, 0) + c
        if not stats:
            break
        pair = min(stats, key=lambda p: (-stats[p], p))
        joined = vocab[pair[0]] + vocab[pair[1]]
        new = ids_of.get(joined)
        if new is None:
            new = len(vocab)
            vocab[new], ids_of[joined] = joined, new
            made += 1
        merges.append((*pair, new))
        words = [(tokenizer.merge(w, pair, new), c) for w, c in words]
    return merges


@settings(deadline=None, max_examples=60)
@given(
    st.dictionaries(st.binary(min_size=1, max_size=12).map(lambda b: bytes(x % 4 + 97 for x in b)),
                    st.integers(1, 5), max_size=12),
    st.integers(0, 30),
)
def test_incremental_training_matches_full_recount(chunk_counts, n_tokens):
    assert learn_merges(chunk_counts, n_tokens) == _naive_merges(chunk_counts, n_tokens)


def test_training_on_corpus_matches_full_recount():
    tok = BPETokenizer("gpt4")
    counts = tok._count_chunks(CORPUS[:3000], [])
    assert learn_merges(counts, 60) == _naive_merges(counts, 60)


def test_training_does_not_depend_on_hash_seed(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    code = (
        "import json, sys; from tokenizer import BPETokenizer; "
        "t = BPETokenizer('gpt4').train(open(sys.argv[1], encoding='utf-8').read(), 400); print(json.dumps(t.merges))"
    )
    outs = []
    for seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        run = subprocess.run([sys.executable, "-c", code, str(corpus)], env=env, capture_output=True, text=True,
                             check=True)
        outs.append(json.loads(run.stdout))
    assert outs[0] == outs[1]
    assert len(outs[0]) == 400 - 256


def test_train_vocab_size_and_special_ids(gpt4_tok):
    assert gpt4_tok.vocab_size == 420
    assert gpt4_tok.special_tokens == {"<|endoftext|>": 418, "<|fim_middle|>": 419}
    assert len(gpt4_tok.merges) == 420 - 256 - 2
    assert all(a < new and b < new for a, b, new in gpt4_tok.merges)


def test_special_tokens_are_cut_out_of_training_text():
    tok = BPETokenizer().train("<|x|><|x|><|x|>ab ab", 256 + 2 + 1, special_tokens=["<|x|>"])
    assert len(tok.merges) == 2
    assert all(b"<|" not in tok.vocab[new] and b"|>" not in tok.vocab[new] for _, _, new in tok.merges)


def test_train_special_tokens_mapping():
    tok = BPETokenizer().train("ab ab ab", 258, special_tokens={"<|eot|>": 1000})
    assert tok.special_tokens == {"<|eot|>": 1000}
    assert tok.vocab_size == 1001


@pytest.mark.parametrize("size", [0, 255, -1])
def test_vocab_size_below_256_is_rejected(size):
    with pytest.raises(ValueError, match=str(size)):
        BPETokenizer().train("hello", size)


def test_vocab_size_must_leave_room_for_special_tokens():
    with pytest.raises(ValueError, match="258"):
        BPETokenizer().train("hello", 257, special_tokens=["<|a|>", "<|b|>"])


def test_train_rejects_bad_types():
    with pytest.raises(TypeError):
        BPETokenizer().train(b"hello", 300)
    with pytest.raises(TypeError):
        BPETokenizer().train("hello", 300.0)
    with pytest.raises(TypeError):
        BPETokenizer().train("hello", 300, special_tokens="<|a|>")


def test_train_warns_when_pairs_run_out():
    with pytest.warns(UserWarning, match="learned 3 of 44"):
        tok = BPETokenizer().train("abcd", 300)
    assert tok.vocab_size == 259


def test_train_is_from_scratch_each_time():
    tok = BPETokenizer().train(CORPUS, 300)
    first = tok.merges
    tok.train("zzzz zzzz", 257)
    assert tok.merges == [(122, 122, 256)]
    assert tok.train(CORPUS, 300).merges == first


def test_untrained_tokenizer_is_raw_bytes():
    tok = BPETokenizer()
    assert tok.vocab_size == 256
    assert tok.encode("hé") == [104, 0xC3, 0xA9]


def test_pattern_with_capture_groups_uses_whole_matches():
    tok = BPETokenizer(pattern=r"(\w)(\w*)|\W").train(CORPUS, 300)
    assert tok.decode(tok.encode("hello, world")) == "hello, world"
    assert tok.to_tiktoken().encode("hello, world") == tok.encode("hello, world")


def test_bad_pattern_is_a_value_error():
    with pytest.raises(ValueError, match="invalid tokenizer pattern"):
        BPETokenizer(pattern="(unclosed")
    with pytest.raises(TypeError):
        BPETokenizer(pattern=3)


# --------------------------------------------------------------------------- round trip and tiktoken parity
@settings(deadline=None)
@given(s=any_text)
def test_round_trip_bpe(pairs, s):
    for tok, _ in pairs:
        ids = tok.encode(s, disallowed_special=())
        assert tok.decode(ids) == s
        assert tok.decode_bytes(ids) == s.encode("utf-8")


@settings(deadline=None)
@given(s=st.text())
def test_round_trip_plain_hypothesis_text(pairs, s):
    for tok, _ in pairs:
        assert tok.decode(tok.encode_ordinary(s)) == s


@settings(deadline=None)
@given(s=any_text)
def test_parity_with_tiktoken_built_from_our_ranks(pairs, s):
    for tok, enc in pairs:
        assert tok.encode_ordinary(s) == enc.encode_ordinary(s)
        assert tok.encode(s, allowed_special="all") == enc.encode(s, allowed_special="all")
        assert tok.encode(s, disallowed_special=()) == enc.encode(s, disallowed_special=())


ASCII_FRAGMENTS = [f for f in FRAGMENTS if f.isascii()] + ["\x0b", "\x0c", "\x1c", "\x1f", "'T", "'VE", "_", "~"]
ascii_text = st.one_of(st.text(st.characters(max_codepoint=127)),
                       st.lists(st.sampled_from(ASCII_FRAGMENTS), max_size=40).map("".join))


def test_ascii_twins_classes_are_the_patterns_classes_on_every_ascii_character():
    import regex
    for c in map(chr, range(128)):
        assert bool(regex.fullmatch(r"\p{L}", c)) == bool(re.fullmatch("[A-Za-z]", c)), repr(c)
        assert bool(regex.fullmatch(r"\p{N}", c)) == bool(re.fullmatch("[0-9]", c)), repr(c)
        assert bool(regex.fullmatch(r"\s", c)) == (c in "\t\n\x0b\x0c\r "), repr(c)


@settings(deadline=None, max_examples=300)
@given(s=ascii_text)
def test_ascii_split_matches_the_regex_split_and_tiktoken(pairs, s):
    for tok, enc in pairs:
        assert tok._ascii_regex is not None
        assert tok._split(s) == tok._regex.findall(s)      # the re twin against the pattern itself
        assert tok.encode_ordinary(s) == enc.encode_ordinary(s)


def test_parity_with_tiktoken_on_fixed_corpus(gpt4_tok, gpt4_enc, gpt2_tok, gpt2_enc):
    text = CORPUS + "\n" + CORPUS.upper() + "\n" + CORPUS[::-1]
    for tok, enc in ((gpt4_tok, gpt4_enc), (gpt2_tok, gpt2_enc)):
        tok.clear_cache()
        assert tok.encode_ordinary(text) == enc.encode_ordinary(text)
        assert tok.encode_ordinary(text) == enc.encode_ordinary(text)  # second time from the chunk cache
        for line in text.splitlines(keepends=True):
            assert tok.encode_ordinary(line) == enc.encode_ordinary(line)


def test_chunk_cache_stays_bounded_and_correct(monkeypatch, gpt2_enc):
    import tokenizer.bpe as bpe

    monkeypatch.setattr(bpe, "_CACHE_MAX_ENTRIES", 8)
    monkeypatch.setattr(bpe, "_CACHE_MAX_CHUNK", 6)
    tok = BPETokenizer("gpt2").train(CORPUS, 380, special_tokens=["<|endoftext|>"])
    text = CORPUS + " " + " ".join(f"w{i}x" for i in range(500))
    assert tok.encode_ordinary(text) == gpt2_enc.encode_ordinary(text)
    assert len(tok._cache) <= 8
    assert all(len(chunk) <= 6 for chunk in tok._cache)


def test_tiktoken_ranks_are_the_vocabulary(gpt4_tok):
    ranks = gpt4_tok.to_tiktoken_ranks()
    assert len(ranks) == 418
    assert {i: b for b, i in ranks.items()} == gpt4_tok.vocab
    ranks[b"a"] = -1  # a copy: changing it leaves the tokenizer alone
    assert gpt4_tok.encode("a") == [97]


def test_encoding_compresses_training_text(gpt4_tok):
    assert len(gpt4_tok.encode_ordinary(CORPUS)) < 0.7 * len(CORPUS.encode("utf-8"))


# ------------------------------------------------------------------------------------------ special tokens
def test_special_token_disallowed_by_default_names_it(gpt4_tok):
    with pytest.raises(ValueError, match=r"<\|fim_middle\|>"):
        gpt4_tok.encode("hello <|fim_middle|> world")


def test_special_tokens_allowed(gpt4_tok, gpt4_enc):
    text = "a<|endoftext|>b<|fim_middle|>"
    eot, fim = 418, 419
    ids = gpt4_tok.encode(text, allowed_special="all")
    assert ids == gpt4_enc.encode(text, allowed_special="all")
    assert ids.count(eot) == 1 and ids[-1] == fim
    ids = gpt4_tok.encode(text, allowed_special={"<|endoftext|>"}, disallowed_special=())
    assert eot in ids and fim not in ids
    with pytest.raises(ValueError, match="fim_middle"):
        gpt4_tok.encode(text, allowed_special={"<|endoftext|>"})
    assert gpt4_tok.decode(gpt4_tok.encode(text, allowed_special="all")) == text


def test_disallowed_special_empty_encodes_plain_text(gpt4_tok, gpt4_enc):
    text = "x <|endoftext|> y"
    ids = gpt4_tok.encode(text, disallowed_special=())
    assert ids == gpt4_tok.encode_ordinary(text) == gpt4_enc.encode(text, disallowed_special=())
    assert 418 not in ids


def test_disallowed_special_subset(gpt4_tok):
    assert gpt4_tok.encode("<|fim_middle|>", disallowed_special={"<|endoftext|>"})
    with pytest.raises(ValueError, match="endoftext"):
        gpt4_tok.encode("<|endoftext|>", disallowed_special={"<|endoftext|>"})


def test_allowed_special_must_be_known_and_a_set(gpt4_tok):
    with pytest.raises(ValueError, match="nope"):
        gpt4_tok.encode("hi", allowed_special={"<|nope|>"})
    with pytest.raises(TypeError, match="collection of str"):
        gpt4_tok.encode("hi", allowed_special="<|endoftext|>")
    with pytest.raises(TypeError):
        gpt4_tok.encode("hi", disallowed_special=[1])


def test_encode_batch(gpt4_tok):
    texts = ["hello", "", "world <|endoftext|>"]
    assert gpt4_tok.encode_batch(texts, allowed_special="all") == [
        gpt4_tok.encode(t, allowed_special="all") for t in texts
    ]
    with pytest.raises(ValueError):
        gpt4_tok.encode_batch(texts)
    with pytest.raises(TypeError):
        gpt4_tok.encode_batch("hello")


# ------------------------------------------------------------------------------------------ hostile input
HOSTILE = [
    "",
    "\x00",
    "\x00\x00 \x00",
    "👨\u200d👩\u200d👧\u200d👦👍🏽🏳\ufe0f\u200d🌈",
    "e\u0301\u0302\u0303\u0304 Z\u0351\u0352\u0353\u0354\u0355",
    "line one\r\nline two\r\n\r\n",
    "\ufeffBOM \ufffd replacement \U0010ffff max",
    "a" * 100_000,
    " " * 100_000,
    "\n" * 100_000,
    "'s" * 100_000,
    "\r\n" * 50_000,
    "1" * 100_000,
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: repr(t[:12]) + f"x{len(t)}")
def test_hostile_input_round_trips_and_matches_tiktoken(gpt4_tok, gpt4_enc, gpt2_tok, gpt2_enc, text):
    for tok, enc in ((gpt4_tok, gpt4_enc), (gpt2_tok, gpt2_enc)):
        ids = tok.encode(text)
        assert ids == enc.encode(text)
        assert tok.decode(ids) == text


@pytest.mark.parametrize("text", ["\ud800", "a\udfff b", "\ud83d\ude00", "x\ud83d"])
def test_surrogates_are_encoded_as_tiktoken_does(gpt4_tok, gpt4_enc, text):
    ids = gpt4_tok.encode(text)
    assert ids == gpt4_enc.encode(text)
    # tiktoken's rule: a lone surrogate becomes U+FFFD; a surrogate pair becomes its character
    assert gpt4_tok.decode(ids) == text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def test_ids_ending_mid_character_decode_to_replacement_char(gpt4_tok):
    ids = gpt4_tok.encode("€")  # 3 bytes, E2 82 AC
    assert gpt4_tok.decode_bytes(ids) == "€".encode()
    assert gpt4_tok.decode([0xE2, 0x82]) == "\ufffd"
    assert gpt4_tok.decode([ord("a"), 0xE2]) == "a\ufffd"
    assert gpt4_tok.decode_bytes([0xE2]) == b"\xe2"
    with pytest.raises(UnicodeDecodeError):
        gpt4_tok.decode([0xE2], errors="strict")


@pytest.mark.parametrize("bad", [420, 10**9, -1])
def test_out_of_range_id_is_a_value_error_naming_it(gpt4_tok, bad):
    with pytest.raises(ValueError, match=str(bad)):
        gpt4_tok.decode([1, bad])


def test_non_integer_ids_are_a_type_error(gpt4_tok):
    with pytest.raises(TypeError, match="float"):
        gpt4_tok.decode([1, 2.0])
    with pytest.raises(TypeError):
        gpt4_tok.decode("123")
    with pytest.raises(TypeError):
        gpt4_tok.decode(None)


def test_numpy_ids_decode(gpt4_tok):
    np = pytest.importorskip("numpy")
    ids = gpt4_tok.encode("hello world")
    assert gpt4_tok.decode(np.array(ids, dtype=np.uint16)) == "hello world"


@pytest.mark.parametrize("bad", [None, b"bytes", 3, ["a", "b"]])
def test_non_str_input_is_a_type_error(gpt4_tok, bad):
    with pytest.raises(TypeError, match="str"):
        gpt4_tok.encode(bad)
    with pytest.raises(TypeError, match="str"):
        gpt4_tok.encode_ordinary(bad)


def test_huge_word_is_near_linear(gpt4_tok, gpt4_enc):
    word = ("abracadabra" * 30_000)[:300_000]  # one 300,000-letter chunk
    start = time.perf_counter()
    ids = gpt4_tok.encode(word)
    seconds = time.perf_counter() - start
    assert gpt4_tok.decode(ids) == word
    assert ids[:1000] == gpt4_enc.encode(word[:10_000])[:1000]
    assert seconds < 20, f"300k-character word took {seconds:.1f} s"


# --------------------------------------------------------------------------------------------- save/load
def test_save_load_round_trip_custom_pattern_and_specials(tmp_path):
    pattern = r"\p{L}+|\p{N}|[^\p{L}\p{N}]+"
    tok = BPETokenizer(pattern=pattern).train(CORPUS, 330, special_tokens=["<|bos|>", "<|eos|>"])
    path = tok.save(tmp_path / "tok.json")
    back = Tokenizer.load(path)
    assert isinstance(back, BPETokenizer)
    assert back.pattern == pattern
    assert back._regex.pattern == pattern  # recompiled, not just the string
    assert back.special_tokens == {"<|bos|>": 328, "<|eos|>": 329}
    assert back.merges == tok.merges
    assert back.vocab == tok.vocab
    assert back.vocab_size == tok.vocab_size == 330
    text = "<|bos|>" + CORPUS[:500] + "<|eos|>"
    assert back.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    assert tokenizer.load(path).encode_ordinary(text) == tok.encode_ordinary(text)
    assert BPETokenizer.load(path).merges == tok.merges
    # saving is deterministic: the same tokenizer gives the same bytes
    assert back.save(tmp_path / "again.json").read_bytes() == path.read_bytes()


def test_save_load_named_pattern_keeps_parity(tmp_path, gpt2_tok, gpt2_enc):
    back = tokenizer.load(gpt2_tok.save(tmp_path / "t.json"))
    assert back.pattern == GPT2_PATTERN
    assert back.encode_ordinary(CORPUS) == gpt2_enc.encode_ordinary(CORPUS)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, gpt4_tok):
    gpt4_tok.save(tmp_path / "a.json")
    gpt4_tok.save(tmp_path / "a.json")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_saved_file_gets_normal_permissions(tmp_path, gpt4_tok):
    """Not mkstemp's private 0o600: a new file follows the umask, a replaced file keeps its mode."""
    path = gpt4_tok.save(tmp_path / "a.json")
    assert path.stat().st_mode & 0o777 == fileio.default_mode()
    path.chmod(0o640)
    gpt4_tok.save(path)
    assert path.stat().st_mode & 0o777 == 0o640


def test_load_rejects_other_files(tmp_path, gpt4_tok):
    p = tmp_path / "x.json"
    p.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a tinygpt tokenizer"):
        tokenizer.load(p)
    gpt4_tok.save(p)
    with pytest.raises(ValueError, match="BPETokenizer, not a CharTokenizer"):
        CharTokenizer.load(p)
    data = json.loads(p.read_text())
    data["merges"][0] = [1, 2]
    p.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="left, right, new"):
        tokenizer.load(p)
    data["merges"][0] = [1, 99999, 256]
    p.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="not defined"):
        tokenizer.load(p)
    data["type"] = "sentencepiece"
    p.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="unknown tokenizer type"):
        tokenizer.load(p)


def test_tiktoken_rank_file_round_trip(tmp_path, gpt4_tok):
    path = save_tiktoken_ranks(gpt4_tok.to_tiktoken_ranks(), tmp_path / "ours.tiktoken")
    ranks = load_tiktoken_ranks(path)
    assert ranks == gpt4_tok.to_tiktoken_ranks()
    from tiktoken.load import load_tiktoken_bpe

    assert ranks == load_tiktoken_bpe(str(path))  # tiktoken reads our file too
    back = BPETokenizer.from_ranks(ranks, pattern="gpt4", special_tokens=gpt4_tok.special_tokens)
    assert back.encode_ordinary(CORPUS) == gpt4_tok.encode_ordinary(CORPUS)
    # merges are recovered from the ranks; they rebuild the same vocabulary
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b, new in back.merges:
        vocab[new] = vocab[a] + vocab[b]
    assert vocab == gpt4_tok.vocab
    loaded = tokenizer.load(back.save(tmp_path / "back.json"))
    assert loaded.encode_ordinary(CORPUS) == gpt4_tok.encode_ordinary(CORPUS)


def test_from_ranks_validates():
    ranks = {bytes([i]): i for i in range(256)}
    with pytest.raises(ValueError, match="256 single bytes"):
        BPETokenizer.from_ranks({b"a": 0})
    with pytest.raises(ValueError, match="already taken"):
        BPETokenizer.from_ranks(ranks, special_tokens={"<|x|>": 5})
    with pytest.raises(TypeError):
        BPETokenizer.from_ranks({"a": 0})
    with pytest.raises(ValueError, match="not the merge of two"):
        BPETokenizer.from_ranks({**ranks, b"abc": 256}).merges


def test_load_rank_file_errors(tmp_path):
    p = tmp_path / "bad.tiktoken"
    p.write_text("IQ== 0\nnot-base64!! 1\n")
    with pytest.raises(ValueError, match=":2:"):
        load_tiktoken_ranks(p)


# ------------------------------------------------------------------------------------------------- char
def test_char_tokenizer_basics(tmp_path):
    tok = CharTokenizer.from_text("hello world")
    assert tok.vocab_size == 8
    assert tok.decode(tok.encode("hello")) == "hello"
    assert tok.encode("") == []
    back = tokenizer.load(tok.save(tmp_path / "c.json"))
    assert isinstance(back, CharTokenizer) and back.chars == tok.chars
    assert back.encode("world") == tok.encode("world")


def test_char_unknown_character_names_it():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"'z' \(U\+007A\) at index 1"):
        tok.encode("az")


def test_char_unk_token_and_specials(tmp_path):
    tok = CharTokenizer.from_text("abc", special_tokens=["<|endoftext|>"], unk_token="<unk>")
    assert tok.special_tokens == {"<|endoftext|>": 3, "<unk>": 4}
    assert tok.encode("azb") == [0, 4, 1]
    assert tok.decode([0, 4, 1]) == "a<unk>b"
    assert tok.encode("a<|endoftext|>", allowed_special="all") == [0, 3]
    with pytest.raises(ValueError, match="endoftext"):
        tok.encode("a<|endoftext|>")
    back = tokenizer.load(tok.save(tmp_path / "c.json"))
    assert back.special_tokens == tok.special_tokens and back.unk_token == "<unk>"
    assert back.encode("azb") == [0, 4, 1]


def test_char_out_of_range_and_types():
    tok = CharTokenizer.from_text("ab")
    with pytest.raises(ValueError, match="2"):
        tok.decode([0, 2])
    with pytest.raises(ValueError, match="-1"):
        tok.decode([-1])
    with pytest.raises(TypeError):
        tok.encode(5)
    with pytest.raises(TypeError):
        CharTokenizer.from_text(None)
    with pytest.raises(ValueError, match="distinct"):
        CharTokenizer(["a", "a"])
    with pytest.raises(ValueError, match="single-character"):
        CharTokenizer(["ab"])


@settings(deadline=None)
@given(st.text())
def test_char_round_trip(s):
    tok = CharTokenizer.from_text(s)
    assert tok.decode(tok.encode(s)) == s
    assert tok.decode_bytes(tok.encode(s)) == s.encode("utf-8", "surrogatepass")


# ----------------------------------------------------------------------------------------------- simple
def test_simple_tokenizer_like_the_book():
    text = 'Hello, world. Is this-- a test? "Yes," she said.'
    tok = SimpleTokenizer.from_text(text)
    ids = tok.encode(text)
    # the book's decode: tokens joined by spaces, then no space before punctuation (quotes included)
    assert tok.decode(ids) == 'Hello, world. Is this -- a test?" Yes," she said.'
    assert tok.special_tokens == {"<|endoftext|>": tok.vocab_size - 2, "<|unk|>": tok.vocab_size - 1}
    assert tok.encode("Hello, Mars") == [tok.vocab["Hello"], tok.vocab[","], tok.vocab["<|unk|>"]]


def test_simple_tokenizer_special_tokens_follow_tiktoken_rules(tmp_path):
    tok = SimpleTokenizer.from_text("tea is good <|endoftext|> coffee too")
    assert "<|endoftext|>" not in tok.vocab or tok.vocab["<|endoftext|>"] == tok.special_tokens["<|endoftext|>"]
    with pytest.raises(ValueError, match="endoftext"):
        tok.encode("tea <|endoftext|> coffee")
    ids = tok.encode("tea <|endoftext|> coffee", allowed_special={"<|endoftext|>"})
    assert tok.decode(ids) == "tea <|endoftext|> coffee"
    back = tokenizer.load(tok.save(tmp_path / "s.json"))
    assert isinstance(back, SimpleTokenizer)
    assert back.encode("tea <|endoftext|> milk", allowed_special="all") == tok.encode(
        "tea <|endoftext|> milk", allowed_special="all"
    )


def test_simple_tokenizer_without_unk_raises_naming_the_word():
    tok = SimpleTokenizer(["a", "b"], unk_token=None)
    with pytest.raises(ValueError, match="'zebra'"):
        tok.encode("a zebra")
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([7])


_VERDICT = Path(os.environ.get("TINYGPT_DATA", "/nonexistent")) / "the-verdict.txt"


@pytest.mark.skipif(
    not _VERDICT.is_file(), reason="needs $TINYGPT_DATA/the-verdict.txt (TINYGPT_DATA unset or file absent)"
)
def test_simple_tokenizer_reproduces_the_books_ids():
    tok = SimpleTokenizer.from_text(_VERDICT.read_text(encoding="utf-8"))
    assert tok.vocab_size == 1132
    text = " <|endoftext|> ".join(("Hello, do you like tea?", "In the sunlit terraces of the palace."))
    ids = tok.encode(text, allowed_special={"<|endoftext|>"})
    assert ids == [1131, 5, 355, 1126, 628, 975, 10, 1130, 55, 988, 956, 984, 722, 988, 1131, 7]
    assert tok.decode(ids) == "<|unk|>, do you like tea? <|endoftext|> In the sunlit terraces of the <|unk|>."


# ---------------------------------------------------------------------------------------- shared interface
@pytest.mark.parametrize("kind", ["char", "simple", "bpe"])
def test_every_tokenizer_has_the_interface(kind, tmp_path):
    text = "hello there, hello world"
    tok = {
        "char": lambda: CharTokenizer.from_text(text, special_tokens=["<|endoftext|>"]),
        "simple": lambda: SimpleTokenizer.from_text(text),
        "bpe": lambda: BPETokenizer().train(text, 270, special_tokens=["<|endoftext|>"]),
    }[kind]()
    assert isinstance(tok.vocab_size, int) and tok.vocab_size > 0
    assert "<|endoftext|>" in tok.special_tokens
    ids = tok.encode("hello world")
    assert all(isinstance(i, int) for i in ids)
    assert tok.decode(ids) == "hello world"
    assert isinstance(tok.decode_bytes(ids), bytes)
    assert tok.encode_batch(["hello", "world"]) == [tok.encode("hello"), tok.encode("world")]
    eot = tok.special_tokens["<|endoftext|>"]
    assert tok.encode("hello<|endoftext|>", allowed_special="all")[-1] == eot
    with pytest.raises(ValueError, match="endoftext"):
        tok.encode("hello<|endoftext|>")
    with pytest.raises(TypeError):
        tok.encode(b"hello")
    with pytest.raises(ValueError):
        tok.decode([tok.vocab_size])
    back = tokenizer.load(tok.save(tmp_path / "t.json"))
    assert type(back) is type(tok)
    assert back.encode("hello world") == ids
    assert back.special_tokens == tok.special_tokens


def test_gpt4_pattern_is_cl100k():
    assert tokenizer.PATTERNS["gpt4"] == GPT4_PATTERN == tokenizer.PATTERNS["cl100k"]
    import tiktoken_ext.openai_public as public

    assert public.cl100k_base.__code__.co_consts  # the pattern lives in the function body
    assert GPT4_PATTERN in public.cl100k_base.__code__.co_consts
    assert GPT2_PATTERN == public.r50k_pat_str


def test_no_warnings_on_normal_training():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BPETokenizer().train(CORPUS, 300)


def test_atomic_write_that_fails_leaves_the_old_file(tmp_path):
    """tinytensor.fileio, which every tokenizer and GPT file write goes through: all or nothing."""
    path = fileio.atomic_write_text(tmp_path / "f.txt", "old\n")
    with pytest.raises(RuntimeError, match="mid-write"):
        with fileio.atomic_open(path, "w") as f:
            f.write("new, half")
            raise RuntimeError("mid-write")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]      # the temporary file is gone
    fileio.atomic_save_npy(tmp_path / "a.npy", np.arange(3))
    assert np.load(tmp_path / "a.npy", allow_pickle=False).tolist() == [0, 1, 2]
