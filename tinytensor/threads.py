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

A third, small pool: :func:`run_parts` runs independent parts of a kernel on Python helper threads
(``TINYTENSOR_NUM_THREADS`` parts at most, see ``kernels.numba_cpu._head_groups``). It is for chains
of calls that are each too small for OpenBLAS's threads (the attention of small heads: two GEMMs and
a compiled row pass per group of heads); NumPy's matmul and the ``nogil`` Numba kernels release the
GIL, so the parts run at the same time.
"""
from __future__ import annotations

import os
import queue
import sys
import threading


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


# ------------------------------------------------------------------------------ helper threads
# A few kernels (the attention of small heads) are a chain of small BLAS calls and compiled row passes
# per (batch, head). Each call is too small for OpenBLAS's own threads, so the chain is run for
# different heads on different threads at once: NumPy's matmul and the ``nogil`` Numba kernels release
# the GIL, so the parts do run in parallel. The helper threads are created on first use and then wait
# on a queue (a hand-off costs ~20-30 us on the 2-core EPYC).
_helpers: list["_Helper"] = []
_helpers_busy = threading.Lock()


class _Helper(threading.Thread):
    def __init__(self):
        super().__init__(name=f"tinytensor-helper-{len(_helpers)}", daemon=True)
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.start()

    def run(self) -> None:
        while True:
            fn, part, done = self.tasks.get()
            try:
                fn(part)
            except BaseException as e:  # handed to the caller, which re-raises it
                done.put(e)
            else:
                done.put(None)


def run_parts(fn, parts: list) -> None:
    """Call ``fn(part)`` for every part, the first on this thread and the others on helper threads at
    the same time; return when all are done, re-raising the first exception.

    The parts must be independent (they write disjoint memory). Runs them one after the other when
    there is one part, or when another thread is using the helpers already (no nesting, no deadlock).
    """
    if len(parts) <= 1 or not _helpers_busy.acquire(blocking=False):
        for part in parts:
            fn(part)
        return
    try:
        while len(_helpers) < len(parts) - 1:
            _helpers.append(_Helper())
        done: queue.SimpleQueue = queue.SimpleQueue()
        for helper, part in zip(_helpers, parts[1:]):
            helper.tasks.put((fn, part, done))
        error = None
        try:
            fn(parts[0])
        except BaseException as e:
            error = e
        for _ in parts[1:]:  # wait for every helper even after an error: they use the caller's arrays
            e = done.get()
            error = error or e
        if error is not None:
            raise error
    finally:
        _helpers_busy.release()


def _forget_helpers() -> None:
    """In a forked child the helper threads do not exist: start afresh."""
    global _helpers_busy
    _helpers.clear()
    _helpers_busy = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)
