"""The GPT model: names and init, forward, whole-model gradients, overfitting, generation and its cache."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tinytensor as tt
from gpt import GPT, GPTConfig
from gpt.model import KVCache, sample_next
from gpt.model_config import param_count
from tinytensor.errors import ConfigError, DTypeError, ShapeError


def tiny(**kw) -> GPTConfig:
    base = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0, bias=True)
    return GPTConfig(**{**base, **kw})


# ------------------------------------------------------------------------------------------ structure
def test_parameter_names_shapes_and_tying():
    m = GPT(tiny(), seed=0)
    shapes = {n: p.shape for n, p in m.named_parameters()}
    C, V = 16, 11
    expected = {
        "transformer.wte.weight": (V, C), "transformer.wpe.weight": (8, C),
        "transformer.h.0.ln_1.weight": (C,), "transformer.h.0.ln_1.bias": (C,),
        "transformer.h.0.attn.c_attn.weight": (3 * C, C), "transformer.h.0.attn.c_attn.bias": (3 * C,),
        "transformer.h.0.attn.c_proj.weight": (C, C), "transformer.h.0.attn.c_proj.bias": (C,),
        "transformer.h.0.ln_2.weight": (C,), "transformer.h.0.ln_2.bias": (C,),
        "transformer.h.0.mlp.c_fc.weight": (4 * C, C), "transformer.h.0.mlp.c_fc.bias": (4 * C,),
        "transformer.h.0.mlp.c_proj.weight": (C, 4 * C), "transformer.h.0.mlp.c_proj.bias": (C,),
        "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,),
    }
    for name, shape in expected.items():
        assert shapes[name] == shape, name
    assert "lm_head.weight" not in shapes                        # tied: listed once, under wte
    assert m.lm_head.weight is m.transformer.wte.weight
    assert len(shapes) == 2 + 12 * 2 + 2
    assert m.num_params(non_embedding=False) == sum(p.size for p in m.parameters())
    assert m.num_params() == m.num_params(non_embedding=False) - 8 * C


def test_no_bias_variant_has_no_biases():
    m = GPT(tiny(bias=False), seed=0)
    assert not [n for n, _ in m.named_parameters() if n.endswith(".bias")]


def test_gpt2_init_statistics():
    m = GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=4, n_head=4, n_embd=64), seed=0)
    sd = m.state_dict()
    assert np.std(sd["transformer.h.0.attn.c_attn.weight"]) == pytest.approx(0.02, rel=0.05)
    assert np.std(sd["transformer.wte.weight"]) == pytest.approx(0.02, rel=0.05)
    resid = np.concatenate([sd[f"transformer.h.{i}.{k}.c_proj.weight"].ravel()
                            for i in range(4) for k in ("attn", "mlp")])
    assert np.std(resid) == pytest.approx(0.02 / math.sqrt(2 * 4), rel=0.05)
    assert np.all(sd["transformer.h.1.ln_2.weight"] == 1) and np.all(sd["transformer.ln_f.bias"] == 0)
    assert np.all(sd["transformer.h.1.mlp.c_fc.bias"] == 0)


def test_untied_head_has_its_own_weight_counted_saved_and_trained():
    m = GPT(tiny(tie_weights=False), seed=0)
    names = [n for n, _ in m.named_parameters()]
    assert "lm_head.weight" in names and m.lm_head.weight is not m.transformer.wte.weight
    assert m.num_params(non_embedding=False) == param_count(m.config) == param_count(tiny()) + 11 * 16
    x = np.arange(8)[None] % 11
    _, loss = m(x, x)
    loss.backward()
    assert np.abs(m.lm_head.weight.grad).sum() > 0
    # the embedding's gradient now comes from the lookup alone: only the ids in x have one
    assert np.count_nonzero(np.abs(m.transformer.wte.weight.grad).sum(axis=1)) == len(set(x[0]))


def test_torch_init_keeps_the_modules_defaults_as_the_books_model():
    cfg = GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=4, n_embd=64, tie_weights=False,
                    weight_init="torch")
    sd = GPT(cfg, seed=0).state_dict()
    assert np.std(sd["transformer.wte.weight"]) == pytest.approx(1.0, rel=0.05)      # Embedding: N(0, 1)
    w = sd["transformer.h.0.mlp.c_fc.weight"]                                        # Linear: U(±1/√fan_in)
    assert np.abs(w).max() <= 1 / math.sqrt(64) and np.std(w) == pytest.approx(1 / math.sqrt(3 * 64), rel=0.05)
    assert np.abs(sd["transformer.h.0.mlp.c_fc.bias"]).max() > 0                     # biases drawn too
    assert np.all(sd["transformer.ln_f.weight"] == 1)


@pytest.mark.parametrize("kw, err, match", [
    (dict(weight_init="xavier"), ConfigError, "weight_init must be one of gpt2, torch, got 'xavier'"),
    (dict(weight_init="torch"), ConfigError, "tie_weights=False"),
    (dict(tie_weights="no"), DTypeError, "tie_weights must be a bool"),
])
def test_init_and_tying_validation(kw, err, match):
    with pytest.raises(err, match=match):
        tiny(**kw)


def test_same_seed_same_weights():
    a, b = GPT(tiny(), seed=3).state_dict(), GPT(tiny(), seed=3).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c = GPT(tiny(), seed=4).state_dict()
    assert not np.array_equal(a["transformer.wte.weight"], c["transformer.wte.weight"])


@pytest.mark.parametrize("kw, match", [
    (dict(n_embd=10, n_head=3), "divisible"), (dict(n_layer=0), "n_layer"),
    (dict(dropout=1.0), "dropout"), (dict(vocab_size=2.5), "vocab_size"),
])
def test_config_validation(kw, match):
    with pytest.raises(ConfigError, match=match):
        tiny(**kw)


# ------------------------------------------------------------------------------------------- forward
def test_forward_shapes_and_initial_loss(rng):
    m = GPT(tiny(vocab_size=50, n_embd=32), seed=0)
    x, y = rng.integers(0, 50, (3, 8)), rng.integers(0, 50, (3, 8))
    logits, loss = m(x, y)
    assert logits.shape == (3, 8, 50)
    assert abs(loss.item() - math.log(50)) < 0.1                  # near-uniform at init
    logits, loss = m(tt.tensor(x))                               # tensors too; inference: last position
    assert logits.shape == (3, 1, 50) and loss is None


def test_forward_rejects_bad_input(rng):
    m = GPT(tiny(), seed=0)
    with pytest.raises(ShapeError, match="block_size"):
        m(rng.integers(0, 11, (1, 9)))
    with pytest.raises(DTypeError, match="integer"):
        m(np.zeros((1, 4)))
    with pytest.raises(ShapeError, match=r"\[B, T\]"):
        m(np.zeros(4, dtype=np.int64))
    with pytest.raises(ShapeError, match="targets shape"):
        m(np.zeros((1, 4), dtype=np.int64), np.zeros((1, 3), dtype=np.int64))


def test_ignore_index_targets(rng):
    m = GPT(tiny(), seed=0)
    x = rng.integers(0, 11, (2, 8))
    y = x.copy()
    y[:, :4] = -1
    _, loss_masked = m(x, y)
    logits, _ = m(x, x)
    ref = tt.functional.cross_entropy(logits[:, 4:, :], x[:, 4:])
    assert loss_masked.item() == pytest.approx(ref.item(), rel=1e-6)


def test_causality(rng):
    """Changing a later token never changes the logits of earlier positions."""
    m = GPT(tiny(), seed=0)
    x = rng.integers(0, 11, (1, 8))
    x2 = x.copy()
    x2[0, 5] = (x2[0, 5] + 1) % 11
    a, _ = m(x, x)
    b, _ = m(x2, x2)
    np.testing.assert_array_equal(a.data[0, :5], b.data[0, :5])
    assert not np.allclose(a.data[0, 5:], b.data[0, 5:])


# -------------------------------------------------------------------------------------- gradients
def test_whole_model_gradcheck_float64(rng):
    """Every parameter's gradient against central differences, in float64, by random projections."""
    m = GPT(tiny(vocab_size=7, block_size=6, n_embd=8), seed=1).to_dtype(np.float64)
    x = rng.integers(0, 7, (2, 6))
    y = rng.integers(0, 7, (2, 6))
    params = list(m.parameters())

    def loss_fn(*_params):
        return m(x, y)[1]

    res = tt.gradcheck(loss_fn, params, full_max=0, n_proj=8, name="gpt")
    assert res.mode == "projection" and res.passed


