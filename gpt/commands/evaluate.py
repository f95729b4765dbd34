"""``tinygpt eval``: the train and val loss (and perplexity) of a run's latest checkpoint, or the zero-shot
perplexity of any text file (``--data``) under a run or GPT-2."""
from __future__ import annotations

import argparse

from tinytensor.errors import UsageError

from ..score import score_text
from ..train import evaluate
from ..windows import perplexity


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="train/val loss and perplexity of a checkpoint, or of any text (--data)")
    p.add_argument("--out_dir", metavar="DIR", help="the training run (its latest checkpoint)")
    p.add_argument("--pretrained", metavar="NAME|DIR", help="with --data: score with GPT-2 by name (gpt2, "
                   "gpt2-medium, ...) or a GPT-2 folder instead of a run")
    p.add_argument("--data", metavar="PATH", help="score this text file (zero-shot perplexity over sliding "
                   "windows of the model's context) instead of the run's train/val split")
    p.add_argument("--tokenizer", metavar="PATH", help="with --pretrained: as for sample (default: the model "
                   "folder's own files)")
    p.add_argument("--stride", type=int, default=None, help="with --data: distance between windows "
                   "(default: the context, each token scored once)")
    p.add_argument("--train_data", metavar="PATH", help="the run's training text, if not where training found it")
    p.add_argument("--eval_iters", type=int, default=None, help="batches per split (default: the run's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the eval batches")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.data is not None:
        r = score_text(args.data, args.out_dir, args.pretrained, args.tokenizer, stride=args.stride)
        print(f"{r['file']}: loss {r['loss']:.4f}, perplexity {r['perplexity']:.2f} "
              f"({r['tokens']:,} tokens in {r['windows']} windows)")
        return 0
    if args.out_dir is None or args.pretrained is not None:
        raise UsageError("eval needs --out_dir (a run's train/val split), or --data FILE with --out_dir or "
                         "--pretrained")
    losses = evaluate(args.out_dir, args.train_data, args.eval_iters, args.seed)
    print(f"train loss {losses['train']:.4f}, val loss {losses['val']:.4f} "
          f"(perplexity {perplexity(losses['train']):.2f} / {perplexity(losses['val']):.2f})")
    return 0
