"""Training: exact resume, Ctrl-C, evals that do not disturb training, non-finite steps, checkpoints."""
from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

from gpt import checkpoint as ckpt_mod
from tinytensor.errors import ConfigError, FileFormatError
from gpt.checkpoint import load_checkpoint, save_checkpoint
from gpt.config import make_config
from gpt.model import GPT, GPTConfig
from gpt.train import TrainingStopped, get_lr, read_log, resume_config, train
from tokenizer import CharTokenizer

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 20


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "input.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


def small(tmp_path, text_file, name="run", **kw):
    base = dict(out_dir=str(tmp_path / name), dataset=str(text_file), n_layer=1, n_head=2, n_embd=16,
                block_size=8, batch_size=4, max_iters=8, lr_decay_iters=8, warmup_iters=2, eval_interval=4,
                eval_iters=2, learning_rate=1e-2, min_lr=1e-3, seed=3)
    return make_config(None, {**base, **kw})


def final_state(out_dir):
    c = load_checkpoint(out_dir)
    return c.model_state, c.optimizer_state, c.state


def assert_same_training(a_dir, b_dir, compare_log=True):
    ma, oa, sa = final_state(a_dir)
    mb, ob, sb = final_state(b_dir)
    assert sa["iter_num"] == sb["iter_num"]
    for k in ma:
        np.testing.assert_array_equal(ma[k], mb[k], err_msg=k)
    for i in oa["state"]:
        assert oa["state"][i]["step"] == ob["state"][i]["step"]
        np.testing.assert_array_equal(oa["state"][i]["exp_avg"], ob["state"][i]["exp_avg"])
        np.testing.assert_array_equal(oa["state"][i]["exp_avg_sq"], ob["state"][i]["exp_avg_sq"])
    for stream in ("train", "dropout") + (("eval_train", "eval_val") if compare_log else ()):
        assert sa["rng"][stream] == sb["rng"][stream], stream
    if compare_log:
        la = [(r["iter"], r["train_loss"], r["val_loss"], r["lr"]) for r in read_log(a_dir)]
        lb = [(r["iter"], r["train_loss"], r["val_loss"], r["lr"]) for r in read_log(b_dir)]
        assert la == lb


def training_calls(monkeypatch, on_call):
    """Wrap GPT.forward: ``on_call(n, loss)`` runs on the n-th training-mode call (1-based)."""
    orig = GPT.forward
    count = {"n": 0}

    def forward(self, idx, targets=None, cache=None):
        logits, loss = orig(self, idx, targets, cache)
        if self.training and targets is not None:
            count["n"] += 1
            loss = on_call(count["n"], loss)
        return logits, loss
    monkeypatch.setattr(GPT, "forward", forward)
    return count


# ------------------------------------------------------------------------------------------ schedule
def test_lr_schedule(tmp_path, text_file):
    cfg = small(tmp_path, text_file, learning_rate=1.0, min_lr=0.1, warmup_iters=10, lr_decay_iters=110)
    assert get_lr(0, cfg) == pytest.approx(1 / 11)
    assert get_lr(10, cfg) == pytest.approx(1.0)
    assert get_lr(60, cfg) == pytest.approx(0.55)
    assert get_lr(110, cfg) == pytest.approx(0.1) and get_lr(500, cfg) == 0.1
    assert get_lr(60, small(tmp_path, text_file, decay_lr=False)) == cfg.learning_rate * 1e-2


# -------------------------------------------------------------------------------------------- resume
def test_resume_is_bit_exact(tmp_path, text_file):
    """8 steps straight == 4 steps, stop, resume, 4 steps (with dropout and gradient accumulation)."""
    extra = dict(dropout=0.1, gradient_accumulation_steps=2)
    straight = small(tmp_path, text_file, "straight", **extra)
    res = train(straight, progress=False)
    assert res.iter_num == 8 and np.isfinite(res.val_loss)

    half = small(tmp_path, text_file, "half", max_iters=4, **extra)
    train(half, progress=False)
    assert load_checkpoint(half.out_dir).iter_num == 4
    resumed = resume_config(half.out_dir, {"max_iters": 8})
    assert resumed.max_iters == 8 and resumed.lr_decay_iters == 8
    res = train(resumed, resume=True, progress=False)
    assert res.iter_num == 8
    assert_same_training(straight.out_dir, half.out_dir)
    assert [r["iter"] for r in read_log(half.out_dir)] == [0, 4, 8]


