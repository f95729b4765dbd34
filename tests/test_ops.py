"""Every differentiable op: forward against NumPy, backward against float64 finite differences.

The op list comes from the registry (``tinytensor.ops.REGISTRY``): an op added without a case in
``strategies.OP_CASES`` fails ``test_every_op_has_a_case``, and each case runs under both backends.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinytensor as tt
import tinytensor.functional as F
from tinytensor.gradcheck import example_cases
from tinytensor.ops import REGISTRY

from strategies import OP_CASES

OPS = sorted(REGISTRY)
BACKENDS = ["numpy", "numba"]


def test_every_op_has_a_case():
    assert set(OP_CASES) == set(REGISTRY), (
        f"ops without a property case: {sorted(set(REGISTRY) - set(OP_CASES))}; "
        f"cases without an op: {sorted(set(OP_CASES) - set(REGISTRY))}")
    assert set(example_cases()) == set(REGISTRY)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_forward_matches_numpy(op, backend):
    @given(case=OP_CASES[op])
    @settings(max_examples=15)
    def check(case):
        with tt.set_backend(backend):
            out = case.fn(*case.inputs)
        ref = case.reference(*case.raw())
        assert out.shape == np.shape(ref)
        assert out.dtype == np.float64
        np.testing.assert_allclose(out.data, ref, rtol=1e-10, atol=1e-12)
    check()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_gradcheck(op, backend):
    @given(case=OP_CASES[op])
    def check(case):
        with tt.set_backend(backend):
            tt.gradcheck(case.fn, case.inputs, name=op)   # atol 1e-5, rtol 1e-3, eps 1e-6, float64
    check()


@pytest.mark.parametrize("op", OPS)
def test_example_case_passes(op):
    fn, inputs = example_cases()[op]
    res = tt.gradcheck(fn, inputs, name=op)
    assert res.passed and res.mode == "full"


# ------------------------------------------------------------------------------------- kinks
def _grad(fn, x):
    t = tt.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    fn(t).sum().backward()
    return t.grad


def test_relu_subgradient_at_zero_is_zero():
    np.testing.assert_array_equal(_grad(lambda t: t.relu(), [-1.0, 0.0, 2.0]), [0.0, 0.0, 1.0])


def test_abs_subgradient_at_zero_is_zero():
    np.testing.assert_array_equal(_grad(lambda t: t.abs(), [-1.0, 0.0, 2.0]), [-1.0, 0.0, 1.0])


def test_max_ties_share_gradient_equally():
    np.testing.assert_array_equal(_grad(lambda t: t.max(), [3.0, 1.0, 3.0]), [0.5, 0.0, 0.5])
    np.testing.assert_array_equal(_grad(lambda t: t.min(axis=1), [[1.0, 1.0, 1.0, 2.0]]), [[1 / 3, 1 / 3, 1 / 3, 0]])


def test_maximum_minimum_ties_split_half():
    a = tt.tensor([1.0, 2.0, 3.0], dtype=np.float64, requires_grad=True)
    b = tt.tensor([1.0, 1.0, 4.0], dtype=np.float64, requires_grad=True)
    a.maximum(b).sum().backward()
    np.testing.assert_array_equal(a.grad, [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(b.grad, [0.5, 0.0, 1.0])


def test_clip_gradient_passes_on_closed_interval():
    np.testing.assert_array_equal(_grad(lambda t: t.clip(-1.0, 1.0), [-2.0, -1.0, 0.0, 1.0, 2.0]),
                                  [0.0, 1.0, 1.0, 1.0, 0.0])


# ------------------------------------------------------------------ fused against composed
@pytest.mark.parametrize("backend", BACKENDS)
@given(seed=st.integers(0, 2**32 - 1), causal=st.booleans(), T=st.integers(1, 6), D=st.integers(1, 5))
def test_fused_ops_match_composed_definitions(backend, seed, causal, T, D):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, T, 7))
    w, b = rng.standard_normal(7), rng.standard_normal(7)
    wl, bl = rng.standard_normal((5, 7)), rng.standard_normal(5)
    targets = rng.integers(0, 7, size=(2, T))
    q, k, v = (rng.standard_normal((2, 3, T, D)) for _ in range(3))
    pairs = [
        (lambda a: F.softmax(a), lambda a: F.softmax_composed(a), [x]),
        (lambda a: F.log_softmax(a, axis=1), lambda a: F.log_softmax_composed(a, axis=1), [x]),
        (lambda a: F.cross_entropy(a, targets), lambda a: F.cross_entropy_composed(a, targets), [x]),
        (lambda a, c, d: F.layer_norm(a, c, d), lambda a, c, d: F.layer_norm_composed(a, c, d), [x, w, b]),
        (F.gelu, F.gelu_composed, [x]),
        (lambda a, c, d: F.linear(a, c, d), lambda a, c, d: F.linear_composed(a, c, d), [x, wl, bl]),
        (lambda a, c, d: F.scaled_dot_product_attention(a, c, d, causal=causal, impl="fused"),
         lambda a, c, d: F.attention_composed(a, c, d, causal=causal), [q, k, v]),
        (lambda a, c, d: F.scaled_dot_product_attention(a, c, d, causal=causal, impl="composed"),
         lambda a, c, d: F.attention_composed(a, c, d, causal=causal), [q, k, v]),
    ]
    with tt.set_backend(backend):
        for fused, composed, arrays in pairs:
            ins_f = [tt.tensor(a, requires_grad=True) for a in arrays]
            ins_c = [tt.tensor(a, requires_grad=True) for a in arrays]
            of, oc = fused(*ins_f), composed(*ins_c)
            np.testing.assert_allclose(of.data, oc.data, rtol=1e-9, atol=1e-12)
            up = rng.standard_normal(of.shape)
            of.backward(up)
            oc.backward(up)
            for a, c in zip(ins_f, ins_c):
                np.testing.assert_allclose(a.grad, c.grad, rtol=1e-8, atol=1e-10)
            # the composed definitions are themselves differentiable programs: check them too
            tt.gradcheck(composed, [tt.tensor(a, requires_grad=True) for a in arrays], name="composed")


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_ops_run_in_float32(backend):
    rng = np.random.default_rng(0)
    x = tt.tensor(rng.standard_normal((4, 8)).astype(np.float32), requires_grad=True)
    w = tt.tensor(np.ones(8, np.float32), requires_grad=True)
    with tt.set_backend(backend):
        outs = [F.softmax(x), F.log_softmax(x), F.gelu(x), F.layer_norm(x, w), x @ x.T, x.exp(), x * 2.0,
                F.cross_entropy(x, np.arange(4))]
        for o in outs:
            assert o.dtype == np.float32, o
            o.sum().backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32


def test_softmax_extreme_logits_are_finite():
    x = tt.tensor(np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]]), requires_grad=True)
    y = F.softmax(x)
    np.testing.assert_allclose(y.data, [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    loss = F.cross_entropy(x, np.array([1, 0]))
    assert np.isfinite(loss.item()) and abs(loss.item() - (2e4 + np.log(3)) / 2) < 1e-6


def test_linear_promotes_like_the_composed_expression():
    # float32 activations and weight with a float64 bias: NEP 50 gives float64, as x @ W.T + b does
    x = tt.tensor(np.ones((2, 3), np.float32))
    w = tt.tensor(np.ones((4, 3), np.float32), requires_grad=True)
    b = tt.tensor(np.full(4, 0.5), requires_grad=True)
    y = F.linear(x, w, b)
    assert y.dtype == F.linear_composed(x, w, b).dtype == np.float64
    np.testing.assert_array_equal(y.data, np.full((2, 4), 3.5))
    y.sum().backward()
    assert w.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_array_equal(b.grad, [2.0] * 4)
    with pytest.raises(ValueError, match="linear"):
        F.linear(x, tt.tensor(np.ones((4, 2), np.float32)))
