"""Numba elementwise kernels: GELU (forward, backward) and the float64 ``sum_squares``."""
from __future__ import annotations

import numpy as np

from . import _common as c
from ._common import _FLOATS, _PAR, _as, _chunked, _float_pair, _jit, _launch, _nchunks, _parallel, _quiet, _rows
from .. import numpy_ref
from ._common import _tanh

_LOG2E = 1.4426950408889634
_GELU_C = 0.7978845608028654  # sqrt(2 / pi)
_GELU_A = 0.044715


@_jit
def _gelu_span(x, y, lo, hi):
    """``y = 0.5 x (1 + tanh(c (x + a x^3)))`` elementwise in x's dtype: one 8-lane pass (float32)."""
    half = x.dtype.type(0.5)
    one = x.dtype.type(1.0)
    c = x.dtype.type(_GELU_C)
    a = x.dtype.type(_GELU_A)
    xs = x[lo:hi]  # subtle: index slices from 0 so LLVM sees non-negative indices and vectorises
    ys = y[lo:hi]
    for i in range(xs.shape[0]):
        v = xs[i]
        ys[i] = half * v * (one + _tanh(c * (v + a * v * v * v)))


@_jit
def _gelu_bwd_span(x, dy, dx, lo, hi):
    """``dx = dy * (0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2))``, ``t = tanh(c (x + a x^3))``."""
    half = x.dtype.type(0.5)
    one = x.dtype.type(1.0)
    c = x.dtype.type(_GELU_C)
    a = x.dtype.type(_GELU_A)
    a3 = x.dtype.type(3 * _GELU_A)
    xs = x[lo:hi]
    dys = dy[lo:hi]
    dxs = dx[lo:hi]
    for i in range(xs.shape[0]):
        v = xs[i]
        t = _tanh(c * (v + a * v * v * v))
        d = half * (one + t) + half * v * (one - t * t) * c * (one + a3 * v * v)
        dxs[i] = dys[i] * d


@_jit(**_PAR)
def _gelu_1d(x, y, nchunks):
    _chunked(_gelu_span, x.shape[0], nchunks, (x, y))


@_jit(**_PAR)
def _gelu_bwd_1d(x, dy, dx, nchunks):
    _chunked(_gelu_bwd_span, x.shape[0], nchunks, (x, dy, dx))


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation (GPT-2's ``gelu_new``), elementwise, x's dtype."""
    if not _float_pair(x) or x.size == 0:
        return numpy_ref.gelu(x)
    x1 = np.ascontiguousarray(x).reshape(-1)
    y = np.empty_like(x1)
    _launch(_gelu_span, _gelu_1d, x1.size, _nchunks(x1.size), x1, y)
    return y.reshape(x.shape)


def gelu_backward(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """``dy * gelu'(x)`` (tanh approximation), x's dtype."""
    if not _float_pair(x, dy) or x.size == 0:
        return numpy_ref.gelu_backward(x, dy)
    x1 = np.ascontiguousarray(x).reshape(-1)
    dy1 = _as(dy, x.shape, x.dtype).reshape(-1)
    dx = np.empty_like(x1)
    _launch(_gelu_bwd_span, _gelu_bwd_1d, x1.size, _nchunks(x1.size), x1, dy1, dx)
    return dx.reshape(x.shape)


# ================================================================================= gradient norm
@_jit
def _sum_squares_1d(x):
    """One pass, float64 accumulator (``reassoc`` lets LLVM keep several partial sums in SIMD lanes)."""
    acc = np.float64(0.0)
    for i in range(x.shape[0]):
        xi = np.float64(x[i])
        acc += xi * xi
    return acc


def sum_squares(x: np.ndarray) -> float:
    """``sum(x**2)`` in float64 without a float64 copy of ``x`` (see :func:`numpy_ref.sum_squares`)."""
    if x.dtype not in _FLOATS or not x.flags.c_contiguous:
        return numpy_ref.sum_squares(x)
    return float(_sum_squares_1d(x.reshape(-1)))