def test_resume_cannot_change_the_model(tmp_path, text_file):
    cfg = small(tmp_path, text_file, max_iters=0)
    train(cfg, progress=False)
    with pytest.raises(ConfigError, match="n_embd"):
        resume_config(cfg.out_dir, {"n_embd": 32})
    with pytest.raises(ConfigError, match="already holds a checkpoint; continue it \\(--resume\\)"):
        train(cfg, progress=False)                              # a fresh run will not overwrite by accident


def test_ctrl_c_writes_a_checkpoint_and_resumes_exactly(tmp_path, text_file, monkeypatch):
    before = signal.getsignal(signal.SIGINT)   # SIG_IGN under nohup or some CI runners, else Python's default
    straight = small(tmp_path, text_file, "straight")
    train(straight, progress=False)

    def interrupt(n, loss):
        if n == 3:                                               # during the third step (iter 2)
            os.kill(os.getpid(), signal.SIGINT)
        return loss
    training_calls(monkeypatch, interrupt)
    cut = small(tmp_path, text_file, "cut")
    res = train(cut, progress=False)
    assert res.interrupted and res.iter_num == 3                 # the step finished, then it stopped
    assert load_checkpoint(cut.out_dir).iter_num == 3
    monkeypatch.undo()
    train(resume_config(cut.out_dir), resume=True, progress=False)
    assert_same_training(straight.out_dir, cut.out_dir)
    assert signal.getsignal(signal.SIGINT) == before            # training restored the caller's handler


def test_evaluating_never_changes_training(tmp_path, text_file):
    a = small(tmp_path, text_file, "often", max_iters=6, eval_interval=1)
    b = small(tmp_path, text_file, "rarely", max_iters=6, eval_interval=100)
    train(a, progress=False)
    train(b, progress=False)
    assert len(read_log(a.out_dir)) == 7 and len(read_log(b.out_dir)) == 2
    assert_same_training(a.out_dir, b.out_dir, compare_log=False)


def test_log_records(tmp_path, text_file):
    cfg = small(tmp_path, text_file, max_iters=5)
    train(cfg, progress=False)
    log = read_log(cfg.out_dir)
    assert [r["iter"] for r in log] == [0, 4, 5]                # every eval_interval, and at the end
    for r in log:
        assert {"iter", "train_loss", "val_loss", "lr", "elapsed_s", "tokens_per_s"} <= set(r)
    assert log[0]["tokens_per_s"] is None and log[1]["tokens_per_s"] > 0
    assert log[-1]["val_loss"] < log[0]["val_loss"]


# ------------------------------------------------------------------------------------ non-finite steps
def test_a_non_finite_loss_skips_the_step(tmp_path, text_file, monkeypatch):
    training_calls(monkeypatch, lambda n, loss: loss * float("nan") if n == 3 else loss)
    cfg = small(tmp_path, text_file, max_iters=6)
    res = train(cfg, progress=False)
    assert res.skipped_steps == 1 and res.iter_num == 6
    _, opt, state = final_state(cfg.out_dir)
    assert {s["step"] for s in opt["state"].values()} == {5}     # AdamW saw 5 of the 6 steps
    assert read_log(cfg.out_dir)[-1]["skipped_steps"] == 1
    assert all(np.isfinite(a).all() for a in load_checkpoint(cfg.out_dir).model_state.values())


def test_a_non_finite_grad_norm_skips_without_touching_adamw(tmp_path, text_file, monkeypatch):
    from tinytensor import optim
    orig = optim.clip_grad_norm_
    calls = {"n": 0}

    def clip(params, max_norm):
        calls["n"] += 1
        return float("inf") if calls["n"] == 2 else orig(params, max_norm)
    monkeypatch.setattr(optim, "clip_grad_norm_", clip)
    cfg = small(tmp_path, text_file, max_iters=4, eval_interval=100)
    res = train(cfg, progress=False)
    assert res.skipped_steps == 1
    _, opt, _ = final_state(cfg.out_dir)
    assert {s["step"] for s in opt["state"].values()} == {3}


