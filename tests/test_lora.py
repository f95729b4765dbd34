"""LoRA (gpt/lora.py): the layer's gradients, identity at init, merging, adapter files, bad ranks."""
from __future__ import annotations

import json

import numpy as np
import pytest

import tinytensor as tt
from gpt import GPT, GPTConfig
from gpt.lora import (ADAPTER_CONFIG, LoRALinear, apply_lora, count_trainable, load_adapters, lora_layers,
                      merge_lora, merged_state_dict, save_adapters)
from tinytensor import nn
from tinytensor.errors import ConfigError, ShapeError

CFG = GPTConfig(block_size=16, vocab_size=40, n_layer=2, n_head=2, n_embd=16)


def _ids(rng, B=3, T=10):
    return rng.integers(0, CFG.vocab_size, size=(B, T))


def _perturb_adapters(model, rng, scale=0.05):
    """Stand-in for training: B is zero at init, which would hide any mistake in the update."""
    for m in lora_layers(model).values():
        m.lora_B.data[...] = rng.normal(0, scale, size=m.lora_B.shape)


def test_lora_linear_gradcheck_float64(rng):
    base = nn.Linear(5, 4, rng=rng, dtype=np.float64)
    layer = LoRALinear(base, rank=2, alpha=3.0, rng=rng)
    layer.lora_B.data[...] = rng.normal(size=layer.lora_B.shape)   # non-zero, so dA is not trivially 0
    x = tt.tensor(rng.normal(size=(3, 2, 5)), dtype=np.float64, requires_grad=True)
    res = tt.gradcheck(lambda x, A, B: layer(x), [x, layer.lora_A, layer.lora_B], name="lora_linear")
    assert res.passed and res.max_abs_err < 1e-6


def test_lora_update_is_scaled_low_rank_product(rng):
    base = nn.Linear(6, 5, rng=rng, dtype=np.float64)
    layer = LoRALinear(base, rank=3, alpha=6.0, rng=rng)
    layer.lora_B.data[...] = rng.normal(size=layer.lora_B.shape)
    x = rng.normal(size=(4, 6))
    want = x @ base.weight.data.T + base.bias.data + 2.0 * (x @ layer.lora_A.data.T) @ layer.lora_B.data.T
    np.testing.assert_allclose(layer(tt.tensor(x)).data, want, rtol=1e-12, atol=1e-12)
    bound = 1 / np.sqrt(6)   # Kaiming-uniform (a = √5) on A, zeros on B at init
    assert np.abs(LoRALinear(base, 3, 6.0, rng=rng).lora_A.data).max() <= bound
    assert not LoRALinear(base, 3, 6.0, rng=rng).lora_B.data.any()


def test_frozen_base_gets_no_gradient(rng):
    model = GPT(CFG, seed=1)
    names = apply_lora(model, rank=2, alpha=4, seed=0)
    assert len(names) == 4 * CFG.n_layer          # c_attn, attn.c_proj, c_fc, mlp.c_proj per block
    _, loss = model(_ids(rng), _ids(rng))
    loss.backward()
    for name, p in model.named_parameters():
        if "lora_" in name:
            assert p.requires_grad and p.grad is not None, name
        else:
            assert not p.requires_grad and p.grad is None, name
    n, total = count_trainable(model)
    assert n == sum(p.size for name, p in model.named_parameters() if "lora_" in name) and n < total


