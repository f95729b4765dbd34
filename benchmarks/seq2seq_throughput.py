"""Question: how many training tokens per second does our encoder–decoder do, against ``torch.nn``'s
Transformer layers, on this CPU?

    python -m benchmarks.seq2seq_throughput [--preset small] [--iters 10] [--rounds 5] [--json PATH]
    python -m benchmarks.seq2seq_throughput --preset small --lockstep 30 [--gap 0.1]   (side by side)

Same sizes, same batches (random token ids, fixed lengths, no padding: speed does not depend on the
data), same dropout, same thread count, the paper's Adam (betas 0.9 / 0.98, eps 1e-9) on both sides. The
PyTorch twin (``benchmarks._torch_transformer``) is ``nn.TransformerEncoder`` / ``nn.TransformerDecoder``
of ``nn.TransformerEncoderLayer`` / ``DecoderLayer`` (batch_first, post-LN), the tied embedding, eager mode.
A step is forward, loss, backward, clipping (1.0) and Adam. Rounds alternate between the frameworks, each
in a fresh worker process (as ``benchmarks.train_throughput``); the first round is warm-up. Tokens = source
+ target tokens per step. Reported: median tokens/s of the counted rounds and the ratio. With
``--lockstep PAIRS`` both workers stay alive and are asked in turn for a burst of steps
(``benchmarks.train_throughput.lockstep_bursts``): the median over pairs of the ratio, with its quartiles, is
steadier on a VM with fast and slow phases than rounds taken one after the other.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from benchmarks.train_throughput import _Worker as _GPTWorker
from benchmarks.train_throughput import _peak_rss_mb, _threads

PRESETS = {
    # the sizes of the seq2seq task runs (benchmarks/seq2seq_tasks.py) and a wider one
    "small": dict(vocab_size=40, d_model=64, n_head=4, d_ff=256, n_layer=2, dropout=0.0, max_len=64,
                  norm_first=False, batch_size=64, src_len=30, tgt_len=31),
    "base-ish": dict(vocab_size=40, d_model=256, n_head=4, d_ff=1024, n_layer=3, dropout=0.1, max_len=64,
                     norm_first=False, batch_size=32, src_len=32, tgt_len=33),
}
_MODEL_KEYS = ("vocab_size", "d_model", "n_head", "d_ff", "n_layer", "dropout", "max_len", "norm_first")


def _batches(cfg: dict, n: int, seed: int = 0):
    import numpy as np
    rng = np.random.default_rng(seed)
    B, V = cfg["batch_size"], cfg["vocab_size"]
    out = []
    for _ in range(n):
        src = rng.integers(3, V, (B, cfg["src_len"]))
        tgt = rng.integers(3, V, (B, cfg["tgt_len"] + 1))
        tgt[:, 0] = 1
        out.append((src, tgt[:, :-1].copy(), tgt[:, 1:].copy()))
    return out


def _tt_step(cfg: dict):
    import tinytensor as tt
    from gpt import Transformer, TransformerConfig
    model = Transformer(TransformerConfig(**{k: cfg[k] for k in _MODEL_KEYS}), seed=0)
    opt = model.configure_optimizer(lr=1e-4)
    params = list(model.parameters())

    def step(src, tgt_in, targets) -> float:
        _, loss = model(src, tgt_in, targets)
        opt.zero_grad()
        loss.backward()
        tt.optim.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.item()

    def profile(src, tgt_in, targets) -> str:
        with tt.profile() as prof:
            step(src, tgt_in, targets)
        return prof.table()

    return step, profile


def _torch_step(cfg: dict):
    import torch
    from benchmarks import _torch_transformer
    torch.set_num_threads(_threads())
    model = _torch_transformer.build({k: cfg[k] for k in _MODEL_KEYS})
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)

    def step(src, tgt_in, targets) -> float:
        _, loss = model(*(torch.from_numpy(a) for a in (src, tgt_in, targets)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss.item())

    return step, None


def worker(kind: str, preset: str) -> None:
    """Line protocol on stdin/stdout: `run N` -> JSON {seconds, loss}; `rss` -> JSON; `profile`; `quit`."""
    cfg = PRESETS[preset]
    step, profile = (_tt_step if kind == "tinytensor" else _torch_step)(cfg)
    batches = _batches(cfg, 4)
    i = 0
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "run":
            t0, loss = time.perf_counter(), 0.0
            for _ in range(int(cmd[1])):
                loss = step(*batches[i % len(batches)])
                i += 1
            print(json.dumps({"seconds": time.perf_counter() - t0, "loss": loss}), flush=True)
        elif cmd[0] == "rss":
            print(json.dumps({"peak_rss_mb": _peak_rss_mb()}), flush=True)
        elif cmd[0] == "profile":
            print(json.dumps({"table": profile(*batches[0]) if profile else ""}), flush=True)


class _Worker(_GPTWorker):
    def __init__(self, kind: str, preset: str):      # the same protocol, this module's worker
        import subprocess
        self.kind = kind
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.seq2seq_throughput", "--worker", kind,
                                      "--preset", preset], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        self._read()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--iters", type=int, default=10, help="training steps per round")
    ap.add_argument("--rounds", type=int, default=5, help="counted rounds per framework (after 1 warm-up)")
    ap.add_argument("--json", default=None, help="write the results here (atomically)")
    ap.add_argument("--profile", action="store_true", help="also print tinytensor's per-op profile of one step")
    ap.add_argument("--lockstep", type=int, metavar="PAIRS", default=None,
                    help="instead of rounds: both workers alive side by side, asked in turn for --iters steps "
                    "PAIRS times (order flipped every pair); reports the median over pairs of the ratio")
    ap.add_argument("--gap", type=float, default=0.1, help="--lockstep: seconds of idle before each burst")
    ap.add_argument("--worker", choices=["tinytensor", "torch"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.preset)
        return 0
    import torch  # noqa: F401  (the comparison needs it: pip install '.[bench]')

    from benchmarks._util import cpu_busy_fraction, machine_info, write_json_atomic

    cfg = PRESETS[args.preset]
    tokens = args.iters * cfg["batch_size"] * (cfg["src_len"] + cfg["tgt_len"])
    kinds = ["tinytensor", "torch"]
    if args.lockstep is not None:
        return _lockstep(args, cfg, tokens, kinds)
    times: dict[str, list[float]] = {k: [] for k in kinds}
    losses: dict[str, float] = {}
    busy_before = cpu_busy_fraction(1.0)
    for r in range(args.rounds + 1):
        for k in kinds:
            w = _Worker(k, args.preset)
            try:
                w.ask("run 1")                      # warm-up step: allocator, Numba cache load
                res = w.ask(f"run {args.iters}")
            finally:
                w.close()
            if r > 0:
                times[k].append(res["seconds"])
            losses[k] = res["loss"]
            print(f"round {r}{' (warm-up)' if r == 0 else ''} {k:<10} {tokens / res['seconds']:>9.0f} tok/s  "
                  f"loss {res['loss']:.4f}", flush=True)
    if args.profile:
        w = _Worker("tinytensor", args.preset)
        try:
            w.ask("run 2")
            print(w.ask("profile")["table"])
        finally:
            w.close()
    tps = {k: tokens / statistics.median(v) for k, v in times.items()}
    ratio = tps["tinytensor"] / tps["torch"]
    result = {"question": "encoder-decoder training tokens/s, tinytensor vs torch.nn Transformer layers (eager)",
              "preset": args.preset, "config": cfg, "iters_per_round": args.iters, "rounds": args.rounds,
              "threads": _threads(), "tokens_per_s": {k: round(v) for k, v in tps.items()},
              "rounds_tokens_per_s": {k: [round(tokens / s) for s in v] for k, v in times.items()},
              "ratio_tinytensor_over_torch": round(ratio, 3), "last_loss": losses,
              "machine_busy_fraction_before": busy_before, "machine": machine_info()}
    print(f"\n{args.preset}: d_model {cfg['d_model']}, {cfg['n_layer']}+{cfg['n_layer']} layers, batch "
          f"{cfg['batch_size']} x ({cfg['src_len']} + {cfg['tgt_len']}) tokens; {_threads()} threads")
    print(f"tinytensor {tps['tinytensor']:.0f} tok/s, torch {tps['torch']:.0f} tok/s: {ratio:.2f}x")
    if args.json:
        write_json_atomic(args.json, result)
    return 0


def _lockstep(args, cfg: dict, tokens: int, kinds: list[str]) -> int:
    # here, not at the top: benchmarks.ab_step loads this file's worker beside an older checkout's train_throughput
    from benchmarks._util import machine_info, write_json_atomic
    from benchmarks.train_throughput import lockstep_bursts, quartiles

    workers = {}
    try:
        for k in kinds:
            workers[k] = _Worker(k, args.preset)
        secs, ratios, rss = lockstep_bursts(workers, args.iters, args.lockstep, args.gap)
    finally:
        for w in workers.values():
            w.close()
    tps = {k: tokens / statistics.median(v) for k, v in secs.items()}
    ratio, (q1, q3) = statistics.median(ratios), quartiles(ratios)
    result = {"question": "encoder-decoder training tokens/s, tinytensor vs torch.nn Transformer layers (eager), "
              "side by side in lockstep", "preset": args.preset, "config": cfg, "iters_per_burst": args.iters,
              "pairs": args.lockstep, "gap_s": args.gap, "threads": _threads(),
              "tokens_per_s": {k: round(v) for k, v in tps.items()}, "burst_seconds": secs,
              "ratio_tinytensor_over_torch": round(ratio, 3), "ratio_quartiles": [round(q1, 3), round(q3, 3)],
              "peak_rss_mb": rss, "rss_ratio": round(rss["tinytensor"] / rss["torch"], 3), "machine": machine_info()}
    print(f"{args.preset}: d_model {cfg['d_model']}, {cfg['n_layer']}+{cfg['n_layer']} layers; {args.lockstep} pairs x "
          f"{args.iters} steps in lockstep; {_threads()} threads")
    print(f"tinytensor {tps['tinytensor']:.0f} tok/s, torch {tps['torch']:.0f} tok/s (medians over bursts): "
          f"{ratio:.2f}x (median over pairs; quartiles {q1:.2f}-{q3:.2f}), {result['rss_ratio']:.2f}x peak RSS")
    if args.json:
        write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
