"""The backend seam: which kernel module the differentiable ops call.

Ops never import numba; they call ``backend.kernels().softmax(...)`` and the like. Three choices:

* ``"numpy"``: :mod:`tinytensor.kernels.numpy_ref`, the readable reference.
* ``"numba"``: :mod:`tinytensor.kernels.numba_cpu`, the compiled kernels.
* ``"auto"`` (default): per kernel, whichever ``benchmarks/kernels.py`` measured faster on a 2-core
  CPU (the table ``AUTO_CHOICE`` below; matmul goes to BLAS, the fused row kernels to Numba).

Pick with ``tt.set_backend(name)``, as a context manager ``with tt.set_backend("numpy"): ...``, or with
the environment variable ``TINYTENSOR_BACKEND``.
"""
from __future__ import annotations

import importlib
import os
import types

from .kernels import numpy_ref

BACKENDS = ("numpy", "numba", "auto")

# Kernel name -> backend used under "auto". Filled from `python -m benchmarks.kernels` on the 2-core
# AMD EPYC (float32; figures are speed-ups of the Numba kernel over the NumPy reference at the baby /
# shakespeare-char shapes, 2 threads, rows undisturbed by other processes); a kernel missing here runs
# on numba when that module has it, else on numpy.
AUTO_CHOICE: dict[str, str] = {
    "matmul": "numpy",                  # OpenBLAS: the Numba GEMM reaches only 0.35-0.96x of it
    "softmax": "numba",                 # causal mask fused: 6.7x / 16.5x
    "softmax_backward": "numba",        # 6.0x / 11.8x
    "log_softmax": "numba",             # 3.8x / 9.3x
    "log_softmax_backward": "numba",    # 3.0x / 8.0x
    "cross_entropy": "numba",           # fused log-softmax + NLL: 3.9x / 9.7x
    "cross_entropy_backward": "numba",  # 4.2x / 10.7x
    "layer_norm": "numba",              # 5.2x / 42x
    "layer_norm_backward": "numba",     # 6.7x / 44x
    "gelu": "numba",                    # 16x / 25x
    "gelu_backward": "numba",           # 15x / 31x
    "embedding_backward": "numba",      # vs np.add.at: 23x / 40x
    "sum_squares": "numba",             # float64 accumulator without a float64 copy (grad clipping)
    "adamw_step": "numba",              # one fused pass: 5.5x / 11x
    "attention": "numba",               # fused core: 6.9x baby (1.06x the BLAS + numba-softmax composition)
    "attention_backward": "numba",      # 3.2x / 3.3x
}

_KERNEL_NAMES = [n for n in dir(numpy_ref) if not n.startswith("_") and callable(getattr(numpy_ref, n))
                 and getattr(getattr(numpy_ref, n), "__module__", "") == numpy_ref.__name__]


def _load_numba():
    try:
        return importlib.import_module("tinytensor.kernels.numba_cpu")
    except ImportError as e:  # numba missing or broken: say so once, run on the reference
        import warnings
        warnings.warn(f"numba kernels unavailable ({e}); using the NumPy reference kernels")
        return None


def _build(name: str) -> types.SimpleNamespace:
    if name == "numpy":
        return types.SimpleNamespace(**{k: getattr(numpy_ref, k) for k in _KERNEL_NAMES}, name="numpy")
    nb = _load_numba()
    table = {}
    for k in _KERNEL_NAMES:
        want = "numba" if name == "numba" else AUTO_CHOICE.get(k, "numba")
        impl = getattr(nb, k, None) if (nb is not None and want == "numba") else None
        table[k] = impl if impl is not None else getattr(numpy_ref, k)
    return types.SimpleNamespace(**table, name=name)


_cache: dict[str, types.SimpleNamespace] = {}
_current = os.environ.get("TINYTENSOR_BACKEND", "auto").strip().lower() or "auto"
if _current not in BACKENDS:
    raise ValueError(f"TINYTENSOR_BACKEND={_current!r}; expected one of {BACKENDS}")


def kernels() -> types.SimpleNamespace:
    """The kernel table of the current backend (attribute per kernel name)."""
    ns = _cache.get(_current)
    if ns is None:
        ns = _cache[_current] = _build(_current)
    return ns


def get_backend() -> str:
    """Name of the current backend: ``"numpy"``, ``"numba"`` or ``"auto"``."""
    return _current


class set_backend:
    """Select the kernel backend; usable as a plain call or as a context manager.

    >>> tt.set_backend("numpy")            # from now on
    >>> with tt.set_backend("numba"): ...   # only inside the block
    """

    def __init__(self, name: str):
        global _current
        if name not in BACKENDS:
            raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS}")
        self._previous = _current
        _current = name

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _current
        _current = self._previous
        return False
