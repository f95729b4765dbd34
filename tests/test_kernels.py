"""Kernel tests: the reference (``numpy_ref``) and the compiled twin (``numba_cpu``).

* Behaviour tests are parametrized over both modules (documented edge cases: masked rows, NaN,
  ignored targets, repeated ids, K = 0, in-place AdamW, ...).
* Hypothesis tests check ``numba_cpu`` against ``numpy_ref`` over both float dtypes, sizes that are
  not multiples of the GEMM tiles, size-1 dims, empty K and non-contiguous views.
* Two subprocess tests: the compiled kernels under ``NUMBA_DISABLE_JIT=1`` (plain Python), and this
  module under ``NUMBA_BOUNDSCHECK=1`` with a few examples per test.

``TINYTENSOR_KERNEL_EXAMPLES`` overrides the hypothesis profile's example count per test.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinytensor import backend
from tinytensor.kernels import numpy_ref

numba_cpu = pytest.importorskip("tinytensor.kernels.numba_cpu")  # the compiled twin, by its old name
from tinytensor.kernels import spec  # noqa: E402
from tinytensor.kernels.numba import _common, attention_blas  # noqa: E402  (the knobs tests turn)

MODULES = [pytest.param(numpy_ref, id="numpy_ref"), pytest.param(numba_cpu, id="numba_cpu")]
# TINYTENSOR_KERNEL_DTYPES=float32 narrows the dtype axis (the bounds-checked run: indexing is
# dtype-independent and one dtype halves its compile time).
DTYPES = [np.dtype(d).type for d in os.environ.get("TINYTENSOR_KERNEL_DTYPES", "float32,float64").split(",")]
_EXAMPLES = os.environ.get("TINYTENSOR_KERNEL_EXAMPLES")  # else the profile's count (tests/conftest.py)
HYP = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow],
               **({"max_examples": int(_EXAMPLES)} if _EXAMPLES else {}))
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------- helpers
def tols(dtype, scale=1.0):
    """(rtol, atol) for comparing a kernel against the reference in ``dtype``; atol scales with the
    magnitude of the values that were summed (``scale``)."""
    if np.dtype(dtype) == np.float32:
        return 1e-4, 2e-6 * scale
    return 1e-9, 1e-12 * scale


def close(actual, expected, dtype, scale=1.0):
    """Same dtype, same shape, values within the dtype's tolerance (NaN equal to NaN)."""
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    rtol, atol = tols(dtype, scale)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


def make(rng, shape, dtype, layout="c", scale=1.0):
    """A ``shape`` array of N(0, scale^2) values: C-contiguous, a transposed view or a strided view;
    ``"heads"`` (4-D): ``[B, T, H, D]`` memory seen as ``[B, H, T, D]``, as the GPT's attention does."""
    shape = tuple(shape)
    if layout == "heads":
        return make(rng, (shape[0], shape[2], shape[1], shape[3]), dtype, "c", scale).transpose(0, 2, 1, 3)
    if layout == "t" and len(shape) >= 2:
        return np.swapaxes((rng.standard_normal(shape[:-2] + shape[:-3:-1]) * scale).astype(dtype), -1, -2)
    if layout == "s" and len(shape) >= 1:
        return (rng.standard_normal(shape[:-1] + (2 * shape[-1],)) * scale).astype(dtype)[..., ::2]
    return (rng.standard_normal(shape) * scale).astype(dtype)


def checked(mod, name):
    """Kernel ``name`` of ``mod`` as it runs when preconditions are checked: the reference as is, the
    compiled twin wrapped as the backend wraps it under ``TINYTENSOR_DEBUG=1``."""
    fn = getattr(mod, name)
    return fn if mod is numpy_ref else backend._checked(spec.KERNELS[name], fn)


dtypes = st.sampled_from(DTYPES)
layouts = st.sampled_from(["c", "t", "s"])
seeds = st.integers(0, 2**32 - 1)


# ========================================================================================= matmul
@HYP
@given(dtype=dtypes, m=st.integers(1, 70), k=st.integers(0, 70), n=st.integers(1, 70),
       batch=st.sampled_from([(), (1,), (3,), (2, 2)]), la=layouts, lb=layouts, seed=seeds)
def test_matmul_matches_reference(dtype, m, k, n, batch, la, lb, seed):
    rng = np.random.default_rng(seed)
    a = make(rng, batch + (m, k), dtype, la)
    b = make(rng, batch + (k, n), dtype, lb)
    close(numba_cpu.matmul(a, b), numpy_ref.matmul(a, b), dtype, scale=max(k, 1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(65, 129, 33), (1, 1, 1), (5, 0, 7), (1, 300, 1), (257, 1100, 130),
                                   (130, 64, 300)])
