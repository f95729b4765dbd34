"""The readable reference kernels: pure NumPy array functions.

Every function here is a row of :mod:`tinytensor.kernels.spec` and has a twin with the same signature in
:mod:`tinytensor.kernels.numba`. This twin checks the spec's preconditions (the compiled one does not).
Kernels take and return ``np.ndarray`` only: no Tensor, no autograd. The differentiable ops in
:mod:`tinytensor.ops` call them through :mod:`tinytensor.backend`.

Conventions
-----------
* Functions work on the last axis (softmax, layer norm) or on 2-D ``[N, C]`` views (cross-entropy,
  embedding); callers reshape.
* Sums that feed a normalisation (softmax denominators, layer-norm moments, the loss) are accumulated
  in float64 and the result is cast back to the input dtype.
* Nothing is modified in place except by ``adamw_step``, whose job that is.
"""
from __future__ import annotations

import math

import numpy as np

from . import spec

_GELU_C = math.sqrt(2.0 / math.pi)


# ----------------------------------------------------------------------------------------- matmul
def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for 2-D ``[M, K] @ [K, N]`` or batched ``[B, M, K] @ [B, K, N]`` (same B).

    The reference is NumPy's own matmul (BLAS). Returns an array of the promoted dtype.
    """
    return np.matmul(a, b)


def linear_grads(g: np.ndarray, w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A Linear's backward products: ``dx = g @ w`` ``[N, in]`` and ``dW = g.T @ x`` ``[out, in]``."""
    return np.matmul(g, w), np.matmul(g.T, x)


# ---------------------------------------------------------------------------------------- softmax
def _causal_mask(t: int, s: int) -> np.ndarray:
    """Boolean ``[t, s]`` mask, True where query ``i`` may NOT see key ``j``.

    Queries are the last ``t`` positions of ``s`` keys (a KV cache puts ``s - t`` keys before them):
    query ``i`` sees keys ``0 .. i + (s - t)``.
    """
    i = np.arange(t)[:, None]
    j = np.arange(s)[None, :]
    return j > i + (s - t)


def softmax(x: np.ndarray, causal: bool = False) -> np.ndarray:
    """Numerically stable softmax over the last axis.

    ``y_i = exp(x_i - max(x)) / sum_j exp(x_j - max(x))``. With ``causal=True`` the input is read as
    attention scores ``[..., T, S]`` and masked entries (see ``_causal_mask``) get probability 0.
    A row whose inputs are all ``-inf`` has no defined softmax; it comes out as all zeros. A NaN in a
    row makes the whole row NaN (it is not hidden as zeros).
    """
    if causal:
        if x.ndim < 2:
            raise ValueError(f"causal softmax needs [..., T, S] scores, got shape {x.shape}")
        x = np.where(_causal_mask(x.shape[-2], x.shape[-1]), -np.inf, x)
    m = np.max(x, axis=-1, keepdims=True) if x.shape[-1] else np.zeros(x.shape[:-1] + (1,), x.dtype)
    m = np.where(m == -np.inf, 0.0, m)  # all -inf rows: keep exp() at 0 instead of NaN; +inf/NaN give NaN
    e = np.exp((x - m).astype(np.float64))
    s = e.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(s == 0, 0.0, e / s)  # subtle: `s > 0` would turn NaN rows into zeros
    return y.astype(x.dtype, copy=False)


def softmax_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Backward of softmax over the last axis: ``dx = y * (dy - sum(dy * y))``.

    Masked entries have ``y == 0`` so their gradient is 0; no mask argument is needed.
    """
    dot = np.sum((dy * y).astype(np.float64), axis=-1, keepdims=True)
    return (y * (dy - dot)).astype(y.dtype, copy=False)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """``x - logsumexp(x)`` over the last axis, with the max subtracted first for stability."""
    m = np.max(x, axis=-1, keepdims=True) if x.shape[-1] else np.zeros(x.shape[:-1] + (1,), x.dtype)
    m = np.where(m == -np.inf, 0.0, m)
    lse = np.log(np.sum(np.exp((x - m).astype(np.float64)), axis=-1, keepdims=True)) + m
    return (x - lse).astype(x.dtype, copy=False)


def log_softmax_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Backward of log-softmax (``y`` is its output): ``dx = dy - exp(y) * sum(dy)``."""
    s = np.sum(dy.astype(np.float64), axis=-1, keepdims=True)
    return (dy - np.exp(y) * s).astype(y.dtype, copy=False)


