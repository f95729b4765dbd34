"""Every differentiable op, forward and backward side by side.

Each class is one op: ``forward(ctx, *arrays, **params)`` computes the output from NumPy arrays and saves
what the backward needs on ``ctx``; ``backward(ctx, grad)`` returns one gradient per array input.
Gradients may keep the broadcast shape of the output: the engine (:func:`autograd.unbroadcast`) reduces
them to each input's shape, checks shapes and casts dtypes.

Ops that have a fused kernel (softmax, cross-entropy, layer norm, GELU, embedding, attention) call it
through :func:`backend.kernels`, never numba directly.

Kinks use a documented subgradient: relu'(0) = 0, abs'(0) = 0, clip passes the gradient on the closed
interval [lo, hi], and ties in max/min/maximum/minimum share the gradient equally.
"""
from __future__ import annotations

import math

import numpy as np

from .autograd import REGISTRY, Function, SliceGrad  # noqa: F401  (REGISTRY re-exported)
from .backend import kernels


def _axes(axis, ndim: int, op: str) -> tuple[int, ...]:
    """Normalise an ``axis`` argument (None, int or tuple) to a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axs = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axs:
        if not -ndim <= a < max(ndim, 1) or (ndim == 0 and a not in (0, -1)):
            raise ValueError(f"{op}: axis {a} is out of range for input of shape with {ndim} dims")
        out.append(int(a) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis}")
    return tuple(sorted(out)) if ndim else ()


def _expand_reduced(g: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """Put back the reduced axes of ``g`` as size-1 axes so it broadcasts against the input."""
    if not keepdims and axes:
        g = np.expand_dims(g, axes)
    return g


def _contig(a: np.ndarray) -> np.ndarray:
    """C-contiguous ``a`` (kernels index raw memory); unlike ``np.ascontiguousarray`` keeps 0-d as 0-d."""
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def _check_broadcast(op: str, *shapes: tuple[int, ...]) -> None:
    if all(sh == shapes[0] for sh in shapes[1:]):  # the common case; np.broadcast_shapes costs ~5 us
        return
    try:
        np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"{op}: shapes {' and '.join(map(str, shapes))} do not broadcast") from None


# ================================================================================ elementwise
class Add(Function):
    name = "add"

    @staticmethod
    def forward(ctx, a, b):
        _check_broadcast("add", a.shape, b.shape)
        return a + b

    @staticmethod
    def backward(ctx, g):
        return g, g


class Sub(Function):
    name = "sub"

    @staticmethod
    def forward(ctx, a, b):
        _check_broadcast("sub", a.shape, b.shape)
        return a - b

    @staticmethod
    def backward(ctx, g):
        return g, -g


class Mul(Function):
    name = "mul"

    @staticmethod
    def forward(ctx, a, b):
        _check_broadcast("mul", a.shape, b.shape)
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
        _check_broadcast("div", a.shape, b.shape)
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
        _check_broadcast("pow", a.shape, b.shape)
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


class Relu(Function):
    """``max(a, 0)``; subgradient 0 at a == 0."""
    name = "relu"

    @staticmethod
    def forward(ctx, a):
        ctx.mask = a > 0
        return np.where(ctx.mask, a, np.zeros((), a.dtype))

    @staticmethod
    def backward(ctx, g):
        return (g * ctx.mask,)


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
        _check_broadcast("maximum", a.shape, b.shape)
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
        _check_broadcast("minimum", a.shape, b.shape)
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
            raise ValueError(f"clip: min {lo} is greater than max {hi}")
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
    """Change dtype; the gradient is cast back by the engine."""
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
        _check_broadcast("where", condition.shape, a.shape, b.shape)
        ctx.cond = condition
        return np.where(condition, a, b)

    @staticmethod
    def backward(ctx, g):
        zero = np.zeros((), g.dtype)
        return np.where(ctx.cond, g, zero), np.where(ctx.cond, zero, g)


# ==================================================================================== matmul
class MatMul(Function):
    """``a @ b`` with NumPy semantics: 1-D operands, 2-D, and N-D with broadcast batch dims.

    Forward and backward go through the backend's ``matmul`` kernel. A 2-D weight applied to N-D
    activations (``x [B, T, C] @ W [C, N]``) is done as one ``[B*T, C] @ [C, N]`` GEMM, and its weight
    gradient as one ``[C, B*T] @ [B*T, N]`` GEMM, instead of a batch of small ones.
    """
    name = "matmul"

    @staticmethod
    def forward(ctx, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: operands must be at least 1-D, got shapes {a.shape} and {b.shape}")
        ka = a.shape[-1]
        kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if ka != kb:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align ({ka} != {kb})")
        ctx.a, ctx.b = a, b
        return _mm(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.a, ctx.b
        na, nb = ctx.needs_input_grad
        # Lift 1-D operands to matrices so one rule covers all cases: a (K,) -> (1, K), b (K,) -> (K, 1).
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if b.ndim == 1:  # the output lost b's column axis; put it back first ...
            g2 = np.expand_dims(g2, -1)
        if a.ndim == 1:  # ... then a's row axis (order matters when both are vectors)
            g2 = np.expand_dims(g2, -2)
        ga = gb = None
        if na:
            ga = _mm(g2, np.swapaxes(b2, -1, -2))
            ga = ga.reshape(ga.shape[:-2] + (ga.shape[-1],)) if a.ndim == 1 else ga
        if nb:
            if b2.ndim == 2 and a2.ndim > 2:  # weight gradient: one GEMM over all rows
                k = a2.shape[-1]
                gb = _mm(a2.reshape(-1, k).T, g2.reshape(-1, g2.shape[-1]))
            else:
                gb = _mm(np.swapaxes(a2, -1, -2), g2)
            if b.ndim == 1:
                gb = gb[..., 0]
        return ga, gb


class Linear(Function):
    """``x @ weight.T + bias`` for ``x [..., in]``, ``weight [out, in]`` (PyTorch layout), ``bias [out]``.

    One op instead of transpose + matmul + add: the rows of ``x`` go through one ``[N, in] @ [in, out]``
    GEMM, and backward computes ``dW = g^T @ x`` directly in ``weight``'s own (contiguous) layout, so
    the optimizer gets a C-contiguous gradient without a copy. ``db`` is ``g`` summed over the rows.
    """
    name = "linear"

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        if x.ndim == 0 or weight.ndim != 2 or x.shape[-1] != weight.shape[1] or (
                bias is not None and bias.shape != (weight.shape[0],)):
            raise ValueError(f"linear: x {x.shape} needs weight [out, {x.shape[-1] if x.ndim else '?'}] and "
                             f"bias [out]; got weight {weight.shape}, bias {None if bias is None else bias.shape}")
        x2 = x.reshape(-1, x.shape[-1])                                   # [N, in]
        y = kernels().matmul(x2, weight.T)                                # [N, out]
        if bias is not None:  # in place unless the bias promotes (float32 x and W, float64 bias)
            y = y.__iadd__(bias) if np.result_type(y, bias) == y.dtype else y + bias
        ctx.x2, ctx.w, ctx.shape = x2, weight, x.shape
        return y.reshape(x.shape[:-1] + (weight.shape[0],))

    @staticmethod
    def backward(ctx, g):
        g2 = g.reshape(-1, g.shape[-1])                                   # [N, out]
        needs = ctx.needs_input_grad
        dx = kernels().matmul(g2, ctx.w).reshape(ctx.shape) if needs[0] else None   # [N, in]
        dw = kernels().matmul(g2.T, ctx.x2) if needs[1] else None                   # [out, in]
        if len(needs) == 2:
            return dx, dw
        return dx, dw, (g2.sum(axis=0) if needs[2] else None)


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Matrix product routed to the backend kernel where its shapes fit (2-D or equal 3-D batches)."""
    K = kernels()
    if a.ndim == 1 or b.ndim == 1:
        return np.matmul(a, b)
    if b.ndim == 2:
        if a.ndim == 2:
            return K.matmul(a, b)
        lead = a.shape[:-1]
        return K.matmul(a.reshape(-1, a.shape[-1]), b).reshape(lead + (b.shape[-1],))
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if a.shape[:-2] == batch and b.shape[:-2] == batch:
        m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
        out = K.matmul(a.reshape((-1, m, k)), b.reshape((-1, k, n)))
        return out.reshape(batch + (m, n))
    return np.matmul(a, b)


