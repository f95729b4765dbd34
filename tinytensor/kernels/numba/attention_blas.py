"""Numba attention for small heads: BLAS products and compiled row passes per group of heads,
the groups on helper threads; and the public ``attention`` / ``attention_backward`` wrappers."""
from __future__ import annotations

import numba
import numpy as np

from ._common import _FLOATS, _jit, _launch, _parallel
from .. import numpy_ref
from ... import threads
from ._common import _exp, _row_max
from .attention_tiles import _attn_bwd, _attn_bwd_heads, _attn_fwd, _attn_fwd_heads, _visible
from .gemm import _GEOMETRY, _NR
from .dropout import _dropout_args

# --------------------------------------------- small heads: BLAS products and compiled row passes
# For heads whose [T, S] x D products are small (the baby GPT's 64 x 64 x 32), OpenBLAS's GEMM on one
# thread computes q k^T or P v faster than the tile kernels (attention_tiles), even doing the masked
# half too: the whole attention 1.3-2x at the baby GPT's and the small encoder-decoder's heads (Intel
# Xeon family 6 model 167, 2026-12-03), where the tiles' per-head copies and panel padding dominate.
# There the attention is a chain per group of heads: np.matmul for the products, a compiled pass
# over the rows of the [T, S] matrix in between; groups of heads run on different threads at once
# (``threads.run_parts``). The price is one [B, H, T, S] scratch matrix per call (two in the backward),
# freed on return unless the op keeps it (attention_probs, below: a training forward of small heads).
_ATTN_BLAS_MAX = 1 << 18  # T * S * D below which a head's products are "small": OpenBLAS then runs each
#                           on the calling thread (its own threshold for threading is 65536 * 4).
_ATTN_THREAD_MIN = 1 << 20  # B * H * T * S * D below which all heads run on the calling thread: a decode
#                             step (T = 1) is done before a helper thread would wake up


@_jit
def _attn_probs(p, lse, b0, b1, h0, h1, H, T, scale, off, causal):
    """Heads ``b0..b1 x h0..h1`` of ``p [B * H * T, S]``: the raw scores ``q . k`` in place become the
    probabilities ``softmax(scale * q . k)`` (masked keys 0); ``lse [B * H * T]`` gets each row's
    logsumexp. Per row, with ``lim`` visible keys::

        s[j] = scale * s[j];  m = max s          # _row_max: 0 when not finite
        s[j] = exp(s[j] - m);  l = sum s          # 8-lane exp (float32), float64 sum
        s[j] = s[j] / l;  s[lim:] = 0;  lse = m + log l

    A row with no visible key (``T > S``) has no distribution: NaN, as in the reference.
    """
    S = p.shape[1]
    dt = p.dtype
    for b in range(b0, b1):
        i = 0
        for r in range((b * H + h0) * T, (b * H + h1) * T):
            lim = _visible(i, S, off, causal)
            i = i + 1 if i + 1 < T else 0
            if lim == 0:
                for j in range(S):
                    p[r, j] = np.nan
                lse[r] = np.nan
                continue
            for j in range(lim):
                p[r, j] = p[r, j] * scale
            m = _row_max(p, r, lim)
            for j in range(lim):
                p[r, j] = _exp(p[r, j] - m)
            l = np.float64(0.0)
            for j in range(lim):
                l += p[r, j]
            inv = dt.type(1.0 / l)
            for j in range(lim):
                p[r, j] = p[r, j] * inv
            for j in range(lim, S):
                p[r, j] = 0
            lse[r] = m + np.log(l)