# ---------------------------------------------------------------------------------- cross-entropy
def cross_entropy(logits: np.ndarray, targets: np.ndarray, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Fused log-softmax + negative log-likelihood, one row at a time.

    Args:
        logits: ``[N, V]`` float array.
        targets: ``[N]`` integer array in ``[0, V)``, or ``ignore_index``.
        ignore_index: target value whose row contributes 0 loss and 0 gradient.

    Returns:
        ``(loss [N] float64, lse [N] float64)``: per-row ``logsumexp(logits) - logits[target]`` (0 on
        ignored rows) and the row's logsumexp, which the backward reuses.
    """
    spec.check_targets(logits, targets, ignore_index)  # negative ids would wrap silently
    keep = targets != ignore_index
    x = logits.astype(np.float64)
    m = x.max(axis=1, keepdims=True) if x.shape[1] else np.zeros((x.shape[0], 1))
    lse = (np.log(np.exp(x - m).sum(axis=1, keepdims=True)) + m)[:, 0]
    safe_t = np.where(keep, targets, 0)
    picked = x[np.arange(x.shape[0]), safe_t] if x.shape[0] else np.zeros(0)
    loss = np.where(keep, lse - picked, 0.0)
    return loss, lse


def cross_entropy_backward(logits: np.ndarray, targets: np.ndarray, lse: np.ndarray,
                           dloss: np.ndarray, ignore_index: int) -> np.ndarray:
    """Gradient of the per-row loss: ``dlogits[i] = (softmax(logits[i]) - onehot(t_i)) * dloss[i]``.

    Ignored rows get a zero gradient. Returns an array of ``logits.dtype``.
    """
    spec.check_targets(logits, targets, ignore_index)
    p = np.exp(logits.astype(np.float64) - lse[:, None])
    keep = targets != ignore_index
    rows = np.nonzero(keep)[0]
    p[rows, targets[rows]] -= 1.0
    p *= np.where(keep, dloss, 0.0)[:, None]
    return p.astype(logits.dtype, copy=False)


# ------------------------------------------------------------------------------------- layer norm
def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layer norm over the last axis of a 2-D ``[N, C]`` array.

    ``y = (x - mean) * rstd * w + b`` with ``rstd = 1 / sqrt(var + eps)`` (population variance).
    Returns ``(y, mean [N], rstd [N])``; mean and rstd are float64-accumulated, stored in x's dtype.
    """
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=1)
    var = ((x64 - mean[:, None]) ** 2).mean(axis=1)
    rstd = 1.0 / np.sqrt(var + eps)
    y = (x64 - mean[:, None]) * rstd[:, None] * w + b
    return y.astype(x.dtype, copy=False), mean.astype(x.dtype), rstd.astype(x.dtype)