# ================================================================================ reductions
class Sum(Function):
    name = "sum"

    @staticmethod
    def forward(ctx, a, axis, keepdims):
        ctx.shape, ctx.keepdims = a.shape, keepdims
        ctx.axes = _axes(axis, a.ndim, "sum")
        return np.sum(a, axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        return (np.broadcast_to(_expand_reduced(g, ctx.shape, ctx.axes, ctx.keepdims), ctx.shape),)


class Mean(Function):
    name = "mean"

    @staticmethod
    def forward(ctx, a, axis, keepdims):
        ctx.shape, ctx.keepdims = a.shape, keepdims
        ctx.axes = _axes(axis, a.ndim, "mean")
        ctx.count = math.prod(a.shape[i] for i in ctx.axes)
        return np.mean(a, axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        g = _expand_reduced(g, ctx.shape, ctx.axes, ctx.keepdims) / ctx.count
        return (np.broadcast_to(g, ctx.shape),)


class _Extremum(Function):
    """Shared rule for max/min: the gradient goes to the winning elements, ties share equally."""
    _np = staticmethod(np.max)

    @classmethod
    def _forward(cls, ctx, a, axis, keepdims):
        axes = _axes(axis, a.ndim, cls.name)
        if a.size == 0:
            raise ValueError(f"{cls.name}: cannot reduce an empty array of shape {a.shape}")
        out = cls._np(a, axis=axes, keepdims=True)
        ctx.a, ctx.out_k, ctx.axes, ctx.keepdims = a, out, axes, keepdims
        return out if keepdims else np.squeeze(out, axis=axes)

    @staticmethod
    def backward(ctx, g):
        win = (ctx.a == ctx.out_k)
        count = win.sum(axis=ctx.axes, keepdims=True)
        g = _expand_reduced(g, ctx.a.shape, ctx.axes, ctx.keepdims)
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
        axes = _axes(axis, a.ndim, "var")
        ctx.centered = a - a.mean(axis=axes, keepdims=True)
        ctx.axes, ctx.keepdims = axes, keepdims
        ctx.count = math.prod(a.shape[i] for i in axes)
        return np.var(a, axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        g = _expand_reduced(g, ctx.centered.shape, ctx.axes, ctx.keepdims)
        return (g * ctx.centered * (2.0 / ctx.count),)


# ===================================================================================== shape
class Reshape(Function):
    name = "reshape"

    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape array of shape {a.shape} (size {a.size}) into {shape}") from None

    @staticmethod
    def backward(ctx, g):
        return (g.reshape(ctx.shape),)


class Transpose(Function):
    """Permute axes (NumPy ``transpose``); backward applies the inverse permutation."""
    name = "transpose"

    @staticmethod
    def forward(ctx, a, axes):
        n = a.ndim
        perm = tuple(x % n for x in axes) if n else tuple(axes)
        if len(perm) != n or sorted(perm) != list(range(n)):
            raise ValueError(f"transpose: axes {axes} are not a permutation of the {n} axes of shape {a.shape}")
        inverse = [0] * n  # (plain Python: np.argsort costs more than the view itself)
        for i, x in enumerate(perm):
            inverse[x] = i
        ctx.inverse = tuple(inverse)
        return a.transpose(perm)

    @staticmethod
    def backward(ctx, g):
        return (g.transpose(ctx.inverse),)


class BroadcastTo(Function):
    """Broadcast to ``shape``; the engine's ``unbroadcast`` sums the gradient back."""
    name = "broadcast_to"

    @staticmethod
    def forward(ctx, a, shape):
        try:
            return np.broadcast_to(a, shape)
        except ValueError:
            raise ValueError(f"broadcast_to: shape {a.shape} cannot broadcast to {shape}") from None

    @staticmethod
    def backward(ctx, g):
        return (g,)


def _is_advanced(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, (list, np.ndarray)) for i in items)


class GetItem(Function):
    """``a[index]``: basic slicing, ``...``, None, and integer/boolean arrays.

    Backward returns a ``SliceGrad``: the engine adds the gradient into the input's gradient buffer at
    ``index``; with integer arrays through ``np.add.at``, so repeated indices accumulate (``a[[0, 0]]``
    sends twice the gradient to ``a[0]``).
    """
    name = "getitem"

    @staticmethod
    def forward(ctx, a, index):
        ctx.shape, ctx.index, ctx.dtype = a.shape, index, a.dtype
        try:
            return a[index]
        except IndexError as e:
            raise IndexError(f"getitem: {e} (input shape {a.shape}, index {index!r})") from None

    @staticmethod
    def backward(ctx, g):
        # "g goes to x_grad[index], zeros elsewhere": the engine adds it into the input's gradient
        # buffer, so slicing one tensor into pieces allocates one buffer, not one per piece
        return (SliceGrad(ctx.index, g, advanced=_is_advanced(ctx.index)),)


class Concatenate(Function):
    """Join along an existing axis; backward slices the gradient back into pieces."""
    name = "concatenate"

    @staticmethod
    def forward(ctx, *arrays, axis):
        try:
            out = np.concatenate(arrays, axis=axis)
        except ValueError:
            raise ValueError(f"concatenate: shapes {[a.shape for a in arrays]} do not join on axis {axis}") from None
        ctx.axis = axis % out.ndim
        ctx.bounds = np.cumsum([a.shape[ctx.axis] for a in arrays])[:-1]
        return out

    @staticmethod
    def backward(ctx, g):
        return tuple(np.split(g, ctx.bounds, axis=ctx.axis))


# ============================================================================ fused (kernels)
def _last_axis(x: np.ndarray, axis: int, op: str) -> tuple[np.ndarray, int]:
    if x.ndim == 0:
        raise ValueError(f"{op} needs at least a 1-D input, got a 0-d one")
    ax = _axes(axis, x.ndim, op)[0]
    return (x if ax == x.ndim - 1 else np.moveaxis(x, ax, -1)), ax


class Softmax(Function):
    """``exp(x - max) / sum(exp(x - max))`` along ``axis`` (fused kernel; see numpy_ref.softmax).

    With ``causal=True`` (attention scores ``[..., T, S]``, axis -1) future keys get probability 0.
    """
    name = "softmax"

    @staticmethod
    def forward(ctx, x, axis=-1, causal=False):
        xl, ax = _last_axis(x, axis, "softmax")
        y = kernels().softmax(_contig(xl), causal)
        ctx.y, ctx.ax, ctx.nd = y, ax, x.ndim
        return y if ax == x.ndim - 1 else np.moveaxis(y, -1, ax)

    @staticmethod
    def backward(ctx, g):
        gl = g if ctx.ax == ctx.nd - 1 else np.moveaxis(g, ctx.ax, -1)
        dx = kernels().softmax_backward(ctx.y, _contig(gl))
        return (dx if ctx.ax == ctx.nd - 1 else np.moveaxis(dx, -1, ctx.ax),)


class LogSoftmax(Function):
    """``x - logsumexp(x)`` along ``axis`` (fused kernel)."""
    name = "log_softmax"

    @staticmethod
    def forward(ctx, x, axis=-1):
        xl, ax = _last_axis(x, axis, "log_softmax")
        y = kernels().log_softmax(_contig(xl))
        ctx.y, ctx.ax, ctx.nd = y, ax, x.ndim
        return y if ax == x.ndim - 1 else np.moveaxis(y, -1, ax)

    @staticmethod
    def backward(ctx, g):
        gl = g if ctx.ax == ctx.nd - 1 else np.moveaxis(g, ctx.ax, -1)
        dx = kernels().log_softmax_backward(ctx.y, _contig(gl))
        return (dx if ctx.ax == ctx.nd - 1 else np.moveaxis(dx, -1, ctx.ax),)


class CrossEntropy(Function):
    """Mean (or sum, or per-row) negative log-likelihood of integer ``targets`` under ``softmax(logits)``.

    ``logits [..., V]`` and ``targets [...]``. Rows whose target equals ``ignore_index`` count for
    nothing; ``reduction="mean"`` divides by the number of counted rows (NaN when there are none, as in
    PyTorch). Fused log-softmax + NLL kernel with float64 accumulation.
    """
    name = "cross_entropy"

    @staticmethod
    def forward(ctx, logits, targets, ignore_index=None, reduction="mean"):
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        if logits.ndim < 1 or targets.shape != logits.shape[:-1]:
            raise ValueError(f"cross_entropy: logits {logits.shape} need targets of shape {logits.shape[:-1]}, "
                             f"got {targets.shape}")
        if not np.issubdtype(targets.dtype, np.integer):
            raise TypeError(f"cross_entropy: targets must be integers, got {targets.dtype}")
        V = logits.shape[-1]
        ign = -100 if ignore_index is None else int(ignore_index)
        t = targets.reshape(-1).astype(np.int64)
        bad = (t != ign) & ((t < 0) | (t >= V))
        if bad.any():
            raise ValueError(f"cross_entropy: target {int(t[bad][0])} out of range for {V} classes")
        x = _contig(logits.reshape(-1, V))
        loss, lse = kernels().cross_entropy(x, t, ign)
        count = int((t != ign).sum())
        ctx.x, ctx.t, ctx.lse, ctx.ign, ctx.reduction, ctx.count = x, t, lse, ign, reduction, count
        ctx.shape = logits.shape
        if reduction == "none":
            return loss.reshape(targets.shape).astype(logits.dtype)
        total = loss.sum()
        val = total / count if (reduction == "mean" and count) else (np.nan if reduction == "mean" else total)
        return np.asarray(val, dtype=logits.dtype)

    @staticmethod
    def backward(ctx, g):
        n = ctx.x.shape[0]
        if ctx.reduction == "none":
            dloss = g.reshape(-1).astype(np.float64)
        else:
            scale = float(g) / ctx.count if ctx.reduction == "mean" and ctx.count else float(g)
            dloss = np.full(n, scale)
        dx = kernels().cross_entropy_backward(ctx.x, ctx.t, ctx.lse, dloss, ctx.ign)
        return (dx.reshape(ctx.shape),)


class LayerNorm(Function):
    """``(x - mean) / sqrt(var + eps) * weight + bias`` over the last axis (fused kernel).

    Inputs are ``x [..., C]``, ``weight [C]`` and optionally ``bias [C]``.
    """
    name = "layer_norm"

    @staticmethod
    def forward(ctx, x, weight, bias=None, eps=1e-5):
        C = x.shape[-1] if x.ndim else 0
        if x.ndim == 0 or weight.shape != (C,) or (bias is not None and bias.shape != (C,)):
            raise ValueError(f"layer_norm: x {x.shape} needs weight and bias of shape ({C},), got "
                             f"{weight.shape} and {None if bias is None else bias.shape}")
        x2 = _contig(x.reshape(-1, C))
        b = bias if bias is not None else np.zeros(C, dtype=weight.dtype)
        y, mean, rstd = kernels().layer_norm(x2, weight, b, eps)
        ctx.x2, ctx.w, ctx.mean, ctx.rstd, ctx.shape = x2, weight, mean, rstd, x.shape
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, g):
        g2 = _contig(g.reshape(ctx.x2.shape))
        dx, dw, db = kernels().layer_norm_backward(g2, ctx.x2, ctx.w, ctx.mean, ctx.rstd)
        grads = (dx.reshape(ctx.shape), dw)
        return grads + (db,) if len(ctx.needs_input_grad) == 3 else grads


class Gelu(Function):
    """GELU, tanh approximation (GPT-2): ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""
    name = "gelu"

    @staticmethod
    def forward(ctx, x):
        ctx.x = _contig(x)
        return kernels().gelu(ctx.x)

    @staticmethod
    def backward(ctx, g):
        return (kernels().gelu_backward(ctx.x, _contig(g)),)


class Embedding(Function):
    """Row lookup ``weight[ids]``; backward scatter-adds into the rows (repeated ids accumulate)."""
    name = "embedding"

    @staticmethod
    def forward(ctx, weight, ids):
        if weight.ndim != 2:
            raise ValueError(f"embedding: weight must be 2-D [num, dim], got {weight.shape}")
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"embedding: ids must be integers, got {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= weight.shape[0]):
            raise ValueError(f"embedding: ids must be in [0, {weight.shape[0]}), got min {ids.min()} max {ids.max()}")
        ctx.ids, ctx.num = ids, weight.shape[0]
        return weight[ids]

    @staticmethod
    def backward(ctx, g):
        C = g.shape[-1]
        dw = kernels().embedding_backward(ctx.ids.reshape(-1), _contig(g.reshape(-1, C)), ctx.num)
        return (dw,)


class Dropout(Function):
    """Inverted dropout ``x * keep / (1 - p)``; ``keep`` is a hash of ``seed`` and each element's index
    (``kernels.numpy_ref.dropout_keep``), so nothing but the seed is saved for backward."""
    name = "dropout"

    @staticmethod
    def forward(ctx, x, p, seed):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout: p must be in [0, 1), got {p}")
        ctx.p, ctx.seed = p, seed
        return kernels().dropout(x, p, seed)

    @staticmethod
    def backward(ctx, g):
        return (kernels().dropout(g, ctx.p, ctx.seed),)


class Attention(Function):
    """Fused attention core ``dropout(softmax(q k^T * scale [causal mask])) v`` for ``[B, H, T, D]`` inputs.

    Saves only q, k, v, the output's row logsumexp, never the ``[T, S]`` probability matrix: the
    backward kernel recomputes it (flash-attention style). Dropout (``dropout_p > 0``) stores no mask
    either: a hash of ``seed`` and each probability's index decides (``kernels.numpy_ref.dropout_keep``),
    so the backward recomputes the same mask.
    """
    name = "attention"

    @staticmethod
    def forward(ctx, q, k, v, scale, causal=True, dropout_p=0.0, seed=0):
        if q.ndim != 4 or k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
            raise ValueError(f"attention: q {q.shape}, k {k.shape}, v {v.shape} must be [B, H, T, D] / [B, H, S, D]")
        if not 0.0 <= dropout_p < 1.0:
            raise ValueError(f"attention: dropout_p must be in [0, 1), got {dropout_p}")
        out, lse = kernels().attention(q, k, v, scale, causal, dropout_p, seed)  # views welcome: no copies
        ctx.q, ctx.k, ctx.v, ctx.lse, ctx.scale, ctx.causal = q, k, v, lse, scale, causal
        ctx.dropout_p, ctx.seed = dropout_p, seed
        return out

    @staticmethod
    def backward(ctx, g):
        return kernels().attention_backward(ctx.q, ctx.k, ctx.v, ctx.lse, g,
                                            ctx.scale, ctx.causal, ctx.dropout_p, ctx.seed)