def test_lora_at_init_equals_base_bit_for_bit(rng):
    idx = _ids(rng)
    model = GPT(CFG, seed=1)
    model.eval()
    before = model(idx, return_all=True)[0].data.copy()
    apply_lora(model, rank=4, alpha=8, seed=3)
    assert np.array_equal(model(idx, return_all=True)[0].data, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_merge_equals_unmerged(rng, dtype):
    idx = _ids(rng)
    model = GPT(CFG, seed=1).to_dtype(dtype)
    model.eval()
    apply_lora(model, rank=4, alpha=8, seed=3)
    _perturb_adapters(model, rng)
    unmerged = model(idx, return_all=True)[0].data.astype(np.float64)
    lazily = merged_state_dict(model)
    assert merge_lora(model) == 4 * CFG.n_layer
    assert not lora_layers(model)
    assert model.transformer.h[0].attn.c_attn.weight.requires_grad       # merged weights train again
    merged = model(idx, return_all=True)[0].data
    assert np.max(np.abs(merged - unmerged)) < 1e-6
    assert list(lazily) == list(model.state_dict())
    assert all(np.array_equal(lazily[k], v) for k, v in model.state_dict().items())
    fresh = GPT(CFG, seed=1).to_dtype(dtype)  # a merged model is a plain GPT again
    fresh.load_state_dict(model.state_dict(), strict=True)


def test_adapter_save_load_round_trip(rng, tmp_path):
    idx = _ids(rng)
    model = GPT(CFG, seed=1)
    model.eval()
    apply_lora(model, rank=2, alpha=4, targets="c_attn,c_fc", seed=0)
    _perturb_adapters(model, rng)
    want = model(idx, return_all=True)[0].data
    save_adapters(model, tmp_path / "ad", extra={"base": "seed-1 GPT"})
    meta = json.loads((tmp_path / "ad" / ADAPTER_CONFIG).read_text())
    assert meta["layers"]["transformer.h.0.attn.c_attn"] == {"rank": 2, "alpha": 4.0, "base_shape": [48, 16]}
    assert meta["targets"] == ["c_attn", "c_fc"] and meta["base"] == "seed-1 GPT"

    other = GPT(CFG, seed=1)
    other.eval()
    assert not np.array_equal(other(idx, return_all=True)[0].data, want)
    names = load_adapters(other, tmp_path / "ad")
    assert len(names) == 2 * CFG.n_layer
    assert np.array_equal(other(idx, return_all=True)[0].data, want)


def test_adapters_for_another_base_name_the_shapes(rng, tmp_path):
    model = GPT(CFG, seed=1)
    apply_lora(model, rank=2, alpha=4, seed=0)
    save_adapters(model, tmp_path / "ad")
    wider = GPT(GPTConfig(block_size=16, vocab_size=40, n_layer=2, n_head=2, n_embd=32), seed=1)
    with pytest.raises(ShapeError, match=r"transformer\.h\.0\.attn\.c_attn: adapters for weight \[out, in\] = "
                                         r"\[48, 16\], this model has \[96, 32\]"):
        load_adapters(wider, tmp_path / "ad")
    shallow = GPT(GPTConfig(block_size=16, vocab_size=40, n_layer=1, n_head=2, n_embd=16), seed=1)
    with pytest.raises(ShapeError, match=r"transformer\.h\.1\.attn\.c_attn: no such Linear"):
        load_adapters(shallow, tmp_path / "ad")


@pytest.mark.parametrize("rank", [0, 17, -1, 2.5, True])
def test_bad_rank_names_the_layer_shape(rank):
    with pytest.raises(ConfigError, match=r"\[1, 16\] for a Linear with weight \[out, in\] = \[48, 16\]"):
        LoRALinear(nn.Linear(16, 48), rank=rank, alpha=1.0)


def test_bad_alpha_and_targets():
    with pytest.raises(ConfigError, match="alpha"):
        LoRALinear(nn.Linear(4, 4), rank=1, alpha=0.0)
    with pytest.raises(ConfigError, match="no nn.Linear named q_proj"):
        apply_lora(GPT(CFG, seed=0), rank=1, alpha=1, targets="q_proj")
    with pytest.raises(ConfigError, match="at least one layer"):
        apply_lora(GPT(CFG, seed=0), rank=1, alpha=1, targets=" , ")
    model = GPT(CFG, seed=0)
    apply_lora(model, rank=1, alpha=1)
    with pytest.raises(ConfigError, match="already have adapters"):
        apply_lora(model, rank=1, alpha=1)