def add_layer_norm(x: np.ndarray, r: np.ndarray, w: np.ndarray, b: np.ndarray,
                   eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Layer norm of the residual sum ``s = x + r`` (x's shape and dtype): ``(y, s, mean, rstd)``.
    The backward is :func:`layer_norm_backward` of ``s``; its ``dx`` is the gradient of both x and r."""
    s = x + r
    y, mean, rstd = layer_norm(s, w, b, eps)
    return y, s, mean, rstd


def layer_norm_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, mean: np.ndarray,
                        rstd: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward of ``layer_norm``. Returns ``(dx [N, C], dw [C], db [C])``.

    With ``xhat = (x - mean) * rstd`` and ``g = dy * w``:
    ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))``, ``dw = sum_n dy * xhat``, ``db = sum_n dy``.
    """
    x64 = x.astype(np.float64)
    xhat = (x64 - mean[:, None].astype(np.float64)) * rstd[:, None].astype(np.float64)
    dy64 = dy.astype(np.float64)
    g = dy64 * w
    dx = rstd[:, None] * (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True))
    dw = (dy64 * xhat).sum(axis=0)
    db = dy64.sum(axis=0)
    return dx.astype(x.dtype, copy=False), dw.astype(w.dtype), db.astype(w.dtype)


# ------------------------------------------------------------------------------------------- GELU
def gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation (GPT-2's ``gelu_new``):
    ``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))``."""
    return (0.5 * x * (1.0 + np.tanh(_GELU_C * (x + 0.044715 * x ** 3)))).astype(x.dtype, copy=False)


def gelu_backward(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """``d gelu / dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)``, t the tanh."""
    t = np.tanh(_GELU_C * (x + 0.044715 * x ** 3))
    d = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _GELU_C * (1.0 + 3 * 0.044715 * x * x)
    return (dy * d).astype(x.dtype, copy=False)


def gelu_and_grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(gelu(x), gelu'(x))`` from one tanh: a training forward saves the derivative, so the backward is
    ``dy * gelu'(x)``, one multiply, instead of a second tanh pass (the formulas of :func:`gelu` and
    :func:`gelu_backward`)."""
    t = np.tanh(_GELU_C * (x + 0.044715 * x ** 3))
    y = 0.5 * x * (1.0 + t)
    d = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _GELU_C * (1.0 + 3 * 0.044715 * x * x)
    return y.astype(x.dtype, copy=False), d.astype(x.dtype, copy=False)


