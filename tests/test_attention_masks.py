"""Masked attention (``F.scaled_dot_product_attention`` with causal, key-padding and attention masks):
forward against the NumPy formula, float64 gradients, the documented zeros of fully masked rows, and
the errors at the boundary."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings

import tinytensor as tt
import tinytensor.functional as F

from strategies import _np_attention, masked_attention

BACKENDS = ["numpy", "numba"]


@pytest.mark.parametrize("backend", BACKENDS)
@given(case=masked_attention())
@settings(max_examples=40)
def test_masked_attention_matches_the_formula(backend, case):
    with tt.set_backend(backend):
        out = case.fn(*case.inputs)
    ref = case.reference(*case.raw())
    assert out.shape == ref.shape and out.dtype == np.float64
    np.testing.assert_allclose(out.data, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@given(case=masked_attention())
@settings(max_examples=40)
def test_masked_attention_gradcheck(backend, case):
    with tt.set_backend(backend):
        tt.gradcheck(case.fn, case.inputs, name="masked attention")


def _qkv(rng, B=2, H=2, T=3, S=4, D=3):
    return [tt.tensor(rng.standard_normal(sh), requires_grad=True) for sh in ((B, H, T, D), (B, H, S, D), (B, H, S, D))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["key_padding", "bool", "float", "causal_fused", "causal_composed"])
def test_fully_masked_rows_are_zero_with_zero_gradients(backend, how, rng):
    q, k, v = _qkv(rng, T=5, S=3)
    kpm = np.zeros((2, 3), bool)
    kpm[1] = True                                   # batch row 1: every key is padding
    bm = np.zeros((5, 3), bool)
    bm[2] = True                                    # query 2 sees nothing
    fm = np.zeros((5, 3))
    fm[2] = -np.inf
    kw = {"key_padding": dict(key_padding_mask=kpm), "bool": dict(attn_mask=bm), "float": dict(attn_mask=fm),
          "causal_fused": dict(causal=True, impl="fused"), "causal_composed": dict(causal=True, impl="composed")}[how]
    dead = {"key_padding": (1, slice(None), slice(None)), "bool": (slice(None), slice(None), 2),
            "float": (slice(None), slice(None), 2), "causal_fused": (slice(None), slice(None), slice(0, 2)),
            "causal_composed": (slice(None), slice(None), slice(0, 2))}[how]
    with tt.set_backend(backend):
        y = F.scaled_dot_product_attention(q, k, v, **kw)
        assert np.isfinite(y.data).all()
        np.testing.assert_array_equal(y.data[dead], 0.0)
        assert np.abs(np.delete(y.data.reshape(-1, 3), 0, axis=0)).sum() > 0
        y.backward(rng.standard_normal(y.shape))
    for t in (q, k, v):
        assert np.isfinite(t.grad).all()
    np.testing.assert_array_equal(q.grad[dead], 0.0)
    if how == "key_padding":   # no query of batch row 1 sees a key: its keys and values get nothing
        np.testing.assert_array_equal(k.grad[1], 0.0)
        np.testing.assert_array_equal(v.grad[1], 0.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bool_and_float_masks_agree_and_combine_with_padding_and_causal(backend, rng):
    q, k, v = _qkv(rng, T=4, S=4)
    bm = rng.random((2, 1, 4, 4)) < 0.3
    kpm = np.array([[False, False, True, True], [False, True, False, False]])
    with tt.set_backend(backend):
        a = F.scaled_dot_product_attention(q, k, v, causal=True, key_padding_mask=kpm, attn_mask=bm)
        b = F.scaled_dot_product_attention(q, k, v, causal=True, key_padding_mask=kpm,
                                           attn_mask=np.where(bm, -np.inf, 0.0))
        every = bm | kpm[:, None, None, :] | (np.arange(4)[None, :] > np.arange(4)[:, None])
        c = F.scaled_dot_product_attention(q, k, v, attn_mask=every)
    want = _np_attention(q.data, k.data, v.data, False, blocked=every)
    for got in (a, b, c):
        np.testing.assert_allclose(got.data, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("causal", [False, True])
def test_cross_attention_fused_and_composed_agree(backend, causal, rng):
    for T, S in ((2, 5), (5, 2), (3, 3)):
        q, k, v = _qkv(rng, T=T, S=S)
        with tt.set_backend(backend):
            f = F.scaled_dot_product_attention(q, k, v, causal=causal, impl="fused")
            c = F.scaled_dot_product_attention(q, k, v, causal=causal, impl="composed")
            r = F.attention_composed(q, k, v, causal=causal)
        np.testing.assert_allclose(f.data, c.data, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(r.data, c.data, rtol=1e-10, atol=1e-12)
        with tt.set_backend(backend):
            tt.gradcheck(lambda a, b, d: F.scaled_dot_product_attention(a, b, d, causal=causal, impl="fused"),
                         [q, k, v])


def test_unmasked_auto_takes_the_fused_kernel_and_masked_the_composed_path(rng):
    q, k, v = _qkv(rng)
    assert F.scaled_dot_product_attention(q, k, v, causal=True)._node.fn.name == "attention"
    y = F.scaled_dot_product_attention(q, k, v, key_padding_mask=np.zeros((2, 4), bool))
    assert y._node.fn.name == "matmul"
    with pytest.raises(tt.UsageError, match="fused attention takes"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.zeros((3, 4), bool), impl="fused")


def test_a_float_mask_tensor_gets_its_gradient(rng):
    q, k, v = _qkv(rng)
    m = tt.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    y.sum().backward()
    assert m.grad.shape == (3, 4) and np.abs(m.grad).sum() > 0
    # the float mask is added to the scaled scores: a constant per row changes nothing
    y2 = F.scaled_dot_product_attention(q, k, v, attn_mask=m.data + np.arange(3.0)[:, None])
    np.testing.assert_allclose(y2.data, y.data, rtol=1e-12)
    s = q.data @ np.swapaxes(k.data, -1, -2) / math.sqrt(3) + m.data
    p = np.exp(s - s.max(-1, keepdims=True))
    np.testing.assert_allclose(y.data, (p / p.sum(-1, keepdims=True)) @ v.data, rtol=1e-12)


@pytest.mark.parametrize("kw, err, words", [
    (dict(key_padding_mask=np.zeros((2, 3), bool)), tt.ShapeError, r"key_padding_mask \(2, 3\).*\(2, 2, 3, 4\)"),
    (dict(key_padding_mask=np.zeros((2, 4))), tt.DTypeError, "key_padding_mask must be bool.*float64"),
    (dict(attn_mask=np.zeros((3, 5), bool)), tt.ShapeError, r"attn_mask \(3, 5\).*\(2, 2, 3, 4\)"),
    (dict(attn_mask=np.zeros((3, 2, 3, 4), bool)), tt.ShapeError, r"attn_mask \(3, 2, 3, 4\)"),
    (dict(attn_mask=np.zeros((3, 4), np.int64)), tt.DTypeError, "attn_mask must be bool.*int64"),
])
def test_bad_masks_are_named(kw, err, words, rng):
    q, k, v = _qkv(rng)
    with pytest.raises(err, match=words):
        F.scaled_dot_product_attention(q, k, v, **kw)


def test_mismatched_q_k_v_are_named(rng):
    q, k, v = _qkv(rng)
    with pytest.raises(tt.ShapeError, match=r"q \(2, 2, 3, 3\), k \(2, 2, 4, 2\)"):
        F.scaled_dot_product_attention(q, k[..., :2], v)
    with pytest.raises(tt.ShapeError, match="key_padding_mask"):   # no batch dim for a padding mask
        F.scaled_dot_product_attention(q[0, 0], k[0, 0], v[0, 0], key_padding_mask=np.zeros((1, 4), bool))