def test_per_parameter_gradients_against_differences(rng):
    """A few single coordinates of some parameters, including the tied embedding (wte and lm_head)."""
    m = GPT(tiny(vocab_size=7, block_size=6, n_embd=8), seed=2).to_dtype(np.float64)
    x, y = rng.integers(0, 7, (2, 6)), rng.integers(0, 7, (2, 6))
    m(x, y)[1].backward()
    named = dict(m.named_parameters())
    eps = 1e-6
    for name in ("transformer.wte.weight", "transformer.h.1.attn.c_attn.weight", "transformer.ln_f.weight"):
        p = named[name]
        for _ in range(3):
            idx = tuple(int(rng.integers(0, n)) for n in p.shape)
            orig = p.data[idx]
            p.data[idx] = orig + eps
            with tt.no_grad():
                fp = m(x, y)[1].item()
            p.data[idx] = orig - eps
            with tt.no_grad():
                fm = m(x, y)[1].item()
            p.data[idx] = orig
            assert p.grad[idx] == pytest.approx((fp - fm) / (2 * eps), abs=1e-6, rel=1e-4), (name, idx)


def test_one_batch_overfits(rng):
    tt.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=16, block_size=16, n_layer=2, n_head=2, n_embd=32, bias=False), seed=0)
    opt = m.configure_optimizers(0.0, 1e-2, (0.9, 0.99))
    x = rng.integers(0, 16, (4, 16))
    y = rng.integers(0, 16, (4, 16))
    for _ in range(150):
        _, loss = m(x, y)
        loss.backward()
        opt.step()
        m.zero_grad()
    assert m(x, y)[1].item() < 0.05


