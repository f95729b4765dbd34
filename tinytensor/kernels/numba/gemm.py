"""Numba GEMM: BLIS-style packed panels and a 512-bit outer-product micro-kernel (``matmul``).

The micro-kernel (:mod:`.simd`) keeps an ``MR x NR`` tile of C in vector registers and, per ``k``,
multiplies one row of a packed B panel (``NR`` contiguous values, ``NR / lanes`` vector loads) by
``MR`` broadcast values of a packed A panel. Everything around it is plain Numba: packing and the
cache-blocked loop nest.
"""
from __future__ import annotations

import numba
import numpy as np

from ._common import _FLOATS, _PAR, _chunked, _jit
from .simd import load, make_ukernel, store

# Register tile (MR rows, NV vectors of 512 bits): 12 x 32 float32 is 24 zmm accumulators plus two
# B vectors and one broadcast, of the 32 registers; per k it does 24 FMAs for 2 loads + 12 broadcasts.
_GEOMETRY = {np.dtype(np.float32): (12, 2), np.dtype(np.float64): (12, 2)}
_NR = {np.dtype(np.float32): 32, np.dtype(np.float64): 16}
_ukernel = make_ukernel(_GEOMETRY)
# K block: a B micro-panel (KC x NR) stays in L1 while the A micro-panels of a row block stream past.
_KC = {np.dtype(np.float32): 256, np.dtype(np.float64): 128}
_MC = 192  # rows per task at most: the A block (MC x KC) stays in L2 across the task's B panels
_NC = 256  # columns per task at most: the task's C block and B block stay in L2 next to it


