"""Optimizers (``SGD``, ``AdamW``), global-norm gradient clipping, and LR schedules (warmup + cosine, the
Transformer paper's ``noam_lr``).

Optimizers take parameters or parameter groups (dicts with ``"params"`` and per-group overrides),
as PyTorch does, so biases, norms and embeddings can skip weight decay::

    opt = AdamW([{"params": decay, "weight_decay": 0.1},
                 {"params": no_decay, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.99))

``state_dict()`` returns plain arrays and numbers (no pickling): ``{"state": {i: {name: array}},
"param_groups": [hyperparameters...]}`` with parameters numbered in group order.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from .backend import kernels
from .errors import ConfigError, DTypeError, ShapeError, UsageError
from .ops.checks import real_number
from .tensor import Tensor


class Optimizer:
    defaults: dict[str, Any] = {}

    def __init__(self, params: Iterable, **defaults):
        params = list(params)
        if not params:
            raise UsageError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups: list[dict[str, Any]] = []
        seen: set[int] = set()
        for grp in groups:
            g = {**defaults, **grp, "params": list(grp["params"])}
            for p in g["params"]:
                if not isinstance(p, Tensor) or not p.requires_grad:
                    raise DTypeError(f"optimizer parameters must be tensors that require grad, got {type(p).__name__}")
                if id(p) in seen:
                    raise UsageError("a parameter appears in more than one parameter group")
                seen.add(id(p))
            self.param_groups.append(g)
        self.state: dict[int, dict[str, Any]] = {}  # keyed by id(param)

    def _params(self):
        for g in self.param_groups:
            for p in g["params"]:
                yield g, p

    def zero_grad(self) -> None:
        for _, p in self._params():
            p.grad = None

    def step(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Plain arrays and numbers: per-parameter state by index, and each group's hyperparameters."""
        state = {}
        for i, (_, p) in enumerate(self._params()):
            if id(p) in self.state:
                state[i] = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self.state[id(p)].items()}
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        if len(sd["param_groups"]) != len(self.param_groups):
            raise UsageError(f"optimizer state has {len(sd['param_groups'])} groups, this optimizer "
                             f"{len(self.param_groups)}")
        for g, saved in zip(self.param_groups, sd["param_groups"]):
            g.update({k: v for k, v in saved.items() if k != "params"})
        params = [p for _, p in self._params()]
        self.state = {}
        for i, st in sd["state"].items():
            p = params[int(i)]
            self.state[id(p)] = {}
            for k, v in st.items():
                if isinstance(v, np.ndarray):
                    if v.shape != p.shape:
                        raise ShapeError(f"optimizer state {k!r} for parameter {i} has shape {v.shape}, "
                                         f"parameter has {p.shape}")
                    v = v.astype(p.dtype, copy=True)
                self.state[id(p)][k] = v


class SGD(Optimizer):
    """SGD with optional momentum (PyTorch's form: ``buf = mu buf + g``; ``p -= lr buf``) and L2 weight decay."""

    def __init__(self, params, lr: float = 1e-2, momentum: float = 0.0, weight_decay: float = 0.0):
        lr, momentum, weight_decay = (real_number("SGD", n, v) for n, v in
                                      (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)))
        if not (lr >= 0 and momentum >= 0 and weight_decay >= 0):
            raise ConfigError(f"SGD: lr, momentum and weight_decay must be >= 0; got {lr}, {momentum}, {weight_decay}")
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def step(self) -> None:
        for g, p in self._params():
            if p.grad is None:
                continue
            grad = p.grad
            if g["weight_decay"]:
                grad = grad + g["weight_decay"] * p.data
            if g["momentum"]:
                st = self.state.setdefault(id(p), {})
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = st["momentum_buffer"] = np.array(grad, copy=True)
                else:
                    buf *= g["momentum"]
                    buf += grad
                grad = buf
            p.data -= float(g["lr"]) * grad  # a Python float: a NumPy float64 lr would promote the step


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019).

    Per parameter, with step count t: ``p -= lr*wd*p``; ``m = b1 m + (1-b1) g``; ``v = b2 v + (1-b2) g²``;
    ``p -= lr * m̂ / (sqrt(v̂) + eps)`` with bias-corrected ``m̂ = m/(1-b1^t)``, ``v̂ = v/(1-b2^t)``.
    The update runs in the backend's fused ``adamw_step`` kernel, in place.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        lr, eps, weight_decay = (real_number("AdamW", n, v) for n, v in
                                 (("lr", lr), ("eps", eps), ("weight_decay", weight_decay)))
        betas = tuple(real_number("AdamW", "betas", b) for b in betas)
        if not (lr >= 0 and eps >= 0 and weight_decay >= 0 and len(betas) == 2 and all(0.0 <= b < 1.0 for b in betas)):
            raise ConfigError(f"AdamW: invalid hyperparameters lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def step(self) -> None:
        K = kernels()
        for g, p in self._params():
            if p.grad is None:
                continue
            st = self.state.get(id(p))
            if st is None:
                st = self.state[id(p)] = {"step": 0, "exp_avg": np.zeros_like(p.data),
                                          "exp_avg_sq": np.zeros_like(p.data)}
            st["step"] += 1
            K.adamw_step(p.data, p.grad, st["exp_avg"], st["exp_avg_sq"], float(g["lr"]),
                         tuple(float(b) for b in g["betas"]), float(g["eps"]), float(g["weight_decay"]), int(st["step"]))


def clip_grad_norm_(params: Iterable[Tensor], max_norm: float) -> float:
    """Scale gradients in place so their global L2 norm is at most ``max_norm``; return the norm.

    The norm is accumulated in float64. If it is not finite (inf or NaN), the gradients are left
    untouched and the non-finite norm is returned, so the caller can skip the step: a NaN is reported,
    never silently applied.
    """
    grads = [p.grad for p in params if p.grad is not None]
    sum_squares = kernels().sum_squares            # float64 accumulator, no float64 copy
    total = math.sqrt(sum(sum_squares(g) for g in grads))
    if not math.isfinite(total):
        return total
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads:
            g *= scale
    return total


def cosine_lr(it: int, learning_rate: float, min_lr: float, warmup_iters: int, lr_decay_iters: int) -> float:
    """Linear warmup for ``warmup_iters`` steps, then cosine decay to ``min_lr`` at ``lr_decay_iters``.

    Returns ``min_lr`` after ``lr_decay_iters`` (nanoGPT's schedule).
    """
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    ratio = (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))
    return min_lr + coeff * (learning_rate - min_lr)


def noam_lr(step: int, d_model: int, warmup: int, factor: float = 1.0) -> float:
    """The Transformer paper's schedule (its section 5.3), for optimizer steps ``step = 1, 2, ...``:

    ``lr = factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)``

    a linear rise over ``warmup`` steps to ``factor / sqrt(d_model * warmup)``, then decay as ``1/sqrt(step)``.
    """
    if step < 1 or warmup < 1 or d_model < 1:
        raise ConfigError(f"noam_lr: step, d_model and warmup must be >= 1, got {step}, {d_model}, {warmup}")
    return factor * d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)