# --------------------------------------------------------------------------------------- bias add
def bias_add(y: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``y += b`` over the rows of ``y [N, C]``, in place (b's dtype no wider than y's); returns ``y``."""
    y += b
    return y


# ------------------------------------------------------------------------------------------- ReLU
def relu(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)``; NaN stays NaN (``np.maximum`` propagates it)."""
    return np.maximum(x, np.zeros((), x.dtype))


def relu_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """``dy`` where the output ``y > 0``, else 0: the subgradient 0 at x == 0, and 0 at NaN (``NaN > 0`` is
    false). Reading the output, not the input, lets the op keep the array the next layer keeps anyway."""
    return np.where(y > 0, dy, np.zeros((), y.dtype)).astype(y.dtype, copy=False)


# -------------------------------------------------------------------------------------- embedding
def embedding_backward(ids: np.ndarray, dout: np.ndarray, vocab_size: int) -> np.ndarray:
    """Scatter-add rows of ``dout [N, C]`` into ``dW [vocab_size, C]`` at ``ids [N]``.

    Repeated ids accumulate (``np.add.at`` is unbuffered, unlike ``dW[ids] += dout``). Ids outside
    ``[0, vocab_size)`` raise ``IndexError`` (``np.add.at`` alone would wrap negative ones).
    """
    spec.check_ids(ids, dout, vocab_size)
    dw = np.zeros((vocab_size, dout.shape[1]), dtype=dout.dtype)
    np.add.at(dw, ids, dout)
    return dw


# ------------------------------------------------------------------------------- gradient norm
def sum_squares(x: np.ndarray) -> float:
    """``sum(x**2)`` accumulated in float64 (global-norm clipping sums this over every gradient)."""
    x64 = np.asarray(x, dtype=np.float64).ravel()
    return float(np.dot(x64, x64))


# ------------------------------------------------------------------------------------------ AdamW
def adamw_step(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float,
               betas: tuple[float, float], eps: float, weight_decay: float, t: int) -> None:
    """One AdamW step (Loshchilov & Hutter), updating ``p``, ``m`` and ``v`` in place.

    ``p -= lr * wd * p``; ``m = b1 m + (1-b1) g``; ``v = b2 v + (1-b2) g^2``;
    ``p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)``. ``t`` counts steps from 1.
    """
    b1, b2 = betas
    p *= 1.0 - lr * weight_decay
    m *= b1
    m += (1.0 - b1) * g
    v *= b2
    v += (1.0 - b2) * (g * g)
    bc1 = 1.0 - b1 ** t
    bc2 = 1.0 - b2 ** t
    p -= (lr / bc1) * m / (np.sqrt(v / bc2) + eps)


# ------------------------------------------------------------------------------ causal attention
# Attention dropout draws no random numbers: whether probability (b, h, i, j) is kept is a hash of
# (seed, its flat index), so the backward recomputes exactly the forward's mask without storing the
# [T, S] matrix (flash-attention style), and the compiled twin reproduces it bit for bit.
_M1, _M2, _M3 = spec.SPLITMIX_M1, spec.SPLITMIX_M2, spec.SPLITMIX_M3
_R1, _R2, _R3 = spec.SPLITMIX_SHIFTS


def dropout_keep(seed: int, idx: np.ndarray, p: float) -> np.ndarray:
    """True where element ``idx`` (uint64 flat indices) is kept by dropout with probability ``p``.

    SplitMix64's finaliser of ``idx * golden + seed`` gives 64 well-mixed bits; the top 24 form
    ``u`` uniform on ``[0, 2^24)`` and the element is kept when ``u >= round(p * 2^24)``.
    """
    spec.check_p(p)
    z = np.asarray(idx, dtype=np.uint64) * _M1 + np.uint64(seed % 2**64)
    z = (z ^ (z >> _R1)) * _M2
    z = (z ^ (z >> _R2)) * _M3
    z = z ^ (z >> _R3)
    return (z >> np.uint64(64 - spec.DROPOUT_BITS)) >= spec.dropout_threshold(p)


def dropout(x: np.ndarray, p: float, seed: int) -> np.ndarray:
    """Inverted dropout with a hashed mask: ``x * keep / (1 - p)``, ``keep`` from :func:`dropout_keep`
    over ``x``'s flat (C-order) indices. Its own backward: the gradient goes through the same mask."""
    keep = dropout_keep(seed, np.arange(x.size, dtype=np.uint64), p).reshape(x.shape)
    return (x * keep * (1.0 / (1.0 - p))).astype(x.dtype, copy=False)


def _dropout_scale(shape: tuple[int, ...], dropout_p: float, seed: int) -> np.ndarray | None:
    """``keep / (1 - p)`` over a ``[..., T, S]`` score tensor (None when there is no dropout)."""
    spec.check_p(dropout_p)
    if dropout_p == 0.0:
        return None
    keep = dropout_keep(seed, np.arange(math.prod(shape), dtype=np.uint64), dropout_p).reshape(shape)
    return keep / (1.0 - dropout_p)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, causal: bool = True,
              dropout_p: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Attention core ``dropout(softmax(q k^T * scale [+ causal mask])) v`` for ``[B, H, T, D]`` q and
    ``[B, H, S, D]`` k, v.

    Returns ``(out [B, H, T, D], lse [B, H, T] float64)``: the row logsumexp lets the backward
    rebuild the probabilities without storing the ``[T, S]`` matrix. With ``dropout_p > 0`` each
    probability is zeroed (kept ones scaled by ``1 / (1 - p)``) as :func:`dropout_keep` says for
    ``seed``; pass the same seed to the backward.
    """
    s = np.matmul(q, np.swapaxes(k, -1, -2)).astype(np.float64) * scale
    if causal:
        s = np.where(_causal_mask(s.shape[-2], s.shape[-1]), -np.inf, s)
    m = s.max(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):  # a query with no visible key (T > S): -inf - -inf, NaN as documented
        lse = np.log(np.exp(s - m).sum(axis=-1, keepdims=True)) + m
        p = np.exp(s - lse)
    drop = _dropout_scale(p.shape, dropout_p, seed)
    out = np.matmul(p if drop is None else p * drop, v.astype(np.float64))
    return out.astype(q.dtype), lse[..., 0]


def attention_backward(q: np.ndarray, k: np.ndarray, v: np.ndarray, lse: np.ndarray, dout: np.ndarray,
                       scale: float, causal: bool = True, dropout_p: float = 0.0, seed: int = 0
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward of ``attention``. Returns ``(dq, dk, dv)``.

    With ``P = exp(S - lse)`` and the dropout scale ``Z`` (all ones without dropout), ``O = (P Z) V``:
    ``dV = (P Z)^T dO``; ``dP = (dO V^T) Z``; ``dS = P * (dP - rowsum(dO * O))``;
    ``dQ = dS K * scale``; ``dK = dS^T Q * scale``.
    """
    q64, k64, v64, do64 = (a.astype(np.float64) for a in (q, k, v, dout))
    s = np.matmul(q64, np.swapaxes(k64, -1, -2)) * scale
    if causal:
        s = np.where(_causal_mask(s.shape[-2], s.shape[-1]), -np.inf, s)
    p = np.exp(s - lse[..., None])
    drop = _dropout_scale(p.shape, dropout_p, seed)
    pz = p if drop is None else p * drop
    dv = np.matmul(np.swapaxes(pz, -1, -2), do64)
    dp = np.matmul(do64, np.swapaxes(v64, -1, -2))
    if drop is not None:
        dp = dp * drop
    o = np.matmul(pz, v64)
    ds = p * (dp - np.sum(do64 * o, axis=-1, keepdims=True))
    dq = np.matmul(ds, k64) * scale
    dk = np.matmul(np.swapaxes(ds, -1, -2), q64) * scale
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype)