@_jit
def _pack_b(b, tb, bp, N, K, nr, kcb, t0, t1):
    """B panels ``t0..t1`` of the (batch, NR-column panel) grid into ``bp``: for each K block ``pc``
    of depth ``kc``, panel ``j0`` is the contiguous ``kc x NR`` block
    ``bp[bi, pc*Np + j0*kc + p*NR + j] = B[pc + p, j0 + j]``, zero past column ``N`` (``Np`` = N
    rounded up to NR), so that the micro-kernel reads B with unit stride.

    ``b[bi]`` is the flat ``B [K, N]`` (``tb`` False) or the flat ``B^T [N, K]`` (``tb`` True: ``x @ W.T``);
    either way the source is read along its rows.
    """
    npan = (N + nr - 1) // nr
    np_ = npan * nr
    zero = bp.dtype.type(0)
    for bi in range(t0 // npan, (t1 - 1) // npan + 1):
        src = b[bi]
        dst = bp[bi]
        lo = max(t0 - bi * npan, 0) * nr
        hi = min(min(t1 - bi * npan, npan) * nr, N)
        for pc in range(0, K, kcb):
            kc = min(kcb, K - pc)
            if tb:
                for j in range(lo, hi):
                    s = j * K + pc
                    d = pc * np_ + (j - j % nr) * kc + j % nr
                    for p in range(kc):
                        store(dst, d + p * nr, load(src, s + p))
            else:
                for p in range(kc):
                    s = (pc + p) * N
                    for j0 in range(lo, hi, nr):
                        d = pc * np_ + j0 * kc + p * nr - j0
                        for j in range(j0, min(j0 + nr, hi)):
                            store(dst, d + j, load(src, s + j))
            if hi == N:  # zero the padding of the last panel
                j0 = (N - 1) // nr * nr
                for p in range(kc):
                    for j in range(N - j0, nr):
                        store(dst, pc * np_ + j0 * kc + p * nr + j, zero)


@_jit
def _pack_a(ab, ta, abuf, M, K, mr, pc, kc, ic, i_hi):
    """Rows ``ic..i_hi`` and K block ``pc..pc+kc`` of A into ``abuf`` as MR-row, k-major panels:
    ``abuf[(i0 - ic)*kc + p*MR + i] = A[i0 + i, pc + p]``, zero past row ``M``. ``ab`` is the flat
    ``A [M, K]`` (``ta`` False) or the flat ``A^T [K, M]`` (``ta`` True: ``x.T @ dy``)."""
    zero = abuf.dtype.type(0)
    for i0 in range(ic, i_hi, mr):
        rows = min(mr, M - i0)
        base = (i0 - ic) * kc
        if ta:
            for p in range(kc):
                s = (pc + p) * M + i0
                for i in range(rows):
                    store(abuf, base + p * mr + i, load(ab, s + i))
        else:
            for i in range(rows):
                s = (i0 + i) * K + pc
                for p in range(kc):
                    store(abuf, base + p * mr + i, load(ab, s + p))
        for i in range(rows, mr):
            for p in range(kc):
                store(abuf, base + p * mr + i, zero)


@_jit
def _compute_tasks(a, ta, bp, c, M, N, K, mr, nr, kcb, mcb, ncb, t0, t1):
    """C blocks ``t0..t1`` of the (batch, column block, row block) grid.

    Loop nest of one block (rows ``ic..``, columns ``jc..``)::

        for pc in K blocks (kc <= KC)             # '=' into C on the first, '+=' after
          pack A[ic:ic+MC, pc:pc+kc] -> A~        # MC x kc, stays in L2 for the whole block
          for j0 in NR-column panels of the block  # B micro-panel [kc x NR] stays in L1 ...
            for i0 in MR-row panels of the block   # ... while the A micro-panels stream from L2
              ukernel(A~[i0], B~[pc, j0], C[i0:i0+MR, j0:j0+NR])

    Edge tiles (fewer than MR rows or NR columns left) go through the scratch ``tile``.
    """
    np_ = (N + nr - 1) // nr * nr
    nic = (M + mcb - 1) // mcb
    njc = (N + ncb - 1) // ncb
    tile = np.empty(mr * nr, dtype=c.dtype)
    abuf = np.empty(mcb * kcb, dtype=c.dtype)
    for t in range(t0, t1):
        bi = t // (nic * njc)
        r = t % (nic * njc)
        jc = (r // nic) * ncb
        ic = (r % nic) * mcb
        i_hi = min(ic + mcb, M)
        j_hi = min(jc + ncb, N)
        bb = bp[bi]
        cb = c[bi]
        for pc in range(0, K, kcb):
            kc = min(kcb, K - pc)
            first = pc == 0
            _pack_a(a[bi], ta, abuf, M, K, mr, pc, kc, ic, i_hi)
            for j0 in range(jc, j_hi, nr):
                nn = min(nr, N - j0)
                bo = pc * np_ + j0 * kc
                for i0 in range(ic, i_hi, mr):
                    ao = (i0 - ic) * kc
                    mm = min(mr, M - i0)
                    if mm == mr and nn == nr:
                        _ukernel(abuf, ao, 1, mr, bb, bo, kc, cb, i0 * N + j0, N, first)
                        continue
                    _ukernel(abuf, ao, 1, mr, bb, bo, kc, tile, 0, nr, True)
                    for i in range(mm):
                        co = (i0 + i) * N + j0
                        for j in range(nn):
                            if first:
                                store(cb, co + j, load(tile, i * nr + j))
                            else:
                                store(cb, co + j, load(cb, co + j) + load(tile, i * nr + j))


@_jit(**_PAR)
def _gemm(a, ta, b, tb, bp, c, M, N, K, mr, nr, kcb, mcb, ncb, nchunks):
    """Pack B (one task per panel), then compute the C blocks; both over ``nchunks`` chunks."""
    nbatch = c.shape[0]
    npack = nbatch * ((N + nr - 1) // nr)
    _chunked(_pack_b, npack, min(nchunks, npack), (b, tb, bp, N, K, nr, kcb))
    ntasks = nbatch * ((M + mcb - 1) // mcb) * ((N + ncb - 1) // ncb)
    _chunked(_compute_tasks, ntasks, nchunks, (a, ta, bp, c, M, N, K, mr, nr, kcb, mcb, ncb))


def _operand(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(x3, trans)``: ``x [nb, R, K]`` itself when C-contiguous, else its transpose when that is (no
    copy for ``w.T`` or ``x.T``), else a C-contiguous copy."""
    if x.flags.c_contiguous:
        return x, False
    xt = np.swapaxes(x, 1, 2)
    if xt.flags.c_contiguous:
        return xt, True
    return np.ascontiguousarray(x), False


def _blocks(M: int, N: int, nbatch: int, mr: int, nr: int, threads: int) -> tuple[int, int]:
    """``(MC, NC)`` of the task grid: row blocks of at most ``_MC`` rows, whole rows of C per task;
    when the batch does not feed every thread, rows (or columns when M is small) are split so the
    task count is a multiple of ``threads``."""
    ncb = min(-(-N // nr) * nr, _NC)
    panels = -(-M // mr)
    groups = -(-panels * mr // _MC)
    if threads > 1 and nbatch % threads:
        if panels >= threads:
            groups = -(-groups // threads) * threads
        else:
            ncb = -(-(-(-N // nr)) // threads) * nr
    mcb = -(-panels // min(groups, panels)) * mr
    return mcb, ncb


def _gemm_batched(a3: np.ndarray, b3: np.ndarray) -> np.ndarray:
    """``a3 [nb, M, K] @ b3 [nb, K, N]`` for one float dtype."""
    nbatch, M, K = a3.shape
    N = b3.shape[2]
    dt = a3.dtype
    if nbatch == 0 or M == 0 or N == 0 or K == 0:
        return np.zeros((nbatch, M, N), dtype=dt)
    c = np.empty((nbatch, M, N), dtype=dt)
    mr, nr = _GEOMETRY[dt][0], _NR[dt]
    threads = numba.get_num_threads()
    parallel = threads > 1 and 2 * nbatch * M * N * K >= 4_000_000
    threads = threads if parallel else 1
    a, ta = _operand(a3)
    b, tb = _operand(b3)
    kcb = _KC[dt]
    bp = np.empty((nbatch, -(-N // nr) * nr * K), dtype=dt)
    mcb, ncb = _blocks(M, N, nbatch, mr, nr, threads)
    _gemm(a.reshape(nbatch, M * K), ta, b.reshape(nbatch, K * N), tb, bp, c.reshape(nbatch, M * N),
          M, N, K, mr, nr, kcb, mcb, ncb, threads)
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
        a2 = a.reshape(rows, K) if a.ndim > 2 else a
        out = _gemm_batched(a2[None], b[None])
        return out.reshape(a.shape[:-1] + (N,))
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    nbatch = int(np.prod(batch, dtype=np.int64))
    a3 = np.broadcast_to(a, batch + (M, K)).reshape(nbatch, M, K)
    b3 = np.broadcast_to(b, batch + (K, N)).reshape(nbatch, K, N)
    return _gemm_batched(a3, b3).reshape(batch + (M, N))
