"""Checks of the user's values at the public boundary, one function per kind of value.

Each check runs once, where the value enters: an op's forward (the kernels behind the ops check
nothing), a module's or optimizer's constructor. They raise the project's error types
(:mod:`tinytensor.errors`) naming the value, and accept Python numbers and NumPy scalars
(``np.float32(0.5)``, ``np.int64(3)``) alike, handing kernels plain Python floats.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..errors import DTypeError, UsageError


def real_number(op: str, name: str, value) -> float:
    """``value`` (a Python or NumPy real number, not a bool) as a Python float; :class:`DTypeError` else."""
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise DTypeError(f"{op}: {name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def check_probability(op: str, name: str, p) -> float:
    """A dropout probability: finite with ``0 <= p < 1``; returned as a Python float."""
    p = real_number(op, name, p)
    if not (math.isfinite(p) and 0.0 <= p < 1.0):
        raise UsageError(f"{op}: {name} must be in [0, 1), got {p}")
    return p


def check_class_ids(op: str, name: str, ids: np.ndarray, n: int, ignore_index: int | None = None) -> None:
    """Integer ``ids``, each in ``[0, n)`` or equal to ``ignore_index``: :class:`DTypeError` for another
    dtype, :class:`UsageError` naming the first offending value otherwise."""
    if not np.issubdtype(ids.dtype, np.integer):
        raise DTypeError(f"{op}: {name} must be integers, got dtype {ids.dtype}")
    if ids.size == 0:
        return
    lo, hi = ids.min(), ids.max()
    if lo >= 0 and hi < n:  # the common case: one pass each for min and max
        return
    bad = (ids < 0) | (ids >= n)
    if ignore_index is not None:
        bad &= ids != ignore_index
    if bad.any():
        extra = f" (or {ignore_index}, the ignore_index)" if ignore_index is not None else ""
        raise UsageError(f"{op}: {name} must be in [0, {n}){extra}; got {ids[bad].flat[0]} "
                         f"(min {lo}, max {hi})")
