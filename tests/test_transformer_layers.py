"""The Transformer's building blocks: sinusoidal positions and ``nn.MultiheadAttention`` (gradients,
masks, cross-attention, and against ``torch.nn.MultiheadAttention`` when torch is installed)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tinytensor as tt
import tinytensor.functional as F
from tinytensor import nn

BACKENDS = ["numpy", "numba"]


# ----------------------------------------------------------------------------- positional encoding
def test_sinusoidal_positions_follow_the_papers_formula():
    for d in (6, 7):
        pe = F.sinusoidal_positions(50, d, np.float64).data
        assert pe.shape == (50, d)
        for pos in (0, 1, 17, 49):
            for i in range(d):
                angle = pos / 10000 ** ((i - i % 2) / d)      # 2i for both columns of a pair
                want = math.sin(angle) if i % 2 == 0 else math.cos(angle)
                assert abs(pe[pos, i] - want) < 1e-14, (d, pos, i)
    np.testing.assert_array_equal(F.sinusoidal_positions(3, 4).data[0], [0, 1, 0, 1])
    assert F.sinusoidal_positions(3, 4).dtype == np.float32


def test_sinusoidal_positions_module_adds_a_buffer_and_has_no_parameters():
    m = nn.SinusoidalPositions(10, 4, dtype=np.float64)
    assert list(m.parameters()) == [] and not m.pe.requires_grad and dict(m.state_dict()) == {}
    x = tt.tensor(np.ones((2, 3, 4)), requires_grad=True)
    y = m(x)
    np.testing.assert_allclose(y.data, np.broadcast_to(1 + F.sinusoidal_positions(10, 4, np.float64).data[:3], y.shape))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones((2, 3, 4)))
    assert m(tt.tensor(np.ones((3, 4), np.float32))).dtype == np.float32
    with pytest.raises(tt.ShapeError, match=r"T <= 10, got \(1, 11, 4\)"):
        m(tt.zeros((1, 11, 4)))
    with pytest.raises(tt.ShapeError, match=r"\[\.\.\., T, 4\]"):
        m(tt.zeros((1, 3, 5)))
    with pytest.raises(tt.UsageError, match="sinusoidal_positions"):
        F.sinusoidal_positions(4, 0)


# ------------------------------------------------------------------------------ multi-head attention
def _mha(rng, C=6, H=2, bias=True):
    return nn.MultiheadAttention(C, H, bias=bias, rng=rng, dtype=np.float64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("masks", ["none", "causal", "padding", "bool", "float"])
def test_multihead_attention_gradcheck_end_to_end(backend, masks, rng):
    m = _mha(rng)
    query = tt.tensor(rng.standard_normal((2, 3, 6)), requires_grad=True)
    memory = tt.tensor(rng.standard_normal((2, 4, 6)), requires_grad=True)   # cross-attention: S = 4
    kw = {"none": {}, "causal": dict(causal=True),
          "padding": dict(key_padding_mask=np.array([[False, False, True, True], [False] * 4])),
          "bool": dict(attn_mask=rng.random((3, 4)) < 0.3),
          "float": dict(attn_mask=rng.standard_normal((2, 1, 3, 4)))}[masks]
    params = list(m.parameters())
    with tt.set_backend(backend):
        tt.gradcheck(lambda q, kv, *_: m(q, kv, kv, **kw), [query, memory, *params], name="mha")
        y = m(query, memory, memory, **kw)
    assert y.shape == (2, 3, 6)


def test_multihead_attention_shapes_and_errors(rng):
    m = _mha(rng, bias=False)
    assert [n for n, _ in m.named_parameters()] == ["q_proj.weight", "k_proj.weight", "v_proj.weight",
                                                    "out_proj.weight"]
    bound = math.sqrt(6 / 24)
    assert all(np.abs(p.data).max() <= bound for p in (m.q_proj.weight, m.k_proj.weight, m.v_proj.weight))
    x = tt.tensor(rng.standard_normal((2, 5, 6)))
    assert m(x[:, :2], x, x).shape == (2, 2, 6)
    listed = [[False, True, False, False, False]] * 2           # a list mask, and PyTorch's [B * H, T, S] one
    np.testing.assert_array_equal(m(x[:, :2], x, x, attn_mask=listed).data,
                                  m(x[:, :2], x, x, attn_mask=np.array([listed] * 4)).data)
    with pytest.raises(tt.ShapeError, match=r"key must be \[B, n, 6\], got \(2, 5, 4\)"):
        m(x, x[..., :4], x)
    with pytest.raises(tt.ConfigError, match="multiple of n_head"):
        nn.MultiheadAttention(6, 4)
    with pytest.raises(tt.UsageError, match="dropout"):
        nn.MultiheadAttention(6, 2, dropout=1.5)


def test_multihead_attention_dropout_only_while_training(rng):
    m = nn.MultiheadAttention(6, 2, dropout=0.5, rng=rng, dtype=np.float64)
    x = tt.tensor(rng.standard_normal((2, 4, 6)))
    assert not np.allclose(m(x, x, x).data, m(x, x, x).data)        # fresh masks each call
    m.eval()
    np.testing.assert_array_equal(m(x, x, x).data, m(x, x, x).data)


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")   # torch: bool + float masks
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("masks", ["none", "causal", "padding", "bool", "float", "bool_per_head"])
@pytest.mark.parametrize("bias", [True, False])
def test_multihead_attention_matches_torch(backend, masks, bias, rng):
    torch = pytest.importorskip("torch")
    B, T, S, C, H = 2, 3, 5, 8, 2
    m = _mha(rng, C, H, bias)
    if bias:   # non-zero biases, so that copying them is tested too
        for lin in (m.q_proj, m.k_proj, m.v_proj, m.out_proj):
            lin.bias.data[...] = rng.standard_normal(C)
    ref = torch.nn.MultiheadAttention(C, H, bias=bias, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.tensor(np.concatenate([m.q_proj.weight.data, m.k_proj.weight.data,
                                                              m.v_proj.weight.data])))
        ref.out_proj.weight.copy_(torch.tensor(m.out_proj.weight.data))
        if bias:
            ref.in_proj_bias.copy_(torch.tensor(np.concatenate([m.q_proj.bias.data, m.k_proj.bias.data,
                                                                m.v_proj.bias.data])))
            ref.out_proj.bias.copy_(torch.tensor(m.out_proj.bias.data))
    q, k, v = (rng.standard_normal(sh) for sh in ((B, T, C), (B, S, C), (B, S, C)))
    kpm = np.array([[False, False, False, True, True], [False, True, False, False, False]])
    ours, theirs = {}, {}
    if masks == "causal":   # with T < S, query i sees keys 0 .. i + S - T (torch: an explicit mask)
        ours = dict(causal=True)
        theirs = dict(attn_mask=torch.tensor(np.arange(S)[None, :] > np.arange(T)[:, None] + (S - T)))
    elif masks == "padding":
        ours, theirs = dict(key_padding_mask=kpm), dict(key_padding_mask=torch.tensor(kpm))
    elif masks == "bool":
        bm = rng.random((T, S)) < 0.3
        bm[:, 0] = False                      # no fully masked row: torch gives NaN there, we give zeros
        ours, theirs = dict(attn_mask=bm), dict(attn_mask=torch.tensor(bm))
    elif masks == "float":
        fm = rng.standard_normal((T, S))
        ours, theirs = dict(attn_mask=fm, key_padding_mask=kpm), dict(attn_mask=torch.tensor(fm),
                                                                      key_padding_mask=torch.tensor(kpm))
    elif masks == "bool_per_head":            # PyTorch's [B * H, T, S] layout
        bm = rng.random((B * H, T, S)) < 0.3
        bm[..., 1] = False
        ours, theirs = dict(attn_mask=bm), dict(attn_mask=torch.tensor(bm))
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    want, _ = ref(tq, tk, tv, need_weights=False, **theirs)
    xq, xk, xv = (tt.tensor(a, requires_grad=True) for a in (q, k, v))
    with tt.set_backend(backend):
        got = m(xq, xk, xv, **ours)
    np.testing.assert_allclose(got.data, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    up = rng.standard_normal(got.shape)
    got.backward(up)
    want.backward(torch.tensor(up))
    for a, b in ((xq, tq), (xk, tk), (xv, tv)):
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([m.q_proj.weight.grad, m.k_proj.weight.grad, m.v_proj.weight.grad]),
                               ref.in_proj_weight.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_fully_masked_query_gets_the_output_bias(rng):
    m = _mha(rng, 4, 2)
    m.out_proj.bias.data[...] = [1.0, 2.0, 3.0, 4.0]
    x = tt.tensor(rng.standard_normal((1, 2, 4)))
    y = m(x, x, x, key_padding_mask=np.array([[True, True]]))
    np.testing.assert_allclose(y.data, np.broadcast_to([1.0, 2.0, 3.0, 4.0], (1, 2, 4)), rtol=1e-12)