def test_matmul_odd_and_large_shapes(dtype, shape):
    """Sizes off the 4x3 tile and the K block (1100 > 1024), a K = 0 product, and the parallel path."""
    m, k, n = shape
    rng = np.random.default_rng(0)
    a, b = make(rng, (m, k), dtype), make(rng, (k, n), dtype)
    close(numba_cpu.matmul(a, b), numpy_ref.matmul(a, b), dtype, scale=max(k, 1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_batched_parallel_and_broadcast(dtype):
    rng = np.random.default_rng(1)
    a, b = make(rng, (48, 64, 32), dtype), make(rng, (48, 32, 64), dtype)
    close(numba_cpu.matmul(a, b), numpy_ref.matmul(a, b), dtype, scale=32)
    w = make(rng, (32, 40), dtype, "t")  # [B, T, C] @ W: folded into one 2-D GEMM
    close(numba_cpu.matmul(a, w), numpy_ref.matmul(a, w), dtype, scale=32)
    c = make(rng, (1, 32, 5), dtype)  # batch broadcast 48 x 1
    close(numba_cpu.matmul(a, c), numpy_ref.matmul(a, c), dtype, scale=32)


@pytest.mark.parametrize("mod", MODULES)
def test_matmul_promotes_and_handles_empty_k(mod):
    a = np.ones((3, 0), np.float32)
    b = np.ones((0, 4), np.float64)
    out = mod.matmul(a, b)
    assert out.dtype == np.float64 and out.shape == (3, 4) and not out.any()
    with pytest.raises(ValueError):
        mod.matmul(np.ones((2, 3)), np.ones((4, 2)))


# ======================================================================================== softmax
@HYP
@given(dtype=dtypes, shape=st.lists(st.integers(1, 40), min_size=1, max_size=3), causal=st.booleans(),
       scale=st.sampled_from([1.0, 30.0, 1e4]), layout=layouts, seed=seeds)
def test_softmax_family_matches_reference(dtype, shape, causal, scale, layout, seed):
    rng = np.random.default_rng(seed)
    if causal and len(shape) < 2:
        shape = [3] + shape
    x = make(rng, shape, dtype, layout, scale)
    y = numpy_ref.softmax(x, causal)
    close(numba_cpu.softmax(x, causal), y, dtype)
    dy = make(rng, shape, dtype, layout)
    close(numba_cpu.softmax_backward(y, dy), numpy_ref.softmax_backward(y, dy), dtype, scale=4)
    ly = numpy_ref.log_softmax(x)
    close(numba_cpu.log_softmax(x), ly, dtype, scale=scale)
    close(numba_cpu.log_softmax_backward(ly, dy), numpy_ref.log_softmax_backward(ly, dy), dtype,
          scale=shape[-1])


@pytest.mark.parametrize("mod", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_masked_rows_and_nan(mod, dtype):
    x = np.array([[1.0, 2.0, 3.0], [-np.inf] * 3, [0.0, np.nan, 1.0], [-np.inf, 0.0, -np.inf]], dtype)
    y = mod.softmax(x)
    assert np.allclose(y[0].sum(), 1.0) and (np.diff(y[0]) > 0).all()
    assert (y[1] == 0).all(), "a row of all -inf has no softmax: documented as all zeros"
    assert np.isnan(y[2]).all(), "NaN propagates to the whole row"
    assert np.array_equal(y[3], [0, 1, 0])
    ly = mod.log_softmax(x[:2])
    assert np.isnan(ly[1]).all(), "log-softmax of an all -inf row is NaN"


@pytest.mark.parametrize("mod", MODULES)
def test_causal_softmax_masks_future_keys(mod):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 6)).astype(np.float32)  # T=4 queries over S=6 keys (2 cached)
    y = mod.softmax(x, causal=True)
    mask = np.arange(6)[None, :] > np.arange(4)[:, None] + 2
    assert (y[:, mask] == 0).all()
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-6)
    # more queries than keys: the first query sees nothing, a fully masked row comes out zeros
    y = mod.softmax(x[:, :, :3], causal=True)
    assert (y[:, 0] == 0).all() and np.allclose(y[:, 1:].sum(-1), 1.0)


@pytest.mark.parametrize("mod", MODULES)
def test_softmax_backward_matches_finite_differences(mod):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5))
    dy = rng.standard_normal((2, 5))
    dx = mod.softmax_backward(mod.softmax(x), dy)
    ldx = mod.log_softmax_backward(mod.log_softmax(x), dy)
    eps = 1e-6
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        num = ((mod.softmax(x + e) - mod.softmax(x - e)) * dy).sum() / (2 * eps)
        lnum = ((mod.log_softmax(x + e) - mod.log_softmax(x - e)) * dy).sum() / (2 * eps)
        assert abs(num - dx[i]) < 1e-6 and abs(lnum - ldx[i]) < 1e-6


# ================================================================================== cross-entropy
@HYP
@given(dtype=dtypes, n=st.integers(1, 40), v=st.integers(1, 80), scale=st.sampled_from([1.0, 1e4]),
       ignore_frac=st.sampled_from([0.0, 0.3, 1.0]), layout=layouts, seed=seeds)
def test_cross_entropy_matches_reference(dtype, n, v, scale, ignore_frac, layout, seed):
    rng = np.random.default_rng(seed)
    x = make(rng, (n, v), dtype, layout, scale)
    t = rng.integers(0, v, n)
    t[rng.random(n) < ignore_frac] = -100
    loss, lse = numpy_ref.cross_entropy(x, t, -100)
    nloss, nlse = numba_cpu.cross_entropy(x, t, -100)
    assert nloss.dtype == nlse.dtype == np.float64
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(nlse, lse, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(nloss, loss, rtol=rtol, atol=rtol * scale)
    dloss = rng.standard_normal(n)
    close(numba_cpu.cross_entropy_backward(x, t, lse, dloss, -100),
          numpy_ref.cross_entropy_backward(x, t, lse, dloss, -100), dtype, scale=4)


@pytest.mark.parametrize("mod", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_ignore_extremes_and_bad_targets(mod, dtype):
    x = np.array([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0], [-1e4, 1e4, 1e4]], dtype)
    t = np.array([1, -1, 2])
    loss, lse = mod.cross_entropy(x, t, ignore_index=-1)
    assert np.isfinite(loss).all() and np.isfinite(lse).all()
    np.testing.assert_allclose(loss, [2e4, 0.0, np.log(2)], rtol=1e-6)
    dx = mod.cross_entropy_backward(x, t, lse, np.ones(3), -1)
    assert dx.dtype == dtype and (dx[1] == 0).all(), "ignored rows get zero gradient"
    np.testing.assert_allclose(dx.astype(np.float64).sum(axis=1), 0.0, atol=1e-6)
    for bad in ([3, 0, 0], [-2, 0, 0]):  # a precondition: the reference checks it, the compiled twin in debug
        with pytest.raises(IndexError):
            checked(mod, "cross_entropy")(x, np.array(bad), ignore_index=-1)


@pytest.mark.parametrize("mod", MODULES)
def test_cross_entropy_all_masked_logits_row_is_nan(mod):
    x = np.array([[-np.inf, -np.inf], [0.0, 1.0]])
    loss, lse = mod.cross_entropy(x, np.array([0, 1]), ignore_index=-100)
    assert np.isnan(lse[0]) and np.isnan(loss[0]) and np.isfinite(loss[1])


# ===================================================================================== layer norm
@HYP
@given(dtype=dtypes, n=st.integers(1, 40), c=st.integers(1, 200), layout=layouts, seed=seeds,
       offset=st.sampled_from([0.0, 100.0]))
def test_layer_norm_matches_reference(dtype, n, c, layout, seed, offset):
    rng = np.random.default_rng(seed)
    x = make(rng, (n, c), dtype, layout) + dtype(offset)
    w, b = make(rng, (c,), dtype), make(rng, (c,), dtype)
    y, mean, rstd = numpy_ref.layer_norm(x, w, b, 1e-5)
    ny, nmean, nrstd = numba_cpu.layer_norm(x, w, b, 1e-5)
    close(ny, y, dtype, scale=4)
    close(nmean, mean, dtype, scale=1 + offset)
    close(nrstd, rstd, dtype, scale=1 / np.sqrt(1e-5))
    dy = make(rng, (n, c), dtype, layout)
    for got, want in zip(numba_cpu.layer_norm_backward(dy, x, w, mean, rstd),
                         numpy_ref.layer_norm_backward(dy, x, w, mean, rstd)):
        close(got, want, dtype, scale=4 * max(n, c) * float(np.max(rstd)))


@HYP
@given(dtype=dtypes, n=st.integers(1, 300), c=st.integers(1, 200), layout=layouts, seed=seeds)
def test_add_layer_norm_is_the_norm_of_the_sum(dtype, n, c, layout, seed):
    """The fused post-LN residual: the sum bit for bit as ``x + r``, the norm as the compiled layer norm of
    that sum (bit for bit: the same row code), and both within the reference's tolerance."""
    rng = np.random.default_rng(seed)
    x, r = make(rng, (n, c), dtype, layout), make(rng, (n, c), dtype, layout)
    w, b = make(rng, (c,), dtype), make(rng, (c,), dtype)
    y, s, mean, rstd = numba_cpu.add_layer_norm(x, r, w, b, 1e-5)
    assert s.dtype == y.dtype == dtype and np.array_equal(s, x + r)
    for got, want in zip((y, mean, rstd), numba_cpu.layer_norm(x + r, w, b, 1e-5)):
        assert np.array_equal(got, want)
    ry, rs, rmean, rrstd = numpy_ref.add_layer_norm(x, r, w, b, 1e-5)
    assert np.array_equal(rs, s)
    close(y, ry, dtype, scale=4)
    close(rstd, rrstd, dtype, scale=1 / np.sqrt(1e-5))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [100.0, 1000.0])
