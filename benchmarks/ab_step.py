"""Question: is this checkout's training step faster than another revision's, on a machine too noisy to tell
by running the two one after the other?

    python -m benchmarks.ab_step --base REV [--preset baby] [--pairs 40] [--steps 5] [--json PATH]
    python -m benchmarks.ab_step --toggle tinytensor.kernels.numba.attention_blas._ATTN_BLAS_MAX=0,262144 [...]
    python -m benchmarks.ab_step --env TINYTENSOR_VECTOR_BITS=256,512 [...]

``--preset`` names a GPT preset of ``benchmarks.train_throughput`` or, prefixed ``seq2seq-``, an encoder–decoder
preset of ``benchmarks.seq2seq_throughput`` (``seq2seq-small``, ``seq2seq-base-ish``).

On the 2-core VMs we use, whole processes run in fast and slow phases that last seconds to minutes: the same
code measures 20-50 % apart in consecutive runs. So the two versions run side by side, in lockstep. The base
revision is checked out into a temporary git worktree; each checkout's training step (forward, backward,
clipping, AdamW on the same batches) lives in its own worker process, which imports that checkout's own
``tinytensor`` and ``gpt`` (so lazily imported kernel modules cannot cross over, as they did when both were
imported into one process under two names). The parent asks them in turn for ``--steps`` steps of one and then
of the other, ``--pairs`` times, the order flipped every pair, so each pair sees one phase of the machine; the
waiting worker sleeps on its pipe. Reported: each version's median ms per step, and the median over pairs of
base / this (above 1: this checkout is faster). The losses after the warm-up steps are printed too: equal
losses mean the two versions compute the same thing.

The base's Numba kernels may have to compile first (minutes, when they are not in the cache yet).

Resolution: two model instances of the SAME code also differ here, by up to 2-3 % (memory placement; measured
2026-11-29: a second instance of the base against the first, 36 rounds, median ratio 1.023). A change smaller
than that needs more than this harness: if a flag inside one checkout can switch it, toggle it on one model:
``--toggle MODULE.ATTR=A,B`` trains ONE model of this checkout and sets the module attribute to A ("base") and B
("this") in the alternating pairs. (The small-heads attention: 0.988x and 0.978x with --base against its parent,
1.033x, 1.068x, 1.090x and 1.013x toggled on one model.) ``--env NAME=A,B`` runs two workers of this checkout
whose environments differ only in NAME (A for "base", B for "this"): for a policy read at import, such as the
vector width. The workers start from the environment this command was given, not from what its own tinytensor
import added.
"""
from __future__ import annotations

import argparse
import ast
import json
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_ENV = dict(os.environ)   # the environment as given, before tinytensor's policy adds to it (the workers start from it)

import tinytensor  # noqa: F401,E402  (the thread policy, tinytensor/runtime.py)

import gpt  # noqa: E402
from benchmarks import seq2seq_throughput  # noqa: E402
from benchmarks.train_throughput import PRESETS as GPT_PRESETS  # noqa: E402
from benchmarks.train_throughput import _batches, _config, tt_step  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
_SEQ2SEQ = "seq2seq-"
PRESETS = [*GPT_PRESETS, *(_SEQ2SEQ + name for name in seq2seq_throughput.PRESETS)]


_WORKER = r"""
import importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("_ab_throughput", sys.argv[1])
tp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tp)
import tinytensor, gpt                                   # the checkout on PYTHONPATH: base or this
cfg = json.loads(sys.argv[2])
if "d_model" in cfg:                                     # an encoder-decoder preset (benchmarks.seq2seq_throughput)
    step, batches = tp._tt_step(cfg)[0], tp._batches(cfg, 4)
else:
    step, batches = tp.tt_step(tinytensor, gpt, cfg), tp._batches(cfg, 8)
print(json.dumps({"tinytensor": tinytensor.__file__}), flush=True)
loss = float("nan")
for line in sys.stdin:                                   # "N": run N steps, answer ms per step and the loss
    n = int(line)
    t0 = time.perf_counter()
    for i in range(n):
        loss = step(*batches[i % len(batches)])
    print(json.dumps({"ms": (time.perf_counter() - t0) / max(n, 1) * 1e3, "loss": loss}), flush=True)
"""


