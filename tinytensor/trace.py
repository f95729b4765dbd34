"""``tt.trace()``: every op call in order, forward and backward, beside ``tt.profile()``'s per-op totals.

    with tt.trace(model) as tr:            # the module names the modules (optional)
        logits, loss = model(x, y)
        loss.backward()
    print(tr.table(limit=40))              # one line per call: phase, op, module, shapes, time, FLOPs, saved
    tr.to_json("trace.json")

Each event is one call of an op's ``forward`` or ``backward``: its input and output shapes, wall time, FLOPs
(counted as ``tt.profile()`` does), the bytes the forward saved for backward, and the innermost module
whose ``forward`` was running. A backward event names the forward call it belongs to (``of``), so a learner
can follow one activation from the forward pass to its gradient. Outside a trace the engine pays one
``is None`` test per op (the same hook ``tt.profile()`` uses).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from . import profiler
from .autograd import module_stack
from .fileio import atomic_write_text

__all__ = ["Trace", "TraceEvent", "trace"]


@dataclass
class TraceEvent:
    """One op call."""
    index: int
    phase: str                     # "forward" or "backward"
    op: str
    module: str                    # dotted module name ("" outside any module)
    inputs: list                   # shapes of the arrays it read (backward: the upstream gradient)
    output: list                   # shapes it returned (backward: one per input gradient, None for none)
    dtype: str
    ms: float
    flops: float                   # forward only
    saved_bytes: int               # forward only
    of: int | None = None          # backward: the index of its forward call


def _shape(a):
    if a is None:
        return None
    inner = getattr(a, "grads", None)          # a packed gradient: the shapes of its parts
    if inner is not None:
        return [list(np.shape(g)) for g in inner]
    inner = getattr(a, "grad", None)           # a slice gradient: its piece's shape
    return list(np.shape(inner if inner is not None and not isinstance(a, np.ndarray) else a))


def _tail(text: str, width: int) -> str:
    return text if len(text) <= width else "\u2026" + text[-(width - 1):]


class Trace:
    """Collects :class:`TraceEvent` s while active. Use through ``tt.trace()``."""

    def __init__(self, module=None):
        self.events: list[TraceEvent] = []
        self._names = {id(m): n for n, m in module.named_modules()} if module is not None else {}
        self._forward_of: dict[int, int] = {}  # id(ctx) -> its forward event

    def _module(self) -> str:
        if not module_stack:
            return ""
        m = module_stack[-1]
        return self._names.get(id(m), type(m).__name__)

    # the engine's hooks (autograd.Function.apply and backward call these while a trace is active)
    def run_forward(self, fn, ctx, arrays, params):
        t0 = time.perf_counter()
        out = fn.forward(ctx, *arrays, **params)
        ms = 1e3 * (time.perf_counter() - t0)
        index = len(self.events)
        self._forward_of[id(ctx)] = index
        self.events.append(TraceEvent(index, "forward", fn.name, self._module(), [list(a.shape) for a in arrays],
                                      [list(np.shape(out))], str(np.asarray(out).dtype), ms,
                                      profiler._flops(fn.name, arrays, out), profiler.saved_bytes(ctx, arrays, out)))
        return out

    def run_backward(self, fn, ctx, grad):
        of = self._forward_of.get(id(ctx))
        t0 = time.perf_counter()
        out = fn.backward(ctx, grad)
        ms = 1e3 * (time.perf_counter() - t0)
        grads = out if isinstance(out, tuple) else (out,)
        module = self.events[of].module if of is not None else ""
        self.events.append(TraceEvent(len(self.events), "backward", fn.name, module, [list(np.shape(grad))],
                                      [_shape(g) for g in grads], str(np.asarray(grad).dtype), ms, 0.0, 0, of))
        return out

    def __enter__(self):
        if profiler.active is not None:
            raise RuntimeError("tt.profile() or tt.trace() is already active")
        profiler.active = self
        return self

    def __exit__(self, *exc):
        profiler.active = None
        return False

    def table(self, limit: int | None = None) -> str:
        """One line per call, in order (the first ``limit`` calls)."""
        def shapes(s):
            return " ".join("x".join(map(str, x)) if x is not None and x and not isinstance(x[0], list)
                            else ("()" if x == [] else "-" if x is None else "+".join("x".join(map(str, p)) for p in x))
                            for x in s)
        lines = [f"{'#':>4} {'phase':<8} {'op':<14} {'module':<30} {'in':<24} {'out':<20} {'ms':>7} "
                 f"{'MFLOP':>8} {'saved kB':>9}"]
        events = self.events if limit is None else self.events[:limit]
        for e in events:
            lines.append(f"{e.index:>4} {e.phase:<8} {e.op:<14} {_tail(e.module, 30):<30} {shapes(e.inputs)[:24]:<24} "
                         f"{shapes(e.output)[:20]:<20} {e.ms:>7.3f} {e.flops / 1e6:>8.2f} {e.saved_bytes / 1e3:>9.1f}")
        if limit is not None and len(self.events) > limit:
            lines.append(f"... {len(self.events) - limit} more calls")
        fwd = sum(e.ms for e in self.events if e.phase == "forward")
        bwd = sum(e.ms for e in self.events if e.phase == "backward")
        lines.append(f"{len(self.events)} calls: forward {fwd:.1f} ms, backward {bwd:.1f} ms")
        return "\n".join(lines)

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the events as a JSON list (atomically)."""
        atomic_write_text(path, json.dumps([asdict(e) for e in self.events], indent=1) + "\n")


def trace(module=None) -> Trace:
    """A context manager that records every op call in order (see the module doc)."""
    return Trace(module)