@_jit
def _attn_dscores(p, dp, lse, b0, b1, h0, h1, H, T, scale, off, causal):
    """Backward row pass for heads ``b0..b1 x h0..h1``: the raw scores ``p`` become ``P = exp(scale q . k
    - lse)`` and ``dp = dO . v`` becomes ``dS = scale * P * (dP - sum_j P dP)``, both in place (masked
    keys, and rows without a visible key, 0)."""
    S = p.shape[1]
    dt = p.dtype
    for b in range(b0, b1):
        i = 0
        for r in range((b * H + h0) * T, (b * H + h1) * T):
            lim = _visible(i, S, off, causal)
            i = i + 1 if i + 1 < T else 0
            if not np.isfinite(lse[r]):
                lim = 0
            l = dt.type(lse[r]) if lim else dt.type(0)
            for j in range(lim):
                p[r, j] = _exp(p[r, j] * scale - l)
            delta = np.float64(0.0)
            for j in range(lim):
                delta += p[r, j] * dp[r, j]
            dl = dt.type(delta)
            for j in range(lim):
                dp[r, j] = scale * p[r, j] * (dp[r, j] - dl)
            for j in range(lim, S):
                p[r, j] = 0
                dp[r, j] = 0


@_jit
def _attn_dscores_saved(p, dp, b0, b1, h0, h1, H, T, scale, off, causal):
    """Backward row pass from saved probabilities ``p`` (:func:`attention_probs_backward`): ``dp = dO . v``
    becomes ``dS = scale * P * (dP - sum_j P dP)`` in place, masked keys 0. No exp: that is what keeping
    ``P`` buys over :func:`_attn_dscores`."""
    S = p.shape[1]
    dt = p.dtype
    for b in range(b0, b1):
        i = 0
        for r in range((b * H + h0) * T, (b * H + h1) * T):
            lim = _visible(i, S, off, causal)
            i = i + 1 if i + 1 < T else 0
            pr, dpr = p[r], dp[r]
            delta = np.float64(0.0)
            for j in range(lim):
                delta += pr[j] * dpr[j]
            dl = dt.type(delta)
            for j in range(lim):
                dpr[j] = scale * pr[j] * (dpr[j] - dl)
            for j in range(lim, S):
                dpr[j] = 0


