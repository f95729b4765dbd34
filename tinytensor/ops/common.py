"""Helpers the op families share: axis normalisation, broadcasting check, C-contiguity.

Axes may be Python or NumPy integers. Errors are the project's types (:mod:`tinytensor.errors`).
"""
from __future__ import annotations

import numbers

import numpy as np

from ..errors import DTypeError, ShapeError, UsageError


def normalize_axes(axis, ndim: int, op: str) -> tuple[int, ...]:
    """Normalise an ``axis`` argument (None, int or tuple of ints) to a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axs = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    out = []
    for a in axs:
        if not isinstance(a, numbers.Integral) or isinstance(a, (bool, np.bool_)):
            raise DTypeError(f"{op}: axis must be an integer or a tuple of integers, got {axis!r}")
        if not -ndim <= a < max(ndim, 1) or (ndim == 0 and a not in (0, -1)):
            raise ShapeError(f"{op}: axis {a} is out of range for input of shape with {ndim} dims")
        out.append(int(a) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise UsageError(f"{op}: repeated axis in {axis}")
    return tuple(sorted(out)) if ndim else ()


def expand_reduced(g: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """Put back the reduced axes of ``g`` as size-1 axes so it broadcasts against the input."""
    if not keepdims and axes:
        g = np.expand_dims(g, axes)
    return g


def contiguous(a: np.ndarray) -> np.ndarray:
    """C-contiguous ``a`` (kernels index raw memory); unlike ``np.ascontiguousarray`` keeps 0-d as 0-d."""
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def check_broadcast(op: str, *shapes: tuple[int, ...]) -> None:
    """Raise :class:`ShapeError` naming every shape when they do not broadcast together."""
    if all(sh == shapes[0] for sh in shapes[1:]):  # the common case, without np.broadcast_shapes' overhead
        return
    try:
        np.broadcast_shapes(*shapes)
    except ValueError:
        raise ShapeError(f"{op}: shapes {' and '.join(map(str, shapes))} do not broadcast") from None


def last_axis(x: np.ndarray, axis: int, op: str) -> tuple[np.ndarray, int]:
    """``x`` with ``axis`` moved last (a view), and that axis normalised."""
    if x.ndim == 0:
        raise ShapeError(f"{op} needs at least a 1-D input, got a 0-d one")
    ax = normalize_axes(axis, x.ndim, op)[0]
    return (x if ax == x.ndim - 1 else np.moveaxis(x, ax, -1)), ax
