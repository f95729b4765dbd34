"""Cold start: how long the first ``tinygpt demo`` (or ``gradcheck``, ``sample``) waits for Numba to compile.

    python -m benchmarks.cold_start [--command demo gradcheck sample] [--runs 2] [--json PATH] [--tree DIR]

Each run is a fresh process with its own empty ``NUMBA_CACHE_DIR`` (then the same command again on the
now warm cache, for comparison). Inside, a listener on Numba's ``numba:compile`` event (fired only when a
function is compiled, not when it loads from the cache) adds up the outermost compiles: their number,
wall seconds and CPU seconds of the compiling thread (the CPU figure moves less when other processes
share the cores). For ``demo`` (``--max_iters=1 --eval_iters=1``: the eval at iteration 0, iteration 1,
the final eval and checkpoint) it also records the seconds until training returns. ``sample`` uses the
checkpoint the ``demo`` run wrote, with its own empty cache.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._util import cpu_busy_fraction, format_table, machine_info, machine_line, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "demo": ["demo", "--max_iters=1", "--eval_iters=1", "--max_new_tokens=50"],
    "gradcheck": ["gradcheck"],
    "sample": ["sample", "--max_new_tokens=50"],
}


def child(argv: list[str]) -> dict:
    """Run ``tinygpt argv`` in this process, timing Numba's compiles and ``train()``; returns the figures."""
    t0 = time.perf_counter()
    from numba.core import event

    compiles: list[tuple[float, float]] = []
    stack: list[tuple[float, float]] = []

    class Listener(event.Listener):
        def on_start(self, ev):
            stack.append((time.perf_counter(), time.thread_time()))

        def on_end(self, ev):
            w, c = stack.pop()
            if not stack:  # outermost: it includes the functions it compiled on the way
                compiles.append((time.perf_counter() - w, time.thread_time() - c))

    event.register("numba:compile", Listener())
    import gpt.train

    marks = {}
    train = gpt.train.train

    def timed_train(*args, **kw):
        result = train(*args, **kw)
        marks["train_done_s"] = time.perf_counter() - t0
        return result

    gpt.train.train = timed_train  # before the commands import it (``from ..train import train``)
    import gpt.cli

    code = gpt.cli.main(argv)
    return {"exit": code, "total_s": time.perf_counter() - t0, **marks, "compiles": len(compiles),
            "compile_s": sum(w for w, _ in compiles), "compile_cpu_s": sum(c for _, c in compiles)}


def run_once(argv: list[str], cache: str, tree: Path) -> dict:
    """``tinygpt argv`` in a fresh process importing tinytensor and gpt from ``tree``, with Numba cache ``cache``."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache, "TINYTENSOR_QUIET": "1",
           "PYTHONPATH": os.pathsep.join([str(tree), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # this file by path (tree's own benchmarks/ may predate it), without its directory on sys.path
    # (benchmarks/tokenizer.py would shadow the tokenizer package)
    run = "import runpy, sys; sys.argv.pop(0); runpy.run_path(sys.argv[0], run_name='__main__')"
    out = subprocess.run([sys.executable, "-c", run, __file__, "--child", *argv], env=env, cwd=tree,
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"tinygpt {' '.join(argv)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--command", nargs="+", choices=sorted(COMMANDS), default=["demo", "gradcheck", "sample"])
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--tree", type=Path, default=ROOT,
                   help="measure the tinytensor/gpt of this source tree (e.g. an export of the base commit)")
    p.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        with open(os.devnull, "w") as devnull:  # the command's own output is not the result
            stdout, sys.stdout = sys.stdout, devnull
            try:
                res = child(args.child)
            finally:
                sys.stdout = stdout
        print(json.dumps(res))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = str(Path(tmp) / "out-demo")
        for i in range(args.runs):
            for name in args.command:
                argv = [*COMMANDS[name]] + (["--out_dir", out_dir] if name in ("demo", "sample") else [])
                if name == "sample" and not Path(out_dir).exists():
                    run_once([*COMMANDS["demo"], "--out_dir", out_dir], tempfile.mkdtemp(dir=tmp), args.tree)
                cache = tempfile.mkdtemp(dir=tmp)
                busy = cpu_busy_fraction()
                cold = run_once(argv, cache, args.tree)
                warm = run_once(argv, cache, args.tree)
                rows.append({"command": name, "run": i + 1, "busy": busy, "cold": cold, "warm": warm})
    table = [{"command": r["command"], "run": r["run"], "compiles": r["cold"]["compiles"],
              "compile_s": r["cold"]["compile_s"], "compile_cpu_s": r["cold"]["compile_cpu_s"],
              "train_s": r["cold"].get("train_done_s"), "cold_s": r["cold"]["total_s"],
              "warm_s": r["warm"]["total_s"], "busy": r["busy"]} for r in rows]
    print(machine_line())
    print(format_table(table, [("command", "command"), ("run", "run"), ("compiles", "compiles"),
                               ("compile_s", "compile s"), ("compile_cpu_s", "compile CPU s"),
                               ("train_s", "until trained s"), ("cold_s", "cold total s"),
                               ("warm_s", "warm total s"), ("busy", "machine busy")]))
    if args.json:
        write_json_atomic(args.json, {"machine": machine_info(), "tree": str(args.tree), "runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