def test_repeated_non_finite_steps_stop_with_the_last_good_checkpoint(tmp_path, text_file, monkeypatch):
    training_calls(monkeypatch, lambda n, loss: loss * float("nan") if n >= 4 else loss)
    cfg = small(tmp_path, text_file, max_iters=20, eval_interval=2, max_bad_steps=3)
    with pytest.raises(TrainingStopped, match="3 steps in a row had a non-finite"):
        train(cfg, progress=False)
    c = load_checkpoint(cfg.out_dir)
    assert c.iter_num == 4                                       # written before the bad streak ended it
    assert all(np.isfinite(a).all() for a in c.model_state.values())


# ------------------------------------------------------------------------------------------- checkpoints
def _model_and_opt():
    m = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4), seed=0)
    opt = m.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    m(np.array([[1, 2, 3]]), np.array([[2, 3, 4]]))[1].backward()
    opt.step()
    return m, opt, CharTokenizer("abcde")


def test_checkpoint_roundtrip(tmp_path):
    m, opt, tok = _model_and_opt()
    save_checkpoint(tmp_path, 7, m, opt, tok, {"counters": {"x": 1}})
    c = load_checkpoint(tmp_path)
    assert c.iter_num == 7 and c.state["counters"] == {"x": 1} and c.tokenizer.decode([0, 4]) == "ae"
    m2 = c.build_model()
    for (n, p), (n2, p2) in zip(m.named_parameters(), m2.named_parameters()):
        assert n == n2 and np.array_equal(p.data, p2.data)
    assert m2.lm_head.weight is m2.transformer.wte.weight
    opt2 = m2.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    opt2.load_state_dict(c.optimizer_state)
    for i, st in opt.state_dict()["state"].items():
        assert opt2.state_dict()["state"][i]["step"] == st["step"]
        np.testing.assert_array_equal(opt2.state_dict()["state"][i]["exp_avg_sq"], st["exp_avg_sq"])
    # safetensors + JSON, readable without this package's code
    from safetensors.numpy import load_file
    names = set(load_file(str(c.path / "model.safetensors")))
    assert "transformer.h.0.attn.c_attn.weight" in names and "lm_head.weight" not in names
    json.loads((c.path / "state.json").read_text())


def test_checkpoint_replaces_the_previous_only_when_whole(tmp_path, monkeypatch):
    m, opt, tok = _model_and_opt()
    first = save_checkpoint(tmp_path, 1, m, opt, tok)
    real = ckpt_mod.st_save
    calls = {"n": 0}

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:                                      # the optimizer file of the next save
            raise OSError("disk full")
        return real(*a, **k)
    monkeypatch.setattr(ckpt_mod, "st_save", failing)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 2, m, opt, tok)
    assert load_checkpoint(tmp_path).path == first                # the old one is still current and whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", "ckpt-0000001"]
    monkeypatch.undo()
    second = save_checkpoint(tmp_path, 2, m, opt, tok)
    assert load_checkpoint(tmp_path).path == second and not first.exists()
    again = save_checkpoint(tmp_path, 2, m, opt, tok)            # same iteration: a new folder, then swap
    assert load_checkpoint(tmp_path).path == again and again != second and not second.exists()


def test_damaged_checkpoint_is_detected(tmp_path):
    m, opt, tok = _model_and_opt()
    path = save_checkpoint(tmp_path, 1, m, opt, tok)
    raw = bytearray((path / "model.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(FileFormatError, match="damaged"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing-here")


def test_train_float_dtype_is_float32(tmp_path, text_file):
    cfg = small(tmp_path, text_file, max_iters=1)
    train(cfg, progress=False)
    assert all(a.dtype == np.float32 for a in load_checkpoint(cfg.out_dir).model_state.values())
