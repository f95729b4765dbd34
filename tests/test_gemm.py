"""The Numba GEMM (tinytensor/kernels/numba/gemm.py, micro-kernel in numba/simd.py) against the reference.

Values are checked against the float64 product with the worst-case bound of a length-K dot product in
the input dtype, ``(K + 2) * eps * (|A| @ |B|)`` elementwise: any lost, doubled or misplaced term of the
sum is far outside it.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinytensor.kernels import numpy_ref
from tinytensor.kernels.numba import gemm

ROOT = Path(__file__).resolve().parents[1]
FLOATS = (np.float32, np.float64)


def check(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """``out`` is ``a @ b`` (same dtype, shape and values as the reference, within the rounding bound)."""
    ref = numpy_ref.matmul(a, b)
    assert out.dtype == ref.dtype and out.shape == ref.shape
    exact = np.matmul(a.astype(np.float64), b.astype(np.float64))
    k = a.shape[-1]
    bound = (k + 2) * np.finfo(ref.dtype).eps * np.matmul(np.abs(a).astype(np.float64), np.abs(b).astype(np.float64))
    err = np.abs(out.astype(np.float64) - exact)
    assert np.all(err <= bound), f"max error {err.max()} (bound there {bound.flat[np.argmax(err - bound)]})"


def layout(x: np.ndarray, how: str) -> np.ndarray:
    """The same values as ``x`` in another memory layout: C, a transposed view (F order), or a strided slice."""
    if how == "T":
        return np.ascontiguousarray(np.swapaxes(x, -1, -2)).swapaxes(-1, -2)
    if how == "strided":
        big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
        big[..., ::2] = x
        return big[..., ::2]
    return x


@given(m=st.integers(1, 70), k=st.integers(1, 300), n=st.integers(1, 70), dtype=st.sampled_from(FLOATS),
       la=st.sampled_from(["C", "T", "strided"]), lb=st.sampled_from(["C", "T", "strided"]),
       seed=st.integers(0, 2**32 - 1))
def test_random_shapes_and_layouts(m, k, n, dtype, la, lb, seed):
    rng = np.random.default_rng(seed)
    a = layout(rng.standard_normal((m, k)).astype(dtype), la)
    b = layout(rng.standard_normal((k, n)).astype(dtype), lb)
    check(gemm.matmul(a, b), a, b)


# Around the register tile (MR = 12 rows; NR = 32 float32 / 16 float64 columns, a half-width last panel
# of NR/2 or fewer) and the K block (KC).
EDGES = [(11, 7, 31), (12, 256, 32), (13, 257, 33), (24, 255, 64), (25, 513, 65), (1, 300, 1), (1, 1, 100),
         (100, 1, 1), (12, 1, 16), (36, 129, 17), (25, 300, 48), (24, 40, 24)]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("m,k,n", EDGES)
def test_edge_tiles(dtype, m, k, n, rng):
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    check(gemm.matmul(a, b), a, b)


# Big enough for the parallel path (>= 4 MFLOP), with row blocks, column splits (M below 2 panels) and
# several K blocks; the baby GPT's products, including the transposed weight gradient.
PARALLEL = [((129, 257, 130), "C", "C"), ((5, 1000, 700), "C", "C"), ((1024, 64, 40), "C", "T"),
            ((768, 128, 384), "C", "C"), ((768, 512, 128), "C", "C"), ((768, 128, 65), "C", "C"),
            ((128, 768, 384), "T", "C"), ((200, 600, 300), "strided", "T")]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("mkn,la,lb", PARALLEL)
def test_parallel_shapes(dtype, mkn, la, lb, rng):
    m, k, n = mkn
    a = layout(rng.standard_normal((m, k)).astype(dtype), la)
    b = layout(rng.standard_normal((k, n)).astype(dtype), lb)
    check(gemm.matmul(a, b), a, b)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("mkn,la,lb", [(e, "C", "C") for e in EDGES] + [(e, "T", "C") for e in EDGES[:6]] + PARALLEL)
def test_a_read_in_place_equals_a_packed(monkeypatch, dtype, mkn, la, lb, rng):
    """A's row panels read in place (the default) and packed (BLIS) give the same bits: the kernel
    does the same FMAs in the same order; only where it reads A from differs (an edge panel is packed
    either way)."""
    m, k, n = mkn
    a = layout(rng.standard_normal((m, k)).astype(dtype), la)
    b = layout(rng.standard_normal((k, n)).astype(dtype), lb)
    monkeypatch.setattr(gemm, "_DIRECT_A", False)
    packed = gemm.matmul(a, b)
    monkeypatch.setattr(gemm, "_DIRECT_A", True)
    direct = gemm.matmul(a, b)
    check(direct, a, b)
    np.testing.assert_array_equal(direct, packed)


@pytest.mark.parametrize("dtype", FLOATS)
def test_batched_and_broadcast(dtype, rng):
    a = rng.standard_normal((3, 37, 50)).astype(dtype)
    b = rng.standard_normal((3, 50, 45)).astype(dtype)
    check(gemm.matmul(a, b), a, b)
    check(gemm.matmul(a, b[1]), a, b[1])  # [B, M, K] @ [K, N] folds into one 2-D GEMM
    a4 = rng.standard_normal((2, 1, 20, 30)).astype(dtype)
    check(gemm.matmul(a4, b[:, :30]), a4, b[:, :30])  # batch dims broadcast
    at = np.swapaxes(rng.standard_normal((3, 50, 37)).astype(dtype), 1, 2)  # batched transposed view
    check(gemm.matmul(at, b), at, b)


def test_empty_and_promotion(rng):
    assert np.array_equal(gemm.matmul(np.ones((3, 0), np.float32), np.ones((0, 4), np.float32)),
                          np.zeros((3, 4), np.float32))
    assert gemm.matmul(np.ones((0, 5)), np.ones((5, 4))).shape == (0, 4)
    a = rng.standard_normal((9, 8)).astype(np.float32)
    b = rng.standard_normal((8, 7))
    out = gemm.matmul(a, b)
    assert out.dtype == np.float64
    check(out, a.astype(np.float64), b)


def test_nan_and_inf_propagate():
    a = np.ones((13, 5), np.float32)
    b = np.ones((5, 33), np.float32)
    a[2, 3] = np.nan
    b[1, 30] = np.inf
    out = gemm.matmul(a, b)
    assert np.isnan(out[2]).all()
    assert np.isinf(out[[0, 1, 3, 12], 30]).all() and np.isnan(out[2, 30])
    assert np.isfinite(np.delete(np.delete(out, 2, 0), 30, 1)).all()


def _run(code: str, **env) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    assert r.returncode == 0, r.stderr
    return r.stdout


_SMALL = ("import numpy as np; from tinytensor.kernels.numba import gemm; r = np.random.default_rng(0); "
          "a = r.standard_normal((13, 40)).astype(np.float32); b = r.standard_normal((40, 35)).astype(np.float32); "
          "e = np.abs(gemm.matmul(a, b) - a.astype(np.float64) @ b).max(); ")


def test_runs_without_jit():
    """``NUMBA_DISABLE_JIT=1``: the same drivers run as Python with the NumPy micro-kernel twin."""
    out = _run(_SMALL + "print(e, gemm.matmul(a.T.copy().T, b[:, ::2]).shape)", NUMBA_DISABLE_JIT="1")
    err, shape = out.split(maxsplit=1)
    assert float(err) < 1e-4 and shape.strip() == "(13, 18)"


def test_disk_cache_with_intrinsic(tmp_path):
    """The ``@intrinsic`` micro-kernel compiles into cacheable functions: a second process loads the driver
    (and with it the inlined kernel) from the disk cache instead of compiling it."""
    code = _SMALL + "print(e, sum(gemm._gemm.stats.cache_hits.values()), sum(gemm._gemm.stats.cache_misses.values()))"
    first = _run(code, NUMBA_CACHE_DIR=str(tmp_path)).split()
    second = _run(code, NUMBA_CACHE_DIR=str(tmp_path)).split()
    assert float(first[0]) < 1e-4 and float(second[0]) < 1e-4
    assert int(first[1]) == 0 and int(first[2]) >= 1  # compiled and written
    assert int(second[1]) >= 1 and int(second[2]) == 0  # loaded, not recompiled


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("a_shape", [(1, 96), (1, 1, 96)])
def test_one_row_is_a_gemv_not_a_packed_gemm(monkeypatch, dtype, a_shape, rng):
    # a decode step multiplies one row by every weight: packing all of b for it cost more than the product
    a = rng.standard_normal(a_shape).astype(dtype)
    b = layout(rng.standard_normal((96, 130)).astype(dtype), "T")       # a Linear's weight.T
    expected_ref = numpy_ref.matmul(a, b)

    def no_gemm(*args):
        raise AssertionError("the packed GEMM ran for a single row")
    monkeypatch.setattr(gemm, "_gemm_batched", no_gemm)
    out = gemm.matmul(a, b)
    assert out.shape == expected_ref.shape
    check(out.reshape(1, 130), a.reshape(1, 96), b)
    with pytest.raises(AssertionError, match="packed GEMM"):
        gemm.matmul(np.concatenate([a.reshape(1, 96)] * 2), b)         # two rows: still the Numba GEMM


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("parallel", [False, True])
@given(k=st.integers(1, 70), n=st.integers(1, 70), x_layout=st.sampled_from(["C", "strided"]))
def test_gemv_of_a_transposed_weight(dtype, parallel, k, n, x_layout):
    """``x [1, K] @ W.T`` (W C-contiguous) is the row-dot GEMV, serial or split over the rows of W, and
    equals the reference within the dot-product bound; a non-finite weight stays in its own output."""
    from tinytensor.kernels.numba import _common
    g = np.random.default_rng(k * 100 + n)
    w = g.standard_normal((n, k)).astype(dtype)
    x = g.standard_normal((1, 2 * k)).astype(dtype)
    x = x[:, ::2] if x_layout == "strided" else x[:, :k]
    calls = []
    real = gemm._gemv_t
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_common, "_PAR_MIN", 1 if parallel else 1 << 30)
        mp.setattr(gemm, "_gemv_t", lambda *args: calls.append(1) or real(*args))
        check(gemm.matmul(x, w.T), x, w.T)
        assert calls == [1]
        w[n // 2, 0] = np.inf
        out = gemm.matmul(x, w.T)
    assert not np.isfinite(out[0, n // 2]) and np.isfinite(np.delete(out[0], n // 2)).all()


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="the pairing needs two Numba threads")
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n,out,inn", [(1920, 64, 64), (37, 13, 70), (1, 5, 3), (300, 65, 128), (1024, 256, 256)])
def test_linear_grads_pair_equals_two_products(monkeypatch, dtype, n, out, inn, rng):
    """A Linear's backward ``(g @ w, g.T @ x)`` run as one launch of two whole products (one per thread)
    gives the bits of the two separate products; above ``_PAIR_MAX`` it is the two separate products."""
    g = rng.standard_normal((n, out)).astype(dtype)
    w = rng.standard_normal((out, inn)).astype(dtype)
    x = rng.standard_normal((n, inn)).astype(dtype)
    calls = []
    real = gemm._gemm_pair
    monkeypatch.setattr(gemm, "_gemm_pair", lambda *a: calls.append(1) or real(*a))
    before = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        dx, dw = gemm.linear_grads(g, w, x)
    finally:
        numba.set_num_threads(before)
    assert len(calls) == (1 if 1 < n and n * out * inn <= gemm._PAIR_MAX else 0)
    np.testing.assert_array_equal(dx, gemm.matmul(g, w))
    np.testing.assert_array_equal(dw, gemm.matmul(g.T, x))
    check(dx, g, w)
    check(dw, g.T, x)


def test_auto_hands_large_products_to_blas_and_small_ones_to_the_numba_gemm(monkeypatch, rng):
    """``matmul_auto`` / ``linear_grads_auto`` (the auto backend's, when it picks the Numba GEMM): from
    ``_BLAS_MIN`` multiply-adds on, exactly ``np.matmul``'s result (OpenBLAS); below, exactly the GEMM's."""
    from tinytensor import backend
    x = rng.standard_normal((96, 40)).astype(np.float32)          # 96 x 40 x 50 = 192,000 multiply-adds
    w = rng.standard_normal((50, 40)).astype(np.float32)
    g = rng.standard_normal((96, 50)).astype(np.float32)
    monkeypatch.setattr(gemm, "_BLAS_MIN", 192_000)
    np.testing.assert_array_equal(gemm.matmul_auto(x, w.T), np.matmul(x, w.T))
    np.testing.assert_array_equal(gemm.matmul_auto(x.reshape(2, 48, 40), w.T), np.matmul(x, w.T).reshape(2, 48, 50))
    for got, want in zip(gemm.linear_grads_auto(g, w, x), (np.matmul(g, w), np.matmul(g.T, x))):
        np.testing.assert_array_equal(got, want)
    monkeypatch.setattr(gemm, "_BLAS_MIN", 192_001)
    np.testing.assert_array_equal(gemm.matmul_auto(x, w.T), gemm.matmul(x, w.T))
    for got, want in zip(gemm.linear_grads_auto(g, w, x), gemm.linear_grads(g, w, x)):
        np.testing.assert_array_equal(got, want)
    check(gemm.matmul_auto(x, w.T), x, w.T)
    assert not gemm._large(x.astype(np.int64), w.T.astype(np.int64))    # integers: never routed
    monkeypatch.setattr(gemm, "_BLAS_MIN", 1)
    np.testing.assert_array_equal(gemm.matmul_auto(x[:1], w.T), gemm.matmul(x[:1], w.T))   # one row: the GEMV
    if backend.auto_choice().get("matmul", "numba") == "numba":          # the auto table routes through them
        monkeypatch.setattr(backend, "_cache", {})
        monkeypatch.setattr(backend, "_current", "auto")
        assert backend.kernels().matmul is gemm.matmul_auto and backend.kernels().linear_grads is gemm.linear_grads_auto
