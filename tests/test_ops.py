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


# --------------------------------------------------------------------------- NaN and inf propagation
NAN, INF = np.nan, np.inf
X_NAN = [[1.0, NAN, -2.0], [0.5, 1.5, -1.0]]        # a NaN in row 0
X_INF = [[INF, 0.5, -1.0], [-INF, 0.5, 1.0]]        # +inf in row 0, -inf in row 1
ROW0 = [[True] * 3, [False] * 3]
NONE = [[False] * 3, [False] * 3]
# (case, fn, input, where PyTorch gives NaN (checked against torch 2.x by hand), xfail reason or None)
NAN_CASES = [
    ("relu", lambda t: t.relu(), X_NAN, [[False, True, False]] + NONE[1:], None),
    ("abs", lambda t: t.abs(), X_NAN, [[False, True, False]] + NONE[1:], None),
    ("maximum", lambda t: t.maximum(0.0), X_NAN, [[False, True, False]] + NONE[1:], None),
    ("minimum", lambda t: tt.minimum(0.0, t), X_NAN, [[False, True, False]] + NONE[1:], None),
    ("clip", lambda t: t.clip(-1.0, 1.0), X_NAN, [[False, True, False]] + NONE[1:], None),
    ("where_not_chosen", lambda t: tt.where(np.array([True, False, True]), t, 0.0), X_NAN, NONE, None),
    ("where_chosen", lambda t: tt.where(np.array([False, True, False]), t, 0.0), X_NAN,
     [[False, True, False]] + NONE[1:], None),
    ("gelu", lambda t: F.gelu(t), X_NAN, [[False, True, False]] + NONE[1:], None),
    ("sigmoid", lambda t: t.sigmoid(), X_NAN, [[False, True, False]] + NONE[1:], None),
    ("max", lambda t: t.max(axis=1, keepdims=True), X_NAN, [[True], [False]], None),
    ("min", lambda t: t.min(axis=1, keepdims=True), X_NAN, [[True], [False]], None),
    ("softmax", lambda t: F.softmax(t), X_NAN, ROW0, None),
    ("log_softmax", lambda t: F.log_softmax(t), X_NAN, ROW0, None),
    ("layer_norm", lambda t: F.layer_norm(t, tt.ones(3, dtype=t.dtype)), X_NAN, ROW0, None),
    ("cross_entropy", lambda t: F.cross_entropy(t, np.array([0, 2]), reduction="none")[:, None], X_NAN,
     [[True], [False]], None),
    ("cross_entropy_mean", lambda t: F.cross_entropy(t, np.array([0, 2])).reshape(1, 1), X_NAN, [[True]], None),
    # infinities: NaN only where the math has no value (inf - inf, 0 * inf)
    ("relu_inf", lambda t: t.relu(), X_INF, NONE, None),
    ("abs_inf", lambda t: t.abs(), X_INF, NONE, None),
    ("clip_inf", lambda t: t.clip(-1.0, 1.0), X_INF, NONE, None),
    ("maximum_inf", lambda t: t.maximum(0.0), X_INF, NONE, None),
    ("max_inf", lambda t: t.max(axis=1, keepdims=True), X_INF, [[False], [False]], None),
    ("gelu_inf", lambda t: F.gelu(t), X_INF, [[False] * 3, [True, False, False]], None),   # -inf * 0
    ("sigmoid_inf", lambda t: t.sigmoid(), X_INF, NONE, None),
    ("layer_norm_inf", lambda t: F.layer_norm(t, tt.ones(3, dtype=t.dtype)), X_INF, [[True] * 3, [True] * 3], None),
    ("cross_entropy_inf", lambda t: F.cross_entropy(t, np.array([1, 2]), reduction="none")[:, None], X_INF,
     [[True], [False]], None),
    ("softmax_neginf", lambda t: F.softmax(t[1:]), X_INF, NONE[1:], None),
    ("softmax_posinf", lambda t: F.softmax(t[:1]), X_INF, ROW0[:1], None),
    ("log_softmax_posinf", lambda t: F.log_softmax(t[:1]), X_INF, ROW0[:1], None),
]


def _nan_params():
    for backend in BACKENDS:
        for case, fn, x, want, reason in NAN_CASES:
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(backend, fn, x, want, id=f"{case}-{backend}", marks=marks)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend, fn, x, want", list(_nan_params()))
def test_nan_propagates_like_pytorch(backend, fn, x, want, dtype):
    with tt.set_backend(backend):
        out = fn(tt.tensor(np.array(x, dtype)))
    np.testing.assert_array_equal(np.isnan(out.data), np.array(want), err_msg=f"{out.data}")


def test_relu_of_nan_is_nan_and_passes_no_gradient():
    x = tt.tensor([1.0, NAN, 2.0], requires_grad=True)
    y = x.relu()
    np.testing.assert_array_equal(y.data, [1.0, NAN, 2.0])     # assert_array_equal treats NaN == NaN
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 0.0, 1.0])      # PyTorch: grad * (out > 0)


