"""Neural-network ops with fused kernels: softmax, log-softmax, cross-entropy, layer norm (also of a residual
sum), GELU, ReLU, embedding, dropout.

Each calls its kernel through :func:`backend.kernels`, never numba directly. The kernels check
nothing, so the user's arguments (class ids, token ids, probabilities, shapes) are checked here, once.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function, is_grad_enabled
from ..backend import kernels
from ..errors import ShapeError, UsageError
from .checks import check_class_ids, check_probability, real_number
from .common import contiguous, last_axis


class _RowOp(Function):
    """Shared plumbing of softmax and log-softmax: their kernels work along the last axis, so ``axis`` is
    moved there (a view) and the result moved back; backward does the same with the gradient."""

    @classmethod
    def _forward(cls, ctx, x, axis, kernel, *args):
        xl, ax = last_axis(x, axis, cls.name)
        y = kernel(contiguous(xl), *args)
        ctx.y, ctx.ax, ctx.nd = y, ax, x.ndim
        return y if ax == x.ndim - 1 else np.moveaxis(y, -1, ax)

    @staticmethod
    def _backward(ctx, g, kernel):
        last = ctx.ax == ctx.nd - 1
        dx = kernel(ctx.y, contiguous(g if last else np.moveaxis(g, ctx.ax, -1)))
        return (dx if last else np.moveaxis(dx, -1, ctx.ax),)


class Softmax(_RowOp):
    """``exp(x - max) / sum(exp(x - max))`` along ``axis`` (fused kernel; see numpy_ref.softmax).

    With ``causal=True`` (attention scores ``[..., T, S]``, axis -1) future keys get probability 0.
    """
    name = "softmax"

    @staticmethod
    def forward(ctx, x, axis=-1, causal=False):
        return Softmax._forward(ctx, x, axis, kernels().softmax, causal)

    @staticmethod
    def backward(ctx, g):
        return Softmax._backward(ctx, g, kernels().softmax_backward)


class LogSoftmax(_RowOp):
    """``x - logsumexp(x)`` along ``axis`` (fused kernel)."""
    name = "log_softmax"

    @staticmethod
    def forward(ctx, x, axis=-1):
        return LogSoftmax._forward(ctx, x, axis, kernels().log_softmax)

    @staticmethod
    def backward(ctx, g):
        return LogSoftmax._backward(ctx, g, kernels().log_softmax_backward)


class CrossEntropy(Function):
    """Mean (or sum, or per-row) negative log-likelihood of integer ``targets`` under ``softmax(logits)``.

    ``logits [..., V]`` and ``targets [...]``. Rows whose target equals ``ignore_index`` count for
    nothing; ``reduction="mean"`` divides by the number of counted rows (NaN when there are none, as in
    PyTorch). Fused log-softmax + NLL kernel with float64 accumulation.

    Label smoothing ``eps`` (PyTorch's definition) mixes the one-hot target with the uniform
    distribution over the V classes: per counted row ``loss = (1 - eps) * nll + eps * mean_c(-log p_c)``
    with ``mean_c(-log p_c) = lse - mean_c(x_c)``, so ``dloss/dx = softmax(x) - (1 - eps) onehot - eps / V``.
    The smoothing term is composed here around the kernels' NLL and its gradient.
    """
    name = "cross_entropy"

    @staticmethod
    def forward(ctx, logits, targets, ignore_index=None, reduction="mean", label_smoothing=0.0):
        if reduction not in ("mean", "sum", "none"):
            raise UsageError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        eps = real_number("cross_entropy", "label_smoothing", label_smoothing)
        if not 0.0 <= eps <= 1.0:
            raise UsageError(f"cross_entropy: label_smoothing must be in [0, 1], got {eps}")
        if logits.ndim < 1 or targets.shape != logits.shape[:-1]:
            raise ShapeError(f"cross_entropy: logits {logits.shape} need targets of shape {logits.shape[:-1]}, "
                             f"got targets of shape {targets.shape}")
        V = logits.shape[-1]
        ign = -100 if ignore_index is None else int(ignore_index)
        check_class_ids("cross_entropy", "targets", targets, V, ign)
        t = targets.reshape(-1).astype(np.int64)
        x = contiguous(logits.reshape(-1, V))
        loss, lse = kernels().cross_entropy(x, t, ign)
        keep = t != ign
        if eps:  # (1 - eps) * nll + eps * (lse - mean_c x_c) on the counted rows
            smooth = lse - x.mean(axis=1, dtype=np.float64)
            loss = np.where(keep, (1.0 - eps) * loss + eps * smooth, 0.0)
        count = int(keep.sum())
        ctx.x, ctx.t, ctx.lse, ctx.ign, ctx.reduction, ctx.count = x, t, lse, ign, reduction, count
        ctx.eps, ctx.keep = eps, keep
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
        dx = kernels().cross_entropy_backward(ctx.x, ctx.t, ctx.lse, dloss, ctx.ign)  # (p - onehot) * dloss
        if ctx.eps:  # + eps * (onehot - 1/V) * dloss on the counted rows
            V = ctx.x.shape[1]
            w = np.where(ctx.keep, ctx.eps * dloss, 0.0)
            rows = np.nonzero(ctx.keep)[0]
            extra = np.broadcast_to((-w / V)[:, None], ctx.x.shape).copy()
            extra[rows, ctx.t[rows]] += w[rows]
            dx = (dx + extra).astype(ctx.x.dtype, copy=False)
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
            raise ShapeError(f"layer_norm: x {x.shape} needs weight and bias of shape ({C},), got "
                             f"{weight.shape} and {None if bias is None else bias.shape}")
        x2 = contiguous(x.reshape(-1, C))
        b = bias if bias is not None else np.zeros(C, dtype=weight.dtype)
        y, mean, rstd = kernels().layer_norm(x2, weight, b, real_number("layer_norm", "eps", eps))
        ctx.x2, ctx.w, ctx.mean, ctx.rstd, ctx.shape = x2, weight, mean, rstd, x.shape
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, g):
        dx, dw, db = _layer_norm_grads(ctx, g, ctx.x2)
        return (dx, dw, db) if len(ctx.needs_input_grad) == 3 else (dx, dw)


def _layer_norm_grads(ctx, g, rows):
    """``(dx, dw, db)`` of a layer norm of ``rows [N, C]`` (what was normalised), ``dx`` in the input's shape."""
    dx, dw, db = kernels().layer_norm_backward(contiguous(g.reshape(rows.shape)), rows, ctx.w, ctx.mean, ctx.rstd)
    return dx.reshape(ctx.shape), dw, db


class AddLayerNorm(Function):
    """``layer_norm(x + r)``: a post-LN residual (``norm(x + sublayer(x))``) in one pass over the rows.

    The sum ``s = x + r`` is kept for backward (the unfused add's output would be kept the same way);
    backward is layer norm's, and its ``dx`` is the gradient of both ``x`` and ``r``.
    """
    name = "add_layer_norm"

    @staticmethod
    def forward(ctx, x, r, weight, bias=None, eps=1e-5):
        C = x.shape[-1] if x.ndim else 0
        if x.shape != r.shape or x.ndim == 0 or weight.shape != (C,) or (bias is not None and bias.shape != (C,)):
            raise ShapeError(f"add_layer_norm: x {x.shape} and the residual {r.shape} must match, with weight "
                             f"and bias of shape ({C},); got {weight.shape} and {None if bias is None else bias.shape}")
        dt = np.result_type(x, r)
        x2, r2 = (contiguous(a.astype(dt, copy=False).reshape(-1, C)) for a in (x, r))
        b = bias if bias is not None else np.zeros(C, dtype=weight.dtype)
        y, s, mean, rstd = kernels().add_layer_norm(x2, r2, weight, b, real_number("add_layer_norm", "eps", eps))
        ctx.s, ctx.w, ctx.mean, ctx.rstd, ctx.shape = s, weight, mean, rstd, x.shape
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, g):
        dx, dw, db = _layer_norm_grads(ctx, g, ctx.s)
        return (dx, dx, dw, db) if len(ctx.needs_input_grad) == 4 else (dx, dx, dw)


