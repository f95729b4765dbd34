"""Numba embedding backward: a race-free scatter-add over column slices."""
from __future__ import annotations

import numpy as np

from ._common import _PAR, _chunked, _float_pair, _jit, _launch, _nchunks
from .. import numpy_ref


@_jit
def _emb_bwd_cols(ids, dout, dw, c0, c1):
    """``dw[ids[n], c0:c1] += dout[n, c0:c1]`` for every n in order: rows are added in the same
    order as ``np.add.at``, so the result is bit-identical to the reference."""
    for n in range(ids.shape[0]):
        dst = dw[ids[n], c0:c1]  # slices indexed from 0: no wraparound fix-up, vector adds
        src = dout[n, c0:c1]
        for j in range(dst.shape[0]):
            dst[j] += src[j]


@_jit
def _emb_bwd_slices(ids, dout, dw, nchunks, s0, s1):
    """Column slices ``s0..s1`` of ``nchunks``: slice boundaries are multiples of 16 (one cache line of
    float32), so two threads never write the same element, nor the same cache line, whatever the ids."""
    C = dout.shape[1]
    for c in range(s0, s1):
        c0 = min(C, (c * C // nchunks + 15) // 16 * 16)
        c1 = C if c == nchunks - 1 else min(C, ((c + 1) * C // nchunks + 15) // 16 * 16)
        _emb_bwd_cols(ids, dout, dw, c0, c1)


@_jit(**_PAR)
def _emb_bwd_2d(ids, dout, dw, nslices, nchunks):
    """Race-free scatter-add: one column slice per chunk (``_emb_bwd_slices``; ``nslices == nchunks``)."""
    _chunked(_emb_bwd_slices, nchunks, nchunks, (ids, dout, dw, nslices))


def embedding_backward(ids: np.ndarray, dout: np.ndarray, vocab_size: int) -> np.ndarray:
    """Scatter-add rows of ``dout [N, C]`` into ``dW [vocab_size, C]`` at ``ids [N]``; repeats accumulate.

    Ids must be in ``[0, vocab_size)`` (a precondition, not checked here: see ``spec``).
    """
    C = dout.shape[-1]
    ids1 = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
    d2 = np.ascontiguousarray(dout).reshape(-1, C)
    if d2.shape[0] != ids1.shape[0]:
        raise ValueError(f"embedding_backward: {ids1.shape[0]} ids for {d2.shape[0]} rows of dout")
    if not _float_pair(d2):
        return numpy_ref.embedding_backward(ids1, d2, vocab_size)
    dw = np.zeros((vocab_size, C), dtype=d2.dtype)
    nch = _nchunks(d2.size) if C >= 32 else 1
    _launch(_emb_bwd_slices, _emb_bwd_2d, nch, nch, ids1, d2, dw, nch)
    return dw


