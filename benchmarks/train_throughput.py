"""Question: how many training tokens per second does tinytensor do, against PyTorch eager, on this CPU?

    python -m benchmarks.train_throughput --preset baby [--iters 20] [--rounds 5] [--compile] [--dropout P] [--json PATH]
    python -m benchmarks.train_throughput --preset baby --lockstep 30 [--gap 0.1]   (side by side, see _lockstep)

Same config, same batches (random token ids: speed does not depend on the text), same AdamW, same thread
count. Each round of each framework runs in a fresh worker process, so each one's peak RSS is its own
and only one process is alive at a time (an idle PyTorch process's thread pool slows its neighbour);
the parent alternates rounds (tinytensor, torch, tinytensor, ...) so machine noise hits both alike. A training step is forward, backward, global-norm clipping (1.0) and an
AdamW step, as in ``gpt/train.py``. Each worker's first step, and the whole first round, are warm-up (Numba
compile, allocator) and are not counted. Reported: median tokens/s over the counted rounds, the ratio, and peak RSS.

The PyTorch side (needs the ``bench`` extra) is nanoGPT's model: the same pre-LN blocks, tanh GELU,
tied head, ``F.scaled_dot_product_attention(is_causal=True)``, ``torch.optim.AdamW``. ``--compile`` adds a
third column, the same model under ``torch.compile`` (compiled in each worker's uncounted first step); if it
cannot compile here, the reason is printed and written to the JSON instead of a figure.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

PRESETS = {
    # nanoGPT's CPU run of shakespeare_char ("baby") and its GPU config; vocab 65 = Tiny Shakespeare chars
    "baby": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, dropout=0.0, bias=False,
                 vocab_size=65),
    "shakespeare-char": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64, dropout=0.2,
                             bias=False, vocab_size=65),
}
LR, BETAS, WD = 1e-3, (0.9, 0.99), 0.1


def _threads() -> int:
    return int(os.environ.get("TINYTENSOR_NUM_THREADS") or os.cpu_count() or 1)


def _batches(cfg: dict, n: int, seed: int = 0):
    import numpy as np
    rng = np.random.default_rng(seed)
    B, T, V = cfg["batch_size"], cfg["block_size"], cfg["vocab_size"]
    data = rng.integers(0, V, size=(n, B, T + 1))
    return [(d[:, :-1].astype(np.int64), d[:, 1:].astype(np.int64)) for d in data]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# ------------------------------------------------------------------------------------ tinytensor
def tt_step(tt, gpt, cfg: dict):
    """A training step (forward, backward, clipping, AdamW) of ``cfg``'s model, written with the given
    ``tinytensor`` and ``gpt`` modules (``benchmarks.ab_step`` passes another checkout's)."""
    mcfg = gpt.GPTConfig(**{k: cfg[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "dropout", "bias",
                                                "vocab_size")})
    model = gpt.GPT(mcfg, seed=1337)
    opt = model.configure_optimizers(weight_decay=WD, learning_rate=LR, betas=BETAS)
    params = list(model.parameters())

    def step(x, y) -> float:
        _, loss = model(x, y)
        for p in params:
            p.grad = None
        loss.backward()
        tt.optim.clip_grad_norm_(params, 1.0)
        opt.step()
        return float(loss.item())
    return step


def _tt_worker(cfg: dict):
    import tinytensor as tt  # before NumPy: tinytensor sets the thread policy (tinytensor/threads.py)
    import numpy as np
    import gpt

    step = tt_step(tt, gpt, cfg)

    def profile(x, y):
        with tt.profile() as prof:
            step(x, y)
        return prof.table()

    return step, profile, np


# ------------------------------------------------------------------------------------------ torch
def _torch_worker(cfg: dict, compile: bool = False):
    import torch

    from benchmarks._torch_gpt import build

    torch.set_num_threads(_threads())
    model, opt = build(cfg, LR, BETAS, WD, seed=1337)
    if compile:
        model = torch.compile(model)     # compiles on the first (warm-up) step, which is not counted

    def step(x, y):
        _, loss = model(torch.from_numpy(x), torch.from_numpy(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss.item())

    return step, None, None


def _config(preset: str, dropout: float | None) -> dict:
    """The preset's sizes, with its dropout replaced when ``dropout`` is given."""
    return {**PRESETS[preset], **({} if dropout is None else {"dropout": dropout})}


def worker(kind: str, preset: str, dropout: float | None = None) -> None:
    """Line protocol on stdin/stdout: `run N` -> JSON {seconds, loss}; `rss` -> JSON; `profile`; `quit`."""
    cfg = _config(preset, dropout)
    if kind == "tinytensor":
        step, profile, _ = _tt_worker(cfg)
    else:
        step, profile, _ = _torch_worker(cfg, compile=kind == "torch-compile")
    batches = _batches(cfg, 8)
    i = 0
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "run":
            n = int(cmd[1])
            t0 = time.perf_counter()
            loss = 0.0
            try:
                for _ in range(n):
                    x, y = batches[i % len(batches)]
                    i += 1
                    loss = step(x, y)
            except Exception as e:  # torch.compile can fail on a machine (no C++ compiler, ...): say why
                why = (str(e).strip().splitlines() or [""])[0][:300]
                print(json.dumps({"error": f"{type(e).__name__}: {why}"}), flush=True)
                continue
            print(json.dumps({"seconds": time.perf_counter() - t0, "loss": loss}), flush=True)
        elif cmd[0] == "rss":
            print(json.dumps({"peak_rss_mb": _peak_rss_mb()}), flush=True)
        elif cmd[0] == "profile":
            x, y = batches[0]
            print(json.dumps({"table": profile(x, y) if profile else ""}), flush=True)


class _Worker:
    def __init__(self, kind: str, preset: str, dropout: float | None = None):
        self.kind = kind
        extra = [] if dropout is None else ["--dropout", repr(dropout)]
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.train_throughput", "--worker", kind,
                                      "--preset", preset, *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.kind} worker died (exit code {self.proc.wait()})")
        return json.loads(line)

    def ask(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        self.proc.wait(timeout=60)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="baby")
    ap.add_argument("--iters", type=int, default=None, help="training steps per round (default: baby 20, big 3)")
    ap.add_argument("--rounds", type=int, default=5, help="counted rounds per framework (after 1 warm-up)")
    ap.add_argument("--json", default=None, help="write the results here (atomically)")
    ap.add_argument("--no-torch", action="store_true", help="measure tinytensor only")
    ap.add_argument("--profile", action="store_true", help="also print tinytensor's per-op profile of one step")
    ap.add_argument("--compile", action="store_true", help="also PyTorch with torch.compile (a failure to "
                    "compile is recorded with its reason, not raised)")
    ap.add_argument("--dropout", type=float, default=None, help="replace the preset's dropout (shakespeare-char: "
                    "0.2; with 0 PyTorch takes its flash-attention path)")
    ap.add_argument("--lockstep", type=int, metavar="PAIRS", default=None,
                    help="instead of rounds: one worker per framework, alive side by side, asked in turn for "
                    "--iters steps PAIRS times (order flipped every pair); reports the median over pairs of "
                    "the tokens/s ratio")
    ap.add_argument("--gap", type=float, default=0.1, help="--lockstep: seconds of idle between two bursts, so "
                    "that the OpenMP threads of the framework that just ran are asleep (default 0.1)")
    ap.add_argument("--worker", choices=["tinytensor", "torch", "torch-compile"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.preset, args.dropout)
        return 0

    from benchmarks._util import machine_info, write_json_atomic

    cfg = _config(args.preset, args.dropout)
    iters = args.iters or (20 if args.preset == "baby" else 3)
    tokens = iters * cfg["batch_size"] * cfg["block_size"]
    kinds = ["tinytensor"]
    if not args.no_torch:
        try:
            import torch  # noqa: F401
            kinds.append("torch")
            if args.compile:
                kinds.append("torch-compile")
        except ImportError:
            print("torch is not installed (pip install '.[bench]'): measuring tinytensor only")
    if args.lockstep is not None:
        if len(kinds) < 2:
            raise SystemExit("--lockstep compares tinytensor with torch: it needs torch (the bench extra)")
        return _lockstep(args, cfg, iters, tokens, kinds[:2])
    times: dict[str, list[float]] = {k: [] for k in kinds}
    rss: dict[str, float] = {k: 0.0 for k in kinds}
    losses: dict[str, float] = {}
    failed: dict[str, str] = {}
    # A fresh worker per round and framework: only one process is alive at a time, because an idle
    # PyTorch process's OpenMP pool measurably slows the other one down on 2 cores.
    for r in range(args.rounds + 1):
        for k in kinds:
            if k in failed:
                continue
            w = _Worker(k, args.preset, args.dropout)
            try:
                res = w.ask("run 1")                # warm-up step: allocator, Numba cache load, torch.compile
                if "error" not in res:
                    res = w.ask(f"run {iters}")
                rss[k] = max(rss[k], w.ask("rss")["peak_rss_mb"])
            finally:
                w.close()
            if "error" in res:
                failed[k] = res["error"]
                print(f"round {r} {k:<10} failed: {res['error']}", flush=True)
                continue
            if r > 0:
                times[k].append(res["seconds"])
            losses[k] = res["loss"]
            print(f"round {r}{' (warm-up)' if r == 0 else ''} {k:<10} {tokens / res['seconds']:>9.0f} tok/s  "
                  f"loss {res['loss']:.3f}", flush=True)
    prof = None
    if args.profile:
        w = _Worker("tinytensor", args.preset, args.dropout)
        try:
            w.ask("run 2")
            prof = w.ask("profile")["table"]
        finally:
            w.close()

    result = {"question": "training tokens/s, tinytensor vs PyTorch eager", "preset": args.preset, "config": cfg,
              "iters_per_round": iters, "rounds": args.rounds, "threads": _threads(), "machine": machine_info()}
    print(f"\n{args.preset}: {cfg['n_layer']} layers, {cfg['n_head']} heads, {cfg['n_embd']} wide, block "
          f"{cfg['block_size']}, batch {cfg['batch_size']}; {_threads()} threads; {args.rounds} rounds x {iters} steps")
    print(f"{'framework':<12}{'tokens/s':>12}{'ms/step':>10}{'peak RSS MB':>13}")
    for k, why in failed.items():
        result[k] = {"failed": why}
        print(f"{k:<12}failed: {why}")
    for k in (k for k in kinds if k not in failed):
        med = statistics.median(times[k])
        result[k] = {"tokens_per_s": tokens / med, "ms_per_step": 1e3 * med / iters, "peak_rss_mb": rss[k],
                     "round_seconds": times[k]}
        print(f"{k:<12}{tokens / med:>12.0f}{1e3 * med / iters:>10.1f}{rss[k]:>13.0f}")
    if "torch" in kinds:
        ratio = result["tinytensor"]["tokens_per_s"] / result["torch"]["tokens_per_s"]
        rss_ratio = rss["tinytensor"] / rss["torch"]
        result["speed_ratio"], result["rss_ratio"] = ratio, rss_ratio
        print(f"tinytensor / torch: {ratio:.2f}x tokens/s, {rss_ratio:.2f}x peak RSS")
    if "torch-compile" in kinds and "torch-compile" not in failed:
        result["speed_ratio_vs_compile"] = (result["tinytensor"]["tokens_per_s"]
                                            / result["torch-compile"]["tokens_per_s"])
        print(f"tinytensor / torch.compile: {result['speed_ratio_vs_compile']:.2f}x tokens/s")
    if prof:
        print("\ntinytensor profile of one step:\n" + prof)
        result["profile"] = prof
    if args.json:
        write_json_atomic(args.json, result)
    return 0


def lockstep_bursts(workers: dict, iters: int, pairs: int, gap: float):
    """Both frameworks' workers alive at once, each waiting on its pipe while the other runs ``iters`` steps;
    ``pairs`` pairs of bursts, the order flipped every pair, ``gap`` seconds idle before each burst. Returns
    the seconds of every burst per worker, the ratio of each pair (second worker's seconds over the first's:
    > 1 means the first is faster), and each worker's peak RSS.

    Why: on the 2-core VMs the machine runs in fast and slow phases of seconds to minutes, so rounds taken
    one after the other (the default mode, a fresh process per round) can land in different phases: the
    same code has measured 0.99x and 1.26x against PyTorch in consecutive runs. Two bursts of one pair are
    a second or two apart and mostly share a phase, so the median over pairs of their ratio is steadier.
    The idle gap lets the OpenMP threads of the burst before stop spinning (libgomp's default spin, which
    PyTorch's pool keeps, lasts milliseconds), so neither framework runs beside the other's spinning pool.
    ``benchmarks.seq2seq_throughput --lockstep`` uses it too.
    """
    kinds = list(workers)
    for w in workers.values():
        w.ask("run 1")                                           # warm-up step
        w.ask(f"run {iters}")                                    # warm-up burst (not counted)
    secs: dict[str, list[float]] = {k: [] for k in kinds}
    ratios = []
    for i in range(pairs):
        for k in (kinds if i % 2 == 0 else kinds[::-1]):
            time.sleep(gap)
            secs[k].append(workers[k].ask(f"run {iters}")["seconds"])
        ratios.append(secs[kinds[1]][-1] / secs[kinds[0]][-1])
    rss = {k: workers[k].ask("rss")["peak_rss_mb"] for k in kinds}
    return secs, ratios, rss


def quartiles(ratios: list[float]) -> tuple[float, float]:
    """The first and third quartile of the pair ratios (the one ratio twice when there is one)."""
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return q[0], q[2]


def _lockstep(args, cfg: dict, iters: int, tokens: int, kinds: list[str]) -> int:
    """``--lockstep``: :func:`lockstep_bursts` of one tinytensor and one PyTorch worker, then the table."""
    from benchmarks._util import machine_info, write_json_atomic

    workers = {}
    try:
        for k in kinds:
            workers[k] = _Worker(k, args.preset, args.dropout)
        secs, ratios, rss = lockstep_bursts(workers, iters, args.lockstep, args.gap)
    finally:
        for w in workers.values():
            w.close()
    result = {"question": "training tokens/s, tinytensor vs PyTorch eager, side by side in lockstep",
              "preset": args.preset, "config": cfg, "iters_per_burst": iters, "pairs": args.lockstep,
              "gap_s": args.gap, "threads": _threads(), "machine": machine_info()}
    print(f"{args.preset}: {args.lockstep} pairs x {iters} steps in lockstep; {_threads()} threads")
    print(f"{'framework':<12}{'tokens/s':>12}{'ms/step':>10}{'peak RSS MB':>13}  (medians over bursts)")
    for k in kinds:
        med = statistics.median(secs[k])
        result[k] = {"tokens_per_s": tokens / med, "ms_per_step": 1e3 * med / iters, "peak_rss_mb": rss[k],
                     "burst_seconds": secs[k]}
        print(f"{k:<12}{tokens / med:>12.0f}{1e3 * med / iters:>10.1f}{rss[k]:>13.0f}")
    q1, q3 = quartiles(ratios)
    result["speed_ratio"] = statistics.median(ratios)
    result["speed_ratio_quartiles"] = [q1, q3]
    result["rss_ratio"] = rss[kinds[0]] / rss[kinds[1]]
    print(f"tinytensor / torch: {result['speed_ratio']:.2f}x tokens/s (median over pairs; quartiles "
          f"{q1:.2f}-{q3:.2f}), {result['rss_ratio']:.2f}x peak RSS")
    if args.json:
        write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
