"""Thread policy: two thread pools (OpenBLAS for matmul, Numba's OpenMP for the fused kernels) on few cores.

``TINYTENSOR_NUM_THREADS`` (default: all cores) is the number of threads each pool may use. The trap
is that both pools *spin*: after a GEMM, OpenBLAS's workers busy-wait for more work, and OpenMP's do
the same after a parallel loop. On a 2-core machine a spinning BLAS worker occupies the core the next
Numba loop needs, and every parallel barrier then waits for a scheduler time slice. Measured on the
baby GPT's training step (2 cores, one run, see the README): 1342 ms with both pools at their defaults,
67 ms with the policy below; 73 ms with Numba at 1 thread.

The policy, applied when ``tinytensor`` is imported:

* OpenMP workers wait passively (``OMP_WAIT_POLICY=PASSIVE``), read when Numba starts its pool.
* OpenBLAS workers go to sleep right after a GEMM (``OPENBLAS_THREAD_TIMEOUT=4``, i.e. 2^4 cycles)
  and use ``TINYTENSOR_NUM_THREADS`` threads. OpenBLAS reads these when NumPy is first imported, so
  they can only be set if ``tinytensor`` is imported before NumPy (``tinygpt`` and the benchmarks
  do this), or if you set them yourself.
* If NumPy was already loaded without ``OPENBLAS_THREAD_TIMEOUT``, BLAS keeps spinning, and the Numba
  kernels then run on one thread (``blas_spins()`` is True): one multi-threaded pool, not two fighting.

Every variable is only a default: what you set in the environment wins.
"""
from __future__ import annotations

import os
import sys


def requested_threads() -> int:
    """``TINYTENSOR_NUM_THREADS`` as an int (default: all cores)."""
    env = os.environ.get("TINYTENSOR_NUM_THREADS", "").strip()
    if not env:
        return os.cpu_count() or 1
    try:
        n = int(env)
    except ValueError:
        raise ValueError(f"TINYTENSOR_NUM_THREADS={env!r} is not an integer") from None
    if n < 1:
        raise ValueError(f"TINYTENSOR_NUM_THREADS must be >= 1, got {n}")
    return n


_numpy_was_loaded = "numpy" in sys.modules
_user_timeout = "OPENBLAS_THREAD_TIMEOUT" in os.environ


def configure_environment() -> None:
    """Set the pools' environment defaults (see the module docstring). Called by ``tinytensor/__init__``."""
    n = str(requested_threads())
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if not _numpy_was_loaded:
        os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
        os.environ.setdefault("OPENBLAS_NUM_THREADS", n)


def blas_spins() -> bool:
    """True when OpenBLAS was loaded before tinytensor could stop its workers from spinning."""
    return _numpy_was_loaded and not _user_timeout


def kernel_threads() -> int:
    """Threads for the Numba kernels under this policy."""
    n = requested_threads()  # validated even when the policy then says 1
    return 1 if blas_spins() else n
