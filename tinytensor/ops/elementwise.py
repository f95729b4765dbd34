"""Elementwise ops: arithmetic, exp/log/sqrt, tanh/sigmoid, maximum/minimum, clip, cast, where.

Kinks use a documented subgradient: abs'(0) = 0, clip passes the gradient on the closed interval
[lo, hi], and ties in maximum/minimum share the gradient equally (ReLU, relu'(0) = 0, is in :mod:`.nn`).
NaN propagates as in NumPy and PyTorch: a NaN input gives a NaN output.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..errors import UsageError
from .common import check_broadcast


class Add(Function):
    name = "add"

    @staticmethod
    def forward(ctx, a, b):
        check_broadcast("add", a.shape, b.shape)
        return a + b

    @staticmethod
    def backward(ctx, g):
        return g, g


class Sub(Function):
    name = "sub"

    @staticmethod
    def forward(ctx, a, b):
        check_broadcast("sub", a.shape, b.shape)
        return a - b

    @staticmethod
    def backward(ctx, g):
        return g, -g


class Mul(Function):
    name = "mul"

    @staticmethod
    def forward(ctx, a, b):
        check_broadcast("mul", a.shape, b.shape)
        ctx.a, ctx.b = a, b
        return a * b

    @staticmethod
    def backward(ctx, g):
        na, nb = ctx.needs_input_grad
        return (g * ctx.b if na else None), (g * ctx.a if nb else None)


class Div(Function):
    name = "div"

    @staticmethod
    def forward(ctx, a, b):
        check_broadcast("div", a.shape, b.shape)
        ctx.a, ctx.b = a, b
        return a / b

    @staticmethod
    def backward(ctx, g):
        na, nb = ctx.needs_input_grad
        ga = g / ctx.b if na else None
        gb = -g * ctx.a / (ctx.b * ctx.b) if nb else None
        return ga, gb


class Neg(Function):
    name = "neg"

    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return (-g,)


class Pow(Function):
    """``a ** b`` with a tensor exponent. d/db = a**b * log(a), defined for a > 0."""
    name = "pow"

    @staticmethod
    def forward(ctx, a, b):
        check_broadcast("pow", a.shape, b.shape)
        out = a ** b
        ctx.a, ctx.b, ctx.out = a, b, out
        return out

    @staticmethod
    def backward(ctx, g):
        na, nb = ctx.needs_input_grad
        ga = g * ctx.b * ctx.a ** (ctx.b - 1) if na else None
        gb = g * ctx.out * np.log(ctx.a) if nb else None
        return ga, gb


class PowScalar(Function):
    """``a ** c`` for a Python number ``c``: d/da = c * a**(c-1)."""
    name = "pow_scalar"

    @staticmethod
    def forward(ctx, a, exponent):
        ctx.a, ctx.c = a, exponent
        return a ** np.asarray(exponent, dtype=a.dtype) if np.issubdtype(a.dtype, np.floating) else a ** exponent

    @staticmethod
    def backward(ctx, g):
        c = ctx.c
        return (g * (c * ctx.a ** (c - 1)).astype(ctx.a.dtype, copy=False),)


class Exp(Function):
    name = "exp"

    @staticmethod
    def forward(ctx, a):
        ctx.out = np.exp(a)
        return ctx.out

    @staticmethod
    def backward(ctx, g):
        return (g * ctx.out,)


class Log(Function):
    name = "log"

    @staticmethod
    def forward(ctx, a):
        ctx.a = a
        return np.log(a)

    @staticmethod
    def backward(ctx, g):
        return (g / ctx.a,)


class Log1p(Function):
    """``log(1 + a)``, accurate for small ``a`` (where ``log(1 + a)`` would round ``1 + a`` first).

    d/da log(1 + a) = 1 / (1 + a).
    """
    name = "log1p"

    @staticmethod
    def forward(ctx, a):
        ctx.a = a
        return np.log1p(a)

    @staticmethod
    def backward(ctx, g):
        return (g / (1 + ctx.a),)


class Sqrt(Function):
    name = "sqrt"

    @staticmethod
    def forward(ctx, a):
        ctx.out = np.sqrt(a)
        return ctx.out

    @staticmethod
    def backward(ctx, g):
        return (g / (2 * ctx.out),)


class Tanh(Function):
    name = "tanh"

    @staticmethod
    def forward(ctx, a):
        ctx.out = np.tanh(a)
        return ctx.out

    @staticmethod
    def backward(ctx, g):
        return (g * (1 - ctx.out * ctx.out),)


class Sigmoid(Function):
    """``1 / (1 + exp(-a))``, computed without overflow for large |a|."""
    name = "sigmoid"

    @staticmethod
    def forward(ctx, a):
        e = np.exp(-np.abs(a))
        out = np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)
        ctx.out = out
        return out

    @staticmethod
    def backward(ctx, g):
        return (g * ctx.out * (1 - ctx.out),)


class Abs(Function):
    """``|a|``; subgradient 0 at a == 0 (``np.sign``)."""
    name = "abs"

    @staticmethod
    def forward(ctx, a):
        ctx.a = a
        return np.abs(a)

    @staticmethod
    def backward(ctx, g):
        return (g * np.sign(ctx.a),)


class Maximum(Function):
    """Elementwise max; at ties each side gets half the gradient."""
    name = "maximum"

    @staticmethod
    def forward(ctx, a, b):
        check_broadcast("maximum", a.shape, b.shape)
        ctx.a, ctx.b = a, b
        return np.maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        share = np.where(ctx.a > ctx.b, 1.0, np.where(ctx.a == ctx.b, 0.5, 0.0)).astype(g.dtype)
        return g * share, g * (1 - share)


class Minimum(Function):
    """Elementwise min; at ties each side gets half the gradient."""
    name = "minimum"

    @staticmethod
    def forward(ctx, a, b):
        check_broadcast("minimum", a.shape, b.shape)
        ctx.a, ctx.b = a, b
        return np.minimum(a, b)

    @staticmethod
    def backward(ctx, g):
        share = np.where(ctx.a < ctx.b, 1.0, np.where(ctx.a == ctx.b, 0.5, 0.0)).astype(g.dtype)
        return g * share, g * (1 - share)


class Clip(Function):
    """Clamp to ``[lo, hi]`` (either may be None); gradient passes where ``lo <= a <= hi``."""
    name = "clip"

    @staticmethod
    def forward(ctx, a, lo, hi):
        if lo is not None and hi is not None and lo > hi:
            raise UsageError(f"clip: min {lo} is greater than max {hi}")
        mask = np.ones(a.shape, bool)
        if lo is not None:
            mask &= a >= lo
        if hi is not None:
            mask &= a <= hi
        ctx.mask = mask
        return np.clip(a, lo, hi).astype(a.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        return (g * ctx.mask,)


class Cast(Function):
    """Change between floating dtypes; the gradient is cast back by the engine.

    ``Tensor.astype`` uses it only for floating targets: a cast to an integer or bool dtype has no
    gradient and cuts the graph (as in PyTorch)."""
    name = "cast"

    @staticmethod
    def forward(ctx, a, dtype):
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return (g,)


class Where(Function):
    """``where(condition, a, b)``; ``condition`` is a plain boolean array (no gradient)."""
    name = "where"

    @staticmethod
    def forward(ctx, a, b, condition):
        check_broadcast("where", condition.shape, a.shape, b.shape)
        ctx.cond = condition
        return np.where(condition, a, b)

    @staticmethod
    def backward(ctx, g):
        zero = np.zeros((), g.dtype)
        return np.where(ctx.cond, g, zero), np.where(ctx.cond, zero, g)
