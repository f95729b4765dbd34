"""Compiled CPU kernels: the Numba twins of :mod:`tinytensor.kernels.numpy_ref`.

Every public function here has the same name, signature, output dtypes and semantics as its
reference twin; :mod:`tinytensor.backend` swaps one for the other per kernel. Each public function is
a thin Python wrapper (dtype checks, ``np.ascontiguousarray`` of views, output allocation, the choice
between a serial and a parallel launch) around one ``@njit`` driver that does the work.

Design
------
* **Fusion.** The row kernels (softmax, log-softmax, cross-entropy, layer norm) read each row once
  or twice, keep the row statistics in registers and write the result once; the NumPy composition
  makes 4-8 passes through temporaries (and the reference converts to float64 on the way).
* **Vectorisable inner loops.** LLVM vectorises a loop only if every call in it has a vector form,
  and without Intel's SVML Numba's ``exp``/``tanh`` are scalar libm calls. For float32 the kernels
  therefore use polynomial ``exp`` (Cephes ``expf``, relative error < 1e-7) and a rational ``tanh``
  (Eigen's, absolute error < 4e-7), built from multiplies, adds and one integer bit-cast so that
  the loops run 8 lanes wide. Float64 inputs use libm (they are for gradient checks, not speed).
* **Float64 accumulators** for every sum that feeds a normalisation (softmax denominators,
  layer-norm moments, the loss), as in the reference.
* **Coarse parallelism.** A ``prange`` launch costs ~10-20 us, as much as a whole row kernel on the
  baby GPT's shapes. Drivers therefore split the work into ``nchunks`` contiguous chunks (one per
  thread) and run a plain loop when ``nchunks == 1``; the wrappers pick 1 below ``_PAR_MIN``
  elements of work.
* **fastmath** only with ``{'nsz', 'arcp', 'contract', 'afn', 'reassoc'}`` (reassociation is what
  lets LLVM vectorise reductions): never ``nnan``/``ninf``, so NaN and inf still propagate.
* **GEMM** (``matmul``): Goto/BLIS blocking (``NC`` columns x ``KC`` depth blocks, ``prange`` over
  (batch, row block, column block) tasks), B packed once as B^T, and a 4 x 3 register tile of dot
  products along K that LLVM vectorises 8 float32 lanes wide. It is a real GEMM but not OpenBLAS:
  single-threaded on the 2-core EPYC it reaches 55-75 GFLOP/s against OpenBLAS's ~90 (the
  horizontal sums at the end of each tile cost most at the model's K = 32..128), so ``auto`` keeps
  matmul on BLAS (see ``benchmarks/kernels.py``).
* **No BLAS inside ``prange``**: the GEMM is Numba code, so there is no OpenBLAS thread pool
  competing with Numba's. The one place that calls BLAS from a kernel, the attention of small heads,
  does it from Python helper threads (``threads.run_parts``) on products too small for OpenBLAS to
  thread.
* Everything also runs with ``NUMBA_DISABLE_JIT=1`` as plain Python (slowly), for teaching and
  debugging: the ``_exp``/``_tanh`` helpers fall back to NumPy's, ``prange`` becomes ``range``.

Threads come from ``TINYTENSOR_NUM_THREADS`` (default: all cores) through ``numba.set_num_threads``,
under the policy of :mod:`tinytensor.threads` (one thread when OpenBLAS's workers spin).
Compiled code is cached on disk (``cache=True``); when ``NUMBA_CACHE_DIR`` is unset and this package
directory is not writable the cache goes to ``~/.cache/tinytensor/numba``.
"""
from __future__ import annotations

import os

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
if not os.environ.get("NUMBA_CACHE_DIR") and not os.access(_PKG_DIR, os.W_OK):
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(os.path.expanduser("~"), ".cache", "tinytensor", "numba")

import numba  # noqa: E402  (the cache directory must be chosen before numba reads its config)
import numpy as np  # noqa: E402
from numba import njit, prange, types  # noqa: E402
from numba.extending import overload  # noqa: E402

from . import numpy_ref  # noqa: E402
from .. import threads  # noqa: E402

if os.environ.get("NUMBA_CACHE_DIR") and not numba.config.CACHE_DIR:  # numba was imported before us
    numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]

__all__ = [
    "matmul", "softmax", "softmax_backward", "log_softmax", "log_softmax_backward",
    "cross_entropy", "cross_entropy_backward", "layer_norm", "layer_norm_backward",
    "gelu", "gelu_backward", "embedding_backward", "sum_squares", "adamw_step", "dropout_keep", "dropout", "attention", "attention_backward",
    "set_num_threads", "warmup",
]

# fastmath flags that keep NaN/inf semantics: reassociation (vectorised reductions), FMA contraction,
# reciprocal division, approximate libm and no signed zeros.
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}
_JIT = dict(cache=True, nogil=True, fastmath=_FM, error_model="numpy")
_PAR = dict(_JIT, parallel=True)

# Elements of work below which a kernel runs serially (no prange launch). Waking sleeping OpenMP
# workers (OMP_WAIT_POLICY=PASSIVE, the policy of tinytensor.threads) costs ~15-20 us on the 2-core
# EPYC. Measured there, interleaved in one process right after a GEMM (medians): the baby GPT's
# layer norm (98K elements) is no faster on 2 threads (99 -> 111 us), its GELU (393K) is
# (fwd 501 -> 347 us, bwd 584 -> 382 us); the shakespeare kernels (1M+) gain 1.3-1.9x.
_PASSIVE = os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"
_PAR_MIN = 1 << 18 if _PASSIVE else 1 << 15
_FLOATS = (np.float32, np.float64)


def set_num_threads(n: int | None = None) -> int:
    """Set Numba's thread count (default: :func:`tinytensor.threads.kernel_threads`, i.e.
    ``TINYTENSOR_NUM_THREADS`` or all cores, or 1 when OpenBLAS spins); returns it."""
    if n is None:
        n = threads.kernel_threads()
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    n = min(int(n), numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    return n

set_num_threads()


def _nchunks(work: int) -> int:
    """How many parallel chunks to split ``work`` elements into: 1 (serial) when small."""
    return 1 if work < _PAR_MIN else numba.get_num_threads()


def _float_pair(*arrays):
    """True when every array is float32 or float64 (else the wrapper defers to the reference)."""
    return all(a.dtype in _FLOATS for a in arrays)


def _as(a, shape: tuple, dtype) -> np.ndarray:
    """``a`` broadcast to ``shape`` as a C-contiguous ``dtype`` array, copying only when needed
    (wrapper overhead is a visible part of a 50 us kernel)."""
    a = np.asarray(a)
    if a.shape != shape:
        a = np.broadcast_to(a, shape)
    if a.dtype != dtype or not a.flags.c_contiguous:
        a = np.ascontiguousarray(a, dtype=dtype)
    return a


def _quiet(fn, *args):
    """Call a driver; under ``NUMBA_DISABLE_JIT`` silence NumPy's scalar warnings (log(0), inf - inf)
    that compiled code does not raise (``np.errstate`` costs ~5 us, so only then)."""
    if numba.config.DISABLE_JIT:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
            return fn(*args)
    return fn(*args)


# ================================================================ vectorisable exp / tanh helpers
_LOG2E = 1.4426950408889634
_GELU_C = 0.7978845608028654  # sqrt(2 / pi)
_GELU_A = 0.044715


def _exp(x):
    """``exp(x)``; float32 uses a polynomial that LLVM can vectorise (see ``_exp_f32``)."""
    return np.exp(x)


def _tanh(x):
    """``tanh(x)``; float32 uses a rational approximation that LLVM can vectorise."""
    return np.tanh(x)


def _exp_f32(x):
    """Cephes ``expf``: ``exp(x) = 2^n * e^r``, ``n = round(x / ln 2)``, ``|r| <= ln(2)/2``.

    ``e^r`` is a degree-7 polynomial (relative error < 1e-7); ``2^n`` is built by writing ``n + 127``
    into a float32's exponent bits. Inputs below -87 give 0 (true value < 1.7e-38), above 88 inf (the
    bit trick needs ``n <= 127``; true value finite up to 88.72), NaN gives NaN. Only the kernels'
    arguments ``x - max <= 0`` and log-probabilities reach it, so the clamps never bite there.
    """
    xc = min(max(x, np.float32(-87.0)), np.float32(88.0))
    n = np.floor(xc * np.float32(_LOG2E) + np.float32(0.5))
    r = xc - n * np.float32(0.693359375) - n * np.float32(-2.12194440e-4)
    z = r * r
    y = (((((np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)) * r
            + np.float32(8.3334519073e-3)) * r + np.float32(4.1665795894e-2)) * r
          + np.float32(1.6666665459e-1)) * r + np.float32(5.0000001201e-1)) * z + r + np.float32(1.0)
    y = y * np.int32((np.int32(n) + np.int32(127)) << np.int32(23)).view(np.float32)
    if x < np.float32(-87.0):
        y = np.float32(0.0)
    if x > np.float32(88.0):
        y = np.float32(np.inf)
    if x != x:
        y = x
    return y


