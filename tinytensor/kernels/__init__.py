"""Pure array kernels: ``spec`` (the table of kernels), ``numpy_ref`` (readable reference) and ``numba``
(compiled, one module per family; ``numba_cpu`` is its old name), same signatures."""
import time

from . import numpy_ref, spec

__all__ = ["numpy_ref", "spec", "warmup"]


def warmup() -> float:
    """Compile (or load from cache) every Numba kernel once; returns the seconds it took (0 without numba)."""
    t0 = time.perf_counter()
    try:
        from . import numba as compiled
    except ImportError:
        return 0.0
    compiled.warmup()
    return time.perf_counter() - t0