def test_layer_norm_rows_with_a_large_mean_keep_their_precision(dtype, offset):
    """Rows far from 0 (hypothesis found n=28, c=101 at offset 100): the compiled kernel used to subtract
    the mean rounded to float32, off by up to half an ulp of the mean (3.8e-6 at 100, 3e-5 at 1000),
    an error that rstd * w then carried into every output; now ``x - mean`` is rounded once, from
    float64, and the outputs are as close to the reference as for rows near 0."""
    rng = np.random.default_rng(7)
    x = make(rng, (28, 101), dtype) + dtype(offset)
    w, b = make(rng, (101,), dtype), make(rng, (101,), dtype)
    y, _, _ = numpy_ref.layer_norm(x, w, b, 1e-5)
    close(numba_cpu.layer_norm(x, w, b, 1e-5)[0], y, dtype, scale=4)


@pytest.mark.parametrize("mod", MODULES)
def test_layer_norm_normalises_and_parallel_partials_add_up(mod):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 384)) * 3 + 1  # big enough for the parallel path
    y, mean, rstd = mod.layer_norm(x, np.ones(384), np.zeros(384), 1e-5)
    np.testing.assert_allclose(y.mean(1), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(1), 1, rtol=1e-5)
    dy = rng.standard_normal(x.shape)
    _, dw, db = mod.layer_norm_backward(dy, x, np.ones(384), mean, rstd)
    np.testing.assert_allclose(db, dy.sum(0), rtol=1e-12)
    np.testing.assert_allclose(dw, (dy * y).sum(0), rtol=1e-10, atol=1e-10)


# =========================================================================================== GELU
@HYP
@given(dtype=dtypes, shape=st.lists(st.integers(1, 60), min_size=1, max_size=3), layout=layouts,
       scale=st.sampled_from([1.0, 5.0, 100.0]), seed=seeds)
def test_gelu_matches_reference(dtype, shape, layout, scale, seed):
    rng = np.random.default_rng(seed)
    x = make(rng, shape, dtype, layout, scale)
    dy = make(rng, shape, dtype, layout)
    close(numba_cpu.gelu(x), numpy_ref.gelu(x), dtype)
    # float32 tanh is a rational approximation (abs error < 4e-7), amplified by x^3 in the derivative
    close(numba_cpu.gelu_backward(x, dy), numpy_ref.gelu_backward(x, dy), dtype, scale=5 * float(np.abs(dy).max()))


@HYP
@given(dtype=dtypes, shape=st.lists(st.integers(1, 60), min_size=1, max_size=3), layout=layouts,
       scale=st.sampled_from([1.0, 5.0, 100.0]), seed=seeds)
def test_gelu_and_grad_is_gelu_and_its_backward_of_ones(dtype, shape, layout, scale, seed):
    # the training forward's one pass: the output of gelu and the derivative gelu_backward multiplies by
    rng = np.random.default_rng(seed)
    x = make(rng, shape, dtype, layout, scale)
    ones = np.ones(x.shape, dtype)
    for mod in (numpy_ref, numba_cpu):
        y, d = mod.gelu_and_grad(x)
        assert y.dtype == d.dtype == dtype and y.shape == d.shape == x.shape
        close(y, numpy_ref.gelu(x), dtype)
        close(d, numpy_ref.gelu_backward(x, ones), dtype, scale=5)


@pytest.mark.parametrize("mod", MODULES)
def test_gelu_special_values(mod):
    x = np.array([0.0, np.inf, -np.inf, np.nan, 30.0, -30.0], np.float32)
    y = mod.gelu(x)
    assert y[0] == 0 and y[1] == np.inf and y[2] == 0 or np.isnan(y[2])  # -inf * 0: NaN allowed
    assert np.isnan(y[3]) and y[4] == 30 and y[5] == 0


# ======================================================================================= bias add
@HYP
@given(dtype=dtypes, n=st.integers(1, 400), c=st.integers(1, 300), layout=layouts, seed=seeds)
def test_bias_add_adds_in_place_exactly(dtype, n, c, layout, seed):
    rng = np.random.default_rng(seed)
    y, b = make(rng, (n, c), dtype, layout), make(rng, (c,), dtype)
    want = y + b
    got = numba_cpu.bias_add(y, b)
    assert got is y and np.array_equal(y, want)          # in place, whatever the layout (strided: the reference)