class Worker:
    """One checkout's training step in its own process, run in blocks on request (so two checkouts never
    share module names: each imports its own ``tinytensor`` and ``gpt``, lazily loaded kernels included)."""

    def __init__(self, root: Path, cfg: dict, extra_env: dict | None = None):
        env = dict(_ENV, PYTHONPATH=str(root), **(extra_env or {}))
        module = "seq2seq_throughput.py" if _is_seq2seq(cfg) else "train_throughput.py"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(ROOT / "benchmarks" / module), json.dumps(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=str(root))
        self.where = json.loads(self.proc.stdout.readline())["tinytensor"]

    def __call__(self, nsteps: int) -> tuple[float, float]:
        self.proc.stdin.write(f"{nsteps}\n")
        self.proc.stdin.flush()
        r = json.loads(self.proc.stdout.readline())
        return r["ms"], r["loss"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _alternate_workers(specs: dict, cfg: dict, args) -> tuple[dict, dict]:
    """Start one :class:`Worker` per ``name: (checkout root, extra environment)`` of ``specs`` ("base", "this"),
    print where each imported tinytensor from, run :func:`_alternate`, and close the workers (also on failure)."""
    workers = {}
    try:
        for name, (root, extra_env) in specs.items():
            workers[name] = Worker(root, cfg, extra_env)
            print(f"{name}: {workers[name].where}")
        return _alternate(workers, args.pairs, args.steps, gap=args.gap)
    finally:
        for w in workers.values():
            w.close()


def _local_block(step, batches):
    """A block runner for a step function of this process: ``run(n) -> (ms per step, last loss)``."""
    def run(nsteps: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        loss = float("nan")
        for i in range(nsteps):
            loss = step(*batches[i % len(batches)])
        return (time.perf_counter() - t0) / nsteps * 1e3, loss
    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--base", help="git revision to compare this checkout against")
    which.add_argument("--toggle", metavar="MODULE.ATTR=A,B",
                       help="one model of this checkout; set the attribute to A (base) and B (this) in turn")
    which.add_argument("--env", metavar="NAME=A,B", action="append",
                       help="two workers of this checkout, the environment variable NAME set to A (base) and B "
                       "(this); repeat it to change several variables at once")
    ap.add_argument("--preset", choices=PRESETS, default="baby")
    ap.add_argument("--dropout", type=float, default=None, help="replace the preset's dropout (e.g. 0)")
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--steps", type=int, default=5, help="steps per version in each pair")
    ap.add_argument("--gap", type=float, default=0.0, help="seconds of idle before each block (default 0); "
                    "give one (e.g. 0.5) when the two versions' thread policies differ")
    ap.add_argument("--json", default=None, help="write the results here (atomically)")
    args = ap.parse_args(argv)
    if args.pairs < 1 or args.steps < 1:
        raise ValueError(f"--pairs and --steps must be >= 1, got {args.pairs}, {args.steps}")
    from benchmarks._util import machine_info, write_json_atomic

    cfg = _preset_config(args.preset, args.dropout)
    if args.toggle:
        module, attr, values = _parse_toggle(args.toggle)
        if _is_seq2seq(cfg):
            run = _local_block(seq2seq_throughput._tt_step(cfg)[0], seq2seq_throughput._batches(cfg, 4))
        else:
            run = _local_block(tt_step(tinytensor, gpt, cfg), _batches(cfg, 8))
        losses, times = _alternate({"base": run, "this": run}, args.pairs, args.steps,
                                   setup=lambda name: setattr(module, attr, values[name]), gap=args.gap)
    elif args.env:
        envs: dict[str, dict[str, str]] = {"base": {}, "this": {}}
        for spec in args.env:
            name, values = _parse_env(spec)
            for k, v in values.items():
                envs[k][name] = v
        losses, times = _alternate_workers({k: (ROOT, e) for k, e in envs.items()}, cfg, args)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            worktree = Path(tmp) / "base"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(worktree), args.base],
                           check=True)
            try:
                losses, times = _alternate_workers({"base": (worktree, None), "this": (ROOT, None)}, cfg, args)
            finally:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False)

    ratios = [b / t for b, t in zip(times["base"], times["this"])]
    result = {
        "question": "is this checkout's training step faster than --base's (both in one process, interleaved)?",
        "base": args.base, "toggle": args.toggle, "env": args.env, "preset": args.preset, "pairs": args.pairs,
        "steps_per_pair": args.steps, "gap_s": args.gap,
        "machine": machine_info(),
        "loss_after_warmup": losses,
        "ms_per_step": {name: statistics.median(v) for name, v in times.items()},
        "ms_per_step_all": times,
        "median_pair_ratio_base_over_this": statistics.median(ratios),
    }
    if args.toggle:
        print(f"{args.preset}: {args.pairs} pairs x {args.steps} steps, one model, {args.toggle} (base=A, this=B)")
        print(f"losses after each warm-up (the model trains on): base {losses['base']:.6f}, this {losses['this']:.6f}")
    else:
        what = (f"two workers of this checkout, {' '.join(args.env)} (base=A, this=B)" if args.env
                else "the two checkouts side by side in lockstep")
        print(f"{args.preset}: {args.pairs} pairs x {args.steps} steps, {what}")
        print(f"losses after warm-up: base {losses['base']:.6f}, this {losses['this']:.6f}")
    for name in ("base", "this"):
        v = times[name]
        print(f"{name:5s} ms/step median {statistics.median(v):7.1f}   min {min(v):7.1f}")
    print(f"base / this, median over pairs: {result['median_pair_ratio_base_over_this']:.3f}x "
          f"(pairs from {min(ratios):.2f} to {max(ratios):.2f})")
    if args.json:
        write_json_atomic(args.json, result)
    return 0


