"""Numba GEMM: Goto/BLIS blocking with a 4 x 3 dot-product register tile (``matmul``)."""
from __future__ import annotations

import numba
import numpy as np

from . import _common as c
from ._common import _FLOATS, _PAR, _as, _chunked, _float_pair, _jit, _nchunks, _parallel, _quiet, _rows
from .. import numpy_ref


# Micro-tile: MR rows of A times NR rows of B^T, i.e. an MR x NR block of C as MR*NR dot products
# along K. LLVM vectorises the K loop (8 float32 lanes) with one register accumulator per dot:
# 12 ymm accumulators + 4 A loads + 3 B loads per 12 FMAs, which keeps both FMA ports busy.
# (The BLIS outer-product micro-kernel needs SIMD broadcast code that Numba/LLVM does not emit from
# scalar Python; measured 4-23 GFLOP/s against 50-81 for this one, single core.)
_MR, _NR = 4, 3
_KC = {np.dtype(np.float32): 1024, np.dtype(np.float64): 512}  # K block: A and B micro-panels in L1/L2
_NC = 96  # columns of B^T per block, kept in L2 while all row tiles of the block stream past it


@_jit(inline="always")
def _micro_4x3(a0, a1, a2, a3, b0, b1, b2, c, oc, ldc, mr, nr, zero):
    """``C[4 x 3 tile at flat offset oc] += [a0; a1; a2; a3] . [b0; b1; b2]^T`` for k-long row slices.

    Rows past the matrix edge are passed as repeats of the last valid row, so the loop is always
    the full 4 x 3; only the ``mr x nr`` valid results are stored. The slices start at 0 so that
    LLVM sees non-negative indices (no wraparound fix-up) and emits contiguous vector loads.
    """
    c00 = c01 = c02 = c10 = c11 = c12 = zero
    c20 = c21 = c22 = c30 = c31 = c32 = zero
    for p in range(a0.shape[0]):
        y0 = b0[p]
        y1 = b1[p]
        y2 = b2[p]
        x = a0[p]
        c00 += x * y0
        c01 += x * y1
        c02 += x * y2
        x = a1[p]
        c10 += x * y0
        c11 += x * y1
        c12 += x * y2
        x = a2[p]
        c20 += x * y0
        c21 += x * y1
        c22 += x * y2
        x = a3[p]
        c30 += x * y0
        c31 += x * y1
        c32 += x * y2
    c[oc] += c00
    if nr > 1:
        c[oc + 1] += c01
    if nr > 2:
        c[oc + 2] += c02
    if mr > 1:
        oc += ldc
        c[oc] += c10
        if nr > 1:
            c[oc + 1] += c11
        if nr > 2:
            c[oc + 2] += c12
    if mr > 2:
        oc += ldc
        c[oc] += c20
        if nr > 1:
            c[oc + 1] += c21
        if nr > 2:
            c[oc + 2] += c22
    if mr > 3:
        oc += ldc
        c[oc] += c30
        if nr > 1:
            c[oc + 1] += c31
        if nr > 2:
            c[oc + 2] += c32


@_jit
def _gemm_block(a, bt, c, M, N, K, kcb, ncb, bidx, i_lo, i_hi, j_lo, j_hi):
    """One task: ``C[b, i_lo:i_hi, j_lo:j_hi] = A[b] @ B[b]`` with A ``[M, K]`` and B^T ``[N, K]`` flat.

    Loop nest (Goto/BLIS order, dot-product micro-kernel)::

        for jc in NC blocks of columns          # B^T block [NC, KC] stays in L2
          for pc in KC blocks of K
            for ir in MR-row tiles                # A micro-panel [MR, KC] stays in L1 ...
              for jr in NR-column tiles of jc     # ... while the B^T micro-panels stream past it
                micro_4x3(KC)
    """
    zero = c.dtype.type(0)
    ao = bidx * M * K
    bo = bidx * N * K
    co = bidx * M * N
    for jc in range(j_lo, j_hi, ncb):
        jc_hi = min(jc + ncb, j_hi)
        for pc in range(0, K, kcb):
            kc = min(kcb, K - pc)
            for i0 in range(i_lo, i_hi, _MR):
                mr = min(_MR, i_hi - i0)
                last = i0 + mr - 1
                o = ao + i0 * K + pc
                a0 = a[o:o + kc]
                o = ao + min(i0 + 1, last) * K + pc
                a1 = a[o:o + kc]
                o = ao + min(i0 + 2, last) * K + pc
                a2 = a[o:o + kc]
                o = ao + min(i0 + 3, last) * K + pc
                a3 = a[o:o + kc]
                for j0 in range(jc, jc_hi, _NR):
                    nr = min(_NR, jc_hi - j0)
                    lastj = j0 + nr - 1
                    o = bo + j0 * K + pc
                    b0 = bt[o:o + kc]
                    o = bo + min(j0 + 1, lastj) * K + pc
                    b1 = bt[o:o + kc]
                    o = bo + min(j0 + 2, lastj) * K + pc
                    b2 = bt[o:o + kc]
                    _micro_4x3(a0, a1, a2, a3, b0, b1, b2, c, co + i0 * N + j0, N, mr, nr, zero)