# =========================================================================================== ReLU
@HYP
@given(dtype=dtypes, shape=st.lists(st.integers(1, 60), min_size=1, max_size=3), layout=layouts,
       zeros=st.booleans(), seed=seeds)
def test_relu_matches_reference_exactly(dtype, shape, layout, zeros, seed):
    rng = np.random.default_rng(seed)
    x = make(rng, shape, dtype, layout)
    if zeros:                                    # the kink: relu(0) = 0 and relu'(0) = 0
        x = np.where(rng.random(x.shape) < 0.3, dtype(0), x).astype(dtype)
    dy = make(rng, shape, dtype, layout)
    y = numba_cpu.relu(x)
    assert y.dtype == dtype and np.array_equal(y, numpy_ref.relu(x))
    dx = numba_cpu.relu_backward(y, dy)
    assert dx.dtype == dtype and np.array_equal(dx, numpy_ref.relu_backward(y, dy))
    np.testing.assert_array_equal(dx, np.where(x > 0, dy, 0))


@pytest.mark.parametrize("mod", MODULES)
def test_relu_special_values(mod):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 2.5, -2.5], np.float32)
    y = mod.relu(x)
    np.testing.assert_array_equal(y, [0, 0, np.inf, 0, np.nan, 2.5, 0])   # NaN stays NaN
    np.testing.assert_array_equal(mod.relu_backward(y, np.ones_like(x)), [0, 0, 1, 0, 0, 1, 0])


# ======================================================================================= embedding
@HYP
@given(dtype=dtypes, n=st.integers(0, 60), c=st.integers(1, 100), vocab=st.integers(1, 70),
       same=st.booleans(), layout=layouts, seed=seeds)
def test_embedding_backward_matches_reference(dtype, n, c, vocab, same, layout, seed):
    rng = np.random.default_rng(seed)
    ids = np.full(n, vocab - 1) if same else rng.integers(0, vocab, n)
    dout = make(rng, (n, c), dtype, layout)
    want = numpy_ref.embedding_backward(ids, dout, vocab)
    got = numba_cpu.embedding_backward(ids, dout, vocab)
    assert got.dtype == want.dtype and np.array_equal(got, want), "same summation order: bit-identical"


