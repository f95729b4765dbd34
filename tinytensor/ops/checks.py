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

from ..errors import ConfigError, DTypeError, ShapeError, UsageError


def real_number(op: str, name: str, value) -> float:
    """``value`` (a Python or NumPy real number, not a bool) as a Python float; :class:`DTypeError` else."""
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise DTypeError(f"{op}: {name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def check_int_fields(owner, names, minimum: int = 1, prefix: str = "") -> None:
    """Each ``owner.<name>`` is a Python int (not a bool) ``>= minimum``: a config's count fields.

    ``prefix`` starts the message (``"BertConfig."``). Raises :class:`ConfigError` naming the field.
    """
    for name in names:
        v = getattr(owner, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ConfigError(f"{prefix}{name} must be an int >= {minimum}, got {v!r}")


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


def check_attention_shapes(op: str, q: tuple, k: tuple, v: tuple) -> tuple[int, ...]:
    """q ``[..., T, D]``, k ``[..., S, D]``, v ``[..., S, Dv]`` with broadcastable batch dims; returns the
    score shape ``batch + (T, S)``, or raises :class:`ShapeError` naming the three shapes."""
    ok = len(q) >= 2 and len(k) >= 2 and len(v) >= 2 and q[-1] == k[-1] and k[-2] == v[-2]
    if ok:
        try:
            batch = np.broadcast_shapes(q[:-2], k[:-2], v[:-2])
        except ValueError:
            ok = False
    if not ok:
        raise ShapeError(f"{op}: q {q}, k {k}, v {v} must be [..., T, D], [..., S, D], [..., S, Dv] "
                         f"with broadcastable batch dims")
    return tuple(batch) + (q[-2], k[-2])


def check_key_padding_mask(op: str, mask: np.ndarray, scores: tuple) -> np.ndarray:
    """A bool ``[B, S]`` mask (True = ignore that key) for scores ``[B, ..., T, S]``; returned reshaped to
    ``[B, 1, ..., 1, S]`` so it broadcasts against them. :class:`DTypeError` / :class:`ShapeError` else."""
    if mask.dtype != np.bool_:
        raise DTypeError(f"{op}: key_padding_mask must be bool (True = ignore that key), got dtype {mask.dtype}")
    if len(scores) < 3 or mask.shape != (scores[0], scores[-1]):
        raise ShapeError(f"{op}: key_padding_mask {mask.shape} must be [B, S] for attention scores {scores} "
                         f"([B, ..., T, S], at least one batch dim)")
    return mask.reshape((scores[0],) + (1,) * (len(scores) - 2) + (scores[-1],))


def check_attn_mask(op: str, dtype: np.dtype, shape: tuple, scores: tuple) -> None:
    """A bool (True = ignore) or additive float mask broadcastable to the scores ``[..., T, S]``:
    :class:`DTypeError` for another dtype, :class:`ShapeError` naming both shapes if it does not broadcast."""
    if dtype != np.bool_ and not np.issubdtype(dtype, np.floating):
        raise DTypeError(f"{op}: attn_mask must be bool (True = ignore) or float (added to the scores), "
                         f"got dtype {dtype}")
    try:
        fits = np.broadcast_shapes(shape, scores) == tuple(scores)
    except ValueError:
        fits = False
    if not fits:
        raise ShapeError(f"{op}: attn_mask {shape} does not broadcast to the attention scores {scores} ([..., T, S])")
