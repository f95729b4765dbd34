"""``tinygpt demo``: train the baby preset on Tiny Shakespeare, then print a sample."""
from __future__ import annotations

import argparse
import sys

from ..checkpoint import load_model
from ..config import make_config
from ..sample import stream_text
from .train import overrides_of, train_or_exit_code


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train the baby preset on Tiny Shakespeare, then sample from it",
                       allow_abbrev=False,
                       description="Train the baby preset (nanoGPT's CPU run) and print a sample. Config keys "
                                   "can be overridden as for train, e.g. --max_iters=500 for a quicker demo.")
    p.add_argument("--data", metavar="PATH", help="the text (default: Tiny Shakespeare, downloaded if needed)")
    p.add_argument("--out_dir", default="out-demo", metavar="DIR", help="where the run goes (default out-demo)")
    p.add_argument("--overwrite", action="store_true", help="train afresh even if --out_dir holds a checkpoint")
    p.add_argument("--max_new_tokens", type=int, default=500, help="characters to sample (default 500)")
    p.add_argument("--sample_seed", type=int, default=1337, help="sampling seed (default 1337)")
    p.set_defaults(func=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    overrides = overrides_of(args)
    overrides["out_dir"] = args.out_dir
    if args.data is not None:
        overrides["dataset"] = args.data
    cfg = make_config("baby", overrides)
    print(f"training the baby preset ({cfg.max_iters} iterations) into {cfg.out_dir} ...", flush=True)
    res = train_or_exit_code(cfg, overwrite=args.overwrite)
    if isinstance(res, int):
        return res
    print(f"val loss {res.val_loss:.4f} after {res.iter_num} iterations ({res.elapsed_s:.0f} s). A sample:\n")
    model, tok, _ = load_model(cfg.out_dir)
    for piece in stream_text(model, tok, "\n", args.max_new_tokens, temperature=0.8, seed=args.sample_seed):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
