"""The fused attention op, and the packed layout of its gradients.

For self-attention the Numba kernel writes dq, dk and dv side by side into one ``[B, T, 3 * H * D]``
array, per token q then k then v, heads side by side: the layout of the ``qkv`` tensor the model
splits them from (``q, k, v = split(c_attn(x), 3, axis=2)``, each reshaped ``[B, T, H, D]`` and
transposed to ``[B, H, T, D]``). The backward returns that array as an ``autograd.PackedGrad``; when
the pieces do come back to one such tensor, the engine uses the array as its gradient (no copy).
"""
from __future__ import annotations

from ..autograd import Function, PackedGrad, is_grad_enabled
from ..backend import kernels
from ..errors import ShapeError
from .checks import check_probability, real_number


KEEP_PROBS_MAX = 1 << 18
"""``T * S * D`` below which a training forward keeps the ``[B, H, T, S]`` probabilities for the backward
(kernels ``attention_probs``, ``attention_probs_backward``): heads this small (the baby GPT's 64 x 64 x 32)
are computed by BLAS products and a row pass, whose backward otherwise recomputes ``q k^T`` and its exp.
Measured side by side (``benchmarks.ab_step``, AMD EPYC family 25 model 17): see docs/performance.md.
0 turns it off (the tests run both paths)."""
KEEP_PROBS_ELEMENTS = 1 << 22
"""...and at most this many probabilities per call (16 MiB of float32), so a long batch of small heads
keeps the memory-lean path."""


def _keeps_probs(ctx, q, k, dropout_p: float) -> bool:
    """Does this forward take the kept-probabilities path? (Training, no dropout, small heads; T, S >= 1.)"""
    B, H, T, D = q.shape
    S = k.shape[2]
    return (dropout_p == 0.0 and T > 0 and S > 0 and T * S * D < KEEP_PROBS_MAX and B * H * T * S <= KEEP_PROBS_ELEMENTS
            and is_grad_enabled() and any(ctx.needs_input_grad))


class Attention(Function):
    """Fused attention core ``dropout(softmax(q k^T * scale [causal mask])) v`` for ``[B, H, T, D]`` inputs.

    Two ways to remember the forward for the backward, one result (both gradchecked):

    * in general only q, k, v and the output's row logsumexp, never the ``[T, S]`` probability matrix:
      the backward kernel recomputes it (flash-attention style). Dropout (``dropout_p > 0``) stores no
      mask either: a hash of ``seed`` and each probability's index decides
      (``kernels.numpy_ref.dropout_keep``), so the backward recomputes the same mask;
    * for small heads in training without dropout (:data:`KEEP_PROBS_MAX`), the probability matrix ``P``
      itself, as the books' attention does: its backward is four products and no exp.

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
        blind = q.shape[2] - k.shape[2] if causal else 0    # queries with no visible key
        lse = probs = None
        if _keeps_probs(ctx, q, k, dropout_p):
            out, probs = kernels().attention_probs(q, k, v, scale, causal)
            if blind > 0:
                probs[:, :, :blind] = 0.0                    # their NaN rows: zero output, zero gradients
        else:
            out, lse = kernels().attention(q, k, v, scale, causal, dropout_p, seed)  # views welcome: no copies
            if blind > 0:
                lse[:, :, :blind] = 0.0
        if blind > 0:
            out[:, :, :blind] = 0
        ctx.q, ctx.k, ctx.v, ctx.lse, ctx.probs, ctx.scale, ctx.causal = q, k, v, lse, probs, scale, causal
        ctx.dropout_p, ctx.seed = dropout_p, seed
        return out

    @staticmethod
    def backward(ctx, g):
        if ctx.probs is not None:
            dq, dk, dv = kernels().attention_probs_backward(ctx.q, ctx.k, ctx.v, ctx.probs, g, ctx.scale, ctx.causal)
        else:
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
