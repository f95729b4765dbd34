"""The kernel table: every kernel's name, signature, preconditions and cost, in one place.

Both twins (:mod:`.numpy_ref` and :mod:`.numba`) implement every row with exactly this signature;
:mod:`tinytensor.backend` builds its tables from it, ``warmup`` calls each row's ``example``, the
profiler counts FLOPs with ``flops`` and the twin tests iterate it. Adding a kernel = one row here
plus the two implementations.

Kernels do not validate user input: the public ops do (``tinytensor.ops``). A row's ``preconditions``
say what a caller must guarantee; ``check`` tests them, and only the NumPy reference calls it, or every
kernel when ``TINYTENSOR_DEBUG=1`` (see :func:`tinytensor.runtime.configure`; backend wraps the
compiled kernels then). A compiled kernel given inputs that break them may return garbage or read out
of bounds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

# SplitMix64's finaliser (Steele, Lea & Flood): the dropout hash of both twins. z = idx * M1 + seed;
# z = (z ^ z >> 30) * M2; z = (z ^ z >> 27) * M3; z ^= z >> 31; the top 24 bits are u in [0, 2^24).
SPLITMIX_M1, SPLITMIX_M2, SPLITMIX_M3 = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9),
                                         np.uint64(0x94D049BB133111EB))
SPLITMIX_SHIFTS = (np.uint64(30), np.uint64(27), np.uint64(31))
DROPOUT_BITS = 24  # an element is kept when u >= round(p * 2^24)


def dropout_threshold(p: float) -> np.uint64:
    """``round(p * 2^24)``: the 24-bit hash value below which an element is dropped."""
    return np.uint64(round(p * (1 << DROPOUT_BITS)))


# ---------------------------------------------------------------------------------- preconditions
def check_targets(logits, targets, ignore_index, *_):
    """cross_entropy(_backward): targets in ``[0, V)`` or ``ignore_index``."""
    t = np.asarray(targets).reshape(-1)
    v = logits.shape[-1]
    bad = (t != ignore_index) & ((t < 0) | (t >= v))
    if bad.any():
        raise IndexError(f"cross_entropy: target {int(t[bad][0])} out of range [0, {v}) "
                         f"(and not ignore_index={ignore_index})")


def check_ids(ids, dout, vocab_size):
    """embedding_backward: ids in ``[0, vocab_size)``."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise IndexError(f"embedding_backward: ids must be in [0, {vocab_size}), got [{ids.min()}, {ids.max()}]")


