"""Numba GEMM: BLIS-style packed panels around a 512-bit outer-product micro-kernel (``matmul``).

Design (Goto/BLIS; loop nest in :func:`_regions`):

* **Micro-kernel** (:mod:`.simd`, LLVM vector IR through ``@intrinsic``): an ``MR x NR`` tile of C in
  zmm registers (12 x 32 float32, 12 x 16 float64); per ``k`` it loads one row of a packed B panel
  (``NR`` contiguous values, two vector loads), broadcasts ``MR`` values of a packed A panel and does
  ``MR * NR / lanes`` FMAs. Plain Numba loops cannot express this: LLVM keeps a small accumulator
  array in memory, and vectorises dot products instead (the previous kernel here: a 4 x 3 tile of dot
  products, each ending in a horizontal sum).
* **Packing**: per K block of ``KC``, B's columns into ``kc x NR`` k-major panels, zero-padded at the
  edge, so the kernel reads B with unit stride and no edge cases. A is read in place (``_DIRECT_A``):
  the kernel broadcasts one scalar of A per row and ``k``, so A's layout costs it nothing, while packing A
  was one more pass over the largest operand of a Linear (``x [B*T, C]``); measured side by side on the
  Intel Xeon (family 6 model 167), 2 threads: 1.0-1.4x on the Linear shapes of the small encoder-decoder
  and of the baby GPT, 1.0x on large squares. Only an edge panel of fewer than ``MR`` rows is packed
  into ``kc x MR`` k-major form; both are read along the source's rows whatever its layout (``x @ W.T`` and
  ``dy.T @ x`` need no transposed copy). The copies use the unchecked :func:`.simd.load` /
  :func:`.simd.store` (Numba's negative-index wrap-around kept LLVM from vectorising them).
* **Cache blocking**: a B micro-panel (``KC x NR``) stays in L1 while the A micro-panels of an
  ``MC x KC`` block stream from L2; the ``KC x NC`` B block is private to the thread.
* **Threads**: one ``prange`` launch over regions of C (whole matrices when the batch feeds every
  thread, else each matrix cut into one region per thread along M or N); each region packs its own
  blocks, so threads share nothing and need no barrier.

Figures (ours against OpenBLAS, per shape, one and two threads) are in ``benchmarks/results/gemm*.json``
(``python -m benchmarks.gemm``).
"""
from __future__ import annotations

import numba
import numpy as np

from ... import runtime
from ._common import _FLOATS, _PAR, _chunked, _jit, _launch, _nchunks
from .simd import load, make_ukernel, store

