"""Pure array kernels: ``numpy_ref`` (readable reference) and ``numba_cpu`` (compiled), same signatures."""
from . import numpy_ref

__all__ = ["numpy_ref", "warmup"]


def warmup() -> float:
    """Compile (or load from cache) every Numba kernel once; returns the seconds it took."""
    import time
    t0 = time.perf_counter()
    try:
        from . import numba_cpu
    except ImportError:
        return 0.0
    fn = getattr(numba_cpu, "warmup", None)
    if fn is not None:
        fn()
    return time.perf_counter() - t0