def check_p(p: float) -> None:
    """dropout, dropout_keep, attention(_backward): ``0 <= p < 1``."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {p}")


# ---------------------------------------------------------------------------------------- costs
def _matmul_flops(a, b):
    """``2 M N K`` per (broadcast) batch matrix."""
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return 2.0 * math.prod(batch) * a.shape[-2] * a.shape[-1] * b.shape[-1]


def _attention_flops(q, k, *_):
    """``4 B H T S D``: the two products q k^T and P v (the backward does twice that)."""
    return 4.0 * math.prod(q.shape[:-1]) * k.shape[-2] * q.shape[-1]


def _elementwise(x, *_):
    return float(np.size(x))


@dataclass(frozen=True)
class Kernel:
    """One row of the table: ``name(signature)``, what a caller guarantees, the check of it (or None),
    its FLOP count from its arguments, and small arguments of size ``n`` for warm-up."""
    name: str
    signature: tuple[str, ...]
    preconditions: str
    check: Callable | None
    flops: Callable
    example: Callable


def _x(rng, n, dt):
    return rng.standard_normal((n, n)).astype(dt)


def _q(rng, n, dt):
    return rng.standard_normal((1, 1, n, 8)).astype(dt)


def _ln_args(rng, n, dt):
    return (_x(rng, n, dt), np.ones(n, dt), np.zeros(n, dt), 1e-5)


KERNELS: dict[str, Kernel] = {k.name: k for k in [
    Kernel("matmul", ("a", "b"), "a [..., M, K], b [..., K, N], batch dims broadcast", None,
           _matmul_flops, lambda r, n, dt: (_x(r, n, dt), _x(r, n, dt).T)),
    Kernel("linear_grads", ("g", "w", "x"), "g [N, out], w [out, in], x [N, in]: a Linear's (dx, dW) = "
           "(g @ w, g.T @ x)", None, lambda g, w, x: 4.0 * g.shape[0] * w.shape[0] * w.shape[1],
           lambda r, n, dt: (_x(r, n, dt), _x(r, n, dt), _x(r, n, dt))),
    Kernel("softmax", ("x", "causal"), "causal: x is [..., T, S]", None, _elementwise,
           lambda r, n, dt: (_x(r, n, dt), True)),
    Kernel("softmax_backward", ("y", "dy"), "y a softmax output, dy broadcastable to it", None, _elementwise,
           lambda r, n, dt: (np.full((n, n), 1 / n, dt), _x(r, n, dt))),
    Kernel("log_softmax", ("x",), "", None, _elementwise, lambda r, n, dt: (_x(r, n, dt),)),
    Kernel("log_softmax_backward", ("y", "dy"), "y a log_softmax output", None, _elementwise,
           lambda r, n, dt: (np.full((n, n), -math.log(n), dt), _x(r, n, dt))),
    Kernel("cross_entropy", ("logits", "targets", "ignore_index"),
           "logits [N, V]; targets [N] in [0, V) or ignore_index", check_targets, _elementwise,
           lambda r, n, dt: (_x(r, n, dt), r.integers(0, n, n), -100)),
    Kernel("cross_entropy_backward", ("logits", "targets", "lse", "dloss", "ignore_index"),
           "as cross_entropy; lse [N] its output", check_targets, _elementwise,
           lambda r, n, dt: (_x(r, n, dt), r.integers(0, n, n), np.zeros(n), np.ones(n), -100)),
    Kernel("layer_norm", ("x", "w", "b", "eps"), "w, b [C] for x [..., C]; eps > 0", None, _elementwise, _ln_args),
    Kernel("add_layer_norm", ("x", "r", "w", "b", "eps"), "r the shape and dtype of x; w, b [C] for x [..., C]; "
           "eps > 0", None, _elementwise, lambda r, n, dt: (_x(r, n, dt), *_ln_args(r, n, dt))),
    Kernel("layer_norm_backward", ("dy", "x", "w", "mean", "rstd"), "mean, rstd layer_norm's outputs for x",
           None, _elementwise,
           lambda r, n, dt: (_x(r, n, dt), _x(r, n, dt), np.ones(n, dt), np.zeros(n, dt), np.ones(n, dt))),
    Kernel("gelu", ("x",), "", None, _elementwise, lambda r, n, dt: (_x(r, n, dt),)),
    Kernel("gelu_backward", ("x", "dy"), "dy broadcastable to x", None, _elementwise,
           lambda r, n, dt: (_x(r, n, dt), _x(r, n, dt))),
    Kernel("gelu_and_grad", ("x",), "", None, _elementwise, lambda r, n, dt: (_x(r, n, dt),)),
    Kernel("bias_add", ("y", "b"), "y [N, C] writable, b [C] of y's dtype: y += b in place, returns y", None,
           _elementwise, lambda r, n, dt: (_x(r, n, dt), _x(r, n, dt)[0].copy())),
    Kernel("relu", ("x",), "", None, _elementwise, lambda r, n, dt: (_x(r, n, dt),)),
    Kernel("relu_backward", ("y", "dy"), "y a relu output, dy broadcastable to it", None, _elementwise,
           lambda r, n, dt: (np.maximum(_x(r, n, dt), 0), _x(r, n, dt))),
    Kernel("embedding_backward", ("ids", "dout", "vocab_size"), "ids [N] in [0, vocab_size); dout [N, C]",
           check_ids, lambda ids, dout, v: float(np.size(dout)),
           lambda r, n, dt: (r.integers(0, n, n), _x(r, n, dt), n)),
    Kernel("sum_squares", ("x",), "", None, lambda x: 2.0 * np.size(x), lambda r, n, dt: (_x(r, n, dt),)),
    Kernel("adamw_step", ("p", "g", "m", "v", "lr", "betas", "eps", "weight_decay", "t"),
           "p, g, m, v one shape; m, v, p writable; t >= 1", None, lambda p, *_: 12.0 * np.size(p),
           lambda r, n, dt: (*(_x(r, n, dt) for _ in range(3)), np.ones((n, n), dt), 1e-3, (0.9, 0.95), 1e-8,
                             0.1, 1)),
    Kernel("dropout_keep", ("seed", "idx", "p"), "0 <= p < 1", lambda seed, idx, p: check_p(p),
           lambda seed, idx, p: float(np.size(idx)), lambda r, n, dt: (7, np.arange(n, dtype=np.uint64), 0.1)),
    Kernel("dropout", ("x", "p", "seed"), "0 <= p < 1", lambda x, p, seed: check_p(p), _elementwise,
           lambda r, n, dt: (_x(r, n, dt), 0.1, 7)),
    Kernel("attention", ("q", "k", "v", "scale", "causal", "dropout_p", "seed"),
           "q [..., T, D], k, v [..., S, D], same batch dims; 0 <= dropout_p < 1",
           lambda q, k, v, scale, causal=True, p=0.0, seed=0: check_p(p), _attention_flops,
           lambda r, n, dt: (_q(r, n, dt), _q(r, n, dt), _q(r, n, dt), 0.3, True, 0.1, 7)),
    Kernel("attention_backward", ("q", "k", "v", "lse", "dout", "scale", "causal", "dropout_p", "seed"),
           "as attention; lse and the seed from the forward; dout q's shape",
           lambda q, k, v, lse, dout, scale, causal=True, p=0.0, seed=0: check_p(p),
           lambda q, k, *_: 2.0 * _attention_flops(q, k),
           lambda r, n, dt: (_q(r, n, dt), _q(r, n, dt), _q(r, n, dt), np.zeros((1, 1, n)), _q(r, n, dt), 0.3,
                             True, 0.1, 7)),
    Kernel("attention_probs", ("q", "k", "v", "scale", "causal"),
           "q [B, H, T, D], k, v [B, H, S, D] with T, S >= 1 (no dropout): (out, P [B, H, T, S])", None,
           _attention_flops, lambda r, n, dt: (_q(r, n, dt), _q(r, n, dt), _q(r, n, dt), 0.3, True)),
    Kernel("attention_probs_backward", ("q", "k", "v", "probs", "dout", "scale", "causal"),
           "as attention_probs; probs its P (rows of queries without a visible key zeroed); dout q's shape",
           None, lambda q, k, *_: 2.0 * _attention_flops(q, k),
           lambda r, n, dt: (_q(r, n, dt), _q(r, n, dt), _q(r, n, dt),
                             np.tril(np.full((1, 1, n, n), 1.0, dt)) / np.arange(1, n + 1, dtype=dt)[:, None],
                             _q(r, n, dt), 0.3, True)),
]}
"""Every kernel by name, in the order the twins list them."""


def flops(name: str, args) -> float | None:
    """FLOPs of kernel ``name`` on ``args`` (None when ``name`` is not a kernel)."""
    k = KERNELS.get(name)
    return None if k is None else float(k.flops(*args))
