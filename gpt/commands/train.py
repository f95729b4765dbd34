"""``tinygpt train``: train a GPT from a preset plus ``--key=value`` overrides, resume one, or fine-tune GPT-2."""
from __future__ import annotations

import argparse
import sys

from tinytensor.errors import UsageError

from ..config import (PRESETS, WARMUP_FRACTION, TrainConfig, config_help, finetune_config, make_config,
                      parse_overrides, read_config_file)
from ..distributed import world
from ..train import TrainingStopped, TrainResult, resume_config, train


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a GPT (a preset, plus --key=value overrides)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
                       description="Train a GPT on a text file. Any TrainConfig field can be set with "
                                   "--key=value, typed by the field,\nor in a TOML file given with --config "
                                   "(--key=value wins); an unknown key is an error.\nUnless set, lr_decay_iters "
                                   f"follows max_iters and warmup_iters is at most {WARMUP_FRACTION:.0%} of it.",
                       epilog="presets: " + ", ".join(PRESETS) + "\n\nconfig keys (default):\n" + config_help())
    p.add_argument("--config", metavar="TOML", help="a TOML file of config keys (max_iters = 500, ...), applied "
                   "over the preset; --key=value overrides apply over it")
    p.add_argument("--preset", default="baby", help=f"starting configuration: {', '.join(PRESETS)} (default baby)")
    p.add_argument("--data", metavar="PATH", help="text file (or dataset name) to train on; default: the "
                   "preset's dataset, tinyshakespeare, found in $TINYGPT_DATA or downloaded")
    p.add_argument("--out_dir", metavar="DIR", help="where checkpoints and log.jsonl go (default out-PRESET)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out_dir from its latest checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start afresh even if --out_dir holds a checkpoint")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.add_argument("--init_from", metavar="NAME|DIR", help="fine-tune GPT-2 by name (gpt2, gpt2-medium, ...: "
                   "downloaded once) or a GPT-2 folder (config.json + model.safetensors, "
                   "tokenizer from its encoder.json + vocab.bpe or --tokenizer=DIR|gpt2) with nanoGPT's "
                   "finetune_shakespeare settings for a CPU; --preset is not used")
    p.set_defaults(func=run, accepts_overrides=True)


def overrides_of(args: argparse.Namespace) -> dict:
    """The config keys the user set: ``--config``'s file, then the ``--key=value`` extras (typed by field)."""
    from_file = read_config_file(args.config) if getattr(args, "config", None) else {}
    return {**from_file, **parse_overrides(getattr(args, "overrides", None) or [])}


def train_or_exit_code(cfg: TrainConfig, **kwargs) -> TrainResult | int:
    """:func:`gpt.train.train`; a stopped run (1, reason on stderr) or a Ctrl-C (130) as an exit code."""
    try:
        res = train(cfg, **kwargs)
    except TrainingStopped as e:
        print(f"tinygpt: {e}", file=sys.stderr)
        return 1
    return 130 if res.interrupted else res


def run(args: argparse.Namespace) -> int:
    overrides = overrides_of(args)
    if args.data is not None:
        overrides["dataset"] = args.data
    if args.resume:
        if args.out_dir is None:
            raise UsageError("--resume needs --out_dir (the run to continue)")
        cfg = resume_config(args.out_dir, overrides)
    elif args.init_from:
        if args.out_dir:
            overrides["out_dir"] = args.out_dir
        cfg = finetune_config(args.init_from, overrides)
    else:
        overrides["out_dir"] = args.out_dir or overrides.get("out_dir") or f"out-{args.preset}"
        cfg = make_config(args.preset, overrides)
    res = train_or_exit_code(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    if isinstance(res, int):
        return res
    if not world().is_main:
        return 0
    took = f"{res.run_s:.0f} s this run, {res.elapsed_s:.0f} s in all" if args.resume else f"{res.elapsed_s:.0f} s"
    print(f"done: iter {res.iter_num}, train loss {res.train_loss:.4f}, val loss {res.val_loss:.4f}, "
          f"{took}, {res.tokens_per_s:,.0f} tokens/s; checkpoint in {res.out_dir}")
    return 0