def attention_probs(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float,
                    causal: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The attention of the books, its probability matrix kept for the backward:
    ``P = softmax(q k^T * scale [+ causal mask])`` and ``out = P v``, no dropout.

    Returns ``(out [B, H, T, D], P [B, H, T, S])`` in q's dtype. Masked keys get probability 0; a query with
    no visible key (causal with ``T > S``) a NaN row, as in :func:`attention`.
    """
    s = np.matmul(q, np.swapaxes(k, -1, -2)).astype(np.float64) * scale
    if causal:
        s = np.where(_causal_mask(s.shape[-2], s.shape[-1]), -np.inf, s)
    with np.errstate(invalid="ignore"):  # a row with no visible key: -inf - -inf
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        p = e / e.sum(axis=-1, keepdims=True)
    out = np.matmul(p, v.astype(np.float64))
    return out.astype(q.dtype), p.astype(q.dtype)


def attention_probs_backward(q: np.ndarray, k: np.ndarray, v: np.ndarray, probs: np.ndarray, dout: np.ndarray,
                             scale: float, causal: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`attention_probs` from its saved ``P``: ``(dq, dk, dv)``.

    ``dV = P^T dO``; ``dP = dO V^T``; ``dS = P * (dP - rowsum(P * dP))``; ``dQ = dS K * scale``;
    ``dK = dS^T Q * scale``. (Masked keys have ``P = 0``, so their ``dS`` is 0: ``causal`` changes nothing
    here; the compiled twin uses it to skip them.)
    """
    q64, k64, v64, do64, p = (a.astype(np.float64) for a in (q, k, v, dout, probs))
    dv = np.matmul(np.swapaxes(p, -1, -2), do64)
    dp = np.matmul(do64, np.swapaxes(v64, -1, -2))
    ds = p * (dp - np.sum(p * dp, axis=-1, keepdims=True))
    dq = np.matmul(ds, k64) * scale
    dk = np.matmul(np.swapaxes(ds, -1, -2), q64) * scale
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype)
