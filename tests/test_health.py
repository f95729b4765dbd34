"""Network health records (gpt.health, --health_interval): what they hold, and that off adds nothing."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tinytensor as tt
from gpt.cli import main
from gpt.config import make_config
from gpt.health import measure, update_ratio, watch_forward
from gpt.train import read_log, train
from tinytensor import nn, optim

TEXT = ("ROMEO:\nBut soft, what light through yonder window breaks?\n"
        "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\n") * 20


def small(tmp_path, **kw):
    text = tmp_path / "input.txt"
    text.write_text(TEXT, encoding="utf-8")
    base = dict(out_dir=str(tmp_path / "run"), dataset=str(text), n_layer=2, n_head=2, n_embd=16, block_size=8,
                batch_size=4, max_iters=6, lr_decay_iters=6, warmup_iters=1, eval_interval=3, eval_iters=2,
                learning_rate=1e-2, min_lr=1e-3, seed=3)
    return make_config(None, {**base, **kw})


def test_health_records_every_n_iterations_with_finite_values(tmp_path):
    cfg = small(tmp_path, health_interval=2, gradient_accumulation_steps=2)
    train(cfg, progress=False)
    recs = read_log(cfg.out_dir, kind="health")
    assert [r["iter"] for r in recs] == [0, 2, 4]
    assert [r["iter"] for r in read_log(cfg.out_dir)] == [0, 3, 6]          # the eval records as before
    for r in recs:
        assert set(r) == {"kind", "iter", "lr", "grad_norm", "params", "activations"}
        assert math.isfinite(r["grad_norm"]) and r["grad_norm"] > 0
        assert "transformer.h.1.mlp.c_fc.weight" in r["params"] and "lm_head.weight" not in r["params"]
        for name, p in r["params"].items():
            assert set(p) == {"shape", "grad_norm", "weight_norm", "update_ratio", "update_ratio_log10"}
            assert math.isfinite(p["grad_norm"]) and math.isfinite(p["weight_norm"])
            if len(p["shape"]) == 2:                        # matrices always have a spread (biases start at 0)
                assert p["weight_norm"] > 0 and 0 < p["update_ratio"] < 1 and p["update_ratio_log10"] == math.log10(p["update_ratio"])
        assert set(r["activations"]) == {"transformer.h.0", "transformer.h.1"}
        for block in r["activations"].values():
            for kind in ("gelu_input", "residual"):
                s = block[kind]
                assert math.isfinite(s["mean"]) and s["std"] > 0 and 0 <= s["saturated"] <= 1


def test_health_off_by_default_adds_nothing(tmp_path):
    cfg = small(tmp_path)
    assert cfg.health_interval == 0
    train(cfg, progress=False)
    assert read_log(cfg.out_dir, kind="health") == []
    assert {r["kind"] for r in read_log(cfg.out_dir, kind=None)} == {"eval", "train"}


def test_update_ratio_is_the_applied_sgd_step_over_the_weight_spread():
    # one SGD step w -= lr * g with a known gradient: the ratio is std(lr * g) / std(w)
    lin = nn.Linear(3, 2, bias=False, rng=np.random.default_rng(0))
    w0 = lin.weight.data.copy()
    opt = optim.SGD(lin.parameters(), lr=0.1)
    x = tt.Tensor(np.array([[1.0, 2.0, -1.0]], dtype=np.float32))

    def step():
        lin.zero_grad()
        lin(x).sum().backward()                             # grad of each weight row: x
        opt.step()
    _, rec = measure(lin, opt, step, it=0, lr=0.1)
    g = np.tile([[1.0, 2.0, -1.0]], (2, 1))
    want = np.std(0.1 * g) / np.std(w0)
    p = rec["params"]["weight"]
    assert p["update_ratio"] == pytest.approx(want, rel=1e-5)
    assert p["grad_norm"] == pytest.approx(np.linalg.norm(g), rel=1e-6)
    assert p["weight_norm"] == pytest.approx(np.linalg.norm(w0), rel=1e-6)
    assert "step" not in opt.__dict__                       # the optimizer's own step is back
    assert update_ratio(np.ones(4), np.full(4, 0.9)) is None  # no spread: undefined, not inf


def test_watch_forward_sees_inputs_and_outputs_and_leaves_no_trace():
    gelu = nn.GELU()
    seen = []
    x = tt.Tensor(np.array([-4.0, 0.0, 4.0]))
    with watch_forward({gelu: lambda m, args, out: seen.append((args[0].data.copy(), out.data.copy()))}):
        y = gelu(x)
    np.testing.assert_array_equal(seen[0][0], x.data)
    np.testing.assert_array_equal(seen[0][1], y.data)
    assert "forward" not in gelu.__dict__
    gelu(x)
    assert len(seen) == 1


def test_plot_writes_health_png(tmp_path, capsys):
    cfg = small(tmp_path, health_interval=1)
    train(cfg, progress=False)
    pytest.importorskip("matplotlib")
    assert main(["plot", "--out_dir", cfg.out_dir]) == 0
    out = capsys.readouterr().out
    assert "health.png" in out
    assert (tmp_path / "run" / "health.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "run" / "loss.png").read_bytes()[:4] == b"\x89PNG"