def _tanh_f32(x):
    """Eigen's float ``tanh``: odd degree-13 over even degree-6 polynomial on ``[-7.9, 7.9]``, +-1 outside.

    Absolute error < 4e-7 against float64 ``tanh``.
    """
    xc = min(max(x, np.float32(-7.90531110763549805)), np.float32(7.90531110763549805))
    x2 = xc * xc
    p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = x2 * p + np.float32(-8.60467152213735e-11)
    p = x2 * p + np.float32(5.12229709037114e-08)
    p = x2 * p + np.float32(1.48572235717979e-05)
    p = x2 * p + np.float32(6.37261928875436e-04)
    p = x2 * p + np.float32(4.89352455891786e-03)
    p = xc * p
    q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = x2 * q + np.float32(2.26843463243900e-03)
    q = x2 * q + np.float32(4.89352518554385e-03)
    y = p / q
    if abs(xc) < np.float32(0.0004):
        y = xc
    if x > np.float32(7.90531110763549805):  # float32 tanh is 1 to within 2.7e-7 from here on
        y = np.float32(1.0)
    if x < np.float32(-7.90531110763549805):
        y = np.float32(-1.0)
    if x != x:
        y = x
    return y


if not numba.config.DISABLE_JIT:
    _exp_f32_jit = njit(inline="always", fastmath=_FM)(_exp_f32)
    _tanh_f32_jit = njit(inline="always", fastmath=_FM)(_tanh_f32)

    @overload(_exp, inline="always", fastmath=_FM)
    def _exp_overload(x):
        if x == types.float32:
            return lambda x: _exp_f32_jit(x)
        return lambda x: np.exp(x)

    @overload(_tanh, inline="always", fastmath=_FM)
    def _tanh_overload(x):
        if x == types.float32:
            return lambda x: _tanh_f32_jit(x)
        return lambda x: np.tanh(x)


def _jit(fn=None, **kw):
    return njit(**{**_JIT, **kw})(fn) if fn is not None else (lambda f: njit(**{**_JIT, **kw})(f))


# ========================================================================================= GEMM
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