def test_configure_optimizers_decays_only_matrices():
    m = GPT(tiny(), seed=0)
    opt = m.configure_optimizers(0.1, 1e-3, (0.9, 0.95))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(m.parameters()))
    assert opt.param_groups[0]["betas"] == (0.9, 0.95) and opt.param_groups[0]["lr"] == 1e-3


def test_dropout_only_in_training(rng):
    m = GPT(tiny(dropout=0.3), seed=0)
    x = rng.integers(0, 11, (2, 8))
    a, _ = m(x, x)
    b, _ = m(x, x)
    assert not np.array_equal(a.data, b.data)                  # fresh masks each call
    m.eval()
    c, _ = m(x, x)
    d, _ = m(x, x)
    np.testing.assert_array_equal(c.data, d.data)


# ------------------------------------------------------------------------------------------ generation
@pytest.mark.parametrize("prompt_len, new", [(3, 4), (2, 12)])    # 2 + 12 runs past block_size 8
def test_kv_cache_matches_recompute(rng, prompt_len, new):
    m = GPT(tiny(), seed=0)
    prompt = rng.integers(0, 11, (2, prompt_len))
    with_cache = list(m.generate_stream(prompt, new, temperature=0, use_cache=True, return_logits=True))
    without = list(m.generate_stream(prompt, new, temperature=0, use_cache=False, return_logits=True))
    assert len(with_cache) == len(without) == new
    for (ta, la), (tb, lb) in zip(with_cache, without):
        np.testing.assert_array_equal(ta, tb)
        np.testing.assert_allclose(la, lb, atol=1e-5, rtol=0)