@pytest.mark.parametrize("mod", MODULES)
def test_embedding_backward_repeated_ids_parallel(mod):
    rng = np.random.default_rng(0)
    dout = rng.standard_normal((4096, 384)).astype(np.float32)  # parallel path: column slices
    ids = np.zeros(4096, np.int64)
    ids[::2] = 64
    dw = mod.embedding_backward(ids, dout, 65)
    np.testing.assert_allclose(dw[64], dout[::2].sum(0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dw[0], dout[1::2].sum(0), rtol=1e-4, atol=1e-3)
    assert not dw[1:64].any()
    with pytest.raises(IndexError):
        checked(mod, "embedding_backward")(np.array([0, 65]), dout[:2], 65)
    with pytest.raises(IndexError):
        checked(mod, "embedding_backward")(np.array([0, -1]), dout[:2], 65)


# ================================================================================== sum_squares
@HYP
@given(dtype=dtypes, shape=st.sampled_from([(0,), (1,), (7,), (1000,), (33, 65), (2, 3, 129)]),
       layout=layouts, scale=st.sampled_from([1e-3, 1.0, 1e4]), seed=seeds)
def test_sum_squares_matches_reference(dtype, shape, layout, scale, seed):
    x = make(np.random.default_rng(seed), shape, dtype, layout, scale)
    got, want = numba_cpu.sum_squares(x), numpy_ref.sum_squares(x)
    assert isinstance(got, float)
    # float64 accumulation in both: only the summation order differs
    assert got == pytest.approx(want, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("mod", MODULES)
def test_sum_squares_is_float64_and_propagates_nonfinite(mod):
    x = np.full(1_000_000, 3e-4, np.float32)   # float32 accumulation would drift visibly here
    assert mod.sum_squares(x) == pytest.approx(1_000_000 * float(np.float32(3e-4)) ** 2, rel=1e-9)
    assert mod.sum_squares(np.array([1e30, 1e30], np.float32)) == pytest.approx(2e60, rel=1e-6)  # no overflow
    assert np.isnan(mod.sum_squares(np.array([1.0, np.nan], np.float32)))
    assert mod.sum_squares(np.array([1.0, -np.inf], np.float32)) == np.inf


# ========================================================================================== AdamW
@HYP
@given(dtype=dtypes, n=st.integers(1, 5000), t=st.integers(1, 1000), wd=st.sampled_from([0.0, 0.1]),
       seed=seeds)
def test_adamw_matches_reference(dtype, n, t, wd, seed):
    rng = np.random.default_rng(seed)
    state = [make(rng, (n,), dtype) for _ in range(3)] + [make(rng, (n,), dtype) ** 2]
    ref = [a.copy() for a in state]
    assert numba_cpu.adamw_step(*state, 3e-4, (0.9, 0.95), 1e-8, wd, t) is None
    numpy_ref.adamw_step(*ref, 3e-4, (0.9, 0.95), 1e-8, wd, t)
    for got, want in zip(state, ref):
        close(got, want, dtype)


@pytest.mark.parametrize("mod", MODULES)
def test_adamw_updates_in_place_including_views(mod):
    p = np.ones((4, 6), np.float32)
    view = p[:, ::2]  # non-contiguous parameter view: must still be updated in place
    g = np.full(view.shape, 0.5, np.float32)
    m = np.zeros(view.shape, np.float32)
    v = np.zeros(view.shape, np.float32)
    mod.adamw_step(view, g, m, v, 0.1, (0.9, 0.999), 1e-8, 0.0, 1)
    # step 1: m_hat = g, v_hat = g^2, so the update is lr * sign(g)
    np.testing.assert_allclose(p[:, ::2], 0.9, rtol=1e-6)
    assert (p[:, 1::2] == 1).all()
    np.testing.assert_allclose(m, 0.05, rtol=1e-6)
    np.testing.assert_allclose(v, 0.00025, rtol=1e-5)


# ====================================================================================== attention
@HYP
@given(dtype=dtypes, b=st.integers(1, 2), h=st.integers(1, 3), t=st.integers(1, 20), extra=st.integers(0, 5),
       d=st.integers(1, 17), causal=st.booleans(), layout=st.sampled_from(["c", "s", "heads"]),
       dropout_p=st.sampled_from([0.0, 0.0, 0.1, 0.5]), seed=seeds, small=st.booleans())
def test_attention_matches_reference(dtype, b, h, t, extra, d, causal, layout, dropout_p, seed, small):
    # small: these heads take the BLAS chain (numba_cpu._small_heads) when there is no dropout; otherwise
    # the fused tile kernels. Both paths must match the reference.
    old = attention_blas._ATTN_BLAS_MAX
    attention_blas._ATTN_BLAS_MAX = 1 << 62 if small else 0
    try:
        _check_attention(dtype, b, h, t, extra, d, causal, layout, dropout_p, seed)
    finally:
        attention_blas._ATTN_BLAS_MAX = old


@HYP
@given(dtype=dtypes, t=st.integers(1, 30), extra=st.integers(0, 70),
       d=st.sampled_from([1, 15, 16, 17, 31, 32, 33, 48, 64, 65]), causal=st.booleans(),
       layout=st.sampled_from(["c", "s", "heads"]), dropout_p=st.sampled_from([0.0, 0.2]), seed=seeds)
def test_attention_tiles_cross_panel_and_tile_edges(dtype, t, extra, d, causal, layout, dropout_p, seed):
    # the tile path (attention_tiles): query tiles of 12 rows and key / channel panels of 32 (float32) or
    # 16 (float64) lanes, zero-padded at the edges: T, S and D on both sides of those boundaries
    old = attention_blas._ATTN_BLAS_MAX
    attention_blas._ATTN_BLAS_MAX = 0
    try:
        _check_attention(dtype, 1, 2, t, extra, d, causal, layout, dropout_p, seed)
    finally:
        attention_blas._ATTN_BLAS_MAX = old


def _check_attention(dtype, b, h, t, extra, d, causal, layout, dropout_p, seed):
    rng = np.random.default_rng(seed)
    s = t + extra  # S >= T: every query sees at least one key
    q = make(rng, (b, h, t, d), dtype, layout)
    k = make(rng, (b, h, s, d), dtype, layout)
    v = make(rng, (b, h, s, d), dtype, layout)
    scale = 1 / np.sqrt(d)
    drop = (dropout_p, seed)  # the dropout mask is a hash of this seed: the same in both modules
    out, lse = numpy_ref.attention(q, k, v, scale, causal, *drop)
    nout, nlse = numba_cpu.attention(q, k, v, scale, causal, *drop)
    close(nout, out, dtype, scale=4 / (1 - dropout_p))
    assert nlse.dtype == np.float64
    np.testing.assert_allclose(nlse, lse, rtol=tols(dtype)[0], atol=tols(dtype, 4)[1])
    dout = make(rng, (b, h, t, d), dtype, layout)
    for got, want in zip(numba_cpu.attention_backward(q, k, v, lse, dout, scale, causal, *drop),
                         numpy_ref.attention_backward(q, k, v, lse, dout, scale, causal, *drop)):
        close(got, want, dtype, scale=4 * s / (1 - dropout_p))


@HYP
@given(dtype=dtypes, b=st.integers(1, 2), h=st.integers(1, 3), t=st.integers(1, 20), extra=st.integers(-3, 5),
       d=st.integers(1, 17), causal=st.booleans(), layout=st.sampled_from(["c", "s", "heads"]), seed=seeds)
def test_attention_probs_matches_reference_and_the_lse_path(dtype, b, h, t, extra, d, causal, layout, seed):
    # the kept-probabilities pair: numba against the reference; its out against attention's; its backward
    # (from P, rows of queries without a visible key zeroed as the op does) against attention_backward's
    rng = np.random.default_rng(seed)
    s = max(1, t + extra)  # S < T too: causal queries that see no key
    q, k, v = make(rng, (b, h, t, d), dtype, layout), make(rng, (b, h, s, d), dtype, layout), make(rng, (b, h, s, d), dtype, layout)
    scale = 1 / np.sqrt(d)
    out, p = numpy_ref.attention_probs(q, k, v, scale, causal)
    nout, np_ = numba_cpu.attention_probs(q, k, v, scale, causal)
    assert nout.shape == q.shape and np_.shape == (b, h, t, s) and np_.dtype == dtype
    blind = t - s if causal else 0
    assert np.isnan(p[:, :, :max(blind, 0)]).all() and np.isnan(np_[:, :, :max(blind, 0)]).all()
    seen = slice(max(blind, 0), None)
    close(nout[:, :, seen], out[:, :, seen], dtype, scale=4)
    close(np_[:, :, seen], p[:, :, seen], dtype)
    close(out[:, :, seen], numpy_ref.attention(q, k, v, scale, causal)[0][:, :, seen], dtype, scale=4)
    p[:, :, :max(blind, 0)] = 0
    np_[:, :, :max(blind, 0)] = 0
    lse = numpy_ref.attention(q, k, v, scale, causal)[1]
    lse[:, :, :max(blind, 0)] = 0.0
    dout = make(rng, (b, h, t, d), dtype, layout)
    dout[:, :, :max(blind, 0)] = 0  # the op's zero rows pass no gradient
    want = numpy_ref.attention_backward(q, k, v, lse, dout, scale, causal)
    for got, ref, lse_path in zip(numba_cpu.attention_probs_backward(q, k, v, np_, dout, scale, causal),
                                  numpy_ref.attention_probs_backward(q, k, v, p, dout, scale, causal), want):
        close(got, ref, dtype, scale=4 * s)
        close(ref, lse_path, dtype, scale=4 * s)


@pytest.mark.parametrize("mod", MODULES)
def test_dropout_keep_rate_and_twins(mod):
    idx = np.arange(200_000, dtype=np.uint64)
    for p in (0.0, 0.2, 0.5):
        keep = mod.dropout_keep(1234, idx, p)
        assert keep.dtype == np.bool_ and keep.shape == idx.shape
        assert abs(keep.mean() - (1 - p)) < 0.005          # binomial sd ~0.001
    k1, k2 = mod.dropout_keep(1, idx, 0.5), mod.dropout_keep(2, idx, 0.5)
    assert abs((k1 == k2).mean() - 0.5) < 0.01             # other seed, independent mask
    assert not (k1[:-1] == k1[1:]).all()
    np.testing.assert_array_equal(mod.dropout_keep(99, idx[::7], 0.3), numpy_ref.dropout_keep(99, idx[::7], 0.3))


@HYP
@given(dtype=dtypes, shape=st.sampled_from([(), (0,), (1,), (5, 7), (33, 129), (3, 4, 200)]), layout=layouts,
       p=st.sampled_from([0.0, 0.1, 0.5, 0.9]), seed=seeds)
def test_dropout_matches_reference(dtype, shape, layout, p, seed):
    x = make(np.random.default_rng(seed % 2**32), shape, dtype, layout)
    got, want = numba_cpu.dropout(x, p, seed), numpy_ref.dropout(x, p, seed)
    close(got, want, dtype)
    assert ((got == 0) | (x == 0) | (np.abs(got * (1 - p) - x) <= 1e-6 * np.abs(x))).all()


def test_attention_results_are_laid_out_for_the_model():
    # The compiled kernel takes [B, H, T, D] views of a [B, T, C] activation without copying and lays its
    # results out as [B, T, H, D], so that the model's y.transpose(0, 2, 1, 3).reshape(B, T, C) is free.
    rng = np.random.default_rng(0)
    qkv = rng.standard_normal((2, 70, 3 * 4 * 8)).astype(np.float32)           # B, T, 3C with H=4, D=8
    q, k, v = (a.reshape(2, 70, 4, 8).transpose(0, 2, 1, 3) for a in np.split(qkv, 3, axis=2))
    out, lse = numba_cpu.attention(q, k, v, 0.35)
    assert out.transpose(0, 2, 1, 3).flags.c_contiguous and lse.shape == (2, 4, 70)
    want, wlse = numpy_ref.attention(q, k, v, 0.35)
    close(out, want, np.float32, scale=4)
    np.testing.assert_allclose(lse, wlse, rtol=1e-5)
    dout = rng.standard_normal((2, 70, 4, 8)).astype(np.float32).transpose(0, 2, 1, 3)
    grads = numba_cpu.attention_backward(q, k, v, lse, dout, 0.35)
    # dq, dk, dv sit side by side in one [B, T, 3C] array, like the qkv they came from (the engine
    # then uses that array as qkv's gradient without gathering the pieces)
    packed = grads[0].base
    assert packed.shape == qkv.shape and all(g.base is packed for g in grads)
    for i, g in enumerate(grads):
        np.testing.assert_array_equal(packed[..., i * 32:(i + 1) * 32], g.transpose(0, 2, 1, 3).reshape(2, 70, 32))
    for got, ref in zip(grads, numpy_ref.attention_backward(q, k, v, wlse, dout, 0.35)):
        close(got, ref, np.float32, scale=4 * 70)


@pytest.mark.parametrize("mod", MODULES)
def test_attention_dropout_zeroes_weights_and_rescales(mod):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 1, 6, 4))
    k = np.zeros((1, 1, 6, 4))          # all scores 0: uniform attention over the visible keys
    v = rng.standard_normal((1, 1, 6, 4))
    out, _ = mod.attention(q, k, v, 1.0, False, 0.5, 7)
    keep = numpy_ref.dropout_keep(7, np.arange(36, dtype=np.uint64), 0.5).reshape(6, 6)
    np.testing.assert_allclose(out[0, 0], (keep / 6 / 0.5) @ v[0, 0], rtol=1e-12, atol=1e-12)
    assert not keep.all() and keep.any()