@_jit(**_PAR)
def _gemm(a, bt, c, nbatch, M, N, K, mb, nb, kcb, ncb, parallel):
    """Run every (batch, row block, column block) task; ``prange`` over tasks when ``parallel``."""
    mblocks = (M + mb - 1) // mb
    nblocks = (N + nb - 1) // nb
    per_batch = mblocks * nblocks
    ntasks = nbatch * per_batch
    if parallel:
        for t in prange(ntasks):
            bidx = t // per_batch
            r = t % per_batch
            i_lo = (r // nblocks) * mb
            j_lo = (r % nblocks) * nb
            _gemm_block(a, bt, c, M, N, K, kcb, ncb, bidx, i_lo, min(i_lo + mb, M), j_lo, min(j_lo + nb, N))
    else:
        for t in range(ntasks):
            bidx = t // per_batch
            r = t % per_batch
            i_lo = (r // nblocks) * mb
            j_lo = (r % nblocks) * nb
            _gemm_block(a, bt, c, M, N, K, kcb, ncb, bidx, i_lo, min(i_lo + mb, M), j_lo, min(j_lo + nb, N))


@_jit(**_PAR)
def _transpose_pack(b, bt, parallel):
    """``bt[i] = b[i].T`` for ``b [nb, K, N]`` into ``bt [nb, N, K]``, in 32x32 tiles (both sides stay in L1)."""
    nb, K, N = b.shape
    kt = (K + 31) // 32
    ntiles = nb * kt
    if parallel:
        for t in prange(ntiles):
            bi = t // kt
            k0 = (t % kt) * 32
            for n0 in range(0, N, 32):
                for n in range(n0, min(n0 + 32, N)):
                    for k in range(k0, min(k0 + 32, K)):
                        bt[bi, n, k] = b[bi, k, n]
    else:
        for t in range(ntiles):
            bi = t // kt
            k0 = (t % kt) * 32
            for n0 in range(0, N, 32):
                for n in range(n0, min(n0 + 32, N)):
                    for k in range(k0, min(k0 + 32, K)):
                        bt[bi, n, k] = b[bi, k, n]


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
        _transpose_pack(np.ascontiguousarray(b3), bt, parallel and K * N * nbatch >= _PAR_MIN)
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


# ================================================================================== row kernels
def _rows(x: np.ndarray) -> np.ndarray:
    """C-contiguous ``[R, C]`` view (or copy) of ``x`` over its last axis."""
    return np.ascontiguousarray(x).reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1)


@_jit(inline="always")
def _row_max(x, r, lim):
    """Max of ``x[r, :lim]`` in x's dtype; 0 when it is not finite (empty, all -inf, +inf, NaN)."""
    m = x.dtype.type(-np.inf)
    for j in range(lim):
        v = x[r, j]
        if v > m:
            m = v
    if not np.isfinite(m):
        m = x.dtype.type(0)
    return m


@_jit
def _softmax_rows(x, y, lo, hi, T, off, causal):
    """Rows ``lo..hi`` of softmax. Loop nest per row (3 passes over one row held in L1)::

        m = max(x[r, :lim])                         # scalar compare loop
        y[r, j] = exp(x[r, j] - m); s += y[r, j]    # 8-lane exp (float32), float64 sum
        y[r, j] *= 1 / s;  y[r, lim:] = 0           # scale, write the causal-masked tail

    ``lim`` is the number of visible keys: ``S``, or ``i + off + 1`` for query ``i = r % T`` when
    ``causal``.
    """
    S = x.shape[1]
    i = lo % T  # query index of row r (kept incrementally: no integer division per row)
    for r in range(lo, hi):
        lim = S
        if causal:
            lim = min(S, max(0, i + off + 1))
        i += 1
        if i == T:
            i = 0
        m = _row_max(x, r, lim)
        for j in range(lim):  # exp and the float64 sum in separate loops: each vectorises alone,
            y[r, j] = _exp(x[r, j] - m)  # fused they run ~3x slower (float32 -> float64 in the loop)
        s = 0.0
        for j in range(lim):
            s += y[r, j]
        inv = x.dtype.type(0.0 if s == 0.0 else 1.0 / s)
        for j in range(lim):
            y[r, j] = y[r, j] * inv
        for j in range(lim, S):
            y[r, j] = 0


@_jit(**_PAR)
def _softmax_2d(x, y, T, off, causal, nchunks):
    R = x.shape[0]
    if nchunks <= 1:
        _softmax_rows(x, y, 0, R, T, off, causal)
    else:
        for c in prange(nchunks):
            _softmax_rows(x, y, c * R // nchunks, (c + 1) * R // nchunks, T, off, causal)


def softmax(x: np.ndarray, causal: bool = False) -> np.ndarray:
    """Numerically stable softmax over the last axis, optionally with the causal mask fused in.

    Same semantics as :func:`numpy_ref.softmax`: with ``causal=True``, ``x`` is ``[..., T, S]``
    attention scores and query ``i`` sees keys ``0 .. i + S - T``; masked entries come out 0; a row
    with nothing to normalise (all ``-inf``, or fully masked) comes out all zeros; NaN propagates.
    """
    if not _float_pair(x) or x.size == 0:
        return numpy_ref.softmax(x, causal)
    if causal and x.ndim < 2:
        raise ValueError(f"causal softmax needs [..., T, S] scores, got shape {x.shape}")
    T, S = (x.shape[-2], x.shape[-1]) if causal else (1, x.shape[-1])
    x2 = _rows(x)
    y = np.empty_like(x2)
    _softmax_2d(x2, y, T, S - T, causal, _nchunks(x2.size))
    return y.reshape(x.shape)


@_jit
def _softmax_bwd_rows(y, dy, dx, lo, hi):
    """``dx = y * (dy - sum(dy * y))`` per row: one float64 dot, one fused multiply pass."""
    S = y.shape[1]
    for r in range(lo, hi):
        dot = 0.0
        for j in range(S):
            dot += dy[r, j] * y[r, j]
        d = y.dtype.type(dot)  # the write pass runs in y's dtype: 8 float32 lanes, no conversions
        for j in range(S):
            dx[r, j] = y[r, j] * (dy[r, j] - d)


@_jit(**_PAR)
def _softmax_bwd_2d(y, dy, dx, nchunks):
    R = y.shape[0]
    if nchunks <= 1:
        _softmax_bwd_rows(y, dy, dx, 0, R)
    else:
        for c in prange(nchunks):
            _softmax_bwd_rows(y, dy, dx, c * R // nchunks, (c + 1) * R // nchunks)


def softmax_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Backward of softmax over the last axis: ``dx = y * (dy - sum(dy * y))`` (float64 sum)."""
    if not _float_pair(y, dy) or y.size == 0:
        return numpy_ref.softmax_backward(y, dy)
    y2 = _rows(y)
    dy2 = _rows(_as(dy, y.shape, y.dtype))
    dx = np.empty_like(y2)
    _softmax_bwd_2d(y2, dy2, dx, _nchunks(y2.size))
    return dx.reshape(y.shape)


@_jit
def _log_softmax_rows(x, y, lo, hi):
    """``y = x - (m + log(sum exp(x - m)))`` per row: max pass, 8-lane exp pass (float64 sum), write pass."""
    S = x.shape[1]
    for r in range(lo, hi):
        m = _row_max(x, r, S)
        for j in range(S):  # exp into y (overwritten below), then the float64 sum: see _softmax_rows
            y[r, j] = _exp(x[r, j] - m)
        s = 0.0
        for j in range(S):
            s += y[r, j]
        # y = (x - m) - log(s): x - m is exact-ish in x's dtype and log(s) is in [0, log S], so the
        # write pass stays in x's dtype (8 float32 lanes) without losing the float64 lse's accuracy.
        ls = x.dtype.type(np.log(s))
        for j in range(S):
            y[r, j] = (x[r, j] - m) - ls


@_jit(**_PAR)
def _log_softmax_2d(x, y, nchunks):
    R = x.shape[0]
    if nchunks <= 1:
        _log_softmax_rows(x, y, 0, R)
    else:
        for c in prange(nchunks):
            _log_softmax_rows(x, y, c * R // nchunks, (c + 1) * R // nchunks)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """``x - logsumexp(x)`` over the last axis. A row of all ``-inf`` comes out NaN, as in the reference."""
    if not _float_pair(x) or x.size == 0:
        return numpy_ref.log_softmax(x)
    x2 = _rows(x)
    y = np.empty_like(x2)
    _quiet(_log_softmax_2d, x2, y, _nchunks(x2.size))
    return y.reshape(x.shape)


@_jit
def _log_softmax_bwd_rows(y, dy, dx, lo, hi):
    """``dx = dy - exp(y) * sum(dy)`` per row (float64 sum, 8-lane exp)."""
    S = y.shape[1]
    for r in range(lo, hi):
        s = 0.0
        for j in range(S):
            s += dy[r, j]
        sd = y.dtype.type(s)
        for j in range(S):
            dx[r, j] = dy[r, j] - _exp(y[r, j]) * sd


@_jit(**_PAR)
def _log_softmax_bwd_2d(y, dy, dx, nchunks):
    R = y.shape[0]
    if nchunks <= 1:
        _log_softmax_bwd_rows(y, dy, dx, 0, R)
    else:
        for c in prange(nchunks):
            _log_softmax_bwd_rows(y, dy, dx, c * R // nchunks, (c + 1) * R // nchunks)


def log_softmax_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Backward of log-softmax (``y`` is its output): ``dx = dy - exp(y) * sum(dy)``."""
    if not _float_pair(y, dy) or y.size == 0:
        return numpy_ref.log_softmax_backward(y, dy)
    y2 = _rows(y)
    dy2 = _rows(_as(dy, y.shape, y.dtype))
    dx = np.empty_like(y2)
    _log_softmax_bwd_2d(y2, dy2, dx, _nchunks(y2.size))
    return dx.reshape(y.shape)


# ================================================================================ cross-entropy
@_jit
def _xent_rows(x, t, ignore, loss, lse, lo, hi):
    """Per row: ``m = max``, ``s = sum exp(x - m)`` (float64), ``lse = m + log s``, ``loss = lse - x[t]``.

    Two passes over a row of V logits (max, then 8-lane exp + float64 sum); the log-probabilities are
    never written out.
    """
    V = x.shape[1]
    buf = np.empty(V, dtype=x.dtype)  # the row's exp, so the float64 sum is its own (vectorised) loop
    for r in range(lo, hi):
        m = x.dtype.type(-np.inf)
        for j in range(V):
            v = x[r, j]
            if v > m:
                m = v
        if V == 0:
            m = x.dtype.type(0)
        for j in range(V):
            buf[j] = _exp(x[r, j] - m)  # m = -inf (all -inf row) gives NaN, as in the reference
        s = 0.0
        for j in range(V):
            s += buf[j]
        lse[r] = np.log(s) + m
        tr = t[r]
        if tr == ignore:
            loss[r] = 0.0
        else:
            loss[r] = lse[r] - x[r, tr]


@_jit(**_PAR)
def _xent_2d(x, t, ignore, loss, lse, nchunks):
    N = x.shape[0]
    if nchunks <= 1:
        _xent_rows(x, t, ignore, loss, lse, 0, N)
    else:
        for c in prange(nchunks):
            _xent_rows(x, t, ignore, loss, lse, c * N // nchunks, (c + 1) * N // nchunks)


@_jit
def _first_bad_index(t, lo, hi, skip):
    """Position of the first ``t[i]`` outside ``[lo, hi)`` that is not ``skip``, or -1."""
    for i in range(t.shape[0]):
        if t[i] != skip and (t[i] < lo or t[i] >= hi):
            return i
    return -1


def _check_targets(targets: np.ndarray, n: int, v: int, ignore_index: int) -> np.ndarray:
    t = np.asarray(targets)
    if t.size != n:
        raise ValueError(f"cross_entropy: {t.size} targets for {n} rows of logits")
    t = _as(t.reshape(-1), (n,), np.int64)
    i = _first_bad_index(t, 0, v, ignore_index)
    if i >= 0:
        raise IndexError(f"cross_entropy: target {int(t[i])} out of range [0, {v}) "
                         f"(and not ignore_index={ignore_index})")
    return t


def cross_entropy(logits: np.ndarray, targets: np.ndarray, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Fused log-softmax + NLL per row of ``logits [N, V]``; returns ``(loss [N] f64, lse [N] f64)``.

    Ignored rows (``targets == ignore_index``) get loss 0. A row of all ``-inf`` logits has no
    distribution: its lse is NaN (and its loss too unless ignored), as in the reference.
    Targets outside ``[0, V)`` that are not ``ignore_index`` raise ``IndexError``.
    """
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy expects [N, V] logits, got shape {logits.shape}")
    n, v = logits.shape
    t = _check_targets(targets, n, v, ignore_index)
    if not _float_pair(logits):
        return numpy_ref.cross_entropy(logits, t, ignore_index)
    x = np.ascontiguousarray(logits)
    loss = np.empty(n, dtype=np.float64)
    lse = np.empty(n, dtype=np.float64)
    _quiet(_xent_2d, x, t, ignore_index, loss, lse, _nchunks(x.size))
    return loss, lse


@_jit
def _xent_bwd_rows(x, t, ignore, lse, dloss, dx, lo, hi):
    """``dx[r] = (exp(x[r] - lse[r]) - onehot(t[r])) * dloss[r]``; 0 for ignored rows.

    ``exp(x - lse)`` is computed as ``exp(x - m) * exp(m - lse)`` with ``m`` the row max, so the
    vector loop stays in x's dtype (8-lane exp for float32) while ``lse`` stays float64.
    """
    V = x.shape[1]
    for r in range(lo, hi):
        tr = t[r]
        if tr == ignore:
            for j in range(V):
                dx[r, j] = 0
            continue
        m = x.dtype.type(-np.inf)
        for j in range(V):
            v = x[r, j]
            if v > m:
                m = v
        if not np.isfinite(m):
            m = x.dtype.type(0)
        g = dloss[r]
        f = x.dtype.type(np.exp(m - lse[r]) * g)
        for j in range(V):
            dx[r, j] = _exp(x[r, j] - m) * f
        dx[r, tr] = np.exp(x[r, tr] - lse[r]) * g - g


@_jit(**_PAR)
def _xent_bwd_2d(x, t, ignore, lse, dloss, dx, nchunks):
    N = x.shape[0]
    if nchunks <= 1:
        _xent_bwd_rows(x, t, ignore, lse, dloss, dx, 0, N)
    else:
        for c in prange(nchunks):
            _xent_bwd_rows(x, t, ignore, lse, dloss, dx, c * N // nchunks, (c + 1) * N // nchunks)


def cross_entropy_backward(logits: np.ndarray, targets: np.ndarray, lse: np.ndarray,
                           dloss: np.ndarray, ignore_index: int) -> np.ndarray:
    """``dlogits[i] = (softmax(logits[i]) - onehot(t_i)) * dloss[i]``, 0 on ignored rows; logits' dtype."""
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy_backward expects [N, V] logits, got shape {logits.shape}")
    n, v = logits.shape
    t = _check_targets(targets, n, v, ignore_index)
    if not _float_pair(logits):
        return numpy_ref.cross_entropy_backward(logits, t, lse, dloss, ignore_index)
    x = np.ascontiguousarray(logits)
    lse64 = _as(np.asarray(lse).reshape(-1), (n,), np.float64)
    dl64 = _as(dloss, (n,), np.float64)
    dx = np.empty_like(x)
    _quiet(_xent_bwd_2d, x, t, ignore_index, lse64, dl64, dx, _nchunks(x.size))
    return dx


# =================================================================================== layer norm
@_jit
def _ln_rows(x, w, b, eps, y, mean, rstd, lo, hi):
    """Per row: float64 mean pass; float64 centred-variance pass that also stores ``x - mean``
    (subtracted in float64, rounded once to y's dtype) into ``y``; then one in-place scale pass
    ``y = y * rstd * w + b`` in y's dtype (8 float32 lanes, not 4 float64 ones).

    Why the centred values are stored by the float64 pass: subtracting a mean rounded to float32
    (``x - float32(mean)``) carries the mean's rounding error, up to half an ulp of the mean
    (3.8e-6 near 100), into every output times ``rstd * w``, however small ``x - mean`` is; rounding
    the float64 difference instead leaves an error relative to ``x - mean`` itself. (Subtracting the
    remainder ``mean - float32(mean)`` in the float32 pass does not survive: ``reassoc`` lets LLVM
    fold ``(x - m) - dm`` back into ``x - float32(m + dm)``.) Three reads of a row that sits in L1."""
    C = x.shape[1]
    dt = y.dtype
    for r in range(lo, hi):
        s = 0.0
        for j in range(C):
            s += x[r, j]
        mu = s / C
        s2 = 0.0
        for j in range(C):
            d = x[r, j] - mu
            s2 += d * d
            y[r, j] = d
        rs = 1.0 / np.sqrt(s2 / C + eps)
        k = dt.type(rs)
        for j in range(C):
            y[r, j] = y[r, j] * k * w[j] + b[j]
        mean[r] = mu
        rstd[r] = rs


@_jit(**_PAR)
def _ln_2d(x, w, b, eps, y, mean, rstd, nchunks):
    N = x.shape[0]
    if nchunks <= 1:
        _ln_rows(x, w, b, eps, y, mean, rstd, 0, N)
    else:
        for c in prange(nchunks):
            _ln_rows(x, w, b, eps, y, mean, rstd, c * N // nchunks, (c + 1) * N // nchunks)


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layer norm over the last axis: ``(y, mean, rstd)``; mean/rstd float64-accumulated, x's dtype."""
    if not _float_pair(x) or x.size == 0 or x.ndim == 0:
        return numpy_ref.layer_norm(x, w, b, eps)
    x2 = _rows(x)
    C = x2.shape[1]
    pdt = np.result_type(np.asarray(w).dtype, np.asarray(b).dtype, x.dtype)  # row math is float64 anyway
    w1 = _as(w, (C,), pdt)
    b1 = _as(b, (C,), pdt)
    y = np.empty_like(x2)
    mean = np.empty(x2.shape[0], dtype=x.dtype)
    rstd = np.empty(x2.shape[0], dtype=x.dtype)
    _ln_2d(x2, w1, b1, float(eps), y, mean, rstd, _nchunks(x2.size))
    return y.reshape(x.shape), mean.reshape(x.shape[:-1]), rstd.reshape(x.shape[:-1])


@_jit
def _ln_bwd_rows(dy, x, w, mean, rstd, dx, dw, db, lo, hi):
    """Rows ``lo..hi`` of the layer-norm backward; ``dw``/``db`` are this chunk's float64 partial sums.

    Per row: one pass for ``mean(g)`` and ``mean(g * xhat)`` (``g = dy * w``) that also accumulates
    ``dw += dy * xhat`` and ``db += dy``, then one write pass for
    ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))`` in x's dtype (the sums stay float64).
    """
    C = x.shape[1]
    dt = dx.dtype
    for r in range(lo, hi):
        mu = np.float64(mean[r])
        rs = np.float64(rstd[r])
        sg = 0.0
        sgx = 0.0
        for j in range(C):
            xh = (x[r, j] - mu) * rs
            d = np.float64(dy[r, j])
            g = d * w[j]
            sg += g
            sgx += g * xh
            dw[j] += d * xh
            db[j] += d
        m = dt.type(mu)
        k = dt.type(rs)
        mg = dt.type(sg / C)
        mgx = dt.type(sgx / C)
        for j in range(C):
            dx[r, j] = k * (dy[r, j] * w[j] - mg - (x[r, j] - m) * k * mgx)


@_jit(**_PAR)
def _ln_bwd_2d(dy, x, w, mean, rstd, dx, dwp, dbp, nchunks):
    N = x.shape[0]
    if nchunks <= 1:
        _ln_bwd_rows(dy, x, w, mean, rstd, dx, dwp[0], dbp[0], 0, N)
    else:
        for c in prange(nchunks):
            _ln_bwd_rows(dy, x, w, mean, rstd, dx, dwp[c], dbp[c], c * N // nchunks, (c + 1) * N // nchunks)


def layer_norm_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, mean: np.ndarray,
                        rstd: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward of ``layer_norm``: ``(dx, dw [C], db [C])``. Each parallel chunk sums its own float64
    ``dw``/``db`` rows (no shared writes); the chunks' partials are added at the end."""
    if not _float_pair(x, dy) or x.size == 0 or x.ndim == 0:
        return numpy_ref.layer_norm_backward(dy, x, w, mean, rstd)
    x2 = _rows(x)
    N, C = x2.shape
    dy2 = _rows(_as(dy, x.shape, x.dtype))
    w1 = _as(w, (C,), np.result_type(np.asarray(w).dtype, x.dtype))
    mean1 = _as(np.asarray(mean).reshape(-1), (N,), x.dtype)  # read as float64 inside the kernel
    rstd1 = _as(np.asarray(rstd).reshape(-1), (N,), x.dtype)
    nch = _nchunks(x2.size)
    dx = np.empty_like(x2)
    dwp = np.zeros((nch, C))
    dbp = np.zeros((nch, C))
    _ln_bwd_2d(dy2, x2, w1, mean1, rstd1, dx, dwp, dbp, nch)
    wdt = np.asarray(w).dtype
    dw, db = (dwp[0], dbp[0]) if nch == 1 else (dwp.sum(axis=0), dbp.sum(axis=0))
    return dx.reshape(x.shape), dw.astype(wdt), db.astype(wdt)


# ========================================================================================= GELU
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
    n = x.shape[0]
    if nchunks <= 1:
        _gelu_span(x, y, 0, n)
    else:
        for c in prange(nchunks):
            _gelu_span(x, y, c * n // nchunks, (c + 1) * n // nchunks)


@_jit(**_PAR)
def _gelu_bwd_1d(x, dy, dx, nchunks):
    n = x.shape[0]
    if nchunks <= 1:
        _gelu_bwd_span(x, dy, dx, 0, n)
    else:
        for c in prange(nchunks):
            _gelu_bwd_span(x, dy, dx, c * n // nchunks, (c + 1) * n // nchunks)


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation (GPT-2's ``gelu_new``), elementwise, x's dtype."""
    if not _float_pair(x) or x.size == 0:
        return numpy_ref.gelu(x)
    x1 = np.ascontiguousarray(x).reshape(-1)
    y = np.empty_like(x1)
    _gelu_1d(x1, y, _nchunks(x1.size))
    return y.reshape(x.shape)


def gelu_backward(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """``dy * gelu'(x)`` (tanh approximation), x's dtype."""
    if not _float_pair(x, dy) or x.size == 0:
        return numpy_ref.gelu_backward(x, dy)
    x1 = np.ascontiguousarray(x).reshape(-1)
    dy1 = _as(dy, x.shape, x.dtype).reshape(-1)
    dx = np.empty_like(x1)
    _gelu_bwd_1d(x1, dy1, dx, _nchunks(x1.size))
    return dx.reshape(x.shape)


# ==================================================================================== embedding
@_jit
def _emb_bwd_cols(ids, dout, dw, c0, c1):
    """``dw[ids[n], c0:c1] += dout[n, c0:c1]`` for every n in order: rows are added in the same
    order as ``np.add.at``, so the result is bit-identical to the reference."""
    for n in range(ids.shape[0]):
        dst = dw[ids[n], c0:c1]  # slices indexed from 0: no wraparound fix-up, vector adds
        src = dout[n, c0:c1]
        for j in range(dst.shape[0]):
            dst[j] += src[j]


@_jit(**_PAR)
def _emb_bwd_2d(ids, dout, dw, nchunks):
    """Race-free scatter-add: ``prange`` over column slices (multiples of 16 = one cache line of
    float32), so two threads never write the same element, nor the same cache line, whatever the ids."""
    C = dout.shape[1]
    if nchunks <= 1:
        _emb_bwd_cols(ids, dout, dw, 0, C)
    else:
        for c in prange(nchunks):
            c0 = min(C, (c * C // nchunks + 15) // 16 * 16)
            c1 = C if c == nchunks - 1 else min(C, ((c + 1) * C // nchunks + 15) // 16 * 16)
            _emb_bwd_cols(ids, dout, dw, c0, c1)


def embedding_backward(ids: np.ndarray, dout: np.ndarray, vocab_size: int) -> np.ndarray:
    """Scatter-add rows of ``dout [N, C]`` into ``dW [vocab_size, C]`` at ``ids [N]``; repeats accumulate.

    Ids outside ``[0, vocab_size)`` raise ``IndexError``.
    """
    C = dout.shape[-1]
    ids1 = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
    d2 = np.ascontiguousarray(dout).reshape(-1, C)
    if d2.shape[0] != ids1.shape[0]:
        raise ValueError(f"embedding_backward: {ids1.shape[0]} ids for {d2.shape[0]} rows of dout")
    if ids1.size and (ids1.min() < 0 or ids1.max() >= vocab_size):
        raise IndexError(f"embedding_backward: ids must be in [0, {vocab_size}), got "
                         f"[{ids1.min()}, {ids1.max()}]")
    if not _float_pair(d2):
        return numpy_ref.embedding_backward(ids1, d2, vocab_size)
    dw = np.zeros((vocab_size, C), dtype=d2.dtype)
    nch = _nchunks(d2.size) if C >= 32 else 1
    _emb_bwd_2d(ids1, d2, dw, nch)
    return dw


# ================================================================================= gradient norm
@_jit
def _sum_squares_1d(x):
    """One pass, float64 accumulator (``reassoc`` lets LLVM keep several partial sums in SIMD lanes)."""
    acc = 0.0
    for i in range(x.shape[0]):
        xi = np.float64(x[i])
        acc += xi * xi
    return acc


def sum_squares(x: np.ndarray) -> float:
    """``sum(x**2)`` in float64 without a float64 copy of ``x`` (see :func:`numpy_ref.sum_squares`)."""
    if x.dtype not in _FLOATS or not x.flags.c_contiguous:
        return numpy_ref.sum_squares(x)
    return float(_sum_squares_1d(x.reshape(-1)))


# ======================================================================================== AdamW
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
    n = p.shape[0]
    if nchunks <= 1:
        _adamw_span(p, g, m, v, decay, b1, c1, b2, c2, step, bc2, eps, 0, n)
    else:
        for c in prange(nchunks):
            _adamw_span(p, g, m, v, decay, b1, c1, b2, c2, step, bc2, eps, c * n // nchunks, (c + 1) * n // nchunks)


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
    _adamw_1d(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1),
              ty(1.0 - lr * weight_decay), ty(b1), ty(1.0 - b1), ty(b2), ty(1.0 - b2),
              ty(lr / bc1), ty(bc2), ty(eps), _nchunks(3 * p.size))


# ============================================================================== dropout hashing
_U1, _U2, _U3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)


@_jit(inline="always")
def _u24(seed, idx):
    """Top 24 bits of SplitMix64's finaliser of ``idx * golden + seed`` (see numpy_ref.dropout_keep)."""
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
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    return np.uint64(seed % 2**64), np.uint64(round(dropout_p * (1 << 24)))


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
    n = x.shape[0]
    if nchunks <= 1:
        _dropout_span(x, y, seed, thresh, zscale, 0, n)
    else:
        for c in prange(nchunks):
            _dropout_span(x, y, seed, thresh, zscale, c * n // nchunks, (c + 1) * n // nchunks)


def dropout(x: np.ndarray, p: float, seed: int) -> np.ndarray:
    """Compiled twin of :func:`numpy_ref.dropout`: one pass, no mask array, no random-number state."""
    sd, thresh = _dropout_args(p, seed)
    if x.dtype not in _FLOATS:
        return numpy_ref.dropout(x, p, seed)
    xc = np.ascontiguousarray(x)
    y = np.empty_like(xc)
    _dropout_1d(xc.reshape(-1), y.reshape(-1), sd, thresh, x.dtype.type(1.0 / (1.0 - p)), _nchunks(x.size))
    return y.reshape(x.shape)  # ascontiguousarray makes a 0-d input 1-d


# ===================================================================================== attention
# Tiled by 4 query rows: each sweep over the keys (or over D) updates 4 rows at once, so one vector
# load of K^T (or V) feeds 4 FMAs and the loop overhead is paid once per tile instead of once per row.
# (One row at a time, the baby GPT's 64 x 64 x 32 heads spent most of their time in loop set-up and
# scalar remainders: 14 GFLOP/s.) Each head is first copied into contiguous scratch, so q, k, v and
# the gradients can be strided views (the [B, H, T, D] transposes of a [B, T, C] activation).
_QT = 4


@_jit(inline="always")
def _head_row(a, s, b, h, j, D):
    """Row ``A[b, h, j, :]`` of a strided 4-D array ``A``, given as its flat memory ``a`` and the element
    strides ``s`` of its first three axes (see ``_flat``): a unit-stride slice, so copies use vector loads."""
    start = b * s[0] + h * s[1] + j * s[2]
    return a[start:start + D]


@_jit(inline="always")
def _head_rows(a, s, b, h, out):
    """``out[j, d] = A[b, h, j, d]``: one head of a strided 4-D array as contiguous rows."""
    D = out.shape[1]
    for j in range(out.shape[0]):
        src = _head_row(a, s, b, h, j, D)
        dst = out[j]
        for d in range(D):
            dst[d] = src[d]


@_jit(inline="always")
def _head_store(src, a, s, b, h):
    """``A[b, h, j, d] = src[j, d]``: a head's contiguous result rows into a strided 4-D array."""
    D = src.shape[1]
    for j in range(src.shape[0]):
        dst = _head_row(a, s, b, h, j, D)
        row = src[j]
        for d in range(D):
            dst[d] = row[d]


@_jit(inline="always")
def _head_cols(a, s, b, h, out):
    """``out[d, j] = A[b, h, j, d]``: one head transposed to ``[D, S]`` (keys contiguous)."""
    D = out.shape[0]
    for j in range(out.shape[1]):
        src = _head_row(a, s, b, h, j, D)
        for d in range(D):
            out[d, j] = src[d]


@_jit
def _tile_dots(x, i0, mt, out, lim, scale):
    """``out[r, j] = scale * (x[i0 + r] . M[j])`` for ``r < 4``, ``j < lim``, with ``mt = M^T`` ``[D, S]``.

    Loop nest: 2 rows of ``mt`` per sweep over the keys; each sweep loads 2 key vectors and updates
    4 output rows (8 FMAs per 8 keys). Rows of ``x`` past its end repeat the last one (ignored by
    the caller).
    """
    D = mt.shape[0]
    n = x.shape[0] - 1
    x0 = x[min(i0, n)]
    x1 = x[min(i0 + 1, n)]
    x2 = x[min(i0 + 2, n)]
    x3 = x[min(i0 + 3, n)]
    o0 = out[0]
    o1 = out[1]
    o2 = out[2]
    o3 = out[3]
    for j in range(lim):
        o0[j] = 0
        o1[j] = 0
        o2[j] = 0
        o3[j] = 0
    d = 0
    while d + 2 <= D:
        m0 = mt[d]
        m1 = mt[d + 1]
        a0, b0 = x0[d] * scale, x0[d + 1] * scale
        a1, b1 = x1[d] * scale, x1[d + 1] * scale
        a2, b2 = x2[d] * scale, x2[d + 1] * scale
        a3, b3 = x3[d] * scale, x3[d + 1] * scale
        for j in range(lim):
            u = m0[j]
            w = m1[j]
            o0[j] += a0 * u + b0 * w
            o1[j] += a1 * u + b1 * w
            o2[j] += a2 * u + b2 * w
            o3[j] += a3 * u + b3 * w
        d += 2
    if d < D:
        m0 = mt[d]
        a0, a1, a2, a3 = x0[d] * scale, x1[d] * scale, x2[d] * scale, x3[d] * scale
        for j in range(lim):
            u = m0[j]
            o0[j] += a0 * u
            o1[j] += a1 * u
            o2[j] += a2 * u
            o3[j] += a3 * u


@_jit
def _tile_weighted(w, m, lim, acc):
    """``acc[r, :] = sum_{j < lim} w[r, j] * m[j, :]`` for ``r < 4`` (``m`` is ``[S, D]``, contiguous).

    2 rows of ``m`` per sweep over D: 2 vector loads feed 8 FMAs into the 4 accumulator rows.
    """
    D = m.shape[1]
    a0 = acc[0]
    a1 = acc[1]
    a2 = acc[2]
    a3 = acc[3]
    for d in range(D):
        a0[d] = 0
        a1[d] = 0
        a2[d] = 0
        a3[d] = 0
    j = 0
    while j + 2 <= lim:
        r0 = m[j]
        r1 = m[j + 1]
        p0, q0 = w[0, j], w[0, j + 1]
        p1, q1 = w[1, j], w[1, j + 1]
        p2, q2 = w[2, j], w[2, j + 1]
        p3, q3 = w[3, j], w[3, j + 1]
        for d in range(D):
            u = r0[d]
            v = r1[d]
            a0[d] += p0 * u + q0 * v
            a1[d] += p1 * u + q1 * v
            a2[d] += p2 * u + q2 * v
            a3[d] += p3 * u + q3 * v
        j += 2
    if j < lim:
        r0 = m[j]
        p0, p1, p2, p3 = w[0, j], w[1, j], w[2, j], w[3, j]
        for d in range(D):
            u = r0[d]
            a0[d] += p0 * u
            a1[d] += p1 * u
            a2[d] += p2 * u
            a3[d] += p3 * u


@_jit
def _cols_weighted(w, j0, m, lo, hi, acc):
    """``acc[c, :] = sum_{lo <= i < hi} w[i, j0 + c] * m[i, :]`` for ``c < 4``: 4 columns of ``w``
    against the rows of ``m``, 2 rows per sweep over D. Columns past ``w``'s end repeat the last one."""
    D = m.shape[1]
    n = w.shape[1] - 1
    c0, c1, c2, c3 = min(j0, n), min(j0 + 1, n), min(j0 + 2, n), min(j0 + 3, n)
    a0 = acc[0]
    a1 = acc[1]
    a2 = acc[2]
    a3 = acc[3]
    for d in range(D):
        a0[d] = 0
        a1[d] = 0
        a2[d] = 0
        a3[d] = 0
    i = lo
    while i + 2 <= hi:
        r0 = m[i]
        r1 = m[i + 1]
        p0, q0 = w[i, c0], w[i + 1, c0]
        p1, q1 = w[i, c1], w[i + 1, c1]
        p2, q2 = w[i, c2], w[i + 1, c2]
        p3, q3 = w[i, c3], w[i + 1, c3]
        for d in range(D):
            u = r0[d]
            v = r1[d]
            a0[d] += p0 * u + q0 * v
            a1[d] += p1 * u + q1 * v
            a2[d] += p2 * u + q2 * v
            a3[d] += p3 * u + q3 * v
        i += 2
    if i < hi:
        r0 = m[i]
        p0, p1, p2, p3 = w[i, c0], w[i, c1], w[i, c2], w[i, c3]
        for d in range(D):
            u = r0[d]
            a0[d] += p0 * u
            a1[d] += p1 * u
            a2[d] += p2 * u
            a3[d] += p3 * u


@_jit(inline="always")
def _visible(i, S, off, causal):
    """Keys visible to query ``i``: ``S``, or ``i + off + 1`` (clamped to ``0..S``) when causal."""
    return min(S, max(0, i + off + 1)) if causal else S


@_jit
def _attn_head(qh, kt, vh, oh, lse, bh, scale, causal, seed, thresh, zscale):
    """One (batch, head) ``bh`` from contiguous scratch (``qh [T, D]``, ``kt = K^T [D, S]``, ``vh [S, D]``)
    into ``oh [T, D]``, 4 query rows per tile; for each row i of the tile, with ``lim`` visible keys::

        s[j] = (q[i] . k[j]) * scale      j < lim        (_tile_dots over K^T)
        m = max s;  s[j] = exp(s[j] - m);  l = sum s      (8-lane exp, float64 sum)
        out[i] = sum_j s[j] v[j] / l                      (_tile_weighted over V)
        lse[i] = m + log l

    Masked keys are not computed beyond the tile's last row (whose ``lim`` is the largest), so
    causal attention does about half the work of the dense one, and the T x S matrix is never stored
    (one 4 x S tile per head).
    """
    T, D = qh.shape
    S = kt.shape[1]
    off = S - T
    dt = oh.dtype
    sc = np.zeros((_QT, S), dtype=dt)
    acc = np.empty((_QT, D), dtype=dt)
    inv = np.zeros(_QT, dtype=dt)
    for i0 in range(0, T, _QT):
        nr = min(_QT, T - i0)
        lt = _visible(i0 + nr - 1, S, off, causal)  # the tile's widest row
        _tile_dots(qh, i0, kt, sc, lt, scale)
        for r in range(_QT):
            row = sc[r]
            lim = _visible(i0 + r, S, off, causal) if r < nr else 0
            if lim == 0:  # past T, or no visible key (T > S): no distribution, NaN as in the reference
                for j in range(lt):
                    row[j] = 0
                if r < nr:
                    lse[bh, i0 + r] = np.nan
                inv[r] = np.nan
                continue
            m = _row_max(sc, r, lim)
            for j in range(lim):  # exp pass, then the float64 sum pass (see _softmax_rows)
                row[j] = _exp(row[j] - m)
            l = 0.0
            for j in range(lim):
                l += row[j]
            lse[bh, i0 + r] = np.log(l) + m
            inv[r] = dt.type(1.0 / l)
            if thresh > 0:  # dropout on the probabilities: the hash of (seed, flat index) decides
                base = np.uint64((bh * T + i0 + r) * S)
                for j in range(lim):
                    if _u24(seed, base + np.uint64(j)) >= thresh:
                        row[j] = row[j] * zscale
                    else:
                        row[j] = 0
            for j in range(lim, lt):
                row[j] = 0
        _tile_weighted(sc, vh, lt, acc)
        for r in range(nr):
            f = inv[r]
            for d in range(D):
                oh[i0 + r, d] = acc[r, d] * f


@_jit
def _attn_fwd_one(q, qs, k, ks, v, vs, out, os_, lse, bh, H, T, S, D, scale, causal, seed, thresh, zscale):
    """Head ``bh``: copy it in from the strided 4-D arrays, :func:`_attn_head`, copy the result out."""
    b = bh // H
    h = bh % H
    dt = out.dtype
    qh = np.empty((T, D), dtype=dt)
    kt = np.empty((D, S), dtype=dt)
    vh = np.empty((S, D), dtype=dt)
    oh = np.empty((T, D), dtype=dt)
    _head_rows(q, qs, b, h, qh)
    _head_cols(k, ks, b, h, kt)
    _head_rows(v, vs, b, h, vh)
    _attn_head(qh, kt, vh, oh, lse, bh, scale, causal, seed, thresh, zscale)
    _head_store(oh, out, os_, b, h)


@_jit(**_PAR)
def _attn_fwd(q, qs, k, ks, v, vs, out, os_, lse, B, H, T, S, D, scale, causal, seed, thresh, zscale, parallel):
    if parallel:
        for bh in prange(B * H):
            _attn_fwd_one(q, qs, k, ks, v, vs, out, os_, lse, bh, H, T, S, D, scale, causal, seed, thresh, zscale)
    else:
        for bh in range(B * H):
            _attn_fwd_one(q, qs, k, ks, v, vs, out, os_, lse, bh, H, T, S, D, scale, causal, seed, thresh, zscale)


@_jit
def _attn_bwd_head(qh, kh, kt, vt, doh, lse, dqh, dkh, dvh, bh, scale, causal, seed, thresh, zscale):
    """Backward for one (batch, head) ``bh`` from contiguous scratch (``qh``, ``doh`` ``[T, D]``; ``kh``
    ``[S, D]``; ``kt``, ``vt`` = K^T, V^T ``[D, S]``) into ``dqh``, ``dkh``, ``dvh``, recomputing P from
    ``lse``. Pass 1, 4 query rows per tile::

        p[j] = exp(q[i] . k[j] * scale - lse[i])     j < lim       (_tile_dots over K^T)
        g[j] = do[i] . v[j]                                         (_tile_dots over V^T)
        delta = sum_j p[j] g[j]   (= do[i] . out[i])               (float64 dot)
        ds[j] = scale * p[j] * (g[j] - delta)
        dq[i] = sum_j ds[j] k[j]                                    (_tile_weighted over K)

    keeping P and dS in two zeroed ``[T + 3, S]`` scratch matrices (one head: L2-sized). Pass 2, 4 keys
    at a time: ``dk[j] = sum_i ds[i, j] q[i]`` and ``dv[j] = sum_i p[i, j] do[i]`` over the queries that
    see key j (_cols_weighted). With dropout, ``z[j]`` (0 or 1/(1-p), the forward's hash) multiplies
    ``p[j]`` in P (for dv) and ``g[j]`` in dS. Each head writes only its own rows, so one head per
    thread is race-free.
    """
    T, D = qh.shape
    S = kh.shape[0]
    off = S - T
    dt = dqh.dtype
    P = np.zeros((T + _QT - 1, S), dtype=dt)    # p * z (p itself without dropout); masked entries 0
    DS = np.zeros((T + _QT - 1, S), dtype=dt)   # dS; masked entries 0
    G = np.empty((_QT, S), dtype=dt)
    z = np.empty(S, dtype=dt)                    # one row's dropout scales (0 or 1/(1-p)), hashed once
    acc = np.empty((_QT, D), dtype=dt)
    dropping = thresh > 0
    one = dt.type(1.0)
    for i0 in range(0, T, _QT):
        nr = min(_QT, T - i0)
        lt = _visible(i0 + nr - 1, S, off, causal)
        pt = P[i0:i0 + _QT]
        st = DS[i0:i0 + _QT]
        _tile_dots(qh, i0, kt, pt, lt, scale)
        _tile_dots(doh, i0, vt, G, lt, one)
        for r in range(_QT):
            prow = pt[r]
            srow = st[r]
            g = G[r]
            lim = _visible(i0 + r, S, off, causal) if r < nr else 0
            li = dt.type(lse[bh, i0 + r]) if lim > 0 else dt.type(0)
            for j in range(lim):
                prow[j] = _exp(prow[j] - li)
            if dropping:
                base = np.uint64((bh * T + i0 + r) * S)
                for j in range(lim):
                    z[j] = zscale if _u24(seed, base + np.uint64(j)) >= thresh else 0
                for j in range(lim):
                    g[j] = g[j] * z[j]
            delta = 0.0
            for j in range(lim):
                delta += prow[j] * g[j]
            dl = dt.type(delta)
            for j in range(lim):
                srow[j] = prow[j] * (g[j] - dl) * scale
            if dropping:
                for j in range(lim):
                    prow[j] = prow[j] * z[j]
            for j in range(lim, lt):
                prow[j] = 0
                srow[j] = 0
        _tile_weighted(st, kh, lt, acc)
        for r in range(nr):
            for d in range(D):
                dqh[i0 + r, d] = acc[r, d]
    acc2 = np.empty((_QT, D), dtype=dt)
    for j0 in range(0, S, _QT):
        nk = min(_QT, S - j0)
        lo = min(T, max(0, j0 - off)) if causal else 0   # the first query that sees key j0
        _cols_weighted(DS, j0, qh, lo, T, acc)
        _cols_weighted(P, j0, doh, lo, T, acc2)
        for c in range(nk):
            for d in range(D):
                dkh[j0 + c, d] = acc[c, d]
                dvh[j0 + c, d] = acc2[c, d]


@_jit
def _attn_bwd_one(q, qs, k, ks, v, vs, lse, do, dos, dq, dqs, dk, dks, dv, dvs, bh, H, T, S, D, scale, causal, seed,
                  thresh, zscale):
    """Head ``bh``: copy it in from the strided 4-D arrays, :func:`_attn_bwd_head`, copy the gradients out."""
    b = bh // H
    h = bh % H
    dt = dq.dtype
    qh = np.empty((T, D), dtype=dt)
    kh = np.empty((S, D), dtype=dt)
    kt = np.empty((D, S), dtype=dt)
    vt = np.empty((D, S), dtype=dt)
    doh = np.empty((T, D), dtype=dt)
    _head_rows(q, qs, b, h, qh)
    _head_rows(k, ks, b, h, kh)
    _head_cols(k, ks, b, h, kt)
    _head_cols(v, vs, b, h, vt)
    _head_rows(do, dos, b, h, doh)
    dqh = np.empty((T, D), dtype=dt)
    dkh = np.empty((S, D), dtype=dt)
    dvh = np.empty((S, D), dtype=dt)
    _attn_bwd_head(qh, kh, kt, vt, doh, lse, dqh, dkh, dvh, bh, scale, causal, seed, thresh, zscale)
    _head_store(dqh, dq, dqs, b, h)
    _head_store(dkh, dk, dks, b, h)
    _head_store(dvh, dv, dvs, b, h)


@_jit(**_PAR)
def _attn_bwd(q, qs, k, ks, v, vs, lse, do, dos, dq, dqs, dk, dks, dv, dvs, B, H, T, S, D, scale, causal, seed,
              thresh, zscale, parallel):
    if parallel:
        for bh in prange(B * H):
            _attn_bwd_one(q, qs, k, ks, v, vs, lse, do, dos, dq, dqs, dk, dks, dv, dvs, bh, H, T, S, D, scale, causal,
                          seed, thresh, zscale)
    else:
        for bh in range(B * H):
            _attn_bwd_one(q, qs, k, ks, v, vs, lse, do, dos, dq, dqs, dk, dks, dv, dvs, bh, H, T, S, D, scale, causal,
                          seed, thresh, zscale)


# --------------------------------------------- small heads: BLAS products and compiled row passes
# For heads whose [T, S] x D products are small (the baby GPT's 64 x 64 x 32), OpenBLAS's GEMM on one
# thread computes q k^T or P v ~1.5x faster than the tile loops above, even doing the masked half
# too. There the attention is a chain per group of heads: np.matmul for the products, a compiled pass
# over the rows of the [T, S] matrix in between; groups of heads run on different threads at once
# (``threads.run_parts``). The price is one [B, H, T, S] scratch matrix per call (two in the backward),
# freed on return: still nothing but lse is saved for the backward.
_ATTN_BLAS_MAX = 1 << 18  # T * S * D below which a head's products are "small": OpenBLAS then runs each
#                           on the calling thread (its own threshold for threading is 65536 * 4).


@_jit
def _attn_probs(p, lse, b0, b1, h0, h1, H, T, scale, off, causal):
    """Heads ``b0..b1 x h0..h1`` of ``p [B * H * T, S]``: the raw scores ``q . k`` in place become the
    probabilities ``softmax(scale * q . k)`` (masked keys 0); ``lse [B * H * T]`` gets each row's
    logsumexp. Per row, with ``lim`` visible keys::

        s[j] = scale * s[j];  m = max s          # _row_max: 0 when not finite
        s[j] = exp(s[j] - m);  l = sum s          # 8-lane exp (float32), float64 sum
        s[j] = s[j] / l;  s[lim:] = 0;  lse = m + log l

    A row with no visible key (``T > S``) has no distribution: NaN, as in the reference.
    """
    S = p.shape[1]
    dt = p.dtype
    for b in range(b0, b1):
        i = 0
        for r in range((b * H + h0) * T, (b * H + h1) * T):
            lim = _visible(i, S, off, causal)
            i = i + 1 if i + 1 < T else 0
            if lim == 0:
                for j in range(S):
                    p[r, j] = np.nan
                lse[r] = np.nan
                continue
            for j in range(lim):
                p[r, j] = p[r, j] * scale
            m = _row_max(p, r, lim)
            for j in range(lim):
                p[r, j] = _exp(p[r, j] - m)
            l = 0.0
            for j in range(lim):
                l += p[r, j]
            inv = dt.type(1.0 / l)
            for j in range(lim):
                p[r, j] = p[r, j] * inv
            for j in range(lim, S):
                p[r, j] = 0
            lse[r] = m + np.log(l)


@_jit
def _attn_dscores(p, dp, lse, b0, b1, h0, h1, H, T, scale, off, causal):
    """Backward row pass for heads ``b0..b1 x h0..h1``: the raw scores ``p`` become ``P = exp(scale q . k
    - lse)`` and ``dp = dO . v`` becomes ``dS = scale * P * (dP - sum_j P dP)``, both in place (masked
    keys, and rows without a visible key, 0)."""
    S = p.shape[1]
    dt = p.dtype
    for b in range(b0, b1):
        i = 0
        for r in range((b * H + h0) * T, (b * H + h1) * T):
            lim = _visible(i, S, off, causal)
            i = i + 1 if i + 1 < T else 0
            if not np.isfinite(lse[r]):
                lim = 0
            l = dt.type(lse[r]) if lim else dt.type(0)
            for j in range(lim):
                p[r, j] = _exp(p[r, j] * scale - l)
            delta = 0.0
            for j in range(lim):
                delta += p[r, j] * dp[r, j]
            dl = dt.type(delta)
            for j in range(lim):
                dp[r, j] = scale * p[r, j] * (dp[r, j] - dl)
            for j in range(lim, S):
                p[r, j] = 0
                dp[r, j] = 0


def _head_groups(B: int, H: int) -> list[tuple[int, int, int, int]]:
    """``(b0, b1, h0, h1)`` groups of heads, one per thread: split the batch, else the heads."""
    n = numba.get_num_threads()
    if n > 1 and B >= n:
        return [(c * B // n, (c + 1) * B // n, 0, H) for c in range(n)]
    if n > 1 and H >= n:
        return [(0, B, c * H // n, (c + 1) * H // n) for c in range(n)]
    return [(0, B, 0, H)]


def _small_heads(q4: np.ndarray, k4: np.ndarray, dropout_p: float) -> bool:
    """Take the BLAS chain (above) rather than the fused tile kernels? (No dropout mask in the chain.)"""
    T, D = q4.shape[2:]
    S = k4.shape[2]
    return dropout_p == 0.0 and S > 0 and T * S * D < _ATTN_BLAS_MAX


def _attn_fwd_blas(q4, k4, v4, out, lse, scale, causal):
    B, H, T, D = q4.shape
    S = k4.shape[2]
    dt = out.dtype
    p = np.empty((B, H, T, S), dtype=dt)
    rows, lse1, sc = p.reshape(-1, S), lse.reshape(-1), dt.type(scale)

    def group(g):
        b0, b1, h0, h1 = g
        at = (slice(b0, b1), slice(h0, h1))
        np.matmul(q4[at], np.swapaxes(k4[at], -1, -2), out=p[at])             # raw scores
        _attn_probs(rows, lse1, b0, b1, h0, h1, H, T, sc, S - T, causal)    # -> probabilities
        np.matmul(p[at], v4[at], out=out[at])

    threads.run_parts(group, _head_groups(B, H))


def _attn_bwd_blas(q4, k4, v4, lse, do4, dq, dk, dv, scale, causal):
    B, H, T, D = q4.shape
    S = k4.shape[2]
    dt = dq.dtype
    p = np.empty((B, H, T, S), dtype=dt)
    dp = np.empty((B, H, T, S), dtype=dt)
    prow, dprow, lse1, sc = p.reshape(-1, S), dp.reshape(-1, S), lse.reshape(-1), dt.type(scale)

    def group(g):
        b0, b1, h0, h1 = g
        at = (slice(b0, b1), slice(h0, h1))
        np.matmul(q4[at], np.swapaxes(k4[at], -1, -2), out=p[at])             # raw scores
        np.matmul(do4[at], np.swapaxes(v4[at], -1, -2), out=dp[at])           # dP
        _attn_dscores(prow, dprow, lse1, b0, b1, h0, h1, H, T, sc, S - T, causal)  # -> P, dS
        np.matmul(np.swapaxes(p[at], -1, -2), do4[at], out=dv[at])
        np.matmul(dp[at], k4[at], out=dq[at])
        np.matmul(np.swapaxes(dp[at], -1, -2), q4[at], out=dk[at])

    threads.run_parts(group, _head_groups(B, H))


def _flat(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 4-D array as ``(memory, strides)``: a 1-D view of its memory from ``a[0, 0, 0, 0]`` and the element
    strides of its first three axes, so ``a[b, h, j, d] == memory[b*s0 + h*s1 + j*s2 + d]``.

    This is how the attention kernels take strided views (the model's ``[B, H, T, D]`` transposes of a
    ``[B, T, C]`` activation) without copying them: to Numba the memory is a plain contiguous 1-D array
    (fast to dispatch, one compile per dtype) and each row is unit-stride (vector loads). An array whose
    last axis is not unit-stride, or with a negative stride, is copied first.
    """
    it = a.itemsize
    if a.size == 0:
        return np.empty(0, dtype=a.dtype), np.zeros(3, dtype=np.int64)
    if any(st < 0 or st % it for st in a.strides) or (a.shape[3] > 1 and a.strides[3] != it):
        a = np.ascontiguousarray(a)
    es = [st // it for st in a.strides]
    span = 1 + sum((n - 1) * e for n, e in zip(a.shape, es))
    return np.lib.stride_tricks.as_strided(a, shape=(span,), strides=(it,)), np.array(es[:3], dtype=np.int64)


def _as4(a: np.ndarray, dt) -> np.ndarray:
    """``a`` as a 4-D ``[B, H, n, D]`` array of dtype ``dt``: 4-D views pass through with their strides."""
    a = a.astype(dt, copy=False)
    if a.ndim == 4:
        return a
    return np.ascontiguousarray(a).reshape((-1, 1) + a.shape[-2:])


def _head_major(shape: tuple, dt) -> np.ndarray:
    """An uninitialised ``[B, H, n, D]`` result whose memory is ``[B, n, H, D]``: moving the heads back
    next to each other (``y.transpose(0, 2, 1, 3).reshape(B, n, H * D)``) is then free."""
    B, H, n, D = shape
    return np.empty((B, n, H, D), dtype=dt).transpose(0, 2, 1, 3)


def _packed_grads(shape: tuple, dt) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uninitialised ``dq, dk, dv`` (each ``[B, H, T, D]``) as views of one ``[B, T, 3 * H * D]`` array,
    q, k and v side by side per token: the layout of the model's ``c_attn`` output they were split
    from. The engine then finds the three gradients already in place in one array of the input's
    shape and uses it as is (``autograd._gather_slices``): no copying the pieces together."""
    B, H, T, D = shape
    packed = np.empty((B, T, 3 * H * D), dtype=dt).reshape(B, T, 3, H, D)
    return tuple(packed[:, :, i].transpose(0, 2, 1, 3) for i in range(3))


def _attn_args(q, k, v):
    if q.ndim < 2 or k.ndim != q.ndim or v.ndim != q.ndim:
        raise ValueError(f"attention expects [..., T, D] q and [..., S, D] k, v; got {q.shape}, {k.shape}, {v.shape}")
    if k.shape != v.shape or k.shape[:-2] != q.shape[:-2] or k.shape[-1] != q.shape[-1]:
        raise ValueError(f"attention: incompatible shapes q {q.shape}, k {k.shape}, v {v.shape}")
    dt = np.result_type(q, k, v)
    return dt, _as4(q, dt), _as4(k, dt), _as4(v, dt)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, causal: bool = True,
              dropout_p: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fused attention core ``softmax(q k^T * scale [+ causal mask]) v``; returns ``(out, lse f64)``.

    Small heads (``T * S * D < _ATTN_BLAS_MAX``, no dropout; the baby GPT's) go through BLAS products and
    a compiled row pass per group of heads, the groups on helper threads (``_attn_fwd_blas``); larger ones
    through one fused tile kernel per (batch, head), ``prange`` over heads. Inputs may be strided 4-D
    views (no copies).
    A 4-D output is laid out ``[B, T, H, D]`` in memory (see ``_head_major``). A query with no visible
    key (only possible when ``T > S``) has no distribution: its output row and lse are NaN, as in
    the reference.
    """
    if q.dtype not in _FLOATS:
        return numpy_ref.attention(q, k, v, scale, causal, dropout_p, seed)
    sd, thresh = _dropout_args(dropout_p, seed)
    dt, q4, k4, v4 = _attn_args(q, k, v)
    B, H, T, D = q4.shape
    S = k4.shape[2]
    out = _head_major(q4.shape, dt)
    lse = np.empty(q.shape[:-1], dtype=np.float64)  # owns its memory (profilers count it as saved)
    if q4.size and _small_heads(q4, k4, dropout_p):
        _attn_fwd_blas(q4, k4, v4, out, lse, scale, causal)
    elif q4.size:  # (an empty q means an empty out: nothing to write)
        work = B * H * T * S * max(D, 1)
        _attn_fwd(*_flat(q4), *_flat(k4), *_flat(v4), *_flat(out), lse.reshape(B * H, T), B, H, T, S, D,
                  dt.type(scale), bool(causal), sd, thresh, dt.type(1.0 / (1.0 - dropout_p)),
                  numba.get_num_threads() > 1 and work >= _PAR_MIN)
    return out.reshape(q.shape[:-1] + (D,)).astype(q.dtype, copy=False), lse


def attention_backward(q: np.ndarray, k: np.ndarray, v: np.ndarray, lse: np.ndarray, dout: np.ndarray,
                       scale: float, causal: bool = True, dropout_p: float = 0.0, seed: int = 0
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`attention`, by the same path as the forward (small heads: BLAS products and
    ``_attn_dscores``; otherwise one fused kernel per (batch, head)); returns ``(dq, dk, dv)``.
    For 4-D self-attention they are views of one ``[B, T, 3 * H * D]`` array (``_packed_grads``);
    otherwise each is laid out ``[B, n, H, D]`` in memory, like the forward's output."""
    if q.dtype not in _FLOATS:
        return numpy_ref.attention_backward(q, k, v, lse, dout, scale, causal, dropout_p, seed)
    sd, thresh = _dropout_args(dropout_p, seed)
    dt, q4, k4, v4 = _attn_args(q, k, v)
    if dout.shape != q.shape:
        raise ValueError(f"attention_backward: dout {dout.shape} must have q's shape {q.shape}")
    B, H, T, D = q4.shape
    do4 = _as4(dout, dt)
    lse2 = np.ascontiguousarray(lse, dtype=np.float64).reshape(B * H, T)
    if q.ndim == 4 and q.shape == k.shape:  # self-attention on [B, H, T, D] heads
        dq, dk, dv = _packed_grads(q4.shape, dt)
    else:
        dq, dk, dv = _head_major(q4.shape, dt), _head_major(k4.shape, dt), _head_major(v4.shape, dt)
    if q4.size and _small_heads(q4, k4, dropout_p):
        _attn_bwd_blas(q4, k4, v4, lse2, do4, dq, dk, dv, scale, causal)
    elif q4.size:
        S = k4.shape[2]
        work = B * H * T * S * max(D, 1)
        # (packed, the three gradients share one memory: each flat view starts at its own piece and runs on)
        _attn_bwd(*_flat(q4), *_flat(k4), *_flat(v4), lse2, *_flat(do4), *_flat(dq), *_flat(dk), *_flat(dv),
                  B, H, T, S, D, dt.type(scale), bool(causal), sd, thresh, dt.type(1.0 / (1.0 - dropout_p)),
                  numba.get_num_threads() > 1 and work >= _PAR_MIN)
    else:  # no queries (T = 0): the keys and values get zero gradients
        for a in (dq, dk, dv):
            a[...] = 0
    return (dq.reshape(q.shape).astype(q.dtype, copy=False), dk.reshape(k.shape).astype(k.dtype, copy=False),
            dv.reshape(v.shape).astype(v.dtype, copy=False))


# ======================================================================================== warmup
def warmup() -> None:
    """Compile (or load from the disk cache) every kernel for float32 and float64 on tiny inputs,
    through both the serial and the parallel branch of each driver."""
    rng = np.random.default_rng(0)
    for dt in _FLOATS:
        for n in (4, 200):  # one signature per dtype compiles both the serial and the prange branch
            x = rng.standard_normal((n, n)).astype(dt)
            matmul(x, x)
            matmul(x, x.T)
            y = softmax(x, causal=True)
            softmax_backward(y, x)
            ls = log_softmax(x)
            log_softmax_backward(ls, x)
            t = rng.integers(0, n, n)
            loss, lse = cross_entropy(x, t, -100)
            cross_entropy_backward(x, t, lse, loss, -100)
            w = np.ones(n, dt)
            yy, mu, rs = layer_norm(x, w, w, 1e-5)
            layer_norm_backward(x, x, w, mu, rs)
            gelu(x)
            gelu_backward(x, x)
            embedding_backward(t, x, n)
            p, g, m, v = (x.copy() for _ in range(4))
            v *= v
            adamw_step(p, g, m, v, 1e-3, (0.9, 0.95), 1e-8, 0.1, 1)
            sum_squares(x)
            q = x.reshape(1, 1, n, n)[..., :8].copy()
            out, alse = attention(q, q, q, 0.3)
            attention_backward(q, q, q, alse, out, 0.3)
            out, alse = attention(q, q, q, 0.3, True, 0.1, 7)
            attention_backward(q, q, q, alse, out, 0.3, True, 0.1, 7)
            dropout_keep(7, np.arange(n, dtype=np.uint64), 0.1)
            dropout(x, 0.1, 7)
