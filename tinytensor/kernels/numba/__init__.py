"""Compiled CPU kernels: the Numba twins of :mod:`tinytensor.kernels.numpy_ref`, one module per family.

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
  thread) (one helper, ``_common._chunked``); the wrappers pick 1 below ``_common._PAR_MIN``
  elements of work and then call the serial loop body directly (``_common._launch``).
* **Compile only what runs.** Numba compiles each function lazily, per argument types, at its first
  call (or loads it from the disk cache): nothing compiles at import, a float32 run never compiles
  the float64 variants, and a ``parallel=True`` driver (dearer to compile than its body) only when a
  call is large enough to use it. While a compile runs, stderr says so (``_compile_notice``).
* **fastmath** only with ``{'nsz', 'arcp', 'contract', 'afn', 'reassoc'}`` (reassociation is what
  lets LLVM vectorise reductions): never ``nnan``/``ninf``, so NaN and inf still propagate.
* **GEMM** (``matmul``, :mod:`.gemm`): BLIS-style. B is packed into 32-column panels, A is read in place
  in 12-row panels (only its edge panel packed), both along the source's rows (so ``x @ W.T`` needs no
  transposed copy); a micro-kernel emitted as LLVM vector IR (:mod:`.simd`) keeps a 12 x 32 float32 tile in 24 512-bit registers and does
  per k two vector loads, 12 broadcasts and 24 FMAs; ``prange`` over regions of C. ``auto`` (when
  ``auto.json`` picks it and the CPU has AVX-512, ``backend.auto_choice``) runs on it single rows (the GEMV)
  and, under ``runtime.one_pool`` (OpenMP's workers left spinning), every product below 2^27 multiply-adds;
  larger ones go to OpenBLAS (``gemm.matmul_auto``, ``gemm._BLAS_MIN``; without the one pool, every product
  of >= 2 rows). The figures against OpenBLAS are in ``benchmarks/results/gemm*.json`` and ``docs/performance.md``.
* **No BLAS inside ``prange``**: the GEMM is Numba code. Under ``auto``, though, the large products go to
  OpenBLAS (``gemm.matmul_auto``), whose workers sleep right after each GEMM (the thread policy of
  :mod:`tinytensor.runtime`), so its pool and Numba's do not fight over the cores. The attention of small heads calls BLAS from Python helper threads
  (``threads.run_parts``) on products too small for OpenBLAS to thread.
* Everything also runs with ``NUMBA_DISABLE_JIT=1`` as plain Python (slowly), for teaching and
  debugging: the ``_exp``/``_tanh`` helpers fall back to NumPy's, ``prange`` becomes ``range``.

Modules: ``_compile_notice`` (the stderr notice while a kernel compiles), ``_common`` (flags, the one
chunked launch ``_chunked`` and ``_launch``, exp/tanh, row max), ``gemm``, ``rows`` (softmax,
log-softmax, cross-entropy, layer norm), ``pointwise`` (GELU, sum_squares), ``embedding``, ``optimizer``
(AdamW), ``dropout``, ``attention_tiles`` (fused kernels for larger heads) and ``attention_blas`` (small
heads, and the public attention wrappers).

Threads and the disk cache of compiled code (``cache=True``) are process-wide policy, set by
:func:`tinytensor.runtime.configure` before this package is imported.
"""
from __future__ import annotations

import numba
import numpy as np

from ... import runtime
from .. import spec
from . import _common, _compile_notice
from ._common import _FLOATS
from .attention_blas import attention, attention_backward, attention_probs, attention_probs_backward
from .dropout import dropout, dropout_keep
from .embedding import embedding_backward
from .gemm import linear_grads, linear_grads_auto, matmul, matmul_auto
from .optimizer import adamw_step
from .pointwise import bias_add, gelu, gelu_and_grad, gelu_backward, relu, relu_backward, sum_squares
from .rows import (add_layer_norm, cross_entropy, cross_entropy_backward, layer_norm, layer_norm_backward,
                   log_softmax, log_softmax_backward, softmax, softmax_backward)

__all__ = [*spec.KERNELS, "set_num_threads", "warmup"]


def set_num_threads(n: int | None = None) -> int:
    """Set Numba's thread count (default: :func:`tinytensor.runtime.kernel_threads`); returns it."""
    if n is None:
        n = runtime.kernel_threads()
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    n = min(int(n), numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    return n


set_num_threads()
_compile_notice.install()  # "compiling kernels (first run only, ...)" on stderr while Numba compiles


def warmup() -> None:
    """Compile (or load from the disk cache) every kernel of :data:`spec.KERNELS` for float32 and float64,
    on the row's small example (n = 4, serial) and a larger one (n = 200) with the size threshold
    lowered so that it takes the ``prange`` drivers (which a run only compiles when it needs them)."""
    rng = np.random.default_rng(0)
    table = globals()
    par_min = _common._PAR_MIN
    try:
        for dt in _FLOATS:
            for n in (4, 200):
                _common._PAR_MIN = par_min if n == 4 else 1
                for k in spec.KERNELS.values():
                    table[k.name](*k.example(rng, n, dt))
    finally:
        _common._PAR_MIN = par_min
