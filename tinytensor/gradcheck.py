"""``tt.gradcheck``: compare backward against float64 central differences.

For ``out = fn(*inputs)`` and a fixed random upstream gradient ``u`` (same shape as ``out``), backward
gives ``Jᵀu`` for every input. The check then:

* **small inputs** (``n_in · n_out <= full_max``): builds the full Jacobian both ways, numerically
  column by column ``(f(x + eps e_i) - f(x - eps e_i)) / 2 eps`` and analytically row by row (one
  backward per output element with a one-hot upstream), and compares every element;
* **large inputs**: compares random projections ``⟨u, J v⟩`` (one directional central difference)
  with ``⟨Jᵀu, v⟩`` (the backward result) for ``n_proj`` random directions ``v`` (HIPS/autograd's
  ``check_vjp``).

It also checks that gradient shapes and dtypes equal the inputs', that a zero upstream gradient gives
zero input gradients, and that a second backward (graph rebuilt) gives bit-identical gradients.
An element passes when ``|analytic - numeric| <= atol + rtol * |numeric|`` (PyTorch's rule).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from . import functional as F
from . import ops
from .autograd import no_grad
from .errors import DTypeError, UsageError
from .tensor import Tensor, concatenate, where


class GradcheckError(AssertionError):
    """Raised by ``gradcheck`` when analytic and numeric gradients disagree (or a property fails)."""


@dataclass
class GradcheckResult:
    name: str
    shapes: list[tuple[int, ...]]
    mode: str                       # "full" or "projection"
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    passed: bool = True
    failures: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.passed


def _diff_inputs(inputs: Sequence[Any]) -> list[int]:
    idx = []
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.requires_grad:
            if x.dtype != np.float64:
                raise DTypeError(f"gradcheck: input {i} is {x.dtype}; gradient checks need float64 inputs")
            idx.append(i)
    if not idx:
        raise UsageError("gradcheck: no input requires grad")
    return idx


def _run(fn, inputs) -> Tensor:
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise DTypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    return out


def _grads(fn, inputs, diff, upstream) -> list[np.ndarray]:
    for i in diff:
        inputs[i].grad = None
    out = _run(fn, inputs)
    if not out.requires_grad:
        raise GradcheckError("gradcheck: the output does not depend on any input that requires grad")
    out.backward(upstream)
    return [inputs[i].grad if inputs[i].grad is not None else np.zeros_like(inputs[i].data) for i in diff]


def _value(fn, inputs) -> np.ndarray:
    with no_grad():
        return np.array(_run(fn, inputs).data, dtype=np.float64)


def gradcheck(fn: Callable[..., Tensor], inputs: Sequence[Any], eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, *, name: str | None = None, full_max: int = 20_000, n_proj: int = 6,
              seed: int = 0, raise_exception: bool = True) -> GradcheckResult:
    """Check ``fn``'s gradients with respect to every input that requires grad.

    Args:
        fn: maps the inputs to one output tensor (any shape).
        inputs: tensors (float64 with ``requires_grad=True`` to be checked) and other arguments.
        eps: central-difference step.
        atol, rtol: an element passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.
        name: the op's name for messages (default ``fn.__name__``).
        full_max: largest ``n_inputs * n_outputs`` checked element by element.
        n_proj: random projections for larger problems.
        seed: seeds the upstream gradient and the projection directions.
        raise_exception: raise ``GradcheckError`` on failure (else return the result with ``passed=False``).

    Returns:
        ``GradcheckResult`` with the worst absolute and relative errors.
    """
    inputs = list(inputs)
    name = name or getattr(fn, "__name__", "fn")
    diff = _diff_inputs(inputs)
    rng = np.random.default_rng(seed)
    out0 = _value(fn, inputs)
    u = rng.standard_normal(out0.shape)
    n_in = sum(inputs[i].size for i in diff)
    n_out = out0.size
    mode = "full" if n_in * max(n_out, 1) <= full_max else "projection"
    res = GradcheckResult(name, [inputs[i].shape for i in diff], mode)

    def fail(msg: str) -> None:
        res.passed = False
        res.failures.append(msg)

    # 1. shapes and dtypes, 2. determinism, 3. zero upstream
    g1 = _grads(fn, inputs, diff, u)
    for i, g in zip(diff, g1):
        if g.shape != inputs[i].shape or g.dtype != inputs[i].dtype:
            fail(f"{name}: gradient of input {i} has shape {g.shape} dtype {g.dtype}, input has "
                 f"{inputs[i].shape} {inputs[i].dtype}")
    g2 = _grads(fn, inputs, diff, u)
    for i, a, b in zip(diff, g1, g2):
        if not np.array_equal(a, b, equal_nan=True):
            fail(f"{name}: a second backward gave a different gradient for input {i} "
                 f"(max difference {np.nanmax(np.abs(a - b)):.3g})")
    for i, g in zip(diff, _grads(fn, inputs, diff, np.zeros_like(u))):
        if np.any(g != 0):
            fail(f"{name}: zero upstream gradient gave a non-zero gradient for input {i}")

    def compare(analytic: np.ndarray, numeric: np.ndarray, locate: Callable[[int], str]) -> None:
        err = np.abs(analytic - numeric)
        rel = err / np.maximum(np.abs(numeric), 1e-300)
        res.max_abs_err = max(res.max_abs_err, float(np.max(err, initial=0.0)))
        res.max_rel_err = max(res.max_rel_err, float(np.max(np.where(err > 0, rel, 0.0), initial=0.0)))
        excess = err - (atol + rtol * np.abs(numeric))
        bad = ~(excess <= 0)  # NaN counts as bad
        if bad.any():
            k = int(np.argmax(np.where(np.isnan(excess), np.inf, excess).ravel()))
            fail(f"{name}: {locate(k)}: analytic {analytic.ravel()[k]:.10g} vs numeric {numeric.ravel()[k]:.10g} "
                 f"(abs err {err.ravel()[k]:.3g}, {int(bad.sum())} element(s) beyond atol={atol}, rtol={rtol})")

    if mode == "full":
        for i in diff:
            x = inputs[i].data
            num = np.empty((n_out, x.size))
            for j, idx in enumerate(np.ndindex(*x.shape)):
                orig = x[idx]
                x[idx] = orig + eps
                fp = _value(fn, inputs)
                x[idx] = orig - eps
                fm = _value(fn, inputs)
                x[idx] = orig
                num[:, j] = ((fp - fm) / (2 * eps)).ravel()
            ana = np.empty((n_out, x.size))
            for r in range(n_out):
                onehot = np.zeros(n_out)
                onehot[r] = 1.0
                gi = _grads(fn, inputs, diff, onehot.reshape(out0.shape))[diff.index(i)]
                ana[r] = gi.ravel()
            shape = x.shape

            def locate(k, i=i, shape=shape):
                r, c = divmod(k, max(x.size, 1))
                return (f"input {i} {shape} element {np.unravel_index(c, shape) if shape else ()} "
                        f"-> output element {np.unravel_index(r, out0.shape) if out0.shape else ()}")
            compare(ana, num, locate)
    else:
        for p in range(n_proj):
            vs = [rng.standard_normal(inputs[i].shape) for i in diff]
            for i, v in zip(diff, vs):
                inputs[i].data += eps * v
            fp = _value(fn, inputs)
            for i, v in zip(diff, vs):
                inputs[i].data -= 2 * eps * v
            fm = _value(fn, inputs)
            for i, v in zip(diff, vs):
                inputs[i].data += eps * v
            numeric = np.array([np.sum(u * (fp - fm)) / (2 * eps)])
            analytic = np.array([sum(float(np.sum(g * v)) for g, v in zip(g1, vs))])
            compare(analytic, numeric, lambda k, p=p: f"projection {p} <u, J v> over inputs {diff}")

    if not res.passed and raise_exception:
        raise GradcheckError("\n".join(res.failures))
    return res


# ===================================================================== example cases per op
def _t(rng, *shape, positive=False, requires_grad=True) -> Tensor:
    a = rng.standard_normal(shape)
    if positive:
        a = np.abs(a) + 0.5
    return Tensor(a, requires_grad=requires_grad)


def _distinct(rng, *shape, scale: float = 1.0) -> Tensor:
    """Values at least 0.1 apart, away from 0 (no ties for max/min, no kinks for relu/abs)."""
    n = math.prod(shape)
    vals = (rng.permutation(n) + 1.0) * 0.1 * scale * rng.choice([-1.0, 1.0], size=n)
    return Tensor(vals.reshape(shape), requires_grad=True)


def example_cases() -> dict[str, tuple[Callable[..., Tensor], list[Any]]]:
    """One representative float64 gradcheck case per registered op (used by ``tinygpt gradcheck``).

    The property tests in ``tests/test_ops.py`` cover random shapes; these are fixed examples
    a learner can read and run.
    """
    rng = np.random.default_rng(0)
    mask = rng.random((3, 4)) > 0.5
    ids = np.array([[1, 3, 3], [0, 1, 4]])
    targets = np.array([[1, 0, 4], [2, 2, -100]])
    cases: dict[str, tuple[Callable[..., Tensor], list[Any]]] = {
        "add": (lambda a, b: a + b, [_t(rng, 3, 4), _t(rng, 4)]),
        "sub": (lambda a, b: a - b, [_t(rng, 3, 1), _t(rng, 1, 4)]),
        "mul": (lambda a, b: a * b, [_t(rng, 2, 3, 4), _t(rng, 3, 1)]),
        "div": (lambda a, b: a / b, [_t(rng, 3, 4), _t(rng, 4, positive=True)]),
        "neg": (lambda a: -a, [_t(rng, 3, 4)]),
        "pow": (lambda a, b: a ** b, [_t(rng, 3, 4, positive=True), _t(rng, 3, 4)]),
        "pow_scalar": (lambda a: a ** 3, [_t(rng, 3, 4)]),
        "exp": (lambda a: a.exp(), [_t(rng, 3, 4)]),
        "log": (lambda a: a.log(), [_t(rng, 3, 4, positive=True)]),
        "log1p": (lambda a: a.log1p(), [_t(rng, 3, 4, positive=True)]),
        "sqrt": (lambda a: a.sqrt(), [_t(rng, 3, 4, positive=True)]),
        "tanh": (lambda a: a.tanh(), [_t(rng, 3, 4)]),
        "sigmoid": (lambda a: a.sigmoid(), [_t(rng, 3, 4)]),
        "relu": (lambda a: a.relu(), [_distinct(rng, 3, 4)]),
        "abs": (lambda a: a.abs(), [_distinct(rng, 3, 4)]),
        "maximum": (lambda a, b: a.maximum(b), [_distinct(rng, 3, 4), _distinct(rng, 4, scale=1.05)]),
        "minimum": (lambda a, b: a.minimum(b), [_distinct(rng, 3, 4), _distinct(rng, 4, scale=1.05)]),
        "clip": (lambda a: a.clip(-0.55, 0.45), [_distinct(rng, 3, 4)]),
        "cast": (lambda a: a.astype(np.float64) * 2.0, [_t(rng, 3, 4)]),
        "where": (lambda a, b: where(mask, a, b), [_t(rng, 3, 4), _t(rng, 4)]),
        "matmul": (lambda a, b: a @ b, [_t(rng, 2, 3, 4), _t(rng, 4, 5)]),
        "linear": (lambda x, w, b: F.linear(x, w, b), [_t(rng, 2, 3, 4), _t(rng, 5, 4), _t(rng, 5)]),
        "sum": (lambda a: a.sum(axis=(0, 2), keepdims=True), [_t(rng, 2, 3, 4)]),
        "mean": (lambda a: a.mean(axis=1), [_t(rng, 2, 3, 4)]),
        "max": (lambda a: a.max(axis=-1), [_distinct(rng, 3, 4)]),
        "min": (lambda a: a.min(axis=0, keepdims=True), [_distinct(rng, 3, 4)]),
        "var": (lambda a: a.var(axis=1), [_t(rng, 3, 4)]),
        "reshape": (lambda a: a.reshape(4, 3) * Tensor(np.arange(12.0).reshape(4, 3)), [_t(rng, 3, 4)]),
        "transpose": (lambda a: a.transpose(2, 0, 1), [_t(rng, 2, 3, 4)]),
        "broadcast_to": (lambda a: a.broadcast_to((2, 3, 4)), [_t(rng, 3, 1)]),
        "getitem": (lambda a: a[np.array([0, 2, 2]), 1:], [_t(rng, 3, 4)]),
        "concatenate": (lambda a, b: concatenate([a, b, a], axis=1), [_t(rng, 2, 3), _t(rng, 2, 2)]),
        "softmax": (lambda a: F.softmax(a, axis=0), [_t(rng, 3, 4)]),
        "log_softmax": (lambda a: F.log_softmax(a, axis=-1), [_t(rng, 3, 4)]),
        "cross_entropy": (lambda a: F.cross_entropy(a, targets, ignore_index=-100, label_smoothing=0.1),
                          [_t(rng, 2, 3, 5)]),
        "layer_norm": (lambda x, w, b: F.layer_norm(x, w, b), [_t(rng, 2, 3, 6), _t(rng, 6), _t(rng, 6)]),
        "add_layer_norm": (lambda x, r, w, b: F.layer_norm(x, w, b, residual=r),
                           [_t(rng, 2, 3, 6), _t(rng, 2, 3, 6), _t(rng, 6), _t(rng, 6)]),
        "gelu": (lambda a: F.gelu(a), [_t(rng, 3, 4)]),
        "dropout": (lambda a: ops.Dropout.apply(a, p=0.5, seed=3), [_t(rng, 3, 4)]),
        "embedding": (lambda w: F.embedding(ids, w), [_t(rng, 5, 4)]),
        "attention": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, causal=True, impl="fused"),
                      [_t(rng, 1, 2, 4, 3), _t(rng, 1, 2, 4, 3), _t(rng, 1, 2, 4, 3)]),
    }
    missing = set(ops.REGISTRY) - set(cases)
    if missing:
        raise RuntimeError(f"no gradcheck example for ops {sorted(missing)}")
    return cases
