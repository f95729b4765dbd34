"""User-facing functions, ``import tinytensor.functional as F``.

Most are one fused op from :mod:`tinytensor.ops`; ``dropout`` and the composed attention are built
from primitives. The ``*_composed`` functions spell out the same math from primitives: they are the
readable definitions, and the tests check the fused ops against them.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import ops
from .errors import ShapeError, UsageError
from .ops.checks import check_attention_shapes, check_attn_mask, check_key_padding_mask
from .tensor import Tensor, as_tensor, default_rng, where


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """``exp(x_i - max x) / sum_j exp(x_j - max x)`` along ``axis``."""
    return ops.Softmax.apply(x, axis=axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """``x - logsumexp(x)`` along ``axis``; stable for large logits."""
    return ops.LogSoftmax.apply(x, axis=axis)


def cross_entropy(logits: Tensor, targets, ignore_index: int | None = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Negative log-likelihood of integer ``targets [...]`` under ``softmax(logits [..., V])``.

    Args:
        logits: unnormalised scores, classes on the last axis.
        targets: integer class ids (NumPy array, list or tensor) with ``logits.shape[:-1]``.
        ignore_index: rows with this target contribute nothing (and are not counted by the mean).
        reduction: ``"mean"`` over counted rows, ``"sum"``, or ``"none"`` (per-row losses).
        label_smoothing: ``eps`` in ``[0, 1]``, PyTorch's definition: the target is ``(1 - eps)`` one-hot
            plus ``eps / V`` on every class, i.e. per counted row
            ``loss = (1 - eps) * nll + eps * mean_c(-log softmax(logits)_c)`` (the Transformer paper uses 0.1).

    Raises:
        UsageError: a target outside ``[0, V)`` that is not ``ignore_index``; ``label_smoothing`` out of range.
        ShapeError: ``targets`` not of shape ``logits.shape[:-1]``.
        DTypeError: ``targets`` not integers.
    """
    t = targets.data if isinstance(targets, Tensor) else np.asarray(targets)
    return ops.CrossEntropy.apply(logits, targets=t, ignore_index=ignore_index, reduction=reduction,
                                  label_smoothing=label_smoothing)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` with ``weight [out, in]`` (one fused op; see ``ops.Linear``)."""
    if bias is None:
        return ops.Linear.apply(x, weight)
    return ops.Linear.apply(x, weight, bias)


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor | None = None, eps: float = 1e-5,
               residual: Tensor | None = None) -> Tensor:
    """Normalise the last axis to zero mean and unit (population) variance, then scale and shift.

    With ``residual`` (x's shape), the norm of ``x + residual``, the sum fused into the norm's pass
    (a post-LN residual: ``layer_norm(sublayer(x), w, b, residual=x)``)."""
    if residual is not None:
        args = (x, residual, weight) if bias is None else (x, residual, weight, bias)
        return ops.AddLayerNorm.apply(*args, eps=eps)
    if bias is None:
        return ops.LayerNorm.apply(x, weight, eps=eps)
    return ops.LayerNorm.apply(x, weight, bias, eps=eps)


def gelu(x: Tensor) -> Tensor:
    """GELU with GPT-2's tanh approximation."""
    return ops.Gelu.apply(x)


def relu(x: Tensor) -> Tensor:
    return ops.Relu.apply(x)


def embedding(ids, weight: Tensor) -> Tensor:
    """Rows of ``weight [num, dim]`` at integer ``ids`` (any shape): output ``ids.shape + (dim,)``."""
    i = ids.data if isinstance(ids, Tensor) else np.asarray(ids)
    return ops.Embedding.apply(weight, ids=i)


def _dropout_seed(rng: np.random.Generator | None) -> int:
    """One draw from ``rng`` (default: the library generator): the seed a hashed dropout mask derives from."""
    return int((rng if rng is not None else default_rng()).integers(2**63))


def dropout(x: Tensor, p: float, training: bool = True, rng: np.random.Generator | None = None) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)`` (inverted dropout).

    Identity when ``training`` is False or ``p == 0``. Each call draws one seed from ``rng`` (default:
    the library generator); the mask is a hash of that seed and each element's index (``ops.Dropout``,
    which checks ``p``: finite, ``0 <= p < 1``).
    """
    if not training or p == 0.0:
        return x
    return ops.Dropout.apply(x, p=p, seed=_dropout_seed(rng))


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False,
                                 dropout_p: float = 0.0, training: bool = True,
                                 rng: np.random.Generator | None = None, impl: str = "auto", *,
                                 key_padding_mask=None, attn_mask=None) -> Tensor:
    """``softmax(q k^T / sqrt(D) + mask) v`` for ``[..., T, D]`` q, ``[..., S, D]`` k and ``[..., S, Dv]`` v.

    Masks (any combination; a masked score is ``-inf`` before the softmax):

    * ``causal=True``: query ``i`` sees keys ``0 .. i + S - T`` (the last T of S positions, as with a
      KV cache).
    * ``key_padding_mask``: bool ``[B, S]``, True = ignore that key (padding) for every query of batch
      row ``b``; needs at least one batch dim (``B = q.shape[0]``).
    * ``attn_mask``: broadcastable to the scores ``[..., T, S]``; bool (True = ignore, as in
      ``torch.nn.MultiheadAttention``; note ``torch.nn.functional.scaled_dot_product_attention`` reads a
      bool mask the other way round) or float, added to the scaled scores (a Tensor mask gets gradients).

    A query whose every key is masked has no distribution: its output row is **zeros**, and it passes
    zero gradients back (PyTorch gives NaN there). T and S may differ (cross-attention).

    Paths: without ``key_padding_mask``/``attn_mask``, ``impl="auto"`` takes the fused attention kernel
    (``ops.Attention``) whenever it applies (4-D inputs with one batch shape, v of k's shape), causal or
    not; with either mask it takes the composed path: ``q @ k^T`` (matmul op), ``where`` for the bool
    masks, ``+`` for a float mask, the softmax op (causal masking in its kernel), ``@ v``.
    ``impl="fused"`` insists on the kernel (it takes no masks but the causal one), ``"composed"`` on the
    primitives. Dropout on the attention weights (``dropout_p`` while ``training``) draws one seed from
    ``rng`` per call; the fused kernel derives its mask from that seed by hashing, the composed path
    draws a mask array.

    Raises:
        ShapeError: q, k, v or a mask whose shapes do not fit (the message names them).
        DTypeError: a ``key_padding_mask`` that is not bool, an ``attn_mask`` neither bool nor float.
        UsageError: an unknown ``impl``, or ``impl="fused"`` with a mask it does not take.
    """
    op = "scaled_dot_product_attention"
    if impl not in ("auto", "fused", "composed"):
        raise UsageError(f"{op}: impl must be auto, fused or composed, got {impl!r}")
    q, k, v = as_tensor(q), as_tensor(k), as_tensor(v)
    scores = check_attention_shapes(op, q.shape, k.shape, v.shape)   # batch + (T, S)
    blocked = None                                                    # bool, True = -inf score
    if key_padding_mask is not None:
        blocked = check_key_padding_mask(op, np.asarray(_raw(key_padding_mask)), scores)
    additive = None
    if attn_mask is not None:
        am = attn_mask if isinstance(attn_mask, Tensor) else np.asarray(attn_mask)
        check_attn_mask(op, am.dtype, am.shape, scores)
        if am.dtype == np.bool_:
            bm = _raw(am)
            blocked = bm if blocked is None else (blocked | bm)
        else:
            additive = am if isinstance(am, Tensor) else Tensor(am.astype(q.dtype, copy=False))
    masked = blocked is not None or additive is not None
    fusable = q.ndim == 4 and k.shape == v.shape and q.shape[:2] == k.shape[:2] and not masked
    if impl == "fused" and not fusable:
        raise (UsageError if masked else ShapeError)(
            f"fused attention takes 4-D q/k/v with k, v alike and no key_padding_mask/attn_mask; got q {q.shape}, "
            f"k {k.shape}, v {v.shape}, masks: {'yes' if masked else 'no'}")
    scale = 1.0 / math.sqrt(q.shape[-1])
    if impl == "fused" or (impl == "auto" and fusable):
        p = dropout_p if training else 0.0
        seed = _dropout_seed(rng) if p > 0.0 else 0
        return ops.Attention.apply(q, k, v, scale=scale, causal=causal, dropout_p=p, seed=seed)
    att = (q @ k.swapaxes(-1, -2)) * scale                       # [..., T, S]
    if blocked is not None:
        att = where(blocked, -np.inf, att)
    if additive is not None:
        att = att + additive.astype(att.dtype)
    att = ops.Softmax.apply(att, axis=-1, causal=causal)         # masked entries (and all-masked rows) get 0
    att = dropout(att, dropout_p, training, rng)
    return att @ v                                               # [..., T, Dv]


def _raw(x):
    """The array inside a Tensor, anything else as is."""
    return x.data if isinstance(x, Tensor) else x


def sinusoidal_positions(max_len: int, d_model: int, dtype=np.float32) -> Tensor:
    """The Transformer paper's positional encoding ``[max_len, d_model]`` (a constant, no gradient).

    ``PE[pos, 2i] = sin(pos / 10000^(2i / d_model))`` and ``PE[pos, 2i + 1] = cos(pos / 10000^(2i / d_model))``
    (an odd ``d_model`` ends with a sine column). Computed in float64, returned in ``dtype``.
    """
    if not (isinstance(max_len, numbers.Integral) and isinstance(d_model, numbers.Integral)) or max_len < 0 \
            or d_model < 1:
        raise UsageError(f"sinusoidal_positions: max_len >= 0 and d_model >= 1 must be integers, "
                         f"got {max_len!r}, {d_model!r}")
    pos = np.arange(max_len, dtype=np.float64)[:, None]                # [max_len, 1]
    two_i = np.arange(0, d_model, 2, dtype=np.float64)                 # 2i = 0, 2, 4, ...
    angle = pos / 10000.0 ** (two_i / d_model)                         # [max_len, ceil(d / 2)]
    pe = np.empty((max_len, d_model), dtype=np.float64)
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, : d_model // 2])
    return Tensor(pe.astype(dtype))


# ------------------------------------------------------------------ composed reference definitions
def softmax_composed(x: Tensor, axis: int = -1) -> Tensor:
    """Softmax from primitives: ``e = exp(x - max(x)); e / sum(e)``."""
    e = (x - x.max(axis=axis, keepdims=True).detach()).exp()
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax_composed(x: Tensor, axis: int = -1) -> Tensor:
    m = x.max(axis=axis, keepdims=True).detach()
    return x - m - (x - m).exp().sum(axis=axis, keepdims=True).log()


def cross_entropy_composed(logits: Tensor, targets) -> Tensor:
    """Mean NLL from primitives: pick ``log_softmax`` at the targets with integer indexing."""
    t = np.asarray(targets.data if isinstance(targets, Tensor) else targets).reshape(-1)
    lp = log_softmax_composed(logits.reshape(-1, logits.shape[-1]))
    return -lp[np.arange(t.size), t].mean()


def linear_composed(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    y = x @ weight.T
    return y + bias if bias is not None else y


def layer_norm_composed(x: Tensor, weight: Tensor, bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    mu = x.mean(axis=-1, keepdims=True)
    y = (x - mu) / (x.var(axis=-1, keepdims=True) + eps).sqrt() * weight
    return y + bias if bias is not None else y


def gelu_composed(x: Tensor) -> Tensor:
    return 0.5 * x * (1.0 + (math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)).tanh())


def attention_composed(q: Tensor, k: Tensor, v: Tensor, causal: bool = False, blocked=None) -> Tensor:
    """Attention from primitives only: the masks are a ``where`` with -inf, softmax composed.

    ``blocked`` (bool, broadcastable to ``[..., T, S]``, True = ignore) is any extra mask. A query with no
    visible key gets a zero output row: its scores are replaced by 0 and its weights by 0 (a plain
    composed softmax of an all -inf row is NaN).
    """
    T, S = q.shape[-2], k.shape[-2]
    att = (q @ k.swapaxes(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    hidden = np.zeros((T, S), dtype=bool)
    if causal:
        hidden = np.arange(S)[None, :] > np.arange(T)[:, None] + (S - T)
    if blocked is not None:
        hidden = hidden | np.asarray(blocked, dtype=bool)
    hidden = np.broadcast_to(hidden, np.broadcast_shapes(hidden.shape, att.shape))
    empty = hidden.all(axis=-1, keepdims=True)                   # rows with no visible key
    att = where(hidden & ~empty, -np.inf, where(empty, 0.0, att))
    return where(empty, 0.0, softmax_composed(att, axis=-1)) @ v