def _head_groups(B: int, H: int, T: int, S: int, D: int) -> list[tuple[int, int, int, int]]:
    """``(b0, b1, h0, h1)`` groups of heads, one per thread: split the batch, else the heads; one group
    when the whole call is smaller than :data:`_ATTN_THREAD_MIN` (waking a helper costs more)."""
    n = numba.get_num_threads() if B * H * T * S * D >= _ATTN_THREAD_MIN else 1
    if n > 1 and B >= n:
        return [(c * B // n, (c + 1) * B // n, 0, H) for c in range(n)]
    if n > 1 and H >= n:
        return [(0, B, c * H // n, (c + 1) * H // n) for c in range(n)]
    return [(0, B, 0, H)]


def _small_heads(q4: np.ndarray, k4: np.ndarray, dropout_p: float) -> bool:
    """Take the BLAS chain (above) rather than the fused tile kernels? (No dropout mask in the chain.)"""
    T, D = q4.shape[2:]
    S = k4.shape[2]
    return dropout_p == 0.0 and S > 0 and T * S * D < _ATTN_BLAS_MAX


def _attn_fwd_blas(q4, k4, v4, out, lse, scale, causal, p):
    """The chain of the forward, the probabilities left in ``p [B, H, T, S]`` (scratch, or kept by
    :func:`attention_probs`)."""
    B, H, T, D = q4.shape
    S = k4.shape[2]
    dt = out.dtype
    rows, lse1, sc = p.reshape(-1, S), lse.reshape(-1), dt.type(scale)

    def group(g):
        b0, b1, h0, h1 = g
        at = (slice(b0, b1), slice(h0, h1))
        np.matmul(q4[at], np.swapaxes(k4[at], -1, -2), out=p[at])             # raw scores
        _attn_probs(rows, lse1, b0, b1, h0, h1, H, T, sc, S - T, causal)    # -> probabilities
        np.matmul(p[at], v4[at], out=out[at])

    threads.run_parts(group, _head_groups(B, H, T, S, D))


def _attn_bwd_blas(q4, k4, v4, lse, do4, dq, dk, dv, scale, causal):
    B, H, T, D = q4.shape
    S = k4.shape[2]
    dt = dq.dtype
    p = np.empty((B, H, T, S), dtype=dt)
    dp = np.empty((B, H, T, S), dtype=dt)
    prow, dprow, lse1, sc = p.reshape(-1, S), dp.reshape(-1, S), lse.reshape(-1), dt.type(scale)

    def group(g):
        b0, b1, h0, h1 = g
        at = (slice(b0, b1), slice(h0, h1))
        np.matmul(q4[at], np.swapaxes(k4[at], -1, -2), out=p[at])             # raw scores
        np.matmul(do4[at], np.swapaxes(v4[at], -1, -2), out=dp[at])           # dP
        _attn_dscores(prow, dprow, lse1, b0, b1, h0, h1, H, T, sc, S - T, causal)  # -> P, dS
        np.matmul(np.swapaxes(p[at], -1, -2), do4[at], out=dv[at])
        np.matmul(dp[at], k4[at], out=dq[at])
        np.matmul(np.swapaxes(dp[at], -1, -2), q4[at], out=dk[at])

    threads.run_parts(group, _head_groups(B, H, T, S, D))


def _flat(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 4-D array as ``(memory, strides)``: a 1-D view of its memory from ``a[0, 0, 0, 0]`` and the element
    strides of its first three axes, so ``a[b, h, j, d] == memory[b*s0 + h*s1 + j*s2 + d]``.

    This is how the attention kernels take strided views (the model's ``[B, H, T, D]`` transposes of a
    ``[B, T, C]`` activation) without copying them: to Numba the memory is a plain contiguous 1-D array
    (fast to dispatch, one compile per dtype) and each row is unit-stride (vector loads). An array whose
    last axis is not unit-stride, or with a negative stride, is copied first.
    """
    it = a.itemsize
    if a.size == 0:
        return np.empty(0, dtype=a.dtype), np.zeros(3, dtype=np.int64)
    if any(st < 0 or st % it for st in a.strides) or (a.shape[3] > 1 and a.strides[3] != it):
        a = np.ascontiguousarray(a)
    es = [st // it for st in a.strides]
    span = 1 + sum((n - 1) * e for n, e in zip(a.shape, es))
    return np.lib.stride_tricks.as_strided(a, shape=(span,), strides=(it,)), np.array(es[:3], dtype=np.int64)


def _as4(a: np.ndarray, dt) -> np.ndarray:
    """``a`` as a 4-D ``[B, H, n, D]`` array of dtype ``dt``: 4-D views pass through with their strides."""
    a = a.astype(dt, copy=False)
    if a.ndim == 4:
        return a
    return np.ascontiguousarray(a).reshape((-1, 1) + a.shape[-2:])


def _head_major(shape: tuple, dt) -> np.ndarray:
    """An uninitialised ``[B, H, n, D]`` result whose memory is ``[B, n, H, D]``: moving the heads back
    next to each other (``y.transpose(0, 2, 1, 3).reshape(B, n, H * D)``) is then free."""
    B, H, n, D = shape
    return np.empty((B, n, H, D), dtype=dt).transpose(0, 2, 1, 3)


def _packed_grads(shape: tuple, dt) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uninitialised ``dq, dk, dv`` (each ``[B, H, T, D]``) as views of one ``[B, T, 3 * H * D]`` array,
    q, k and v side by side per token: the layout of the model's ``c_attn`` output they were split
    from. The engine then finds the three gradients already in place in one array of the input's
    shape and uses it as is (``autograd._gather_slices``): no copying the pieces together."""
    B, H, T, D = shape
    packed = np.empty((B, T, 3 * H * D), dtype=dt).reshape(B, T, 3, H, D)
    return tuple(packed[:, :, i].transpose(0, 2, 1, 3) for i in range(3))


def _attn_args(q, k, v):
    if q.ndim < 2 or k.ndim != q.ndim or v.ndim != q.ndim:
        raise ValueError(f"attention expects [..., T, D] q and [..., S, D] k, v; got {q.shape}, {k.shape}, {v.shape}")
    if k.shape != v.shape or k.shape[:-2] != q.shape[:-2] or k.shape[-1] != q.shape[-1]:
        raise ValueError(f"attention: incompatible shapes q {q.shape}, k {k.shape}, v {v.shape}")
    dt = np.result_type(q, k, v)
    return dt, _as4(q, dt), _as4(k, dt), _as4(v, dt)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, causal: bool = True,
              dropout_p: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fused attention core ``softmax(q k^T * scale [+ causal mask]) v``; returns ``(out, lse f64)``.

    Small heads (``T * S * D < _ATTN_BLAS_MAX``, no dropout; the baby GPT's) go through BLAS products and
    a compiled row pass per group of heads, the groups on helper threads (``_attn_fwd_blas``); larger ones
    through one fused tile kernel per (batch, head), ``prange`` over heads. Inputs may be strided 4-D
    views (no copies).
    A 4-D output is laid out ``[B, T, H, D]`` in memory (see ``_head_major``). A query with no visible
    key (only possible when ``T > S``) has no distribution: its output row and lse are NaN, as in
    the reference.
    """
    if q.dtype not in _FLOATS:
        return numpy_ref.attention(q, k, v, scale, causal, dropout_p, seed)
    sd, thresh = _dropout_args(dropout_p, seed)
    dt, q4, k4, v4 = _attn_args(q, k, v)
    B, H, T, D = q4.shape
    S = k4.shape[2]
    out = _head_major(q4.shape, dt)
    lse = np.empty(q.shape[:-1], dtype=np.float64)  # owns its memory (profilers count it as saved)
    if q4.size and _small_heads(q4, k4, dropout_p):
        _attn_fwd_blas(q4, k4, v4, out, lse, scale, causal, np.empty((B, H, T, S), dtype=dt))
    elif q4.size:  # (an empty q means an empty out: nothing to write)
        work = B * H * T * S * max(D, 1)
        _launch(_attn_fwd_heads, _attn_fwd, B * H, B * H if _parallel(work) else 1,
                *_flat(q4), *_flat(k4), *_flat(v4), *_flat(out), lse.reshape(B * H, T), H, T, S, D,
                dt.type(scale), bool(causal), sd, thresh, dt.type(1.0 / (1.0 - dropout_p)),
                _GEOMETRY[dt][0], _NR[dt])
    return out.reshape(q.shape[:-1] + (D,)).astype(q.dtype, copy=False), lse


def attention_backward(q: np.ndarray, k: np.ndarray, v: np.ndarray, lse: np.ndarray, dout: np.ndarray,
                       scale: float, causal: bool = True, dropout_p: float = 0.0, seed: int = 0
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`attention`, by the same path as the forward (small heads: BLAS products and
    ``_attn_dscores``; otherwise one fused kernel per (batch, head)); returns ``(dq, dk, dv)``.
    For 4-D self-attention they are views of one ``[B, T, 3 * H * D]`` array (``_packed_grads``);
    otherwise each is laid out ``[B, n, H, D]`` in memory, like the forward's output."""
    if q.dtype not in _FLOATS:
        return numpy_ref.attention_backward(q, k, v, lse, dout, scale, causal, dropout_p, seed)
    sd, thresh = _dropout_args(dropout_p, seed)
    dt, q4, k4, v4 = _attn_args(q, k, v)
    if dout.shape != q.shape:
        raise ValueError(f"attention_backward: dout {dout.shape} must have q's shape {q.shape}")
    B, H, T, D = q4.shape
    do4 = _as4(dout, dt)
    lse2 = np.ascontiguousarray(lse, dtype=np.float64).reshape(B * H, T)
    if q.ndim == 4 and q.shape == k.shape:  # self-attention on [B, H, T, D] heads
        dq, dk, dv = _packed_grads(q4.shape, dt)
    else:
        dq, dk, dv = _head_major(q4.shape, dt), _head_major(k4.shape, dt), _head_major(v4.shape, dt)
    if q4.size and _small_heads(q4, k4, dropout_p):
        _attn_bwd_blas(q4, k4, v4, lse2, do4, dq, dk, dv, scale, causal)
    elif q4.size:
        S = k4.shape[2]
        work = B * H * T * S * max(D, 1)
        # (packed, the three gradients share one memory: each flat view starts at its own piece and runs on)
        _launch(_attn_bwd_heads, _attn_bwd, B * H, B * H if _parallel(work) else 1,
                *_flat(q4), *_flat(k4), *_flat(v4), lse2, *_flat(do4), *_flat(dq), *_flat(dk), *_flat(dv),
                H, T, S, D, dt.type(scale), bool(causal), sd, thresh, dt.type(1.0 / (1.0 - dropout_p)),
                _GEOMETRY[dt][0], _NR[dt])
    else:  # no queries (T = 0): the keys and values get zero gradients
        for a in (dq, dk, dv):
            a[...] = 0
    return (dq.reshape(q.shape).astype(q.dtype, copy=False), dk.reshape(k.shape).astype(k.dtype, copy=False),
            dv.reshape(v.shape).astype(v.dtype, copy=False))


# ------------------------------------------- the probabilities kept: attention_probs and its backward
def attention_probs(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float,
                    causal: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(out, P)`` of :func:`numpy_ref.attention_probs` by the small-heads chain (BLAS products and
    ``_attn_probs``, groups of heads on helper threads), keeping the ``[B, H, T, S]`` probabilities it
    computes anyway; ``out`` is laid out ``[B, T, H, D]`` in memory, like :func:`attention`'s."""
    if q.dtype not in _FLOATS or q.shape[-2] == 0 or k.shape[-2] == 0:
        return numpy_ref.attention_probs(q, k, v, scale, causal)
    dt, q4, k4, v4 = _attn_args(q, k, v)
    B, H, T, D = q4.shape
    S = k4.shape[2]
    out = _head_major(q4.shape, dt)
    p = np.empty((B, H, T, S), dtype=dt)
    _attn_fwd_blas(q4, k4, v4, out, np.empty((B, H, T)), scale, causal, p)
    return out.reshape(q.shape[:-1] + (D,)).astype(q.dtype, copy=False), p.reshape(q.shape[:-1] + (S,))


def attention_probs_backward(q: np.ndarray, k: np.ndarray, v: np.ndarray, probs: np.ndarray, dout: np.ndarray,
                             scale: float, causal: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`attention_probs` from its ``P``: four BLAS products and one row pass per group of
    heads (the lse path's backward recomputes ``q k^T`` and its exp: five products and an exp pass); the
    gradients packed as :func:`attention_backward`'s."""
    if q.dtype not in _FLOATS or q.shape[-2] == 0 or k.shape[-2] == 0:
        return numpy_ref.attention_probs_backward(q, k, v, probs, dout, scale, causal)
    dt, q4, k4, v4 = _attn_args(q, k, v)
    if dout.shape != q.shape:
        raise ValueError(f"attention_probs_backward: dout {dout.shape} must have q's shape {q.shape}")
    B, H, T, D = q4.shape
    S = k4.shape[2]
    do4 = _as4(dout, dt)
    p = np.ascontiguousarray(probs, dtype=dt).reshape(B, H, T, S)
    if q.ndim == 4 and q.shape == k.shape:
        dq, dk, dv = _packed_grads(q4.shape, dt)
    else:
        dq, dk, dv = _head_major(q4.shape, dt), _head_major(k4.shape, dt), _head_major(v4.shape, dt)
    dp = np.empty((B, H, T, S), dtype=dt)
    prow, dprow, sc = p.reshape(-1, S), dp.reshape(-1, S), dt.type(scale)

    def group(g):
        b0, b1, h0, h1 = g
        at = (slice(b0, b1), slice(h0, h1))
        np.matmul(do4[at], np.swapaxes(v4[at], -1, -2), out=dp[at])            # dP
        _attn_dscores_saved(prow, dprow, b0, b1, h0, h1, H, T, sc, S - T, causal)  # -> dS
        np.matmul(np.swapaxes(p[at], -1, -2), do4[at], out=dv[at])
        np.matmul(dp[at], k4[at], out=dq[at])
        np.matmul(np.swapaxes(dp[at], -1, -2), q4[at], out=dk[at])

    threads.run_parts(group, _head_groups(B, H, T, S, D))
    return (dq.reshape(q.shape).astype(q.dtype, copy=False), dk.reshape(k.shape).astype(k.dtype, copy=False),
            dv.reshape(v.shape).astype(v.dtype, copy=False))