@pytest.mark.parametrize("mod, blas_max", [(numpy_ref, None), (numba_cpu, 0), (numba_cpu, 1 << 62)])
def test_attention_equals_composition(mod, blas_max, monkeypatch):
    if blas_max is not None:  # the compiled module's two paths: fused tile kernels, BLAS chain
        monkeypatch.setattr(attention_blas, "_ATTN_BLAS_MAX", blas_max)
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 2, 9, 4)) for _ in range(3))
    out, lse = mod.attention(q, k, v, 0.5, causal=True)
    p = mod.softmax(mod.matmul(q, np.swapaxes(k, -1, -2)) * 0.5, causal=True)
    np.testing.assert_allclose(out, mod.matmul(p, v), rtol=1e-10, atol=1e-12)
    # fully masked queries (T > S): documented NaN output and lse, as the reference gives
    out, lse = mod.attention(q, k[:, :, :5], v[:, :, :5], 0.5, causal=True)
    assert np.isnan(lse[:, :, :4]).all() and np.isnan(out[:, :, :4]).all() and np.isfinite(out[:, :, 4:]).all()
    if mod is numpy_ref:
        return
    # their gradients: the visible rows as the reference gives them, the masked queries' rows 0
    dout = rng.standard_normal(out.shape)
    got = mod.attention_backward(q, k[:, :, :5], v[:, :, :5], lse, dout, 0.5, True)
    ok = np.isfinite(lse)
    assert (got[0][~ok] == 0).all()
    dout[~ok] = 0  # (the reference's NaN rows would poison dk and dv)
    want = numpy_ref.attention_backward(q, k[:, :, :5], v[:, :, :5], np.where(ok, lse, 0), dout, 0.5, True)
    np.testing.assert_allclose(got[0][ok], want[0][ok], rtol=1e-10, atol=1e-12)
    for g, w in zip(got[1:], want[1:]):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mod", MODULES)
def test_attention_backward_matches_finite_differences(mod):
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((1, 1, 4, 3)) for _ in range(3))
    dout = rng.standard_normal((1, 1, 4, 3))
    out, lse = mod.attention(q, k, v, 0.7)
    grads = mod.attention_backward(q, k, v, lse, dout, 0.7)
    eps = 1e-6
    for which, g in zip(range(3), grads):
        args = [q, k, v]
        for i in np.ndindex(args[which].shape):
            plus = [a.copy() for a in args]
            minus = [a.copy() for a in args]
            plus[which][i] += eps
            minus[which][i] -= eps
            num = ((mod.attention(*plus, 0.7)[0] - mod.attention(*minus, 0.7)[0]) * dout).sum() / (2 * eps)
            assert abs(num - g[i]) < 1e-6


# ================================================================================ misc + modes
def test_threads_env_is_validated(monkeypatch):
    monkeypatch.setenv("TINYTENSOR_NUM_THREADS", "zero")
    with pytest.raises(ValueError):
        numba_cpu.set_num_threads()
    monkeypatch.delenv("TINYTENSOR_NUM_THREADS")
    assert numba_cpu.set_num_threads() >= 1


