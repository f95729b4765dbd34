"""The book's sliding-window loader, perplexity, and zero-shot scoring of a text (gpt/windows.py, gpt/score.py)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import tinytensor as tt
from gpt.checkpoint import save_checkpoint
from gpt.cli import main
from gpt.config import make_config
from gpt.model import GPT, GPTConfig
from gpt.windows import EpochLoader, SlidingWindows, make_window_samplers, perplexity, score_windows
from tinytensor.errors import ConfigError, UsageError
from tokenizer import CharTokenizer

STREAM = np.arange(10, 21)          # 11 tokens: 10, 11, ..., 20


def test_windows_exact_on_a_hand_made_stream():
    w = SlidingWindows(STREAM, max_length=4, stride=3)
    # starts 0, 3, 6 (range(0, 11 - 4, 3)); 9 would leave no target for its last input
    assert len(w) == 3
    x, y = w.batch([0, 1, 2])
    assert x.tolist() == [[10, 11, 12, 13], [13, 14, 15, 16], [16, 17, 18, 19]]
    assert y.tolist() == [[11, 12, 13, 14], [14, 15, 16, 17], [17, 18, 19, 20]]
    assert x.dtype == np.int64
    x1, y1 = w[1]
    assert x1.tolist() == [13, 14, 15, 16] and y1.tolist() == [14, 15, 16, 17]


def test_stride_equal_to_max_length_tiles_and_small_stride_overlaps():
    tiles = SlidingWindows(STREAM, max_length=5, stride=5)
    assert tiles.starts.tolist() == [0, 5]                 # 10 is not a start: ids[15] would not exist
    overlap = SlidingWindows(STREAM, max_length=5, stride=1)
    assert overlap.starts.tolist() == [0, 1, 2, 3, 4, 5]


def test_loader_batches_shuffle_with_seed_and_drop_last():
    w = SlidingWindows(STREAM, max_length=2, stride=1)     # 9 windows
    plain = list(EpochLoader(w, batch_size=4))
    assert [b[0].shape for b in plain] == [(4, 2), (4, 2), (1, 2)]
    assert plain[0][0][:, 0].tolist() == [10, 11, 12, 13]
    dropped = EpochLoader(w, batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [b[0].shape[0] for b in dropped] == [4, 4]
    a = [x[:, 0].tolist() for x, _ in EpochLoader(w, 4, shuffle=True, seed=7)]
    b = [x[:, 0].tolist() for x, _ in EpochLoader(w, 4, shuffle=True, seed=7)]
    c = [x[:, 0].tolist() for x, _ in EpochLoader(w, 4, shuffle=True, seed=8)]
    assert a == b and a != c
    assert sorted(sum(a, [])) == list(range(10, 19))        # every window once per epoch


def test_loader_call_walks_epochs_and_resumes_from_its_state():
    w = SlidingWindows(STREAM, max_length=2, stride=1)
    loader = EpochLoader(w, 4, shuffle=True, seed=3, drop_last=True)
    first = [loader()[0][:, 0].tolist() for _ in range(5)]   # epochs 0, 1 (2 batches each), then 2
    epoch0 = [x[:, 0].tolist() for x in (b[0] for b in loader.epoch_batches(0))]
    epoch1 = [x[:, 0].tolist() for x in (b[0] for b in loader.epoch_batches(1))]
    assert first[:4] == epoch0 + epoch1 and epoch0 != epoch1
    again = EpochLoader(w, 4, shuffle=True, seed=3, drop_last=True)
    for _ in range(3):
        again()
    state = json.loads(json.dumps(again.get_state()))
    resumed = EpochLoader(w, 4, shuffle=True, seed=3, drop_last=True)
    resumed.set_state(state)
    assert [resumed()[0][:, 0].tolist() for _ in range(2)] == first[3:]


def test_bad_windows_are_clear_errors():
    with pytest.raises(UsageError, match="has 4 tokens.*needs 5"):
        SlidingWindows(np.arange(4), max_length=4, stride=1, name="has")
    with pytest.raises(ConfigError, match="stride"):
        SlidingWindows(STREAM, max_length=4, stride=0)
    with pytest.raises(UsageError, match="no full batch of 8"):
        EpochLoader(SlidingWindows(STREAM, 4, 4), batch_size=8, drop_last=True)


def test_perplexity_is_exp_of_the_loss():
    assert perplexity(0.0) == 1.0
    assert perplexity(2.5) == pytest.approx(math.exp(2.5), rel=1e-15)
    assert perplexity(1e4) == math.inf
    assert math.isnan(perplexity(math.nan))


def _tiny_model(vocab: int, block: int = 8) -> GPT:
    return GPT(GPTConfig(block_size=block, vocab_size=vocab, n_layer=1, n_head=2, n_embd=16), seed=0)


def test_score_windows_is_the_token_mean_of_the_window_losses():
    model = _tiny_model(30)
    ids = np.random.default_rng(0).integers(0, 30, size=40)
    r = score_windows(model, ids, max_length=8, stride=8, batch_size=3)
    w = SlidingWindows(ids, 8, 8)
    with tt.no_grad():
        per_window = [model(*w.batch([i]))[1].item() for i in range(len(w))]
    assert r["windows"] == 4 and r["tokens"] == 32
    assert r["loss"] == pytest.approx(float(np.mean(per_window)), rel=1e-6)
    assert r["perplexity"] == pytest.approx(math.exp(r["loss"]), rel=1e-12)


def test_window_samplers_drive_the_trainer(tmp_path):
    """stride > 0: the trainer walks shuffled epochs of the windows and logs perplexities."""
    from gpt.train import read_log, train
    text = tmp_path / "t.txt"
    text.write_text("abcdefghij" * 30, encoding="utf-8")
    cfg = make_config("tiny", {"dataset": str(text), "out_dir": str(tmp_path / "o"), "stride": 16, "max_iters": 4,
                               "eval_interval": 2, "eval_iters": 2, "batch_size": 4})
    train(cfg, progress=False)
    recs = read_log(tmp_path / "o")
    assert [r["iter"] for r in recs] == [0, 2, 4]
    for r in recs:
        assert r["val_ppl"] == pytest.approx(math.exp(r["val_loss"]), rel=1e-12)
        assert r["train_ppl"] == pytest.approx(math.exp(r["train_loss"]), rel=1e-12)
    s = make_window_samplers(np.arange(100), np.arange(40), 16, 4, 16, seed=1)
    assert len(s["train"]) == 1 and len(s["eval_val"]) == 1      # 5 train windows -> 1 full batch of 4


def test_eval_data_scores_any_text_with_a_checkpoint_or_a_gpt2_folder(tmp_path, capsys):
    text = "the quick brown fox jumps over the lazy dog. " * 4
    tok = CharTokenizer.from_text(text)
    model = _tiny_model(tok.vocab_size)
    save_checkpoint(tmp_path / "run", 0, model, None, tok, {})
    f = tmp_path / "other.txt"
    f.write_text(text, encoding="utf-8")
    assert main(["eval", "--out_dir", str(tmp_path / "run"), "--data", str(f)]) == 0
    out = capsys.readouterr().out
    ids = np.array(tok.encode(text))
    want = score_windows(model, ids, 8)
    assert f"loss {want['loss']:.4f}, perplexity {want['perplexity']:.2f}" in out
    model.save_pretrained(tmp_path / "hf")
    tok.save(tmp_path / "tok.json")
    assert main(["eval", "--pretrained", str(tmp_path / "hf"), "--tokenizer", str(tmp_path / "tok.json"),
                 "--data", str(f)]) == 0
    assert f"loss {want['loss']:.4f}" in capsys.readouterr().out
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    assert main(["eval", "--out_dir", str(tmp_path / "run"), "--data", str(tmp_path / "empty.txt")]) == 2
    assert "empty" in capsys.readouterr().err