# Register tile (MR rows, NV vectors of 512 bits): 12 x 32 float32 is 24 zmm accumulators plus two
# B vectors and one broadcast, of the 32 registers; per k it does 24 FMAs for 2 loads + 12 broadcasts.
_GEOMETRY = {np.dtype(np.float32): (12, 2), np.dtype(np.float64): (12, 2)}
_NR = {np.dtype(np.float32): 32, np.dtype(np.float64): 16}
_ukernel = make_ukernel(_GEOMETRY)
# Half width (12 x 16 float32) for a last panel of at most NR/2 columns (the head's N = 65 = 2*32 + 1).
_ukernel_half = make_ukernel({dt: (mr, nv // 2) for dt, (mr, nv) in _GEOMETRY.items()})
# K block: a B micro-panel (KC x NR) stays in L1 while the A micro-panels of a row block stream past.
_KC = {np.dtype(np.float32): 256, np.dtype(np.float64): 128}
_MC = 192  # rows of the packed A block (MC x KC in L2, reused by every B panel of the NC block)
_DIRECT_A = True  # read A's full row panels in place (False: pack every A block, the BLIS way)
_NC = 1024  # columns of the packed B block (KC x NC), bounds the per-thread buffer


@_jit
def _pack_b(bb, tb, bbuf, N, K, nr, nh, pc, kc, jc, j_hi):
    """Columns ``jc..j_hi`` and K block ``pc..pc+kc`` of B into NR-column, k-major panels:
    ``bbuf[(j0 - jc)*kc + p*NR + j] = B[pc + p, j0 + j]``, zero past column ``N``, so that the
    micro-kernel reads B with unit stride. A last panel of at most ``nh = NR/2`` columns (the matrix
    edge) is packed ``nh`` wide for the half-width kernel. ``bb`` is the flat ``B [K, N]`` (``tb``
    False) or the flat ``B^T [N, K]`` (``tb`` True: ``x @ W.T``)."""
    jl = jc + (j_hi - jc - 1) // nr * nr  # the last panel, partial only at the matrix edge
    w = nh if j_hi - jl <= nh else nr
    _pack_b_panels(bb, tb, bbuf, N, K, nr, pc, kc, jc, jl, jc)
    _pack_b_panels(bb, tb, bbuf, N, K, w, pc, kc, jl, j_hi, jc)
    zero = bbuf.dtype.type(0)
    for p in range(kc):
        for j in range(j_hi - jl, w):
            store(bbuf, (jl - jc) * kc + p * w + j, zero)


@_jit
def _pack_b_panels(bb, tb, bbuf, N, K, w, pc, kc, j_lo, j_hi, jc):
    """Columns ``j_lo..j_hi`` of B as ``w``-wide panels (layout of :func:`_pack_b`); the source is read
    along its rows whatever its layout."""
    if tb:
        for j in range(j_lo, j_hi):
            s = j * K + pc
            d = (j_lo - jc) * kc + (j - j_lo) // w * w * kc + (j - j_lo) % w
            for p in range(kc):
                store(bbuf, d + p * w, load(bb, s + p))
    else:
        for p in range(kc):
            s = (pc + p) * N
            for j0 in range(j_lo, j_hi, w):
                d = (j0 - jc) * kc + p * w - j0
                for j in range(j0, min(j0 + w, j_hi)):
                    store(bbuf, d + j, load(bb, s + j))


@_jit
def _pack_a(ab, ta, abuf, M, K, mr, pc, kc, ic, i_hi):
    """Rows ``ic..i_hi`` and K block ``pc..pc+kc`` of A into MR-row, k-major panels:
    ``abuf[(i0 - ic)*kc + p*MR + i] = A[i0 + i, pc + p]``, zero past row ``M``. ``ab`` is the flat
    ``A [M, K]`` (``ta`` False) or the flat ``A^T [K, M]`` (``ta`` True: ``dy.T @ x``)."""
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
def _regions(a, ta, b, tb, c, M, N, K, mr, nr, nh, kcb, mcb, ncb, rh, rw, direct, t0, t1):
    """Regions ``t0..t1`` of the (batch, row region, column region) grid of C, ``rh x rw`` each.

    Loop nest of one region (Goto/BLIS order; the packed blocks are private to the thread)::

        for jc in NC-column blocks                   # B~ block [kc x NC] stays in L3/L2
          for pc in K blocks (kc <= KC)              # '=' into C on the first, '+=' after
            pack B[pc:pc+kc, jc:jc+NC] -> B~
            for ic in MC-row blocks
              pack A[ic:ic+MC, pc:pc+kc] -> A~       # MC x kc, stays in L2 (direct: only the edge panel)
              for j0 in NR-column panels of jc       # B micro-panel [kc x NR] stays in L1 ...
                for i0 in MR-row panels of ic        # ... while the A micro-panels stream from L2
                  ukernel(A~[i0], B~[j0], C[i0:i0+MR, j0:j0+NR])

    A last panel of at most NR/2 columns runs the half-width kernel; edge tiles (fewer than MR rows or
    than the panel's columns left) go through the scratch ``tile``. With ``direct`` the micro-kernel reads
    A's full MR-row panels in place, through A's own strides (row-major: ``K, 1``; a transposed view such
    as ``dy.T``: ``1, M``), and only a last panel of fewer than MR rows is packed (zero-padded).
    """
    nrr = (M + rh - 1) // rh
    nrc = (N + rw - 1) // rw
    tile = np.empty(mr * nr, dtype=c.dtype)
    abuf = np.empty(mcb * kcb, dtype=c.dtype)
    bbuf = np.empty(ncb * kcb, dtype=c.dtype)
    for t in range(t0, t1):
        bi = t // (nrr * nrc)
        i_lo = (t % (nrr * nrc)) // nrc * rh
        j_lo = (t % nrc) * rw
        i_hi = min(i_lo + rh, M)
        j_hi = min(j_lo + rw, N)
        cb = c[bi]
        for jc in range(j_lo, j_hi, ncb):
            jc_hi = min(jc + ncb, j_hi)
            for pc in range(0, K, kcb):
                kc = min(kcb, K - pc)
                first = pc == 0
                _pack_b(b[bi], tb, bbuf, N, K, nr, nh, pc, kc, jc, jc_hi)
                for ic in range(i_lo, i_hi, mcb):
                    ic_hi = min(ic + mcb, i_hi)
                    ie = ic + (ic_hi - ic) // mr * mr  # rows from here on: a partial panel (matrix edge)
                    if direct:  # full panels read A in place; only the edge panel is packed
                        if ie < ic_hi:
                            _pack_a(a[bi], ta, abuf, M, K, mr, pc, kc, ie, ic_hi)
                    else:
                        _pack_a(a[bi], ta, abuf, M, K, mr, pc, kc, ic, ic_hi)
                    for j0 in range(jc, jc_hi, nr):
                        nn = min(nr, N - j0)
                        half = nn <= nh
                        bo = (j0 - jc) * kc
                        for i0 in range(ic, ic_hi, mr):
                            src, ao, rsa, csa = abuf, (i0 - ic) * kc, 1, mr
                            if direct:
                                if i0 < ie:
                                    src = a[bi]
                                    ao, rsa, csa = (pc * M + i0, 1, M) if ta else (i0 * K + pc, K, 1)
                                else:
                                    ao = 0
                            mm = min(mr, M - i0)
                            if mm == mr and nn == nr:
                                _ukernel(src, ao, rsa, csa, bbuf, bo, kc, cb, i0 * N + j0, N, first)
                                continue
                            if mm == mr and nn == nh:
                                _ukernel_half(src, ao, rsa, csa, bbuf, bo, kc, cb, i0 * N + j0, N, first)
                                continue
                            if half:
                                _ukernel_half(src, ao, rsa, csa, bbuf, bo, kc, tile, 0, nr, True)
                            else:
                                _ukernel(src, ao, rsa, csa, bbuf, bo, kc, tile, 0, nr, True)
                            for i in range(mm):
                                co = (i0 + i) * N + j0
                                for j in range(nn):
                                    if first:
                                        store(cb, co + j, load(tile, i * nr + j))
                                    else:
                                        store(cb, co + j, load(cb, co + j) + load(tile, i * nr + j))


@_jit(**_PAR)
def _gemm(a, ta, b, tb, c, M, N, K, mr, nr, kcb, mcb, ncb, rh, rw, direct, nchunks):
    """All regions of C, in ``nchunks`` contiguous chunks (one ``prange`` launch, no shared buffers)."""
    nregions = c.shape[0] * ((M + rh - 1) // rh) * ((N + rw - 1) // rw)
    _chunked(_regions, nregions, nchunks, (a, ta, b, tb, c, M, N, K, mr, nr, nr // 2, kcb, mcb, ncb, rh, rw, direct))


def _operand(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(x3, trans)``: ``x [nb, R, K]`` itself when C-contiguous, else its transpose when that is (no
    copy for ``w.T`` or ``x.T``), else a C-contiguous copy."""
    if x.flags.c_contiguous:
        return x, False
    xt = np.swapaxes(x, 1, 2)
    if xt.flags.c_contiguous:
        return xt, True
    return np.ascontiguousarray(x), False


def _split(M: int, N: int, nbatch: int, mr: int, nr: int, threads: int) -> tuple[int, int]:
    """``(rows, cols)`` of one region of C (one task). Whole matrices when the batch alone feeds every
    thread; else each matrix is cut into ``threads`` regions along M or N, whichever duplicates less
    packing: every region packs all of the operand it does not split (B for a row split, A for a column
    split), so rows are split when B is the smaller (``N <= M``) and there are enough row panels."""
    if threads == 1 or nbatch % threads == 0:
        return M, N
    row_panels, col_panels = -(-M // mr), -(-N // nr)
    if (N <= M and row_panels >= threads) or col_panels < threads:
        return -(-row_panels // threads) * mr, N
    return M, -(-col_panels // threads) * nr


def _gemm_batched(a3: np.ndarray, b3: np.ndarray) -> np.ndarray:
    """``a3 [nb, M, K] @ b3 [nb, K, N]`` for one float dtype."""
    nbatch, M, K = a3.shape
    N = b3.shape[2]
    dt = a3.dtype
    if nbatch == 0 or M == 0 or N == 0 or K == 0:
        return np.zeros((nbatch, M, N), dtype=dt)
    mr, nr = _GEOMETRY[dt][0], _NR[dt]
    threads = numba.get_num_threads()
    if threads > 1 and 2 * nbatch * M * N * K < 4_000_000:
        threads = 1  # below a few MFLOP the parallel launch costs more than it saves
    c = np.empty((nbatch, M, N), dtype=dt)
    a, ta = _operand(a3)
    b, tb = _operand(b3)
    rh, rw = _split(M, N, nbatch, mr, nr, threads)
    mcb = min(_MC, -(-rh // mr) * mr)
    ncb = min(_NC, -(-rw // nr) * nr)
    _gemm(a.reshape(nbatch, M * K), ta, b.reshape(nbatch, K * N), tb, c.reshape(nbatch, M * N),
          M, N, K, mr, nr, _KC[dt], mcb, ncb, rh, rw, _DIRECT_A, threads)
    return c


@_jit
def _gemv_rows(w, x, out, lo, hi):
    """``out[n] = w[n, :] . x`` for rows ``lo..hi`` of a C-contiguous ``w [N, K]``: four rows per pass (four
    dot products sharing each ``x[k]``, four streams of ``w`` in flight), then the last rows one at a time.
    ``reassoc`` lets LLVM vectorise each sum. On the Intel Xeon (family 6 model 167) four rows stream
    6-11 % faster than one (benchmarks/gemv.py); on the AMD Zen 4 of 2026-12-02 one row was the faster."""
    K = x.shape[0]
    zero = out.dtype.type(0)
    n = lo
    while n + 4 <= hi:
        a0 = zero
        a1 = zero
        a2 = zero
        a3 = zero
        for k in range(K):
            xk = x[k]
            a0 += w[n, k] * xk
            a1 += w[n + 1, k] * xk
            a2 += w[n + 2, k] * xk
            a3 += w[n + 3, k] * xk
        out[n] = a0
        out[n + 1] = a1
        out[n + 2] = a2
        out[n + 3] = a3
        n += 4
    for m in range(n, hi):
        acc = zero
        for k in range(K):
            acc += w[m, k] * x[k]
        out[m] = acc


@_jit(**_PAR)
def _gemv_par(w, x, out, nchunks):
    _chunked(_gemv_rows, w.shape[0], nchunks, (w, x, out))


def _gemv_t(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x [K] @ w.T`` for a C-contiguous ``w [N, K]`` (a Linear's weight): ``[N]``. Parallel over the rows
    of ``w`` above a few hundred thousand elements."""
    out = np.empty(w.shape[0], dtype=w.dtype)
    _launch(_gemv_rows, _gemv_par, w.shape[0], min(_nchunks(w.size), w.shape[0]), w, x, out)
    return out


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for 2-D ``[M, K] @ [K, N]`` or batched ``[..., M, K] @ [..., K, N]``; NumPy semantics.

    float32/float64 go through the Numba GEMM (``_gemm``), except a single row times a 2-D ``b``
    (``[1, K] @ [K, N]``: a decode step's every Linear), which the packed GEMM would spend more time packing
    than multiplying: ``x @ W.T`` with ``W [N, K]`` C-contiguous (a Linear's weight, the tied ``lm_head``)
    is :func:`_gemv_t`, one dot product per row of ``W``, which streams the weights ~1.4x faster than
    OpenBLAS's transposed GEMV here (``benchmarks/gemv.py``); any other single row, other dtypes and 1-D
    operands go to ``np.matmul`` (BLAS). A batched ``a`` times a 2-D ``b`` is folded into one 2-D GEMM.
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
        if rows == 1:
            if b.T.flags.c_contiguous and K > 0:   # x @ W.T with W [N, K] in place (every decode Linear)
                return _gemv_t(a.reshape(K), b.T).reshape(a.shape[:-1] + (N,))
            return np.matmul(a, b)
        a2 = a.reshape(rows, K) if a.ndim > 2 else a
        out = _gemm_batched(a2[None], b[None])
        return out.reshape(a.shape[:-1] + (N,))
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    nbatch = int(np.prod(batch, dtype=np.int64))
    a3 = np.broadcast_to(a, batch + (M, K)).reshape(nbatch, M, K)
    b3 = np.broadcast_to(b, batch + (K, N)).reshape(nbatch, K, N)
    return _gemm_batched(a3, b3).reshape(batch + (M, N))


@_jit(**_PAR)
def _gemm_pair(a1, ta1, b1, tb1, c1, M1, N1, K1, a2, ta2, b2, tb2, c2, M2, N2, K2, mr, nr, kcb, direct):
    """Two independent single-matrix products in one ``prange`` launch, one per thread, each whole."""
    for t in numba.prange(2):
        if t == 0:
            _regions(a1, ta1, b1, tb1, c1, M1, N1, K1, mr, nr, nr // 2, kcb, min(_MC, -(-M1 // mr) * mr),
                     min(_NC, -(-N1 // nr) * nr), M1, N1, direct, 0, 1)
        else:
            _regions(a2, ta2, b2, tb2, c2, M2, N2, K2, mr, nr, nr // 2, kcb, min(_MC, -(-M2 // mr) * mr),
                     min(_NC, -(-N2 // nr) * nr), M2, N2, direct, 0, 1)


def matmul_pair(a1: np.ndarray, b1: np.ndarray, a2: np.ndarray, b2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(a1 @ b1, a2 @ b2)`` for 2-D float operands. With exactly two threads and both products at most
    ``_PAIR_MAX`` multiply-adds, each product runs whole on its own thread in ONE launch: no product is
    split (each would pack its shared operand twice) and the sleeping worker is woken once, not twice.
    Measured side by side on the Intel Xeon (family 6 model 167): a Linear's backward at the small
    encoder-decoder's shapes 1.06-1.32x, its whole training step 1.06x, the baby GPT's step 1.01x.
    Otherwise (other thread counts, larger products, a single row: the GEMV, other dtypes): two
    :func:`matmul` calls, so the result always has :func:`matmul`'s bits."""
    pairs = ((a1, b1), (a2, b2))
    dt = np.result_type(a1, b1, a2, b2)
    if (numba.get_num_threads() != 2 or dt not in _FLOATS
            or any(a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0] or 0 in a.shape + b.shape or a.shape[0] == 1
                   or a.shape[0] * a.shape[1] * b.shape[1] > _PAIR_MAX for a, b in pairs)):
        return matmul(a1, b1), matmul(a2, b2)
    args, outs = [], []
    for a, b in pairs:
        (M, K), N = a.shape, b.shape[1]
        a3, ta = _operand(a.astype(dt, copy=False)[None])
        b3, tb = _operand(b.astype(dt, copy=False)[None])
        c = np.empty((1, M, N), dtype=dt)
        args += [a3.reshape(1, M * K), ta, b3.reshape(1, K * N), tb, c.reshape(1, M * N), M, N, K]
        outs.append(c[0])
    _gemm_pair(*args, _GEOMETRY[dt][0], _NR[dt], _KC[dt], _DIRECT_A)
    return outs[0], outs[1]


_PAIR_MAX = 1 << 25  # M*N*K of the larger product (33.5 M multiply-adds): above it, splitting each product pays


def linear_grads(g: np.ndarray, w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A Linear's backward, ``(g @ w, g.T @ x)``: the two independent products of :func:`matmul_pair`."""
    return matmul_pair(g, w, g.T, x)


# ------------------------------------------------------------- the auto backend: products to BLAS
_ONE_POOL_BLAS_MIN = 1 << 27
_BLAS_MIN = _ONE_POOL_BLAS_MIN if runtime.one_pool else 1
"""Multiply-adds (M*N*K) from which the auto backend hands a product of >= 2 rows to OpenBLAS; a knob for
``ab_step --toggle``. Where OpenMP's workers spin only briefly, every product (1; measured side by side
2026-12-03, see matmul_auto). Under ``runtime.one_pool`` (AVX-512, OpenMP workers left spinning), only
products of 2^27 multiply-adds and more: the baby GPT's (at most 768 x 128 x 512) and the small
encoder-decoder's run on this GEMM, whose threads are already awake, where OpenBLAS would first wake its own
(baby step 1.16x and 1.21x faster, Intel Xeon family 6 model 167, 2026-12-04), while shakespeare-char's
(16384 x 384 x 384 and up), where OpenBLAS is 1.2-1.65x faster and a wake-up is small beside the product,
stay on OpenBLAS (all of them on this GEMM made that step 0.79x as fast)."""


def _large(a: np.ndarray, b: np.ndarray) -> bool:
    """Does the auto backend hand ``a @ b`` to OpenBLAS: a 2-D ``b``, ``a`` of at least 2 rows (its batch shape
    folded into rows), float32/float64, at least :data:`_BLAS_MIN` multiply-adds?"""
    if a.ndim < 2 or b.ndim != 2 or np.result_type(a, b) not in _FLOATS:
        return False
    rows = int(np.prod(a.shape[:-1], dtype=np.int64))
    return rows >= 2 and rows * a.shape[-1] * b.shape[-1] >= _BLAS_MIN


def matmul_auto(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The ``auto`` backend's matmul: ``np.matmul`` (OpenBLAS) for the products of :func:`_large`, else
    :func:`matmul` (a decode step's single rows: the GEMV, which streams the weights faster than OpenBLAS's).

    Why: on the Intel Xeon of CI (family 6 model 167, AVX-512), toggled on one model in the same process
    (``benchmarks.ab_step --toggle``, 2 threads, 2026-12-03), OpenBLAS for every product against this GEMM made
    the training step 1.07-1.10x faster for the baby GPT, 1.05x for the small encoder-decoder, 1.12x for the
    d-256 one and, for the products of >= 2^30 multiply-adds alone, 1.24x for shakespeare-char (16384 x 384 x
    1152 and alike: OpenBLAS 1.2-1.65x faster there). On the AMD EPYCs this GEMM had won at the small shapes;
    ``benchmarks.gemm`` still measures it against OpenBLAS."""
    return np.matmul(a, b) if _large(a, b) else matmul(a, b)


def linear_grads_auto(g: np.ndarray, w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``auto`` backend's :func:`linear_grads`: both products by OpenBLAS when :func:`matmul_auto` would
    hand ``g [N, out] @ w [out, in]`` to it."""
    if _large(g, w):
        return np.matmul(g, w), np.matmul(g.T, x)
    return linear_grads(g, w, x)
