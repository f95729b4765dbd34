"""Question: how many tokens/s does GPT-2 small decode on this CPU, with and without the KV cache, and
against Hugging Face transformers?

    python -m benchmarks.generate [--json PATH] [--threads N] [--new_tokens 256] [--prompt_tokens 32]
                                  [--no_transformers] [--no_uncached] [--rounds N]

GPT-2-124M's shapes (12 layers, 12 heads, 768 wide, 1,024 positions, vocab 50,257) with random weights
(GPT-2's init, seed 0), written once with ``save_pretrained`` so every side decodes the same model. Batch 1,
a 32-token prompt of random ids, 256 new tokens, greedy (temperature 0).

Each measurement runs in its own process, one at a time: load the folder, one warm-up generation of 8
tokens (Numba compiles or loads its cache, BLAS and the allocator warm up), then one timed generation.
Reported: new tokens / wall seconds of the whole call (the 32-token prefill included), the time to the
first new token, and whether the greedy tokens agree with tinygpt's cached run (random weights make
near-ties, so a float-rounding difference can fork the text; this is information, not a test).

* tinygpt, KV cache: ``GPT.generate_stream(use_cache=True)``: one position per step.
* tinygpt, no cache: ``use_cache=False``: every step recomputes the whole context (32 .. 287 tokens).
* transformers (the ``bench`` extra): ``GPT2LMHeadModel.generate(do_sample=False, use_cache=True)`` under
  ``torch.inference_mode()``, EOS disabled so it always makes 256 tokens.

Threads: all cores by default; ``--threads N`` sets OpenBLAS, Numba (``TINYTENSOR_NUM_THREADS``) and torch
to N in every worker (useful when another job holds a core: spinning BLAS threads then distort the figures).

Targets: cached ≥ 1.5x transformers (issue 19); cached ≥ 5x uncached at 256 new tokens.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

GPT2_SMALL = dict(block_size=1024, vocab_size=50257, n_layer=12, n_head=12, n_embd=768)
WARMUP_TOKENS = 8
KINDS = {"cache": "tinygpt, KV cache", "nocache": "tinygpt, no cache", "transformers": "transformers, KV cache"}


def _prompt(n: int) -> list[int]:
    import numpy as np
    return np.random.default_rng(1).integers(0, GPT2_SMALL["vocab_size"], size=n).tolist()


def _threads() -> int:
    return int(os.environ.get("TINYTENSOR_NUM_THREADS") or os.cpu_count() or 1)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# ---------------------------------------------------------------------------------------- workers
def _tinygpt_run(model_dir: str, prompt: list[int], new_tokens: int, use_cache: bool) -> dict:
    import numpy as np
    from gpt import load_pretrained

    t0 = time.perf_counter()
    model = load_pretrained(model_dir)
    load_s = time.perf_counter() - t0
    ids = np.array(prompt, dtype=np.int64)

    def run(n: int):
        out, first = [], None
        t = time.perf_counter()
        for tok in model.generate_stream(ids, n, temperature=0, use_cache=use_cache):
            first = first if first is not None else time.perf_counter() - t
            out.append(int(tok))
        return out, first, time.perf_counter() - t

    run(WARMUP_TOKENS)
    tokens, first, seconds = run(new_tokens)
    return {"seconds": seconds, "first_token_s": first, "tokens": tokens, "load_s": load_s}


def _transformers_run(model_dir: str, prompt: list[int], new_tokens: int) -> dict:
    import torch
    import transformers
    from transformers import GenerationConfig, GPT2LMHeadModel
    from transformers.generation.streamers import BaseStreamer

    torch.set_num_threads(_threads())
    t0 = time.perf_counter()
    model = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    load_s = time.perf_counter() - t0
    ids = torch.tensor([prompt], dtype=torch.long)

    class FirstToken(BaseStreamer):
        """``generate`` calls ``put`` with the prompt, then with each new token: time the first new one."""

        def __init__(self, start: float):
            self.start, self.calls, self.first = start, 0, None

        def put(self, value):
            self.calls += 1
            if self.calls == 2:
                self.first = time.perf_counter() - self.start

        def end(self):
            pass

    def run(n: int):
        gen = GenerationConfig(max_new_tokens=n, min_new_tokens=n, do_sample=False, use_cache=True,
                               eos_token_id=None, bos_token_id=None, pad_token_id=0)
        t = time.perf_counter()
        streamer = FirstToken(t)
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gen, streamer=streamer)
        return out[0, ids.shape[1]:].tolist(), streamer.first, time.perf_counter() - t

    run(WARMUP_TOKENS)
    tokens, first, seconds = run(new_tokens)
    return {"seconds": seconds, "first_token_s": first, "tokens": tokens, "load_s": load_s,
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                         "torch_threads": torch.get_num_threads()}}


def worker(kind: str, model_dir: str, prompt_tokens: int, new_tokens: int) -> None:
    """Measure one kind and print one JSON line."""
    prompt = _prompt(prompt_tokens)
    if kind == "transformers":
        res = _transformers_run(model_dir, prompt, new_tokens)
    else:
        res = _tinygpt_run(model_dir, prompt, new_tokens, use_cache=(kind == "cache"))
    res["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(res), flush=True)


def _spawn(kind: str, model_dir: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.generate", "--worker", kind, "--model_dir", model_dir,
           "--prompt_tokens", str(args.prompt_tokens), "--new_tokens", str(args.new_tokens)]
    env = dict(os.environ)
    if args.threads:
        n = str(args.threads)
        env.update(OPENBLAS_NUM_THREADS=n, OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, TINYTENSOR_NUM_THREADS=n)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"the {kind} worker failed (exit code {proc.returncode}); see its stderr above")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t0
    # a 1-minute load average well above 1 during a run means another job shared the cores
    res["load_avg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return res


def _agreement(tokens: list[int], ref: list[int]) -> str:
    if tokens == ref:
        return "same"
    n = next((i for i, (a, b) in enumerate(zip(tokens, ref)) if a != b), min(len(tokens), len(ref)))
    return f"differ from #{n}"


# ------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=None, metavar="PATH", help="write the results here (atomically)")
    ap.add_argument("--new_tokens", type=int, default=256)
    ap.add_argument("--prompt_tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="threads for BLAS, Numba and torch in every "
                    "worker (default: all cores)")
    ap.add_argument("--no_transformers", action="store_true", help="measure tinygpt only")
    ap.add_argument("--no_uncached", action="store_true", help="skip tinygpt without the KV cache (the slow one)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds of every implementation, interleaved; the "
                    "median run (by tokens/s) of each is reported, every round's seconds kept in the JSON")
    ap.add_argument("--worker", choices=sorted(KINDS), help=argparse.SUPPRESS)
    ap.add_argument("--model_dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        ap.error("--threads must be >= 1")
    if args.new_tokens < 1 or args.prompt_tokens < 1 or args.prompt_tokens + args.new_tokens > GPT2_SMALL["block_size"]:
        ap.error(f"need 1 <= prompt_tokens, 1 <= new_tokens and prompt_tokens + new_tokens <= "
                 f"{GPT2_SMALL['block_size']}")
    if args.worker:
        worker(args.worker, args.model_dir, args.prompt_tokens, args.new_tokens)
        return 0

    from benchmarks._util import format_table, machine_info, machine_line, write_json_atomic
    from gpt.model import GPT, GPTConfig
    from gpt.hf import save_pretrained

    kinds = ["cache"] if args.no_uncached else ["cache", "nocache"]
    if args.no_transformers:
        pass
    elif importlib.util.find_spec("transformers") and importlib.util.find_spec("torch"):
        kinds.append("transformers")
    else:
        print("transformers is not installed (pip install transformers 'torch==2.13.0'): tinygpt only\n")
    info = machine_info()
    info["threads"] = args.threads or os.cpu_count()
    print(f"{machine_line(info)}\nGPT-2 small shapes, random weights; batch 1, {args.prompt_tokens}-token prompt, "
          f"{args.new_tokens} new tokens, greedy; {info['threads']} threads; one timed run each after an "
          f"{WARMUP_TOKENS}-token warm-up\n",
          flush=True)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="tinygpt-bench-") as tmp:
        model = GPT(GPTConfig(**GPT2_SMALL), seed=0)
        save_pretrained(model, tmp)
        del model
        runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
        for r in range(args.rounds):
            for kind in kinds:                 # interleaved: machine load hits every implementation alike
                print(f"round {r + 1}: running {KINDS[kind]} ...", flush=True)
                res = _spawn(kind, tmp, args)
                runs[kind].append(res)
                print(f"  {len(res['tokens'])} tokens in {res['seconds']:.1f} s: "
                      f"{len(res['tokens']) / res['seconds']:.2f} tokens/s (load average {res['load_avg_1m'][0]} "
                      f"before, {res['load_avg_1m'][1]} after)", flush=True)
        for kind, rs in runs.items():
            rs = sorted(rs, key=lambda x: x["seconds"])
            results[kind] = {**rs[len(rs) // 2], "round_seconds": [x["seconds"] for x in runs[kind]]}

    ref = results["cache"]["tokens"]
    hf_tps = None
    if "transformers" in results:
        hf_tps = len(results["transformers"]["tokens"]) / results["transformers"]["seconds"]
    rows = []
    for kind, res in results.items():
        tps = len(res["tokens"]) / res["seconds"]
        res["tokens_per_s"] = tps
        rows.append({"impl": KINDS[kind], "tokens": len(res["tokens"]), "seconds": res["seconds"],
                     "tps": tps, "ttft": 1e3 * res["first_token_s"], "vs_hf": tps / hf_tps if hf_tps else None,
                     "rss": res["peak_rss_mb"], "agree": _agreement(res["tokens"], ref)})
    print()
    print(format_table(rows, [("impl", "implementation"), ("tokens", "new tokens"), ("seconds", "seconds"),
                              ("tps", "tokens/s"), ("ttft", "first token ms"), ("vs_hf", "vs transformers"),
                              ("rss", "peak RSS MB"), ("agree", "greedy tokens vs cached")]))
    cache_tps = results["cache"]["tokens_per_s"]
    summary = {"rounds": args.rounds}
    if "nocache" in results:
        speedup = cache_tps / results["nocache"]["tokens_per_s"]
        print(f"\nKV cache speed-up at {args.new_tokens} new tokens: {speedup:.2f}x (target >= 5x: "
              f"{'met' if speedup >= 5 else 'NOT met'})")
        summary["cache_vs_nocache"] = speedup
    if hf_tps:
        ratio = cache_tps / hf_tps
        summary["cache_vs_transformers"] = ratio
        print(f"tinygpt cached / transformers: {ratio:.2f}x (issue 19's target >= 1.5x: "
              f"{'met' if ratio >= 1.5 else 'NOT met'})")
    info["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        for res in results.values():
            res["tokens"] = res["tokens"][:16]         # the first few are enough to compare runs
        write_json_atomic(args.json, {
            "question": "GPT-2-124M decode tokens/s: tinygpt with and without the KV cache, and transformers",
            "config": GPT2_SMALL, "batch_size": 1, "prompt_tokens": args.prompt_tokens,
            "new_tokens": args.new_tokens, "sampling": "greedy", "warmup_tokens": WARMUP_TOKENS,
            "machine": info, "results": results, **summary})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
