"""Question: does the ``verdict`` preset reproduce the book's ch. 5 run (train 0.57 / val 6.37 after 10 epochs)?

    python -m benchmarks.verdict [--epochs 10] [--out_dir DIR] [--json PATH]
    python -m benchmarks.verdict --from_run DIR --json PATH      # summarize a finished `tinygpt train` run

The run is ``tinygpt train --preset verdict``: GPT-2 small's shape (124M parameters) with a 256-token
context, the-verdict.txt in GPT-2 tokens split 90/10, non-overlapping 256-token windows in shuffled
epochs of 9 batches of 2, AdamW lr 4e-4, weight decay 0.1, dropout 0.1. It prints and records each
epoch's train/val loss and perplexity and the wall time.
"""
from __future__ import annotations

import argparse
import tempfile

import tinytensor as tt  # before NumPy: the thread policy (tinytensor/threads.py)

from gpt.config import PRESETS, make_config
from gpt.train import read_log, train

BOOK = {"epochs": 10, "train_loss": 0.57, "val_loss": 6.37}


def summarize(out_dir: str) -> dict:
    """Per-epoch records of a verdict run's ``log.jsonl``."""
    per_epoch = PRESETS["verdict"]["eval_interval"]
    recs = read_log(out_dir)
    return {"evals": [{"epoch": r["iter"] / per_epoch, **{k: r[k] for k in ("iter", "train_loss", "val_loss",
                                                                            "train_ppl", "val_ppl", "elapsed_s")}}
                      for r in recs],
            "final": recs[-1] if recs else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out_dir", default=None, help="keep the run here (default: a temporary folder)")
    ap.add_argument("--from_run", default=None, help="summarize this finished run instead of training")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from benchmarks._util import machine_info, machine_line, write_json_atomic
    if args.from_run:
        s = summarize(args.from_run)
    else:
        with tempfile.TemporaryDirectory() as d:
            out = args.out_dir or d
            steps = args.epochs * PRESETS["verdict"]["eval_interval"]
            train(make_config("verdict", {"out_dir": out, "max_iters": steps, "lr_decay_iters": steps}),
                  overwrite=True, progress=False)
            s = summarize(out)
    for r in s["evals"]:
        print(f"epoch {r['epoch']:>4.1f}: train {r['train_loss']:.3f} (ppl {r['train_ppl']:.1f}), "
              f"val {r['val_loss']:.3f} (ppl {r['val_ppl']:.1f}), {r['elapsed_s']:.0f} s")
    print(f"the book after {BOOK['epochs']} epochs: train {BOOK['train_loss']}, val {BOOK['val_loss']}")
    print(machine_line())
    if args.json:
        write_json_atomic(args.json, {"question": "the verdict preset vs the book's ch. 5 run", "book": BOOK,
                                      **s, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
