"""Reductions over axes: sum, mean, max, min, var.

``axis`` is None (all axes), an int or a tuple, ``keepdims`` as in NumPy. Ties in max/min share the
gradient equally; a NaN in a reduced slice makes that slice's max/min NaN (NumPy's rule).
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd import Function
from ..errors import ShapeError
from .common import expand_reduced, normalize_axes


class Sum(Function):
    name = "sum"

    @staticmethod
    def forward(ctx, a, axis, keepdims):
        ctx.shape, ctx.keepdims = a.shape, keepdims
        ctx.axes = normalize_axes(axis, a.ndim, "sum")
        return np.sum(a, axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        return (np.broadcast_to(expand_reduced(g, ctx.shape, ctx.axes, ctx.keepdims), ctx.shape),)


class Mean(Function):
    name = "mean"

    @staticmethod
    def forward(ctx, a, axis, keepdims):
        ctx.shape, ctx.keepdims = a.shape, keepdims
        ctx.axes = normalize_axes(axis, a.ndim, "mean")
        ctx.count = math.prod(a.shape[i] for i in ctx.axes)
        return np.mean(a, axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        g = expand_reduced(g, ctx.shape, ctx.axes, ctx.keepdims) / ctx.count
        return (np.broadcast_to(g, ctx.shape),)


class _Extremum(Function):
    """Shared rule for max/min: the gradient goes to the winning elements, ties share equally."""
    _np = staticmethod(np.max)

    @classmethod
    def _forward(cls, ctx, a, axis, keepdims):
        axes = normalize_axes(axis, a.ndim, cls.name)
        if a.size == 0:
            raise ShapeError(f"{cls.name}: cannot reduce an empty array of shape {a.shape}")
        out = cls._np(a, axis=axes, keepdims=True)
        ctx.a, ctx.out_k, ctx.axes, ctx.keepdims = a, out, axes, keepdims
        return out if keepdims else np.squeeze(out, axis=axes)

    @staticmethod
    def backward(ctx, g):
        win = (ctx.a == ctx.out_k)
        count = win.sum(axis=ctx.axes, keepdims=True)
        g = expand_reduced(g, ctx.a.shape, ctx.axes, ctx.keepdims)
        return ((win * (g / count)).astype(ctx.a.dtype, copy=False),)


class Max(_Extremum):
    name = "max"
    _np = staticmethod(np.max)

    @staticmethod
    def forward(ctx, a, axis, keepdims):
        return Max._forward(ctx, a, axis, keepdims)


class Min(_Extremum):
    name = "min"
    _np = staticmethod(np.min)

    @staticmethod
    def forward(ctx, a, axis, keepdims):
        return Min._forward(ctx, a, axis, keepdims)


class Var(Function):
    """Population variance (ddof=0, NumPy's default): d var / d a = 2 (a - mean) / N."""
    name = "var"

    @staticmethod
    def forward(ctx, a, axis, keepdims):
        axes = normalize_axes(axis, a.ndim, "var")
        ctx.centered = a - a.mean(axis=axes, keepdims=True)
        ctx.axes, ctx.keepdims = axes, keepdims
        ctx.count = math.prod(a.shape[i] for i in axes)
        return np.var(a, axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        g = expand_reduced(g, ctx.centered.shape, ctx.axes, ctx.keepdims)
        return (g * ctx.centered * (2.0 / ctx.count),)
