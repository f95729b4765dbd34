"""Question: does the baby GPT's training step depend on whether NumPy or tinytensor is imported first?

    python -m benchmarks.import_order [--rounds 3] [--steps 20] [--json PATH]

Each round starts one fresh process per order, one after the other (``import numpy`` then ``import
tinytensor``, what most scripts do, and the reverse), which reports Numba's thread count and times ``--steps``
baby training steps (forward, backward, clipping, AdamW: ``benchmarks.train_throughput``'s step, after two
warm-up steps). Reported per order: the thread count and the median ms per step over the rounds.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks._util import machine_info, write_json_atomic

ORDERS = {"numpy first": "import numpy\nimport tinytensor\n", "tinytensor first": "import tinytensor\nimport numpy\n"}
_CHILD = """
import json, time, numba
from benchmarks.train_throughput import _batches, _config, _tt_worker
cfg = _config("baby", None)
step = _tt_worker(cfg)[0]
batches = _batches(cfg, 8)
for x, y in batches[:2]:
    step(x, y)
t0 = time.perf_counter()
for i in range({steps}):
    step(*batches[i % len(batches)])
print(json.dumps({{"ms_per_step": (time.perf_counter() - t0) * 1e3 / {steps}, "numba_threads": numba.get_num_threads()}}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--json", default=None, help="default benchmarks/results/import_order.json")
    args = ap.parse_args(argv)
    runs: dict[str, list[dict]] = {k: [] for k in ORDERS}
    root = Path(__file__).resolve().parents[1]
    for _ in range(args.rounds):
        for name, head in ORDERS.items():
            out = subprocess.run([sys.executable, "-c", head + _CHILD.format(steps=args.steps)], cwd=root,
                                 capture_output=True, text=True, check=True).stdout
            runs[name].append(json.loads(out.strip().splitlines()[-1]))
    rows = []
    print(f"baby training step, {args.rounds} rounds x {args.steps} steps, a fresh process per order and round")
    print(f"{'order':18s} {'numba threads':>13s} {'ms/step (median)':>17s}  rounds")
    for name, rs in runs.items():
        ms = [r["ms_per_step"] for r in rs]
        threads = sorted({r["numba_threads"] for r in rs})
        rows.append(dict(order=name, numba_threads=threads, median_ms_per_step=statistics.median(ms), rounds_ms=ms))
        print(f"{name:18s} {','.join(map(str, threads)):>13s} {statistics.median(ms):17.1f}  "
              + " ".join(f"{m:.1f}" for m in ms))
    ratio = rows[0]["median_ms_per_step"] / rows[1]["median_ms_per_step"]
    print(f"numpy first / tinytensor first: {ratio:.3f}x the step time")
    path = args.json or Path(__file__).parent / "results" / "import_order.json"
    write_json_atomic(path, dict(question="step time and thread count by import order", rows=rows,
                                 ratio_numpy_first=ratio, machine=machine_info()))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
