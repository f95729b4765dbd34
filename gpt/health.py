"""Network health while training: gradient, weight and update sizes per parameter, activation statistics
per block (``--health_interval N``; off by default, and then nothing here runs).

Every N iterations the training loop runs its step through :func:`measure`, which for that one step

* wraps ``optimizer.step`` (an instance attribute, removed afterwards) to read each parameter's gradient as
  the optimizer sees it (after clipping) and its weight just before and just after the update;
* wraps the ``forward`` of each ``nn.GELU`` (its input) and each :class:`gpt.blocks.Block` (its residual
  output) with :func:`watch_forward`, summing the statistics over the step's micro-batches.

The update ratio is Karpathy's ("Building makemore", part 3): the applied update's spread over the
weight's, ``std(w_after - w_before) / std(w_before)``; for AdamW ``w_after - w_before`` is ``-lr *`` (Adam's
step + weight decay), the update actually applied. About ``1e-3`` (``-3`` in log10) is the usual healthy
size: much smaller learns slowly, much larger changes the weights too fast. It is ``None`` when the
weight has no spread (a LayerNorm's ones or zeros at init).

Saturation: the fraction of values with ``|x| > 3``. For the tanh-GELU input this is where its derivative
is within 0.012 of a constant: about 0 below -3 (no gradient passes: the unit is off) and about 1 above
+3 (the unit is plain linear), so a large fraction means the nonlinearity does little. For the residual
stream, which is not squashed, the same figure is the share of large values (growth of the stream).

The record (one line of ``log.jsonl``, ``read_log(out_dir, kind="health")``)::

    {"kind": "health", "iter": 40, "lr": 0.001, "grad_norm": 0.83,        # global norm before clipping
     "params": {"transformer.h.0.mlp.c_fc.weight": {"shape": [512, 128], "grad_norm": 0.05,
                "weight_norm": 11.3, "update_ratio": 0.0011, "update_ratio_log10": -2.96}, ...},
     "activations": {"transformer.h.0": {"gelu_input": {"mean": -0.1, "std": 1.2, "saturated": 0.02},
                                         "residual": {"mean": 0.0, "std": 1.9, "saturated": 0.1}}, ...}}
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable

import numpy as np

from tinytensor import nn

from .blocks import Block

__all__ = ["SATURATION", "measure", "update_ratio", "watch_forward"]

SATURATION = 3.0        # |x| beyond this counts as saturated (see the module docstring)


def update_ratio(before: np.ndarray, after: np.ndarray) -> float | None:
    """``std(after - before) / std(before)``: the applied update's size relative to the weight's (None if
    the weight has no spread)."""
    spread = float(np.std(before, dtype=np.float64))
    return float(np.std(after.astype(np.float64) - before)) / spread if spread > 0 else None


@contextlib.contextmanager
def watch_forward(hooks: dict[nn.Module, Callable]):
    """Call ``hook(module, args, output)`` after each forward of each module in ``hooks``, inside the block.

    The hook goes on the module instance (its ``forward`` attribute shadows the class's, and is deleted on
    exit), so a module outside this block runs exactly as before: no check, no cost.
    """
    for m, hook in hooks.items():
        def forward(*args, _m=m, _hook=hook, _orig=m.forward, **kwargs):
            out = _orig(*args, **kwargs)
            _hook(_m, args, out)
            return out
        object.__setattr__(m, "forward", forward)
    try:
        yield
    finally:
        for m in hooks:
            del m.__dict__["forward"]


class _Moments:
    """Running count, sum, sum of squares and saturated count of the values seen (float64)."""

    def __init__(self):
        self.n = self.s = self.ss = self.sat = 0.0

    def add(self, x: np.ndarray) -> None:
        x = x.astype(np.float64, copy=False)
        self.n += x.size
        self.s += float(x.sum())
        self.ss += float(np.square(x).sum())
        self.sat += float(np.count_nonzero(np.abs(x) > SATURATION))

    def stats(self) -> dict[str, float]:
        mean = self.s / self.n
        return {"mean": mean, "std": math.sqrt(max(self.ss / self.n - mean * mean, 0.0)),
                "saturated": self.sat / self.n}


def _activation_hooks(model: nn.Module) -> tuple[dict, dict[str, dict[str, _Moments]]]:
    """Hooks on every Block (output) and every GELU (input), and the moments they fill, by block name."""
    hooks, moments = {}, {}
    blocks = [(name, m) for name, m in model.named_modules() if isinstance(m, Block)]
    for name, block in blocks:
        moments[name] = {"gelu_input": _Moments(), "residual": _Moments()}
        hooks[block] = lambda m, args, out, acc=moments[name]["residual"]: acc.add(out.data)
        for gelu in block.modules():
            if isinstance(gelu, nn.GELU):
                hooks[gelu] = lambda m, args, out, acc=moments[name]["gelu_input"]: acc.add(args[0].data)
    return hooks, moments


def measure(model: nn.Module, optimizer, step_fn: Callable, it: int, lr: float) -> tuple[object, dict | None]:
    """Run ``step_fn()`` (one training step) while recording the network's health.

    Returns:
        ``(step_fn's result, the health record)``; the record is None when the optimizer did not step
        (a skipped non-finite step). The result's ``norm`` (if any) is logged as the global grad norm.
    """
    named = list(model.named_parameters())
    params: dict[str, dict] = {}
    real_step = optimizer.step

    def step(*args, **kwargs):
        before = {}
        for name, p in named:
            g = p.grad if p.grad is not None else np.zeros_like(p.data)
            params[name] = {"shape": list(p.shape), "grad_norm": float(np.linalg.norm(g.astype(np.float64))),
                            "weight_norm": float(np.linalg.norm(p.data.astype(np.float64)))}
            before[name] = p.data.copy()
        out = real_step(*args, **kwargs)
        for name, p in named:
            r = update_ratio(before[name], p.data)
            params[name]["update_ratio"] = r
            params[name]["update_ratio_log10"] = math.log10(r) if r else None
        return out

    hooks, moments = _activation_hooks(model)
    optimizer.step = step                        # this instance only, for this step
    try:
        with watch_forward(hooks):
            result = step_fn()
    finally:
        del optimizer.step                       # the class's step again
    if not params:
        return result, None
    norm = getattr(result, "norm", None)
    acts = {name: {k: m.stats() for k, m in kinds.items() if m.n} for name, kinds in moments.items()}
    return result, {"kind": "health", "iter": it, "lr": lr,
                    "grad_norm": float(norm) if norm is not None else None,
                    "params": params, "activations": acts}
