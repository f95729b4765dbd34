"""Hypothesis strategies: one case generator per differentiable op.

Each strategy in ``OP_CASES`` draws an ``OpCase``: the tinytensor function, its inputs (float64 tensors
requiring grad, possibly non-contiguous views), and a NumPy function computing the same forward from
the raw arrays. The forward tests compare the two; the gradient tests run ``tt.gradcheck``.

Values are kept off kinks: relu/abs inputs stay away from 0, max/min inputs have no ties, clip inputs
stay away from the bounds. The kinks themselves are pinned in ``test_ops.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import strategies as st

import tinytensor as tt
import tinytensor.functional as F
from tinytensor.kernels import numpy_ref


@dataclass
class OpCase:
    fn: Callable[..., tt.Tensor]
    inputs: list[Any]
    reference: Callable[..., np.ndarray]   # same arguments, raw arrays

    def raw(self) -> list[Any]:
        return [x.data if isinstance(x, tt.Tensor) else x for x in self.inputs]


shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=3)
shapes_1d_plus = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=3)
seeds = st.integers(0, 2**32 - 1)


def _layout(arr: np.ndarray, how: int) -> np.ndarray:
    """Same values, another memory layout: 0 contiguous, 1 Fortran order, 2 strided view."""
    if how == 1 and arr.ndim >= 2:
        return np.asfortranarray(arr)
    if how == 2 and arr.ndim >= 1:
        wide = np.zeros(arr.shape[:-1] + (2 * arr.shape[-1],), arr.dtype)
        wide[..., ::2] = arr
        return wide[..., ::2]
    return arr


@st.composite
def arrays(draw, shape, kind: str = "normal") -> tt.Tensor:
    """A float64 tensor requiring grad. kinds: normal, positive (>= 0.5), away0 (|x| >= 0.1),
    distinct (no two values within 0.1 of each other, none within 0.05 of 0), nonzero (|x| >= 0.5)."""
    rng = np.random.default_rng(draw(seeds))
    n = math.prod(shape)
    if kind == "positive":
        a = rng.uniform(0.5, 2.0, n)
    elif kind == "away0":
        a = rng.standard_normal(n)
        a = a + 0.1 * np.where(a >= 0, 1, -1)
    elif kind == "distinct":
        a = (rng.permutation(n) - n // 2) * 0.1 + 0.0123  # the grid 0.1 k + 0.0123
    elif kind == "distinct_offset":   # never equal to a "distinct" value
        a = (rng.permutation(n) - n // 2) * 0.1 + 0.0623  # the grid 0.1 k + 0.0623
    elif kind == "nonzero":
        a = rng.uniform(0.5, 2.0, n) * rng.choice([-1.0, 1.0], n)
    else:
        a = rng.standard_normal(n)
    a = _layout(a.reshape(shape), draw(st.integers(0, 2)))
    return tt.Tensor(a, requires_grad=True)


@st.composite
def axis_args(draw, ndim: int):
    """(axis, keepdims) with axis None, an int (maybe negative) or a tuple of distinct axes."""
    keepdims = draw(st.booleans())
    if ndim == 0:
        return draw(st.sampled_from([None, ()])), keepdims
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        return None, keepdims
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1)), keepdims
    axes = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim))
    return tuple(axes), keepdims


def _binary(name: str, op: Callable, npop: Callable, kind_a: str = "normal", kind_b: str = "normal"):
    @st.composite
    def strat(draw):
        sa, sb = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=3)).input_shapes
        return OpCase(op, [draw(arrays(sa, kind_a)), draw(arrays(sb, kind_b))], npop)
    return strat()


def _unary(op: Callable, npop: Callable, kind: str = "normal"):
    @st.composite
    def strat(draw):
        return OpCase(op, [draw(arrays(draw(shapes), kind))], npop)
    return strat()


def _reduction(method: str, npfn: Callable, kind: str = "normal"):
    @st.composite
    def strat(draw):
        x = draw(arrays(draw(shapes), kind))
        axis, keepdims = draw(axis_args(x.ndim))
        return OpCase(lambda a: getattr(a, method)(axis=axis, keepdims=keepdims), [x],
                      lambda a: npfn(a, axis=axis, keepdims=keepdims))
    return strat()


@st.composite
def _pow_scalar(draw):
    c = draw(st.sampled_from([2, 3, 0.5, -1.0, 1.5]))
    x = draw(arrays(draw(shapes), "positive" if c in (0.5, -1.0, 1.5) else "normal"))
    return OpCase(lambda a: a ** c, [x], lambda a: a ** c)


@st.composite
def _clip(draw):
    x = draw(arrays(draw(shapes), "distinct"))
    lo, hi = draw(st.sampled_from([(-0.5, 0.5), (None, 0.3), (-0.2, None), (-0.05, -0.05 + 0.1)]))
    return OpCase(lambda a: a.clip(lo, hi), [x], lambda a: np.clip(a, lo, hi))


@st.composite
def _cast(draw):
    x = draw(arrays(draw(shapes)))
    return OpCase(lambda a: a.astype(np.float64) * 3.0, [x], lambda a: a * 3.0)


@st.composite
def _where(draw):
    sc, sa, sb = draw(hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3)).input_shapes
    cond = np.random.default_rng(draw(seeds)).random(sc) > 0.5
    return OpCase(lambda a, b: tt.where(cond, a, b), [draw(arrays(sa)), draw(arrays(sb))],
                  lambda a, b: np.where(cond, a, b))


@st.composite
def _matmul(draw):
    m, k, n = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    form = draw(st.sampled_from(["2d", "batched", "vec_left", "vec_right", "weight", "vec_vec"]))
    if form == "2d":
        sa, sb = (m, k), (k, n)
    elif form == "batched":
        ba, bb = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3)).input_shapes
        sa, sb = ba + (m, k), bb + (k, n)
    elif form == "vec_left":
        sa, sb = (k,), draw(st.sampled_from([(k, n), (2, k, n)]))
    elif form == "vec_right":
        sa, sb = draw(st.sampled_from([(m, k), (2, m, k)])), (k,)
    elif form == "weight":   # N-D activations times a 2-D weight, the Linear layer's case
        sa, sb = (2, 3, k), (k, n)
    else:
        sa, sb = (k,), (k,)
    return OpCase(lambda a, b: a @ b, [draw(arrays(sa)), draw(arrays(sb))], np.matmul)


@st.composite
def _linear(draw):
    """``x @ W.T + b``: x of 1-3 dims (the rows are every axis but the last), with and without bias."""
    n_in, n_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    lead = draw(st.sampled_from([(), (3,), (2, 3)]))
    x, w = draw(arrays(lead + (n_in,))), draw(arrays((n_out, n_in)))
    if draw(st.booleans()):
        return OpCase(lambda a, wa, ba: F.linear(a, wa, ba), [x, w, draw(arrays((n_out,)))],
                      lambda a, wa, ba: a @ wa.T + ba)
    return OpCase(lambda a, wa: F.linear(a, wa), [x, w], lambda a, wa: a @ wa.T)


@st.composite
def _reshape(draw):
    x = draw(arrays(draw(shapes)))
    n = x.size
    target = draw(st.sampled_from([(n,), x.shape[::-1], (1, n), (n, 1, 1), (-1,)]))
    w = np.arange(1.0, n + 1).reshape(np.empty(n).reshape(target).shape)  # weights make the check non-trivial
    return OpCase(lambda a: a.reshape(target) * tt.Tensor(w), [x], lambda a: a.reshape(target) * w)


@st.composite
def _transpose(draw):
    x = draw(arrays(draw(shapes)))
    perm = tuple(draw(st.permutations(range(x.ndim))))
    return OpCase(lambda a: a.transpose(*perm) if perm else a.transpose(), [x],
                  lambda a: a.transpose(perm) if perm else a.transpose())


@st.composite
def _broadcast_to(draw):
    sa, sb = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=3)).input_shapes
    target = np.broadcast_shapes(sa, sb)
    return OpCase(lambda a: a.broadcast_to(target), [draw(arrays(sa))], lambda a: np.broadcast_to(a, target))


@st.composite
def _getitem(draw):
    x = draw(arrays(draw(shapes_1d_plus)))
    if draw(st.booleans()):
        index = draw(hnp.basic_indices(x.shape, allow_newaxis=True, allow_ellipsis=True))
    else:  # integer array on one axis, repeats allowed (backward must accumulate)
        ax = draw(st.integers(0, x.ndim - 1))
        picks = np.array(draw(st.lists(st.integers(-x.shape[ax], x.shape[ax] - 1), min_size=1, max_size=5)))
        index = (slice(None),) * ax + (picks,)
    return OpCase(lambda a: a[index], [x], lambda a: a[index])


@st.composite
def _concatenate(draw):
    base = list(draw(shapes_1d_plus))
    ax = draw(st.integers(-len(base), len(base) - 1))
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        s = list(base)
        s[ax] = draw(st.integers(1, 3))
        parts.append(draw(arrays(tuple(s))))
    return OpCase(lambda *ts: tt.concatenate(ts, axis=ax), parts, lambda *a: np.concatenate(a, axis=ax))


def _axis_op(op: Callable, npfn: Callable):
    @st.composite
    def strat(draw):
        x = draw(arrays(draw(shapes_1d_plus)))
        ax = draw(st.integers(-x.ndim, x.ndim - 1))
        return OpCase(lambda a: op(a, axis=ax), [x], lambda a: npfn(a, ax))
    return strat()


def _np_softmax(a, ax):
    e = np.exp(a - a.max(axis=ax, keepdims=True))
    return e / e.sum(axis=ax, keepdims=True)


def _np_log_softmax(a, ax):
    m = a.max(axis=ax, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(axis=ax, keepdims=True))


@st.composite
def _cross_entropy(draw):
    lead = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=4))
    V = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(seeds))
    t = rng.integers(0, V, size=lead)
    ignore = draw(st.sampled_from([None, -100, 0]))
    if ignore is not None:
        t.ravel()[rng.random(t.size) < 0.3] = ignore
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    if reduction == "mean" and ignore is not None and not (t != ignore).any():
        reduction = "sum"  # every row ignored: the mean is NaN by definition (tested separately)
    eps = draw(st.sampled_from([0.0, 0.1, 0.35, 1.0]))   # label smoothing

    def ref(x):
        lp = _np_log_softmax(x, -1)
        keep = t != (ignore if ignore is not None else -100)
        picked = np.take_along_axis(lp, np.where(keep, t, 0)[..., None], -1)[..., 0]
        losses = np.where(keep, -(1 - eps) * picked - eps * lp.mean(-1), 0.0)
        if reduction == "none":
            return losses
        return losses.sum() / keep.sum() if reduction == "mean" else losses.sum()

    return OpCase(lambda x: F.cross_entropy(x, t, ignore_index=ignore, reduction=reduction, label_smoothing=eps),
                  [draw(arrays(lead + (V,)))], ref)


@st.composite
def _layer_norm(draw):
    shape = draw(shapes_1d_plus)
    C = shape[-1]
    x, w = draw(arrays(shape)), draw(arrays((C,)))
    with_bias = draw(st.booleans())
    eps = 1e-5

    def ref(a, wa, ba=None):
        y = (a - a.mean(-1, keepdims=True)) / np.sqrt(a.var(-1, keepdims=True) + eps) * wa
        return y + ba if ba is not None else y

    if with_bias:
        return OpCase(lambda a, wa, ba: F.layer_norm(a, wa, ba, eps), [x, w, draw(arrays((C,)))], ref)
    return OpCase(lambda a, wa: F.layer_norm(a, wa, None, eps), [x, w], ref)


@st.composite
def _add_layer_norm(draw):
    """The post-LN residual ``layer_norm(x + r)`` (``F.layer_norm(..., residual=r)``)."""
    shape = draw(shapes_1d_plus)
    C = shape[-1]
    x, r, w = draw(arrays(shape)), draw(arrays(shape)), draw(arrays((C,)))
    eps = 1e-5

    def ref(a, ra, wa, ba=None):
        s = a + ra
        y = (s - s.mean(-1, keepdims=True)) / np.sqrt(s.var(-1, keepdims=True) + eps) * wa
        return y + ba if ba is not None else y

    if draw(st.booleans()):
        return OpCase(lambda a, ra, wa, ba: F.layer_norm(a, wa, ba, eps, residual=ra), [x, r, w, draw(arrays((C,)))],
                      ref)
    return OpCase(lambda a, ra, wa: F.layer_norm(a, wa, None, eps, residual=ra), [x, r, w], ref)


def _np_gelu(a):
    return 0.5 * a * (1 + np.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a ** 3)))


@st.composite
def _embedding(draw):
    V, C = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    ids = np.array(draw(st.lists(st.integers(0, V - 1), min_size=1, max_size=6)))
    if draw(st.booleans()):
        ids = ids[: (ids.size // 2) * 2].reshape(-1, 2) if ids.size >= 2 else ids
    return OpCase(lambda w: F.embedding(ids, w), [draw(arrays((V, C)))], lambda w: w[ids])


def _np_attention(q, k, v, causal, dropout_p=0.0, seed=0, blocked=None, additive=None):
    """The attention formula in NumPy; a query with no visible key gives a zero row (the documented result)."""
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    T, S = s.shape[-2:]
    hidden = np.zeros((T, S), bool)
    if causal:
        hidden = np.arange(S)[None, :] > np.arange(T)[:, None] + (S - T)
    if blocked is not None:
        hidden = hidden | blocked
    s = np.where(hidden, -np.inf, s)
    if additive is not None:
        s = s + additive
    empty = np.all(s == -np.inf, axis=-1, keepdims=True)
    s = np.where(empty, 0.0, s)
    p = np.where(empty, 0.0, _np_softmax(s, -1))
    if dropout_p:  # the kernels' mask: a hash of (seed, flat index of the probability)
        keep = numpy_ref.dropout_keep(seed, np.arange(p.size, dtype=np.uint64), dropout_p).reshape(p.shape)
        p = p * keep / (1.0 - dropout_p)
    return p @ v


@st.composite
def _attention(draw):
    B, H, D = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 4))
    S = draw(st.integers(1, 5))
    T = draw(st.integers(1, S + 2))   # T > S: causal queries that see no key (zero rows)
    causal = draw(st.booleans())
    q, k, v = draw(arrays((B, H, T, D))), draw(arrays((B, H, S, D))), draw(arrays((B, H, S, D)))
    if draw(st.booleans()):  # dropout on the weights, with a fixed seed so every call has one mask
        p, seed = draw(st.sampled_from([0.2, 0.5])), draw(st.integers(0, 2**63 - 1))
        return OpCase(lambda a, b, c: tt.ops.Attention.apply(a, b, c, scale=1 / math.sqrt(D), causal=causal,
                                                            dropout_p=p, seed=seed),
                      [q, k, v], lambda a, b, c: _np_attention(a, b, c, causal, p, seed))
    # without dropout a training forward of heads this small keeps its probabilities (ops.attention
    # KEEP_PROBS_MAX); half the cases turn that off, so both backward paths are gradchecked
    keep = draw(st.booleans())

    def fn(a, b, c):
        saved = tt.ops.attention.KEEP_PROBS_MAX
        tt.ops.attention.KEEP_PROBS_MAX = saved if keep else 0
        try:
            return F.scaled_dot_product_attention(a, b, c, causal=causal, impl="fused")
        finally:
            tt.ops.attention.KEEP_PROBS_MAX = saved
    return OpCase(fn, [q, k, v], lambda a, b, c: _np_attention(a, b, c, causal))


@st.composite
def masked_attention(draw):
    """``F.scaled_dot_product_attention`` with every combination of masks: causal or not, a key-padding
    mask or not, an attention mask that is absent, bool or float (a differentiable input, with some
    -inf entries), broadcast over batch or heads; T and S free (cross-attention); 3-D or 4-D inputs and
    a value width of its own. Rows with every key masked occur (their result is zeros)."""
    B, D, Dv = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    T, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    lead = (B, draw(st.integers(1, 2))) if draw(st.booleans()) else (B,)
    causal = draw(st.booleans())
    rng = np.random.default_rng(draw(seeds))
    q, k, v = draw(arrays(lead + (T, D))), draw(arrays(lead + (S, D))), draw(arrays(lead + (S, Dv)))
    kpm = rng.random((B, S)) < 0.4 if draw(st.booleans()) else None
    kind = draw(st.sampled_from(["none", "bool", "float"]))
    mshape = draw(st.sampled_from([(T, S), lead[:1] + (1,) * (len(lead) - 1) + (T, S), lead + (T, S)]))
    blocked = kpm.reshape((B,) + (1,) * len(lead[1:]) + (1, S)) if kpm is not None else None
    inputs = [q, k, v]
    if kind == "bool":
        bm = rng.random(mshape) < 0.3
        blocked = bm if blocked is None else blocked | bm
    if kind == "float":
        fm = rng.standard_normal(mshape)
        fm[rng.random(mshape) < 0.2] = -np.inf
        inputs.append(tt.Tensor(fm, requires_grad=True))

        def fn(a, b, c, m):
            return F.scaled_dot_product_attention(a, b, c, causal=causal, key_padding_mask=kpm, attn_mask=m)

        return OpCase(fn, inputs, lambda a, b, c, m: _np_attention(a, b, c, causal, blocked=blocked, additive=m))
    am = bm if kind == "bool" else None

    def fn3(a, b, c):
        return F.scaled_dot_product_attention(a, b, c, causal=causal, key_padding_mask=kpm, attn_mask=am)

    return OpCase(fn3, inputs, lambda a, b, c: _np_attention(a, b, c, causal, blocked=blocked))


@st.composite
def _dropout(draw):
    p, seed = draw(st.sampled_from([0.0, 0.3, 0.5])), draw(st.integers(0, 2**63 - 1))
    x = draw(arrays(draw(shapes)))

    def ref(a):
        keep = numpy_ref.dropout_keep(seed, np.arange(a.size, dtype=np.uint64), p).reshape(a.shape)
        return a * keep / (1.0 - p)
    return OpCase(lambda a: tt.ops.Dropout.apply(a, p=p, seed=seed), [x], ref)


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


OP_CASES: dict[str, st.SearchStrategy[OpCase]] = {
    "add": _binary("add", lambda a, b: a + b, np.add),
    "sub": _binary("sub", lambda a, b: a - b, np.subtract),
    "mul": _binary("mul", lambda a, b: a * b, np.multiply),
    "div": _binary("div", lambda a, b: a / b, np.divide, kind_b="nonzero"),
    "pow": _binary("pow", lambda a, b: a ** b, np.power, kind_a="positive"),
    "maximum": _binary("maximum", lambda a, b: a.maximum(b), np.maximum, "distinct", "distinct_offset"),
    "minimum": _binary("minimum", lambda a, b: a.minimum(b), np.minimum, "distinct", "distinct_offset"),
    "neg": _unary(lambda a: -a, np.negative),
    "pow_scalar": _pow_scalar(),
    "exp": _unary(lambda a: a.exp(), np.exp),
    "log": _unary(lambda a: a.log(), np.log, "positive"),
    "log1p": _unary(lambda a: a.log1p(), np.log1p, "positive"),
    "sqrt": _unary(lambda a: a.sqrt(), np.sqrt, "positive"),
    "tanh": _unary(lambda a: a.tanh(), np.tanh),
    "sigmoid": _unary(lambda a: a.sigmoid(), _sigmoid),
    "relu": _unary(lambda a: a.relu(), lambda a: np.maximum(a, 0), "away0"),
    "abs": _unary(lambda a: a.abs(), np.abs, "away0"),
    "gelu": _unary(F.gelu, _np_gelu),
    "clip": _clip(),
    "cast": _cast(),
    "where": _where(),
    "matmul": _matmul(),
    "linear": _linear(),
    "sum": _reduction("sum", np.sum),
    "mean": _reduction("mean", np.mean),
    "max": _reduction("max", np.max, "distinct"),
    "min": _reduction("min", np.min, "distinct"),
    "var": _reduction("var", np.var),
    "reshape": _reshape(),
    "transpose": _transpose(),
    "broadcast_to": _broadcast_to(),
    "getitem": _getitem(),
    "concatenate": _concatenate(),
    "softmax": _axis_op(F.softmax, _np_softmax),
    "log_softmax": _axis_op(F.log_softmax, _np_log_softmax),
    "cross_entropy": _cross_entropy(),
    "layer_norm": _layer_norm(),
    "add_layer_norm": _add_layer_norm(),
    "embedding": _embedding(),
    "attention": _attention(),
    "dropout": _dropout(),
}
