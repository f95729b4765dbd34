"""``tinygpt eval``: the train and val loss of a run's latest checkpoint."""
from __future__ import annotations

import argparse

from ..train import evaluate


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="train and val loss of a checkpoint")
    p.add_argument("--out_dir", required=True, metavar="DIR")
    p.add_argument("--data", metavar="PATH", help="the text file, if not where training found it")
    p.add_argument("--eval_iters", type=int, default=None, help="batches per split (default: the run's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the eval batches")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    losses = evaluate(args.out_dir, args.data, args.eval_iters, args.seed)
    print(f"train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
    return 0
