"""Numba hashed dropout: the SplitMix64 keep-mask of ``spec.dropout_hash`` without a mask array."""
from __future__ import annotations

import numpy as np

from ._common import _FLOATS, _PAR, _chunked, _jit, _launch, _nchunks
from .. import numpy_ref
from .. import spec

_U1, _U2, _U3 = spec.SPLITMIX_M1, spec.SPLITMIX_M2, spec.SPLITMIX_M3  # module globals: Numba freezes them
_S30, _S27, _S31 = spec.SPLITMIX_SHIFTS
_S40 = np.uint64(64 - spec.DROPOUT_BITS)


@_jit(inline="always")
def _u24(seed, idx):
    """Top 24 bits of SplitMix64's finaliser of ``idx * golden + seed`` (see ``spec.SPLITMIX_M1``)."""
    z = idx * _U1 + seed
    z = (z ^ (z >> _S30)) * _U2
    z = (z ^ (z >> _S27)) * _U3
    z = z ^ (z >> _S31)
    return z >> _S40


@_jit
def _keep_1d(seed, idx, thresh, out):
    for n in range(idx.shape[0]):
        out[n] = _u24(seed, idx[n]) >= thresh


def _dropout_args(dropout_p: float, seed: int) -> tuple[np.uint64, np.uint64]:
    """The seed as uint64 and the keep threshold (``0 <= dropout_p < 1`` is a precondition: spec)."""
    return np.uint64(seed % 2**64), spec.dropout_threshold(dropout_p)


def dropout_keep(seed: int, idx: np.ndarray, p: float) -> np.ndarray:
    """Compiled twin of :func:`numpy_ref.dropout_keep` (the same bits, element for element)."""
    sd, thresh = _dropout_args(p, seed)
    idx = np.ascontiguousarray(idx, dtype=np.uint64)
    out = np.empty(idx.shape, dtype=np.bool_)
    _keep_1d(sd, idx.reshape(-1), thresh, out.reshape(-1))
    return out


@_jit
def _dropout_span(x, y, seed, thresh, zscale, lo, hi):
    for n in range(lo, hi):
        y[n] = x[n] * zscale if _u24(seed, np.uint64(n)) >= thresh else x[n] * 0


@_jit(**_PAR)
def _dropout_1d(x, y, seed, thresh, zscale, nchunks):
    _chunked(_dropout_span, x.shape[0], nchunks, (x, y, seed, thresh, zscale))


def dropout(x: np.ndarray, p: float, seed: int) -> np.ndarray:
    """Compiled twin of :func:`numpy_ref.dropout`: one pass, no mask array, no random-number state."""
    sd, thresh = _dropout_args(p, seed)
    if x.dtype not in _FLOATS:
        return numpy_ref.dropout(x, p, seed)
    xc = np.ascontiguousarray(x)
    y = np.empty_like(xc)
    _launch(_dropout_span, _dropout_1d, xc.size, _nchunks(x.size), xc.reshape(-1), y.reshape(-1), sd, thresh,
            x.dtype.type(1.0 / (1.0 - p)))
    return y.reshape(x.shape)  # ascontiguousarray makes a 0-d input 1-d


