"""How long ``GPT.from_pretrained`` takes to load GPT-2-124M from a safetensors folder, in a fresh process.

    python -m benchmarks.load_gpt2 [--model DIR] [--rounds 5] [--tree DIR ...] [--json PATH]

Each round starts one fresh Python process per source tree (this one, then every ``--tree``, e.g. an
export of the base commit, interleaved so that both see the same machine load) that imports ``gpt``,
then times ``GPT.from_pretrained(model)`` alone (the import is reported beside it). The file is read
once before the first round, so every round loads from the page cache.

``--model`` defaults to GPT-2 from the hub cache (``gpt2``) if it is there; otherwise (offline) a folder
of GPT-2-124M's shapes with random weights is written with ``save_pretrained`` into a temporary
directory: the same tensors, names, layout and bytes as the Hub's file, other values.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._util import cpu_busy_fraction, format_table, machine_info, machine_line, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
GPT2_124M = dict(block_size=1024, vocab_size=50257, n_layer=12, n_head=12, n_embd=768, dropout=0.0, bias=True)


def child(model: str) -> dict:
    """Import gpt, then load ``model``; the seconds of each and a checksum of the weights."""
    import time
    t0 = time.perf_counter()
    from gpt.model import GPT
    t1 = time.perf_counter()
    m = GPT.from_pretrained(model)
    t2 = time.perf_counter()
    wte = m.transformer.wte.weight.data
    return {"import_s": t1 - t0, "load_s": t2 - t1, "wte_sum": float(wte.sum(dtype="float64"))}


def run_once(model: str, tree: Path) -> dict:
    """:func:`child` in a fresh process importing gpt from ``tree``."""
    env = {**os.environ, "TINYTENSOR_QUIET": "1", "PYTHONPATH": os.pathsep.join([str(tree), str(ROOT)])}
    # this file by path (tree's own benchmarks/ may predate it), without its directory on sys.path
    # (benchmarks/tokenizer.py would shadow the tokenizer package)
    run = "import runpy, sys; sys.argv.pop(0); runpy.run_path(sys.argv[0], run_name='__main__')"
    out = subprocess.run([sys.executable, "-c", run, __file__, "--child", model], env=env, cwd=tree,
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"loading {model} with the tree {tree} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def default_model(tmp: str) -> tuple[str, str]:
    """``(folder, what it is)``: the cached Hub GPT-2, or a random GPT-2-124M-shaped folder written to ``tmp``."""
    from gpt import hub
    from gpt.model import GPT, GPTConfig
    from tinytensor.fileio import cache_dir
    cached = cache_dir("hub", "gpt2")
    if all((cached / f).is_file() for f in hub.FILES):      # never downloads
        return str(cached), "gpt2 (the Hugging Face Hub's weights, from the cache)"
    folder = Path(tmp) / "gpt2-124m-random"
    GPT(GPTConfig(**GPT2_124M), seed=0).save_pretrained(folder)
    return str(folder), "random weights in GPT-2-124M's shapes, written by save_pretrained (no GPT-2 offline)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="a GPT-2 folder (default: the cached gpt2, else a random one of its shapes)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--tree", type=Path, action="append", default=[],
                   help="also measure the gpt package of this source tree (e.g. an export of the base commit)")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return 0
    trees = [ROOT, *args.tree]
    with tempfile.TemporaryDirectory() as tmp:
        model, what = (args.model, "given folder") if args.model else default_model(tmp)
        for f in Path(model).iterdir():       # into the page cache: every round reads the same warm file
            f.read_bytes()
        runs = []
        for r in range(args.rounds):
            for tree in trees:
                busy = cpu_busy_fraction()
                runs.append({"round": r + 1, "tree": str(tree), "busy": busy, **run_once(model, tree)})
    summary = []
    for tree in trees:
        mine = [x for x in runs if x["tree"] == str(tree)]
        summary.append({"tree": str(tree), "load_s_median": statistics.median(x["load_s"] for x in mine),
                        "load_s_min": min(x["load_s"] for x in mine),
                        "import_s_median": statistics.median(x["import_s"] for x in mine), "rounds": len(mine)})
    print(machine_line())
    print(f"model: {what}")
    print(format_table(summary, [("tree", "tree"), ("load_s_median", "load s (median)"), ("load_s_min", "min"),
                                 ("import_s_median", "import s"), ("rounds", "rounds")]))
    if args.json:
        write_json_atomic(args.json, {"machine": machine_info(), "model": what, "summary": summary, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
