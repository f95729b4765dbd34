"""Question: on this machine, is 1 process x 2 threads or 2 MPI ranks x 1 thread faster, and how much of a
data-parallel step is the gradient allreduce? What link bandwidth would make that step twice as slow?

    python -m benchmarks.scaling [--preset baby|shakespeare-char|all] [--steps 10] [--json PATH]

Each layout runs in fresh processes: ``1x2`` is one process with TINYTENSOR_NUM_THREADS=2; ``2x1`` is
``mpiexec -n 2`` with TINYTENSOR_NUM_THREADS=1 per rank, the global batch split over the ranks
(gpt.distributed). Both time the same training step (forward, backward, allreduce, clipping, AdamW) over
the same global batches after warm-up steps; reported: median ms per step, tokens/s, and for 2x1 the median
time inside the allreduce and its bytes.

The network model: a ring allreduce of S bytes over N ranks sends and receives 2 (N-1)/N S bytes per rank
per step. On a link of bandwidth W that costs 2 (N-1)/N S / W seconds (latency ignored: one message per
step); the step time doubles when that equals the compute time, i.e. at W = 2 (N-1)/N S / t_step.
Needs the dist extra (``pip install ".[dist]"``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpt.distributed import find_mpiexec

PRESETS = ("baby", "shakespeare-char")


# ------------------------------------------------------------------------------------------ worker
def _worker(preset: str, steps: int, warmup: int, out: str) -> None:
    import numpy as np

    import gpt
    from gpt.distributed import init
    from tinytensor import optim

    world = init()
    cfg = gpt.make_config(preset)
    mcfg = cfg.model_config(65)
    world.check_batch(cfg.batch_size)
    model = gpt.GPT(mcfg, seed=1337)
    opt = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2))
    params = list(model.parameters())
    rng = np.random.default_rng(0)
    step_s, reduce_s = [], []
    for i in range(warmup + steps):
        x = rng.integers(0, 65, size=(cfg.batch_size, cfg.block_size))
        y = rng.integers(0, 65, size=(cfg.batch_size, cfg.block_size))
        x, y = world.shard(x, y)
        t0 = time.perf_counter()
        _, loss = model(x, y)
        loss.backward()
        t1 = time.perf_counter()
        world.reduce_gradients(params)
        t2 = time.perf_counter()
        optim.clip_grad_norm_(params, 1.0)
        opt.step()
        model.zero_grad()
        world.barrier()
        t3 = time.perf_counter()
        if i >= warmup:
            step_s.append(t3 - t0)
            reduce_s.append(t2 - t1)
    nbytes = sum(p.data.nbytes for p in params)
    steps_all = world.comm.gather(step_s) if world.size > 1 else [step_s]
    if world.is_main:
        # the step of a data-parallel run is its slowest rank's
        per_step = [max(ts) for ts in zip(*steps_all)]
        Path(out).write_text(json.dumps({
            "preset": preset, "ranks": world.size, "step_ms": 1e3 * statistics.median(per_step),
            "allreduce_ms": 1e3 * statistics.median(reduce_s) if world.size > 1 else 0.0,
            "allreduce_bytes": nbytes if world.size > 1 else 0,
            "tokens_per_step": cfg.batch_size * cfg.block_size}))


# ------------------------------------------------------------------------------------------ driver
def _layout(preset: str, ranks: int, threads: int, steps: int, warmup: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "r.json"
        env = dict(os.environ, TINYTENSOR_NUM_THREADS=str(threads))
        cmd = [sys.executable, "-m", "benchmarks.scaling", "--worker", preset, "--steps", str(steps),
               "--warmup", str(warmup), "--out", str(out)]
        if ranks > 1:
            cmd = [find_mpiexec(), "-n", str(ranks)] + cmd
        subprocess.run(cmd, check=True, env=env)
        r = json.loads(out.read_text())
    r["threads"] = threads
    r["layout"] = f"{ranks}x{threads}"
    r["tokens_per_s"] = r["tokens_per_step"] / (r["step_ms"] / 1e3)
    return r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="all", choices=PRESETS + ("all",))
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 baby, 3 shakespeare-char)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compiles, warms caches)")
    p.add_argument("--json", default="benchmarks/results/scaling.json", help="where to write the results")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.steps, args.warmup, args.out)
        return 0
    if find_mpiexec() is None:
        print('benchmarks.scaling needs mpiexec and mpi4py: pip install ".[dist]"', file=sys.stderr)
        return 2

    from benchmarks._util import format_table, machine_info, machine_line, write_json_atomic

    info = machine_info()
    rows = []
    for preset in (PRESETS if args.preset == "all" else (args.preset,)):
        steps = args.steps or (20 if preset == "baby" else 3)
        one = _layout(preset, 1, 2, steps, args.warmup)
        two = _layout(preset, 2, 1, steps, args.warmup)
        s = two["allreduce_bytes"]
        ring = 2 * (2 - 1) / 2 * s                                  # bytes each rank sends per step
        for r in (one, two):
            r["speedup_vs_1x2"] = r["tokens_per_s"] / one["tokens_per_s"]
        two["allreduce_share"] = two["allreduce_ms"] / two["step_ms"]
        two["ring_bytes_per_rank"] = ring
        two["link_MBps_to_double_step"] = ring / (two["step_ms"] / 1e3) / 1e6
        rows += [one, two]
    cols = [("preset", "preset"), ("layout", "ranks x threads"), ("step_ms", "ms/step"),
            ("tokens_per_s", "tok/s"), ("speedup_vs_1x2", "x 1x2"), ("allreduce_ms", "allreduce ms"),
            ("allreduce_share", "allreduce share"), ("allreduce_bytes", "allreduce bytes"),
            ("link_MBps_to_double_step", "link MB/s that doubles the step")]
    print(machine_line(info))
    print(format_table(rows, cols))
    write_json_atomic(args.json, {"machine": info, "rows": rows})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