def test_kv_cache_forward_matches_full_forward(rng):
    m = GPT(tiny(), seed=0)
    x = rng.integers(0, 11, (2, 8))
    full, _ = m(x, x)
    cache = KVCache(m.config, 2)
    with tt.no_grad():
        m(x[:, :5], cache=cache)
        step, _ = m(x[:, 5:7], cache=cache)
    assert cache.length == 7
    np.testing.assert_allclose(step.data[:, -1], full.data[:, 6], atol=1e-5)


def test_generate_shapes_and_seeds(rng):
    m = GPT(tiny(), seed=0)
    prompt = rng.integers(0, 11, (2, 3))
    out = m.generate(prompt, 5, temperature=1.0, seed=7)
    assert out.shape == (2, 8) and np.array_equal(out[:, :3], prompt)
    np.testing.assert_array_equal(out, m.generate(prompt, 5, temperature=1.0, seed=7))
    others = [m.generate(prompt, 5, temperature=1.0, seed=s) for s in range(8, 12)]
    assert any(not np.array_equal(out, o) for o in others)
    one = m.generate(prompt[0], 5, seed=7)                       # 1-D in, 1-D out
    assert one.shape == (8,)
    assert [int(t) for t in m.generate_stream(prompt[0], 5, seed=7)] == list(one[3:])
    assert m.training                                             # generation leaves the mode as it was


def test_top_k_one_and_tiny_top_p_are_greedy(rng):
    m = GPT(tiny(), seed=0)
    prompt = rng.integers(0, 11, (1, 3))
    greedy = m.generate(prompt, 6, temperature=0)
    np.testing.assert_array_equal(m.generate(prompt, 6, top_k=1, seed=1), greedy)
    np.testing.assert_array_equal(m.generate(prompt, 6, top_p=1e-9, seed=1), greedy)


def test_sample_next_support_and_frequencies():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    rng = np.random.default_rng(0)
    draws = np.array([sample_next(logits, rng=rng)[0] for _ in range(4000)])
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / 4000, [0.5, 0.3, 0.15, 0.05], atol=0.03)
    k2 = {int(sample_next(logits, top_k=2, rng=rng)[0]) for _ in range(300)}
    assert k2 == {0, 1}
    p = {int(sample_next(logits, top_p=0.7, rng=rng)[0]) for _ in range(300)}  # 0.5 + 0.3 reaches 0.7
    assert p == {0, 1}


@pytest.mark.parametrize("kw", [dict(temperature=-1.0), dict(top_k=0), dict(top_p=0.0), dict(top_p=1.5)])
def test_generate_rejects_bad_sampling_args(kw):
    m = GPT(tiny(), seed=0)
    with pytest.raises(ConfigError):
        m.generate(np.array([1, 2]), 2, **kw)


def test_return_all_and_hidden_states_match_the_training_logits():
    cfg = GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=8, dropout=0.0)
    model = GPT(cfg, seed=3)
    idx = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    with tt.no_grad():
        full, loss = model(idx, idx)                  # [B, T, V] with targets
        every, none = model(idx, return_all=True)     # the same logits without targets
        last, _ = model(idx)                          # the generation shortcut
        h = model.hidden_states(idx)                  # [B, T, C]
    assert none is None and loss is not None
    assert every.shape == (2, 4, 11) and h.shape == (2, 4, 8)
    np.testing.assert_array_equal(every.numpy(), full.numpy())
    np.testing.assert_allclose(last.numpy()[:, 0], every.numpy()[:, -1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model.lm_head(h).numpy(), every.numpy(), rtol=1e-6, atol=1e-6)