def test_parallel_branches_match_reference(monkeypatch):
    """Every driver's ``prange`` branch, forced on small inputs (the size threshold depends on the
    OpenMP wait policy, so the other tests may all run serially)."""
    monkeypatch.setattr(_common, "_PAR_MIN", 1)
    rng = np.random.default_rng(11)
    for dt in DTYPES:
        x = make(rng, (37, 29), dt)
        dy = make(rng, (37, 29), dt)
        close(numba_cpu.softmax(x.reshape(1, 37, 29), True), numpy_ref.softmax(x.reshape(1, 37, 29), True), dt)
        y = numpy_ref.softmax(x)
        close(numba_cpu.softmax_backward(y, dy), numpy_ref.softmax_backward(y, dy), dt, scale=4)
        ly = numpy_ref.log_softmax(x)
        close(numba_cpu.log_softmax(x), ly, dt)
        close(numba_cpu.log_softmax_backward(ly, dy), numpy_ref.log_softmax_backward(ly, dy), dt, scale=29)
        t = rng.integers(0, 29, 37)
        loss, lse = numpy_ref.cross_entropy(x, t, -1)
        np.testing.assert_allclose(numba_cpu.cross_entropy(x, t, -1)[1], lse, rtol=1e-6)
        close(numba_cpu.cross_entropy_backward(x, t, lse, loss, -1),
              numpy_ref.cross_entropy_backward(x, t, lse, loss, -1), dt, scale=4)
        w = make(rng, (29,), dt)
        _, mu, rs = numpy_ref.layer_norm(x, w, w, 1e-5)
        for got, want in zip(numba_cpu.layer_norm(x, w, w, 1e-5), numpy_ref.layer_norm(x, w, w, 1e-5)):
            close(got, want, dt, scale=4)
        for got, want in zip(numba_cpu.layer_norm_backward(dy, x, w, mu, rs),
                             numpy_ref.layer_norm_backward(dy, x, w, mu, rs)):
            close(got, want, dt, scale=200)
        close(numba_cpu.gelu(x), numpy_ref.gelu(x), dt)
        close(numba_cpu.gelu_backward(x, dy), numpy_ref.gelu_backward(x, dy), dt, scale=20)
        assert np.array_equal(numba_cpu.relu(x), numpy_ref.relu(x))
        assert np.array_equal(numba_cpu.relu_backward(numpy_ref.relu(x), dy),
                              numpy_ref.relu_backward(numpy_ref.relu(x), dy))
        dout = make(rng, (37, 40), dt)
        assert np.array_equal(numba_cpu.embedding_backward(t, dout, 29), numpy_ref.embedding_backward(t, dout, 29))
        st = [make(rng, (1001,), dt) for _ in range(3)] + [make(rng, (1001,), dt) ** 2]
        ref = [a.copy() for a in st]
        numba_cpu.adamw_step(*st, 1e-3, (0.9, 0.95), 1e-8, 0.1, 3)
        numpy_ref.adamw_step(*ref, 1e-3, (0.9, 0.95), 1e-8, 0.1, 3)
        for got, want in zip(st, ref):
            close(got, want, dt)
        q, k, v = (make(rng, (2, 3, 9, 5), dt) for _ in range(3))
        out, alse = numpy_ref.attention(q, k, v, 0.4)
        close(numba_cpu.attention(q, k, v, 0.4)[0], out, dt, scale=4)
        for got, want in zip(numba_cpu.attention_backward(q, k, v, alse, out, 0.4),
                             numpy_ref.attention_backward(q, k, v, alse, out, 0.4)):
            close(got, want, dt, scale=40)


def test_every_spec_kernel_has_both_twins_with_its_signature():
    import inspect
    public = {n for n, f in vars(numpy_ref).items()
              if not n.startswith("_") and callable(f) and getattr(f, "__module__", "") == numpy_ref.__name__}
    assert public == set(spec.KERNELS), "every public reference function is a spec row, and only those"
    for name, kernel in spec.KERNELS.items():
        for mod in (numpy_ref, numba_cpu):
            assert tuple(inspect.signature(getattr(mod, name)).parameters) == kernel.signature, (mod, name)


_IMPORT_ORDER_SCRIPT = textwrap.dedent("""
    import sys
    if sys.argv[1] == "numpy-first":
        import numpy
    import tinytensor
    from tinytensor import backend
    import numba
    backend.kernels()
    blas = "skip"
    try:
        import threadpoolctl
        blas = sum(p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas")
    except ImportError:
        pass
    print(numba.get_num_threads(), blas)
""")


def test_thread_counts_do_not_depend_on_import_order():
    """Issue 19: ``import numpy`` before ``import tinytensor`` used to leave the Numba kernels on one thread."""
    env = _subprocess_env(TINYTENSOR_NUM_THREADS="2")
    got = [subprocess.run([sys.executable, "-c", _IMPORT_ORDER_SCRIPT, order], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=300).stdout.split() for order in ("numpy-first", "tinytensor-first")]
    assert got[0] == got[1] and got[0][0] == str(min(2, os.cpu_count() or 1)), got


