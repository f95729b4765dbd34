"""Numba AdamW: one fused pass over parameters, gradients and both moments."""
from __future__ import annotations

import numpy as np

from ._common import _FLOATS, _PAR, _chunked, _jit, _launch, _nchunks
from .. import numpy_ref


@_jit
def _adamw_span(p, g, m, v, decay, b1, c1, b2, c2, step, bc2, eps, lo, hi):
    """One fused pass over ``lo..hi``: 4 reads (p, g, m, v), 3 writes, no temporaries.

    The chunk is sliced first: indices then start at 0, which LLVM can prove non-negative, so the
    loop is vectorised (indexing ``p[i]`` for ``i`` in ``range(lo, hi)`` keeps a wraparound check
    per element and runs scalar, several times slower).
    """
    ps = p[lo:hi]
    gs = g[lo:hi]
    ms = m[lo:hi]
    vs = v[lo:hi]
    for i in range(ps.shape[0]):
        gi = gs[i]
        mi = ms[i] * b1 + c1 * gi
        vi = vs[i] * b2 + c2 * (gi * gi)
        ms[i] = mi
        vs[i] = vi
        ps[i] = ps[i] * decay - step * mi / (np.sqrt(vi / bc2) + eps)


@_jit(**_PAR)
def _adamw_1d(p, g, m, v, decay, b1, c1, b2, c2, step, bc2, eps, nchunks):
    _chunked(_adamw_span, p.shape[0], nchunks, (p, g, m, v, decay, b1, c1, b2, c2, step, bc2, eps))


def adamw_step(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float,
               betas: tuple[float, float], eps: float, weight_decay: float, t: int) -> None:
    """One AdamW step updating ``p``, ``m``, ``v`` in place (see :func:`numpy_ref.adamw_step`).

    The math runs in the parameters' dtype (the scalars are cast to it, as NumPy's weak scalars are
    in the reference). Non-contiguous or mixed-dtype state falls back to the reference.
    """
    arrays = (p, g, m, v)
    if (not all(a.flags.c_contiguous and a.shape == p.shape and a.dtype == p.dtype for a in arrays)
            or p.dtype not in _FLOATS or not (p.flags.writeable and m.flags.writeable and v.flags.writeable)):
        return numpy_ref.adamw_step(p, g, m, v, lr, betas, eps, weight_decay, t)
    b1, b2 = betas
    ty = p.dtype.type
    bc1 = 1.0 - b1 ** t
    bc2 = 1.0 - b2 ** t
    _launch(_adamw_span, _adamw_1d, p.size, _nchunks(3 * p.size), p.reshape(-1), g.reshape(-1), m.reshape(-1),
            v.reshape(-1), ty(1.0 - lr * weight_decay), ty(b1), ty(1.0 - b1), ty(b2), ty(1.0 - b2), ty(lr / bc1),
            ty(bc2), ty(eps))