def test_softmax_of_an_all_minus_inf_row_is_zeros_as_documented():
    # a deliberate difference from PyTorch (NaN): fully masked rows give zero probabilities
    for backend in BACKENDS:
        with tt.set_backend(backend):
            np.testing.assert_array_equal(F.softmax(tt.tensor([[-INF, -INF]])).data, [[0.0, 0.0]])


# ----------------------------------------------------------------------------------------- casts
def test_integer_and_bool_casts_cut_the_graph_float_casts_keep_it():
    x = tt.tensor([1.5, -2.5], requires_grad=True)
    for dtype in (np.int64, np.int32, bool):
        y = x.astype(dtype)
        assert not y.requires_grad and y._node is None and y.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(x.astype(np.int64).data, [1, -2])
    y = x.astype(np.float64)
    assert y.requires_grad and y.dtype == np.float64
    (y * 3.0).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


# --------------------------------------------------------------------------------- NumPy scalars
def test_numpy_scalars_are_accepted_wherever_python_numbers_are():
    rng = np.random.default_rng(0)
    x = tt.tensor(rng.standard_normal((2, 3, 4)), dtype=np.float64, requires_grad=True)
    np.testing.assert_allclose((x * np.float32(0.5)).data, x.data * 0.5)
    np.testing.assert_allclose((np.float64(2.0) - x).data, 2.0 - x.data)
    np.testing.assert_allclose((x ** np.int64(3)).data, x.data ** 3)
    assert (x ** np.int64(2))._node.fn.name == "pow_scalar"     # as x ** 2: a scalar exponent
    np.testing.assert_allclose(x.clip(np.float32(-0.5), np.float64(0.5)).data, np.clip(x.data, -0.5, 0.5))
    np.testing.assert_allclose(x.sum(axis=np.int64(1)).data, x.data.sum(axis=1))
    np.testing.assert_allclose(x.max(axis=(np.int32(0), np.int64(2))).data, x.data.max(axis=(0, 2)))
    assert x[:1].squeeze(np.int64(0)).shape == (3, 4)
    assert x.expand_dims(np.int64(1)).shape == (2, 1, 3, 4)
    assert x.swapaxes(np.int64(0), np.int64(2)).shape == (4, 3, 2)
    assert [p.shape for p in tt.split(x, np.int64(2), axis=np.int64(2))] == [(2, 3, 2)] * 2
    np.testing.assert_allclose(F.softmax(x, axis=np.int64(1)).data, F.softmax(x, axis=1).data)
    w = tt.tensor(np.ones(4), requires_grad=True)
    np.testing.assert_allclose(F.layer_norm(x, w, eps=np.float32(1e-5)).data, F.layer_norm(x, w, eps=1e-5).data)
    y = F.dropout(x, np.float32(0.5), rng=np.random.default_rng(1))
    kept = y.data != 0
    np.testing.assert_allclose(y.data[kept], x.data[kept] * 2.0)   # 1 / (1 - p)
    assert 0 < kept.sum() < x.size
    F.cross_entropy(x, np.array([[0, 1, 2], [3, 0, 1]]), ignore_index=np.int64(3)).backward()
    assert x.grad is not None


@pytest.mark.parametrize("backend", BACKENDS)
def test_attention_keeps_probabilities_for_small_heads_in_training_only(backend, monkeypatch):
    # the baby GPT's heads in training keep P (ops.attention.KEEP_PROBS_MAX); inference, dropout and a
    # zero threshold take the lse path; the two paths give the same output and gradients (float32)
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 4, 64, 32)).astype(np.float32) for _ in range(3))
    results = {}
    for keep in (True, False):
        monkeypatch.setattr(tt.ops.attention, "KEEP_PROBS_MAX", 1 << 18 if keep else 0)
        with tt.set_backend(backend):
            ts = [tt.tensor(a, requires_grad=True) for a in (q, k, v)]
            out = F.scaled_dot_product_attention(*ts, causal=True, impl="fused")
            ctx = out._node.ctx
            assert (ctx.probs is not None) == keep and (ctx.lse is None) == keep
            (out * out).sum().backward()
            results[keep] = [out.data] + [t.grad for t in ts]
            with tt.no_grad():
                assert np.allclose(F.scaled_dot_product_attention(*ts, causal=True, impl="fused").data, out.data,
                                   rtol=1e-5, atol=1e-6)
    for a, b in zip(results[True], results[False]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    monkeypatch.setattr(tt.ops.attention, "KEEP_PROBS_MAX", 1 << 18)
    ts = [tt.tensor(a, requires_grad=True) for a in (q, k, v)]
    out = tt.ops.Attention.apply(*ts, scale=0.2, causal=True, dropout_p=0.1, seed=3)
    assert out._node.ctx.probs is None  # dropout: the lse path (the mask is a hash, not stored)