@_jit
def _gemm_tasks(a, bt, c, M, N, K, mb, nb, kcb, ncb, t0, t1):
    """Tasks ``t0..t1`` of the (batch, row block, column block) grid, each one :func:`_gemm_block`."""
    nblocks = (N + nb - 1) // nb
    per_batch = ((M + mb - 1) // mb) * nblocks
    for t in range(t0, t1):
        bidx = t // per_batch
        r = t % per_batch
        i_lo = (r // nblocks) * mb
        j_lo = (r % nblocks) * nb
        _gemm_block(a, bt, c, M, N, K, kcb, ncb, bidx, i_lo, min(i_lo + mb, M), j_lo, min(j_lo + nb, N))


@_jit(**_PAR)
def _gemm(a, bt, c, nbatch, M, N, K, mb, nb, kcb, ncb, parallel):
    """Run every (batch, row block, column block) task; ``prange`` over tasks when ``parallel``."""
    ntasks = nbatch * ((M + mb - 1) // mb) * ((N + nb - 1) // nb)
    _chunked(_gemm_tasks, ntasks, ntasks if parallel else 1, (a, bt, c, M, N, K, mb, nb, kcb, ncb))


@_jit
def _transpose_tiles(b, bt, t0, t1):
    """Tiles ``t0..t1`` of ``bt[i] = b[i].T``: tile t is 32 rows of K of one batch, in 32 x 32 blocks."""
    nb, K, N = b.shape
    kt = (K + 31) // 32
    for t in range(t0, t1):
        bi = t // kt
        k0 = (t % kt) * 32
        for n0 in range(0, N, 32):
            for n in range(n0, min(n0 + 32, N)):
                for k in range(k0, min(k0 + 32, K)):
                    bt[bi, n, k] = b[bi, k, n]


@_jit(**_PAR)
def _transpose_pack(b, bt, parallel):
    """``bt[i] = b[i].T`` for ``b [nb, K, N]`` into ``bt [nb, N, K]``, in 32x32 tiles (both sides stay in L1)."""
    ntiles = b.shape[0] * ((b.shape[1] + 31) // 32)
    _chunked(_transpose_tiles, ntiles, ntiles if parallel else 1, (b, bt))


def _gemm_batched(a3: np.ndarray, b3: np.ndarray) -> np.ndarray:
    """``a3 [nb, M, K] @ b3 [nb, K, N]`` for one float dtype, via packed B^T and the task grid."""
    nbatch, M, K = a3.shape
    N = b3.shape[2]
    dt = a3.dtype
    c = np.zeros((nbatch, M, N), dtype=dt)
    if nbatch == 0 or M == 0 or N == 0 or K == 0:
        return c
    flops = 2 * nbatch * M * N * K
    threads = numba.get_num_threads()
    parallel = threads > 1 and flops >= 4_000_000
    a3 = np.ascontiguousarray(a3)
    bt_view = np.swapaxes(b3, 1, 2)
    if bt_view.flags.c_contiguous:
        bt = bt_view  # B is already the transpose of a contiguous array (x @ W.T, q @ k^T): no packing
    else:
        bt = np.empty((nbatch, N, K), dtype=dt)
        _transpose_pack(np.ascontiguousarray(b3), bt, parallel and _parallel(K * N * nbatch))
    # Task grid: whole matrices per task when the batch alone feeds every thread, otherwise split the
    # larger of M and N into about 2 tasks per thread (multiples of the micro-tile).
    mb, nb = M, N
    if parallel and nbatch < 2 * threads:
        parts = -(-2 * threads // nbatch)
        if M >= N:
            mb = -(-M // parts)
            mb = -(-mb // _MR) * _MR
        else:
            nb = -(-N // parts)
            nb = -(-nb // _NR) * _NR
    _gemm(a3.reshape(-1), bt.reshape(-1), c.reshape(-1), nbatch, M, N, K, mb, nb, _KC[dt], _NC, parallel)
    return c


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for 2-D ``[M, K] @ [K, N]`` or batched ``[..., M, K] @ [..., K, N]``; NumPy semantics.

    float32/float64 go through the Numba GEMM (``_gemm``); other dtypes and 1-D operands through
    ``np.matmul``. A batched ``a`` times a 2-D ``b`` is folded into one 2-D GEMM.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    dt = np.result_type(a, b)
    if dt not in _FLOATS or a.ndim < 2 or b.ndim < 2:
        return np.matmul(a, b)
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align (K {a.shape[-1]} != {b.shape[-2]})")
    a = a.astype(dt, copy=False)
    b = b.astype(dt, copy=False)
    M, K = a.shape[-2:]
    N = b.shape[-1]
    if b.ndim == 2:
        rows = int(np.prod(a.shape[:-1], dtype=np.int64))
        out = _gemm_batched(a.reshape(1, rows, K), b[None])
        return out.reshape(a.shape[:-1] + (N,))
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    nbatch = int(np.prod(batch, dtype=np.int64))
    a3 = np.broadcast_to(a, batch + (M, K)).reshape(nbatch, M, K)
    b3 = np.broadcast_to(b, batch + (K, N)).reshape(nbatch, K, N)
    return _gemm_batched(a3, b3).reshape(batch + (M, N))


