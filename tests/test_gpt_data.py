"""Finding text, the token cache and split, seeded batch sampling, and typed config overrides."""
from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

from gpt import data
from tinytensor.errors import ConfigError, FileFormatError
from tinytensor.fileio import read_text
from gpt.config import PRESETS, TrainConfig, make_config, parse_overrides
from tokenizer import CharTokenizer

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 20


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "input.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


# ---------------------------------------------------------------------------------------- finding text
def test_resolve_text_path_and_folder(text_file, tmp_path):
    assert data.resolve_text(str(text_file)) == text_file
    with pytest.raises(FileNotFoundError, match="no text file at .*missing.txt"):
        data.resolve_text(str(tmp_path / "missing.txt"))
    with pytest.raises(FileNotFoundError, match="folder"):
        data.resolve_text(str(tmp_path))


def test_named_dataset_from_tinygpt_data(tinyshakespeare, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    p = data.resolve_text("tinyshakespeare")
    assert p == tinyshakespeare
    tok = data.build_tokenizer("char", read_text(p))
    assert tok.vocab_size == 65                                 # nanoGPT's shakespeare_char vocabulary


def test_named_dataset_checksum_is_checked(monkeypatch, tmp_path):
    (tmp_path / "tinyshakespeare.txt").write_text("not shakespeare")
    monkeypatch.setenv("TINYGPT_DATA", str(tmp_path))
    with pytest.raises(FileFormatError, match="sha256"):
        data.resolve_text("tinyshakespeare")


def test_offline_without_a_copy_says_how_to_pass_data(monkeypatch, tmp_path):
    monkeypatch.delenv("TINYGPT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def offline(*a, **k):
        raise OSError("network is unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError, match="path of a local copy"):
        data.resolve_text("tinyshakespeare")
    assert not (tmp_path / "cache" / "tinygpt" / "tinyshakespeare.txt").exists()


def test_tokenizer_choice(text_file):
    assert isinstance(data.build_tokenizer("char", TEXT), CharTokenizer)
    tok = data.build_tokenizer("char", TEXT)
    saved = text_file.parent / "tok.json"
    tok.save(saved)
    again = data.build_tokenizer(str(saved))
    assert again.encode("Speak") == tok.encode("Speak")
    with pytest.raises(ConfigError, match="char, gpt2"):
        data.build_tokenizer("nonsense")


# --------------------------------------------------------------------------------- token files, split
def test_prepare_tokens_split_and_reuse(text_file, tmp_path):
    tok = CharTokenizer.from_text(TEXT)
    train, val, meta = data.prepare_tokens(text_file, tok, tmp_path / "d")
    ids = np.array(tok.encode(TEXT))
    n = int(len(ids) * 0.9)
    assert train.dtype == np.uint16 and val.dtype == np.uint16
    np.testing.assert_array_equal(train, ids[:n])               # first 90 %
    np.testing.assert_array_equal(val, ids[n:])                 # last 10 %
    assert meta["n_train"] == n and meta["n_val"] == len(ids) - n
    mtime = (tmp_path / "d" / "train.npy").stat().st_mtime_ns
    data.prepare_tokens(text_file, tok, tmp_path / "d")         # unchanged: reused, not rewritten
    assert (tmp_path / "d" / "train.npy").stat().st_mtime_ns == mtime
    text_file.write_text(TEXT + "More.\n")                       # changed text: re-encoded
    train2, _, meta2 = data.prepare_tokens(text_file, CharTokenizer.from_text(TEXT + "M"), tmp_path / "d")
    assert meta2["text_sha256"] != meta["text_sha256"]
    np.load(tmp_path / "d" / "train.npy", allow_pickle=False)   # plain arrays, no pickle


def test_batch_sampler_windows_and_targets():
    arr = np.arange(1000, dtype=np.uint16)
    s = data.BatchSampler(arr, block_size=16, batch_size=5, rng=np.random.default_rng(0))
    x, y = s()
    assert x.shape == y.shape == (5, 16) and x.dtype == np.int64
    np.testing.assert_array_equal(y, x + 1)                     # next-token targets
    np.testing.assert_array_equal(np.diff(x, axis=1), 1)        # contiguous windows
    assert x.min() >= 0 and y.max() <= 999


def test_batch_sampler_is_seeded_and_restorable():
    arr = np.arange(500, dtype=np.uint16)
    a = data.BatchSampler(arr, 8, 4, np.random.default_rng(3))
    b = data.BatchSampler(arr, 8, 4, np.random.default_rng(3))
    np.testing.assert_array_equal(a()[0], b()[0])
    state = json.loads(json.dumps(a.get_state()))               # survives JSON (checkpoints)
    nxt = a()[0]
    b.set_state(state)
    np.testing.assert_array_equal(b()[0], nxt)


def test_sampler_needs_more_tokens_than_block():
    with pytest.raises(ConfigError, match="block_size=8"):
        data.BatchSampler(np.arange(8), 8, 2, np.random.default_rng(0), "val")


def test_eval_streams_are_independent_of_training_stream():
    arr = np.arange(2000, dtype=np.uint16)
    s1 = data.make_samplers(arr, arr, 8, 4, seed=5)
    s2 = data.make_samplers(arr, arr, 8, 4, seed=5)
    for _ in range(3):
        s1["eval_val"]()
        s1["eval_train"]()
    np.testing.assert_array_equal(s1["train"]()[0], s2["train"]()[0])


# ------------------------------------------------------------------------------------------- config
def test_overrides_are_typed_by_field():
    o = parse_overrides(["--max_iters=40", "--learning_rate", "3e-4", "--bias=false", "--dropout=0.1",
                         "--dataset=foo.txt", "--decay_lr"])
    assert o == {"max_iters": 40, "learning_rate": 3e-4, "bias": False, "dropout": 0.1,
                 "dataset": "foo.txt", "decay_lr": True}
    assert type(o["max_iters"]) is int and type(o["learning_rate"]) is float


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown config key 'max_iter'.*max_iters"):
        parse_overrides(["--max_iter=3"])
    with pytest.raises(ConfigError, match="takes int"):
        parse_overrides(["--max_iters=lots"])
    with pytest.raises(ConfigError, match="bool"):
        parse_overrides(["--bias=maybe"])
    with pytest.raises(ConfigError, match="needs a value"):
        parse_overrides(["--max_iters"])


def test_presets_and_validation():
    baby = make_config("baby")
    assert (baby.n_layer, baby.n_head, baby.n_embd, baby.block_size, baby.batch_size) == (4, 4, 128, 64, 12)
    assert (baby.max_iters, baby.lr_decay_iters, baby.learning_rate, baby.min_lr, baby.beta2) == \
        (2000, 2000, 1e-3, 1e-4, 0.99)
    big = make_config("shakespeare-char", {"max_iters": 10})
    assert (big.n_layer, big.n_embd, big.block_size, big.batch_size, big.dropout, big.max_iters) == \
        (6, 384, 256, 64, 0.2, 10)
    assert set(PRESETS) >= {"baby", "shakespeare-char"}
    with pytest.raises(ConfigError, match="unknown preset"):
        make_config("huge")
    with pytest.raises(ConfigError, match="divisible"):
        TrainConfig(n_embd=130, n_head=4)
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_train_config_model_fields_are_gpt_configs():
    """TrainConfig's model fields come from GPTConfig's dataclass fields (all but vocab_size), same types."""
    import dataclasses
    import typing

    from gpt.config import DEFAULT_MODEL, MODEL_FIELDS
    from gpt.model import GPTConfig
    gpt_fields = [f.name for f in dataclasses.fields(GPTConfig) if f.name != "vocab_size"]
    assert list(MODEL_FIELDS) == gpt_fields
    hints, ours = typing.get_type_hints(GPTConfig), typing.get_type_hints(TrainConfig)
    assert all(ours[n] is hints[n] for n in gpt_fields)
    cfg = TrainConfig(n_layer=3, dropout=0.1)
    mc = cfg.model_config(vocab_size=50)
    assert mc == dataclasses.replace(DEFAULT_MODEL, vocab_size=50, n_layer=3, dropout=0.1)
