"""Question: how fast does one decode step's weights stream through the single-row product ``x @ W.T``?

    TINYTENSOR_NUM_THREADS=N OPENBLAS_NUM_THREADS=N python -m benchmarks.gemv [--rounds 15] [--json PATH]

A decode step of GPT-2-124M (batch 1, KV cache) multiplies one row by every weight: per layer ``c_attn``
[2304, 768], ``attn.c_proj`` [768, 768], ``c_fc`` [3072, 768], ``mlp.c_proj`` [768, 3072], twelve layers, then
the tied ``lm_head`` [50257, 768]: 494 MB of float32, far more than the caches, so the product is bound by
how fast the weights stream from memory. Compared, on the same random weights in rounds that alternate so
machine noise hits every contender:

* ``ours``: ``tinytensor``'s Numba ``matmul`` on ``x [1, K] @ W.T`` with ``W [N, K]`` (the Linear's layout):
  its row-dot GEMV (``kernels/numba/gemm.py: _gemv_t``).
* ``numpy W.T``: ``np.matmul`` on the same operands (OpenBLAS's transposed GEMV), what ran before.
* ``numpy W [in, out]``: ``np.matmul(x, W_t)`` with the weight stored transposed (Hugging Face's Conv1D
  layout; OpenBLAS's non-transposed GEMV), for reference.

Reported: milliseconds for the whole weight set (median and best of ``--rounds``) and GB/s of weights read.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks._util import machine_info, write_json_atomic

LAYER = [(2304, 768), (768, 768), (3072, 768), (768, 3072)]   # [out, in] of one GPT-2 block's Linears
SHAPES = LAYER * 12 + [(50257, 768)]                            # twelve blocks and the tied lm_head


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--json", default=None, help="default benchmarks/results/gemv.json")
    args = ap.parse_args(argv)
    from tinytensor.kernels.numba import gemm

    rng = np.random.default_rng(0)
    weights = [rng.standard_normal(s, dtype=np.float32) for s in SHAPES]       # [out, in]
    weights_t = [np.ascontiguousarray(w.T) for w in weights]                   # [in, out]
    xs = {k: rng.standard_normal((1, k), dtype=np.float32) for k in (768, 3072)}
    nbytes = sum(w.nbytes for w in weights)
    ref = [xs[w.shape[1]] @ w.T for w in weights]
    ours = [gemm.matmul(xs[w.shape[1]], w.T) for w in weights]
    worst = max(float(np.max(np.abs(o - r) / (np.abs(r) + 1.0))) for o, r in zip(ours, ref))

    contenders = {
        "ours": lambda: [gemm.matmul(xs[w.shape[1]], w.T) for w in weights],
        "numpy W.T": lambda: [np.matmul(xs[w.shape[1]], w.T) for w in weights],
        "numpy W [in, out]": lambda: [np.matmul(xs[w.shape[0]], w) for w in weights_t],
    }
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for fn in contenders.values():
        fn()                                                                   # compile / warm up
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    rows = []
    base = statistics.median(times["numpy W.T"])
    print(f"x @ W.T over GPT-2-124M's decode weights ({nbytes / 1e6:.0f} MB float32), {args.rounds} rounds, "
          f"threads: numba {os.environ.get('TINYTENSOR_NUM_THREADS', 'all')}, "
          f"OpenBLAS {os.environ.get('OPENBLAS_NUM_THREADS', 'all')}")
    print(f"{'contender':20s} {'median ms':>10s} {'best ms':>8s} {'GB/s':>6s} {'vs numpy W.T':>13s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append(dict(contender=name, median_ms=med * 1e3, best_ms=min(ts) * 1e3,
                         gb_per_s=nbytes / med / 1e9, speedup_vs_numpy_wt=base / med))
        print(f"{name:20s} {med * 1e3:10.1f} {min(ts) * 1e3:8.1f} {nbytes / med / 1e9:6.1f} {base / med:12.2f}x")
    print(f"ours vs the float32 reference: max relative error {worst:.1e}")
    result = dict(question="single-row x @ W.T over a GPT-2-124M decode step's weights", rows=rows,
                  weights_mb=nbytes / 1e6, rounds=args.rounds, max_rel_error=worst,
                  threads=dict(numba=os.environ.get("TINYTENSOR_NUM_THREADS"),
                               openblas=os.environ.get("OPENBLAS_NUM_THREADS")),
                  load_average=os.getloadavg(), machine=machine_info())
    path = args.json or Path(__file__).parent / "results" / "gemv.json"
    write_json_atomic(path, result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
