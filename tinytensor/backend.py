"""The backend seam: which kernel implementation the differentiable ops call.

Ops never import numba; they call ``backend.kernels().softmax(...)`` and the like, one attribute per row
of :data:`tinytensor.kernels.spec.KERNELS`. Three choices:

* ``"numpy"``: :mod:`tinytensor.kernels.numpy_ref`, the readable reference.
* ``"numba"``: :mod:`tinytensor.kernels.numba`, the compiled kernels.
* ``"auto"`` (default): per kernel, whichever ``python -m benchmarks.kernels`` measured faster on this
  machine, read from ``tinytensor/kernels/auto.json`` (see :func:`auto_choice`).

Pick with ``tt.set_backend(name)``, as a context manager ``with tt.set_backend("numpy"): ...``, or with
the environment variable ``TINYTENSOR_BACKEND``. With ``TINYTENSOR_DEBUG=1`` the compiled kernels check
the spec's preconditions first (``tinytensor.runtime``).
"""
from __future__ import annotations

import functools
import importlib
import types
from pathlib import Path

from . import runtime
from .kernels import numpy_ref, spec

BACKENDS = ("numpy", "numba", "auto")

AUTO_FILE = Path(runtime.AUTO_FILE)
"""Written by ``python -m benchmarks.kernels --write-auto``: per kernel, the faster twin on that machine."""
# Without the file: BLAS for matmul, the compiled twin otherwise.
AUTO_DEFAULT: dict[str, str] = {"matmul": "numpy"}
# Where auto picks the Numba GEMM, a rule by size still sends large products of >= 2 rows to BLAS
# (kernels.numba.gemm._BLAS_MIN: every one, or only the very large ones under runtime.one_pool)
_AUTO_BY_SIZE = {"matmul": "matmul_auto", "linear_grads": "linear_grads_auto"}


def auto_choice() -> dict[str, str]:
    """Kernel name -> ``"numpy"`` or ``"numba"`` under ``auto``: :data:`AUTO_FILE`'s ``choice`` table if
    present and readable, else :data:`AUTO_DEFAULT`; a kernel missing from both runs on numba."""
    choice = runtime.auto_file_choice()
    if choice is None:
        return dict(AUTO_DEFAULT)
    choice = {k: v for k, v in choice.items() if k in spec.KERNELS and v in ("numpy", "numba")}
    # subtle: the Numba GEMM's micro-kernel is written for 512-bit registers; on a CPU without AVX-512 it
    # still computes the right result but slower than BLAS, so the measured choice does not carry over
    if choice.get("matmul") == "numba" and not runtime.cpu_has("avx512f"):
        choice["matmul"] = "numpy"
    return choice


def _load_numba():
    try:
        return importlib.import_module("tinytensor.kernels.numba")
    except ImportError as e:  # numba missing or broken: say so once, run on the reference
        import warnings
        warnings.warn(f"numba kernels unavailable ({e}); using the NumPy reference kernels")
        return None


def _checked(kernel: spec.Kernel, fn):
    """``fn`` that first checks ``kernel``'s preconditions (``TINYTENSOR_DEBUG=1``)."""
    @functools.wraps(fn)
    def run(*args, **kw):
        kernel.check(*args, **kw)
        return fn(*args, **kw)
    return run


def _build(name: str) -> types.SimpleNamespace:
    if name == "numpy":
        return types.SimpleNamespace(**{k: getattr(numpy_ref, k) for k in spec.KERNELS}, name="numpy")
    nb = _load_numba()
    auto = auto_choice()
    table = {}
    for k, kernel in spec.KERNELS.items():
        # a Linear's backward products are GEMMs: they follow matmul's choice
        want = "numba" if name == "numba" else auto.get(k, auto.get("matmul", "numba") if k == "linear_grads" else "numba")
        impl = getattr(nb, k) if (nb is not None and want == "numba") else getattr(numpy_ref, k)
        if name == "auto" and impl is getattr(nb, k, None) and k in _AUTO_BY_SIZE:
            impl = getattr(nb, _AUTO_BY_SIZE[k])  # gemm.matmul_auto / linear_grads_auto
        if runtime.debug and kernel.check is not None and impl is not getattr(numpy_ref, k):
            impl = _checked(kernel, impl)
        table[k] = impl
    return types.SimpleNamespace(**table, name=name)


_cache: dict[str, types.SimpleNamespace] = {}
_current = runtime.requested_backend()
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