_PLAIN_PYTHON_SCRIPT = textwrap.dedent("""
    import numpy as np
    from tinytensor.kernels import numba_cpu as nc, numpy_ref as nr
    rng = np.random.default_rng(0)
    for dt in (np.float32, np.float64):
        tol = 1e-4 if dt == np.float32 else 1e-9
        def ok(a, b):
            a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
            for x, y in zip(a, b):
                np.testing.assert_allclose(x, y, rtol=tol, atol=tol, equal_nan=True)
        x = rng.standard_normal((5, 7)).astype(dt)
        ok(nc.matmul(x, x.T), nr.matmul(x, x.T))
        ok(nc.matmul(x[:1], x.T), nr.matmul(x[:1], x.T))   # one row: the row-dot GEMV
        # the row sums are float64 as in the compiled code (a Python float accumulator would add float32
        # scalars in float32 under NumPy 2's promotion: loss 0.693359375 here, not log 2)
        big = np.array([[-1e4, 1e4, 1e4]], dt)
        np.testing.assert_allclose(nc.cross_entropy(big, np.array([2]), -1)[0], [np.log(2)], rtol=1e-6)
        ok(nc.softmax(x, True), nr.softmax(x, True))
        ok(nc.softmax_backward(x, x), nr.softmax_backward(x, x))
        ok(nc.log_softmax(x), nr.log_softmax(x))
        ok(nc.log_softmax_backward(x, x), nr.log_softmax_backward(x, x))
        t = np.array([0, 6, -1, 3, 3])
        loss, lse = nr.cross_entropy(x, t, -1)
        ok(nc.cross_entropy(x, t, -1), (loss, lse))
        ok(nc.cross_entropy_backward(x, t, lse, loss, -1), nr.cross_entropy_backward(x, t, lse, loss, -1))
        w = np.ones(7, dt)
        y, mu, rs = nr.layer_norm(x, w, w, 1e-5)
        ok(nc.layer_norm(x, w, w, 1e-5), (y, mu, rs))
        ok(nc.layer_norm_backward(x, x, w, mu, rs), nr.layer_norm_backward(x, x, w, mu, rs))
        ok(nc.gelu(x), nr.gelu(x))
        ok(nc.gelu_backward(x, x), nr.gelu_backward(x, x))
        ok(nc.relu(x), nr.relu(x))
        ok(nc.relu_backward(nr.relu(x), x), nr.relu_backward(nr.relu(x), x))
        ok(nc.embedding_backward(np.array([1, 1, 0, 2, 1]), x, 3), nr.embedding_backward(np.array([1, 1, 0, 2, 1]), x, 3))
        s1 = [x.copy() for _ in range(3)] + [x * x]
        s2 = [a.copy() for a in s1]
        nc.adamw_step(*s1, 1e-3, (0.9, 0.95), 1e-8, 0.1, 2)
        nr.adamw_step(*s2, 1e-3, (0.9, 0.95), 1e-8, 0.1, 2)
        ok(tuple(s1), tuple(s2))
        q = x.reshape(1, 1, 5, 7)
        out, alse = nr.attention(q, q, q, 0.3)
        ok(nc.attention(q, q, q, 0.3), (out, alse))
        ok(nc.attention_backward(q, q, q, alse, q, 0.3), nr.attention_backward(q, q, q, alse, q, 0.3))
    print("plain python ok")
""")


def _subprocess_env(**extra):
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def test_kernels_run_as_plain_python_with_jit_disabled():
    """``NUMBA_DISABLE_JIT=1``: every kernel runs as ordinary Python (for teaching and debugging)."""
    r = subprocess.run([sys.executable, "-c", _PLAIN_PYTHON_SCRIPT], cwd=REPO, capture_output=True, text=True,
                       env=_subprocess_env(NUMBA_DISABLE_JIT="1"), timeout=300)
    assert r.returncode == 0 and "plain python ok" in r.stdout, r.stdout + r.stderr


@pytest.mark.skipif(os.environ.get("NUMBA_BOUNDSCHECK") == "1", reason="already the bounds-checked run")
def test_kernel_module_under_boundscheck():
    """The numba-vs-reference tests again, in a subprocess with ``NUMBA_BOUNDSCHECK=1``, float32 only and
    3 examples per hypothesis test (every kernel, serial and parallel paths, odd sizes and views).

    Bounds-checked code is compiled into its own cache directory (``<NUMBA_CACHE_DIR>-boundscheck``,
    or ``~/.cache/tinytensor/numba-boundscheck``) so it never mixes with the fast build; only the first
    run on a machine pays the compile.
    """
    base = os.environ.get("NUMBA_CACHE_DIR")
    cache = base.rstrip("/\\") + "-boundscheck" if base else str(Path.home() / ".cache/tinytensor/numba-boundscheck")
    env = _subprocess_env(NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=cache, TINYTENSOR_KERNEL_EXAMPLES="3",
                          TINYTENSOR_KERNEL_DTYPES="float32")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__,
                        "-k", "matches_reference or odd_and_large or batched_parallel or repeated_ids_parallel "
                              "or parallel_branches"],
                       cwd=REPO, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]


def test_run_parts_runs_every_part_and_reraises():
    from tinytensor import threads
    seen = []
    threads.run_parts(seen.append, [1, 2, 3])
    assert sorted(seen) == [1, 2, 3]

    def fail_on_two(part):
        if part == 2:
            raise ValueError(f"part {part}")
        seen.append(part)
    seen.clear()
    with pytest.raises(ValueError, match="part 2"):
        threads.run_parts(fail_on_two, [1, 2, 3])
    assert sorted(seen) == [1, 3]  # the other parts still ran to the end before the error came back
    threads.run_parts(seen.append, [4, 5])  # and the helpers are free again
    assert sorted(seen) == [1, 3, 4, 5]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(spec.KERNELS))
def test_every_spec_kernel_matches_its_reference_on_its_example(name, dtype):
    """Each row of the kernel table, on its own warm-up example: the compiled twin equals the reference
    (outputs, and the arguments too, for kernels that update in place such as adamw_step). A kernel added
    to the table is compared here before any test of its own exists."""
    import copy
    kernel = spec.KERNELS[name]
    args = kernel.example(np.random.default_rng(0), 24, dtype)
    ref_args, nb_args = copy.deepcopy(args), copy.deepcopy(args)
    want = getattr(numpy_ref, name)(*ref_args)
    got = getattr(numba_cpu, name)(*nb_args)
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)
    as_tuple = (lambda r: r if isinstance(r, tuple) else (r,))
    assert len(as_tuple(got)) == len(as_tuple(want))
    for g, w in zip(as_tuple(got), as_tuple(want)):
        if g is None or w is None:
            assert g is None and w is None
            continue
        np.testing.assert_allclose(np.asarray(g, np.float64), np.asarray(w, np.float64), **tol)
    for g, w in zip(nb_args, ref_args):
        if isinstance(g, np.ndarray) and g.dtype.kind == "f":
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), **tol)


def test_attention_runs_small_calls_on_the_calling_thread(monkeypatch):
    # a decode step (T = 1) is done before a helper thread wakes; the baby GPT's heads still split
    monkeypatch.setattr(attention_blas.numba, "get_num_threads", lambda: 2)
    assert attention_blas._head_groups(1, 12, 1, 1024, 64) == [(0, 1, 0, 12)]
    assert attention_blas._head_groups(12, 4, 64, 64, 32) == [(0, 6, 0, 4), (6, 12, 0, 4)]