class Gelu(Function):
    """GELU, tanh approximation (GPT-2): ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""
    name = "gelu"

    @staticmethod
    def forward(ctx, x):
        if not (is_grad_enabled() and ctx.needs_input_grad[0]):
            return kernels().gelu(x)
        # one tanh pass gives the output and the derivative; saving ``gelu'(x)`` (the size of x, which
        # nothing else keeps) makes the backward one multiply instead of a second tanh pass
        y, ctx.dydx = kernels().gelu_and_grad(x)
        return y

    @staticmethod
    def backward(ctx, g):
        return (np.multiply(g, ctx.dydx, dtype=ctx.dydx.dtype),)


class Relu(Function):
    """``max(a, 0)``; subgradient 0 at a == 0. NaN stays NaN (``np.maximum`` propagates it, as PyTorch);
    its gradient there is 0, as PyTorch's. Backward reads the output (``out > 0``), which the next layer
    keeps anyway, so the op saves no mask of its own."""
    name = "relu"

    @staticmethod
    def forward(ctx, a):
        ctx.out = kernels().relu(a)
        return ctx.out

    @staticmethod
    def backward(ctx, g):
        return (kernels().relu_backward(ctx.out, g),)


class Embedding(Function):
    """Row lookup ``weight[ids]``; backward scatter-adds into the rows (repeated ids accumulate)."""
    name = "embedding"

    @staticmethod
    def forward(ctx, weight, ids):
        if weight.ndim != 2:
            raise ShapeError(f"embedding: weight must be 2-D [num, dim], got shape {weight.shape}")
        check_class_ids("embedding", "ids", ids, weight.shape[0])
        ctx.ids, ctx.num = ids, weight.shape[0]
        return weight[ids]

    @staticmethod
    def backward(ctx, g):
        C = g.shape[-1]
        dw = kernels().embedding_backward(ctx.ids.reshape(-1), contiguous(g.reshape(-1, C)), ctx.num)
        return (dw,)


class Dropout(Function):
    """Inverted dropout ``x * keep / (1 - p)``; ``keep`` is a hash of ``seed`` and each element's index
    (``kernels.numpy_ref.dropout_keep``), so nothing but the seed is saved for backward."""
    name = "dropout"

    @staticmethod
    def forward(ctx, x, p, seed):
        p, seed = check_probability("dropout", "p", p), int(seed)
        ctx.p, ctx.seed = p, seed
        return kernels().dropout(x, p, seed)

    @staticmethod
    def backward(ctx, g):
        return (kernels().dropout(g, ctx.p, ctx.seed),)
