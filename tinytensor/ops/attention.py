"""The fused attention op, and the packed layout of its gradients.

For self-attention the Numba kernel writes dq, dk and dv side by side into one ``[B, T, 3 * H * D]``
array, per token q then k then v, heads side by side: the layout of the ``qkv`` tensor the model
splits them from (``q, k, v = split(c_attn(x), 3, axis=2)``, each reshaped ``[B, T, H, D]`` and
transposed to ``[B, H, T, D]``). The backward returns that array as an ``autograd.PackedGrad``; when
the pieces do come back to one such tensor, the engine uses the array as its gradient (no copy).
"""
from __future__ import annotations

from ..autograd import Function, PackedGrad
from ..backend import kernels
from ..errors import ShapeError
from .checks import check_probability, real_number


class Attention(Function):
    """Fused attention core ``dropout(softmax(q k^T * scale [causal mask])) v`` for ``[B, H, T, D]`` inputs.

    Saves only q, k, v, the output's row logsumexp, never the ``[T, S]`` probability matrix: the
    backward kernel recomputes it (flash-attention style). Dropout (``dropout_p > 0``) stores no mask
    either: a hash of ``seed`` and each probability's index decides (``kernels.numpy_ref.dropout_keep``),
    so the backward recomputes the same mask.

    A query that sees no key (causal with ``T > S``: the first ``T - S`` queries) gets a zero output row
    and zero gradients, as in ``F.scaled_dot_product_attention``'s masked path. (The kernels return NaN
    there; its lse is set to 0 so that the backward kernels' ``exp(-inf - lse)`` is 0 for those rows.)
    """
    name = "attention"

    @staticmethod
    def forward(ctx, q, k, v, scale, causal=True, dropout_p=0.0, seed=0):
        if q.ndim != 4 or k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
            raise ShapeError(f"attention: q {q.shape}, k {k.shape}, v {v.shape} must be [B, H, T, D] / [B, H, S, D]")
        dropout_p = check_probability("attention", "dropout_p", dropout_p)
        scale, seed = real_number("attention", "scale", scale), int(seed)
        out, lse = kernels().attention(q, k, v, scale, causal, dropout_p, seed)  # views welcome: no copies
        blind = q.shape[2] - k.shape[2] if causal else 0    # queries with no visible key
        if blind > 0:
            out[:, :, :blind] = 0
            lse[:, :, :blind] = 0.0
        ctx.q, ctx.k, ctx.v, ctx.lse, ctx.scale, ctx.causal = q, k, v, lse, scale, causal
        ctx.dropout_p, ctx.seed = dropout_p, seed
        return out

    @staticmethod
    def backward(ctx, g):
        dq, dk, dv = kernels().attention_backward(ctx.q, ctx.k, ctx.v, ctx.lse, g,
                                                  ctx.scale, ctx.causal, ctx.dropout_p, ctx.seed)
        buffer = dq.base
        if buffer is None or dk.base is not buffer or dv.base is not buffer or dq.ndim != 4:
            return dq, dk, dv  # three separate arrays (the reference kernel, cross-attention)
        B, H, T, D = dq.shape
        if buffer.shape != (B, T, 3 * H * D):
            return dq, dk, dv
        # the kernel's packed layout (numba_cpu._packed_grads): q, k, v side by side per token
        C = H * D
        parts = buffer.reshape(B, T, 3, H, D)
        return PackedGrad(buffer, tuple(parts[:, :, i].transpose(0, 2, 1, 3) for i in range(3)),
                          tuple((slice(None), slice(None), slice(i * C, (i + 1) * C)) for i in range(3)))
