"""``tt.profile()``: where the time goes, per op type, forward and backward.

    with tt.profile() as prof:
        logits, loss = model(x, y)
        loss.backward()
    print(prof.table())

For each op name the table shows calls, total forward and backward milliseconds, the FLOPs it did
(matmul and attention counted exactly as 2·M·N·K; every other op as one per output element) and
the bytes it saved for backward (arrays kept on the op's context that are neither its inputs nor its output
nor views of them, i.e. what the graph costs in memory beyond the activations themselves).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .kernels import spec

active: "Profile | None" = None


@dataclass
class OpStats:
    calls: int = 0
    forward_s: float = 0.0
    backward_s: float = 0.0
    flops: float = 0.0
    saved_bytes: int = 0


def _flops(name: str, arrays, out) -> float:
    """An op's FLOPs: the kernel table's count for ops named after a kernel (matmul, attention: 2 M N K
    per product), ``linear`` as its matmul, every other op one per output element."""
    if name == "linear":  # x [..., in] @ weight[out, in].T
        return 2.0 * out.size * arrays[1].shape[1]
    counted = spec.flops(name, arrays) if name in ("matmul", "attention") else None
    return float(np.size(out)) if counted is None else counted


def saved_bytes(ctx, arrays, out=None) -> int:
    """Bytes an op kept on its context for backward beyond its inputs and its output (and views of them):
    what the graph costs on top of the activations. Each array counts once, views of fresh buffers too."""
    if ctx is None:
        return 0
    kept_anyway = [a for a in (*arrays, *(out if isinstance(out, tuple) else (out,))) if isinstance(a, np.ndarray)]
    seen: dict[int, int] = {}
    for v in vars(ctx).values():
        if isinstance(v, np.ndarray) and not any(np.may_share_memory(v, a) for a in kept_anyway):
            seen[id(v)] = v.nbytes
    return sum(seen.values())


@dataclass
class Profile:
    """Collects per-op statistics while active. Use through ``tt.profile()``."""
    stats: dict[str, OpStats] = field(default_factory=dict)
    wall_s: float = 0.0

    def run_forward(self, fn, ctx, arrays, params):
        t0 = time.perf_counter()
        out = fn.forward(ctx, *arrays, **params)
        dt = time.perf_counter() - t0
        s = self.stats.setdefault(fn.name, OpStats())
        s.calls += 1
        s.forward_s += dt
        s.flops += _flops(fn.name, arrays, out)
        s.saved_bytes += saved_bytes(ctx, arrays, out)
        return out

    def run_backward(self, fn, ctx, grad):
        t0 = time.perf_counter()
        out = fn.backward(ctx, grad)
        s = self.stats.setdefault(fn.name, OpStats())
        s.backward_s += time.perf_counter() - t0
        return out

    def __enter__(self):
        global active
        if active is not None:
            raise RuntimeError("tt.profile() or tt.trace() is already active")
        active = self
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        global active
        active = None
        self.wall_s += time.perf_counter() - self._t0
        return False

    def table(self, sort_by: str = "total") -> str:
        """The statistics as a text table, most expensive op first."""
        rows = sorted(self.stats.items(), key=lambda kv: -(kv[1].forward_s + kv[1].backward_s))
        op_total = sum(s.forward_s + s.backward_s for _, s in rows) or 1e-12
        lines = [f"{'op':<16}{'calls':>7}{'fwd ms':>10}{'bwd ms':>10}{'total %':>9}{'GFLOP':>9}{'GFLOP/s':>9}{'saved MB':>10}"]
        for name, s in rows:
            t = s.forward_s + s.backward_s
            lines.append(f"{name:<16}{s.calls:>7}{s.forward_s * 1e3:>10.2f}{s.backward_s * 1e3:>10.2f}"
                         f"{100 * t / op_total:>8.1f}%{s.flops / 1e9:>9.3f}"
                         f"{(s.flops / 1e9 / s.forward_s if s.forward_s else 0):>9.1f}{s.saved_bytes / 2**20:>10.2f}")
        lines.append(f"ops total {op_total * 1e3:.1f} ms of {self.wall_s * 1e3:.1f} ms wall "
                     f"({100 * op_total / self.wall_s if self.wall_s else 0:.0f}%; the rest is Python and the engine)")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {name: vars(s).copy() for name, s in self.stats.items()}


def profile() -> Profile:
    """A context manager that records per-op time, calls, FLOPs and saved bytes (see module doc)."""
    return Profile()
