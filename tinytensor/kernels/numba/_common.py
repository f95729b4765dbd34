"""Shared pieces of the Numba kernels: JIT flags, the size threshold and the one chunked launch,
wrapper helpers, the vectorisable float32 ``exp``/``tanh`` and the row maximum.

Design notes that hold for every family are in :mod:`tinytensor.kernels.numba` (its docstring).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ... import runtime

# fastmath flags that keep NaN/inf semantics: reassociation (vectorised reductions), FMA contraction,
# reciprocal division, approximate libm and no signed zeros.
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}
_JIT = dict(cache=True, nogil=True, fastmath=_FM, error_model="numpy")
_PAR = dict(_JIT, parallel=True)

# Elements of work below which a kernel runs serially (no prange launch). Waking sleeping OpenMP
# workers (they spin only briefly: GOMP_SPINCOUNT, the policy of tinytensor.runtime) costs as much as a small row
# kernel (figures: benchmarks/kernels.py), so the baby GPT's layer norm stays serial while its GELU
# and every shakespeare-sized kernel run in parallel. Read at call time (tests lower it to 1).
_PAR_MIN = 1 << 18 if runtime.omp_passive() else 1 << 15
_FLOATS = (np.float32, np.float64)


def _nchunks(work: int) -> int:
    """How many parallel chunks to split ``work`` elements into: 1 (serial) when small."""
    return 1 if work < _PAR_MIN else numba.get_num_threads()


def _parallel(work: int) -> bool:
    """Is ``work`` elements worth a ``prange`` launch (more than one thread, above ``_PAR_MIN``)?"""
    return numba.get_num_threads() > 1 and work >= _PAR_MIN


def _jit(fn=None, **kw):
    return njit(**{**_JIT, **kw})(fn) if fn is not None else (lambda f: njit(**{**_JIT, **kw})(f))


@_jit(inline="always")
def _chunked(body, n, nchunks, args):
    """The one launch of every driver: ``body(*args, lo, hi)`` over ``0..n``, in one serial call when
    ``nchunks <= 1``, else split into ``nchunks`` contiguous chunks run by ``prange``.

    A ``prange`` launch costs as much as a whole small kernel, hence the serial branch (the wrappers
    reach the body directly through ``_launch`` instead, so that the driver is only compiled when a
    call is large enough to run in parallel); the chunks are contiguous so each thread streams
    through its own part of memory. With ``nchunks == n``
    every index is its own task (the GEMM's task grid, the attention's heads). Inlined into each
    caller (``inline="always"``): the caller is a ``parallel=True`` function whose compiled code,
    body included, is cached on disk (a body passed to a non-inlined function could not be cached).
    """
    if nchunks <= 1:
        body(*args, 0, n)
    else:
        for c in prange(nchunks):
            body(*args, c * n // nchunks, (c + 1) * n // nchunks)


def _launch(body, driver, n, nchunks, *args):
    """Run a kernel: ``body(*args, 0, n)`` on this thread when ``nchunks <= 1``, else the parallel
    ``driver(*args, nchunks)`` (a ``parallel=True`` function whose ``_chunked`` runs ``body`` on chunks).

    Why the wrapper calls the serial body itself rather than the driver with ``nchunks = 1``: compiling
    a ``parallel=True`` driver (its parfor and the gufunc under it) costs more than compiling the body,
    and Numba compiles lazily, so a run whose shapes stay below ``_PAR_MIN`` (the baby GPT's layer norm,
    cross-entropy, AdamW; the gradient checks) never compiles a driver at all. The machine code of the
    body is the same either way.
    """
    if nchunks <= 1:
        return body(*args, 0, n)
    return driver(*args, nchunks)


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


# ---------------------------------------------------------------- vectorisable exp / tanh helpers
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
    # The overloads are not inlined at Numba's IR level (no inline="always"): LLVM inlines the small
    # compiled helper into each loop anyway, so the loops still vectorise (same run time), while IR
    # inlining re-types the helper inside every kernel that calls it, a visible part of each compile.
    _exp_f32_jit = njit(inline="always", fastmath=_FM)(_exp_f32)
    _tanh_f32_jit = njit(inline="always", fastmath=_FM)(_tanh_f32)

    @overload(_exp, fastmath=_FM)
    def _exp_overload(x):
        if x == types.float32:
            return lambda x: _exp_f32_jit(x)
        return lambda x: np.exp(x)

    @overload(_tanh, fastmath=_FM)
    def _tanh_overload(x):
        if x == types.float32:
            return lambda x: _tanh_f32_jit(x)
        return lambda x: np.tanh(x)



def _rows(x: np.ndarray) -> np.ndarray:
    """C-contiguous ``[R, C]`` view (or copy) of ``x`` over its last axis."""
    return np.ascontiguousarray(x).reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1)


def _row_max_raw(x, r, lim):
    """Max of ``x[r, :lim]`` in x's dtype (``-inf`` when empty). A NaN may be skipped or returned: either
    way the callers' exp passes make the row NaN. The compiled version (the overload below) compares
    order-preserving integer keys instead of floats; this loop is its reference (``NUMBA_DISABLE_JIT``)."""
    m = x.dtype.type(-np.inf)
    for j in range(lim):
        v = x[r, j]
        if v > m:
            m = v
    return m


def _key_max(itype, sign_shift, low_bits):
    """``_row_max_raw`` for one float width, through order-preserving integer keys.

    A float compare-and-select loop does not vectorise without ``nnan`` (what should a NaN do to the
    max?), so it ran one element per cycle. The integer key of a float's bits, ``b ^ ((b >> 31) & 0x7fffffff)``
    (float32; 63 and 2^63 - 1 for float64), orders every non-NaN float as the float compare does (-0 just
    below +0) and maps back by the same formula; integer ``max`` vectorises (16 float32 lanes a
    ``vpmaxsd``): ~3x faster on the models' rows (768 x 65: 17 -> 6 us). A NaN with the sign bit clear
    keys above +inf and comes out as the max; x86's default NaN has it set and keys below -inf, so it is
    skipped: the callers' exp passes make the row NaN in both cases.
    """
    ftype = {np.int32: np.float32, np.int64: np.float64}[itype]
    lowest = itype(np.iinfo(itype).min)
    sh, lo = itype(sign_shift), itype(low_bits)

    def row_max(x, r, lim):
        m = lowest
        for j in range(lim):
            b = ftype(x[r, j]).view(itype)
            m = max(m, b ^ ((b >> sh) & lo))
        if lim == 0:
            return ftype(-np.inf)
        return itype(m ^ ((m >> sh) & lo)).view(ftype)
    return row_max


if not numba.config.DISABLE_JIT:
    _row_max_f32 = njit(inline="always", fastmath=_FM)(_key_max(np.int32, 31, 0x7FFFFFFF))
    _row_max_f64 = njit(inline="always", fastmath=_FM)(_key_max(np.int64, 63, 0x7FFFFFFFFFFFFFFF))

    @overload(_row_max_raw, fastmath=_FM, inline="always")
    def _row_max_raw_overload(x, r, lim):
        if x.dtype == types.float32:
            return lambda x, r, lim: _row_max_f32(x, r, lim)
        if x.dtype == types.float64:
            return lambda x, r, lim: _row_max_f64(x, r, lim)
        return _row_max_raw


@_jit(inline="always")
def _row_max(x, r, lim):
    """Max of ``x[r, :lim]`` in x's dtype; 0 when it is ``-inf`` (empty or all ``-inf``), so that
    ``exp(x - max)`` stays 0 on a fully masked row instead of NaN. A ``+inf`` max is kept: ``inf - inf``
    makes the row NaN, as PyTorch's softmax gives."""
    m = _row_max_raw(x, r, lim)
    if m == -np.inf:
        m = x.dtype.type(0)
    return m