def _is_seq2seq(cfg: dict) -> bool:
    """An encoder-decoder preset's sizes (``d_model``), not a GPT's (``n_embd``); the worker script asks the same."""
    return "d_model" in cfg


def _preset_config(preset: str, dropout: float | None) -> dict:
    """The sizes of a GPT preset or of a ``seq2seq-`` one, with the dropout replaced when given."""
    if not preset.startswith(_SEQ2SEQ):
        return _config(preset, dropout)
    cfg = dict(seq2seq_throughput.PRESETS[preset[len(_SEQ2SEQ):]])
    return cfg if dropout is None else {**cfg, "dropout": dropout}


def _parse_env(spec: str) -> tuple[str, dict[str, str]]:
    """``"NAME=A,B"`` -> ("NAME", {"base": "A", "this": "B"})."""
    name, sep, values = spec.partition("=")
    parts = values.split(",")
    if not sep or not name.strip() or len(parts) != 2:
        raise ValueError(f"--env wants NAME=A,B, got {spec!r}")
    return name.strip(), {"base": parts[0], "this": parts[1]}


def _parse_toggle(spec: str):
    """``"pkg.module.ATTR=A,B"`` -> (module, "ATTR", {"base": A, "this": B}); A and B are Python literals."""
    target, sep, values = spec.partition("=")
    module_name, _, attr = target.rpartition(".")
    parts = values.split(",")
    if not sep or not module_name or len(parts) != 2:
        raise ValueError(f"--toggle wants MODULE.ATTR=A,B, got {spec!r}")
    module = importlib.import_module(module_name)
    if not hasattr(module, attr):
        raise ValueError(f"--toggle: {module_name} has no attribute {attr!r}")
    try:
        a, b = (ast.literal_eval(v.strip()) for v in parts)
    except (ValueError, SyntaxError):
        raise ValueError(f"--toggle: values must be Python literals, got {values!r}") from None
    return module, attr, {"base": a, "this": b}


def _alternate(blocks: dict, pairs: int, nsteps: int, setup=lambda name: None, gap: float = 0.0):
    """Warm each version up (3 steps), then time ``nsteps`` steps of each in ``pairs`` pairs, the order flipped
    every pair; ``blocks[name](n)`` runs n steps and returns (ms per step, last loss); ``setup(name)`` runs
    before each block, after ``gap`` seconds of idle. Returns (loss after each warm-up, ms per step of every
    block).

    subtle: two workers whose thread policies differ (``--env GOMP_SPINCOUNT=...``) need the gap: without it
    the block that follows a long-spinning worker's block shares the cores with that worker's spinning OpenMP
    threads, which favours the spinner's own numbers."""
    losses = {}
    for name, run in blocks.items():  # warm-up: Numba compile or cache load, allocator
        setup(name)
        losses[name] = run(3)[1]
    times: dict[str, list[float]] = {name: [] for name in blocks}
    order = list(blocks)
    for pair in range(pairs):
        for name in (order if pair % 2 == 0 else order[::-1]):
            if gap:
                time.sleep(gap)
            setup(name)
            times[name].append(blocks[name](nsteps)[0])
    return losses, times


if __name__ == "__main__":
    sys.exit(main())
