"""Matrix products: ``matmul`` (NumPy semantics) and ``linear`` (``x @ W.T + b`` in one op).

Both go through the backend's ``matmul`` kernel (BLAS under the default backend).
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..backend import kernels
from ..errors import ShapeError


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
            raise ShapeError(f"matmul: operands must be at least 1-D, got shapes {a.shape} and {b.shape}")
        ka = a.shape[-1]
        kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if ka != kb:
            raise ShapeError(f"matmul: shapes {a.shape} and {b.shape} do not align ({ka} != {kb})")
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
            raise ShapeError(f"linear: x {x.shape} needs weight [out, {x.shape[-1] if x.ndim else '?'}] and "
                             f"bias [out]; got weight {weight.shape}, bias {None if bias is None else bias.shape}")
        x2 = x.reshape(-1, x.shape[-1])                                   # [N, in]
        y = kernels().matmul(x2, weight.T)                                # [N, out]
        if bias is not None and np.result_type(y, bias) == y.dtype:     # in place (a compiled pass)
            y = kernels().bias_add(y, bias.astype(y.dtype, copy=False))
        elif bias is not None:                                            # the bias promotes (float64 bias)
            y = y + bias
        ctx.x2, ctx.w, ctx.shape = x2, weight, x.shape
        return y.reshape(x.shape[:-1] + (weight.shape[0],))

    @staticmethod
    def backward(ctx, g):
        g2 = g.reshape(-1, g.shape[-1])                                   # [N, out]
        needs = ctx.needs_input_grad
        if needs[0] and needs[1]:  # both products in one kernel call (with 2 threads: one each)
            dx, dw = kernels().linear_grads(g2, ctx.w, ctx.x2)                     # [N, in], [out, in]
            dx = dx.reshape(ctx.shape)
        else:
            dx = kernels().matmul(g2, ctx.w).reshape(ctx.shape) if needs[0] else None   # [N, in]
            dw = kernels().matmul(g2.T, ctx.x2) if needs[1] else None                   # [out, in]
        if len(needs) == 2:
            return dx, dw
        # db: g's column sums, as a GEMV with a ones vector (OpenBLAS, threaded: 3-5x NumPy's sum(axis=0)
        # at 1920 x {64, 256} float32)
        return dx, dw, (np.ones(g2.shape[0], g2.dtype) @ g2 if needs[2] else None)


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
