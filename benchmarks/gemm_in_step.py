"""Question: how much slower are the GEMMs inside a training step than the same GEMMs run back to back?

    python -m benchmarks.gemm_in_step [--steps 20] [--json PATH]

Trains the baby GPT (nanoGPT's CPU config, without biases) for a few steps with every call of the backend's
``matmul`` kernel timed, grouped by shapes and memory layouts (C = C-contiguous, F = a transposed view).
Then each distinct call is re-run on copies of its operands three ways: back to back (BLAS threads awake,
operands in cache), with a 0.3 ms sleep before each call (the BLAS worker has gone to sleep and must be
woken), and after writing 16 MB (operands evicted from the caches). Per step, the totals show what thread
wake-ups and cold caches cost the GEMMs of a real step.
"""
from __future__ import annotations

import argparse
import collections
import statistics
import time

import tinytensor as tt  # before NumPy: the thread policy (tinytensor/threads.py)
import numpy as np

from tinytensor import backend, optim


def _layout(x: np.ndarray) -> str:
    return "C" if x.flags.c_contiguous else ("F" if x.flags.f_contiguous else "strided")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20, help="timed training steps (after 5 warm-up steps)")
    ap.add_argument("--json", default=None, help="write the results here (atomically)")
    args = ap.parse_args(argv)
    from benchmarks._util import machine_info, write_json_atomic
    from gpt import GPT, GPTConfig

    cfg = GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, bias=False, vocab_size=65)
    model = GPT(cfg, seed=1337)
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=1e-3, betas=(0.9, 0.99))
    params = list(model.parameters())
    data = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(8, 12, cfg.block_size + 1))
    batches = [(d[:, :-1], d[:, 1:]) for d in data]

    def step(i):
        _, loss = model(*batches[i % len(batches)])
        for p in params:
            p.grad = None
        loss.backward()
        optim.clip_grad_norm_(params, 1.0)
        opt.step()

    for i in range(5):
        step(i)
    K = backend.kernels()
    matmul = K.matmul
    times: dict[str, list[float]] = collections.defaultdict(list)
    operands: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def timed(a, b):
        t0 = time.perf_counter()
        out = matmul(a, b)
        dt = time.perf_counter() - t0
        key = f"{a.shape[0]}x{a.shape[1]} {_layout(a)} @ {b.shape[0]}x{b.shape[1]} {_layout(b)}"
        times[key].append(dt)
        operands.setdefault(key, (a.copy(order="K"), b.copy(order="K")))
        return out

    K.matmul = timed
    try:
        for i in range(args.steps):
            step(i)
    finally:
        K.matmul = matmul

    big = np.ones(4_000_000, np.float32)   # 16 MB: more than this machine's L2 + L3 share

    def rerun(a, b, before) -> float:
        for _ in range(3):
            matmul(a, b)
        ts = []
        for _ in range(20):
            before()
            t0 = time.perf_counter()
            matmul(a, b)
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    def flush():
        np.add(big, 1.0, out=big)

    modes = {"back_to_back": lambda: None, "after_sleep": lambda: time.sleep(0.0003), "after_16MB_write": flush}
    rows, totals = [], collections.Counter()
    for key, ts in sorted(times.items(), key=lambda kv: -sum(kv[1])):
        per_step = len(ts) / args.steps
        row = {"gemm": key, "calls_per_step": per_step, "in_step_us": 1e6 * statistics.median(ts)}
        totals["in_step"] += per_step * statistics.median(ts)
        for mode, before in modes.items():
            t = rerun(*operands[key], before)
            row[f"{mode}_us"] = 1e6 * t
            totals[mode] += per_step * t
        rows.append(row)
    print(f"{'GEMM (C: contiguous, F: transposed view)':<36}{'/step':>6}{'in step':>10}{'b2b':>9}{'sleep':>9}{'cold':>9}  (us)")
    for r in rows:
        print(f"{r['gemm']:<36}{r['calls_per_step']:>6.0f}{r['in_step_us']:>10.0f}{r['back_to_back_us']:>9.0f}"
              f"{r['after_sleep_us']:>9.0f}{r['after_16MB_write_us']:>9.0f}")
    print(f"per step (ms): in step {1e3 * totals['in_step']:.1f}, back to back {1e3 * totals['back_to_back']:.1f}, "
          f"after a sleep {1e3 * totals['after_sleep']:.1f}, after a 16 MB write {1e3 * totals['after_16MB_write']:.1f}")
    if args.json:
        write_json_atomic(args.json, {"question": "GEMM time inside a training step vs back to back",
                                      "rows": rows, "per_step_ms": {k: 1e3 * v for k, v in totals.items()},
                                      "steps": args.steps, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
