"""The GPT sub-commands of ``tinygpt``: train, sample, eval, plot, demo.

    tinygpt train --preset baby --data input.txt --out_dir out-baby --max_iters=500
    tinygpt sample --out_dir out-baby --prompt "ROMEO:" --max_new_tokens 300 --seed 1
    tinygpt eval --out_dir out-baby
    tinygpt plot --out_dir out-baby          # needs the plot extra (matplotlib)
    tinygpt demo                             # train the baby preset, then sample
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from .config import PRESETS, config_help, make_config, parse_overrides


def add_parser(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("train", help="train a GPT (a preset, plus --key=value overrides)", formatter_class=fmt,
                       allow_abbrev=False,
                       description="Train a GPT on a text file. Any TrainConfig field can be set with "
                                   "--key=value, typed by the field; an unknown key is an error.",
                       epilog="presets: " + ", ".join(PRESETS) + "\n\nconfig keys (default):\n" + config_help())
    p.add_argument("--preset", default="baby", help=f"starting configuration: {', '.join(PRESETS)} (default baby)")
    p.add_argument("--data", metavar="PATH", help="text file (or dataset name) to train on; default: the "
                   "preset's dataset, tinyshakespeare, found in $TINYGPT_DATA or downloaded")
    p.add_argument("--out_dir", metavar="DIR", help="where checkpoints and log.jsonl go (default out-PRESET)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out_dir from its latest checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start afresh even if --out_dir holds a checkpoint")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.add_argument("--init_from", metavar="DIR", help="fine-tune a GPT-2 folder (config.json + model.safetensors, "
                   "tokenizer from its encoder.json + vocab.bpe or --tokenizer=DIR|gpt2) with nanoGPT's "
                   "finetune_shakespeare settings for a CPU; --preset is not used")
    p.set_defaults(func=run_train, accepts_overrides=True)

    p = sub.add_parser("sample", help="print a prompt and its sampled continuation, streaming")
    _sample_args(p, out_dir_required=False)
    p.add_argument("--pretrained", metavar="DIR", help="sample from a GPT-2 folder (config.json + model.safetensors) "
                   "instead of a training run's --out_dir")
    p.add_argument("--tokenizer", metavar="PATH", help="with --pretrained: a folder with GPT-2's encoder.json + "
                   "vocab.bpe, a saved tokenizer JSON, or gpt2 (default: the files in DIR)")
    p.set_defaults(func=run_sample)

    p = sub.add_parser("eval", help="train/val loss and perplexity of a checkpoint, or of any text (--data)")
    p.add_argument("--out_dir", metavar="DIR", help="a training run")
    p.add_argument("--pretrained", metavar="DIR", help="a GPT-2 folder instead (with --data)")
    p.add_argument("--data", metavar="PATH", help="score this text file (zero-shot perplexity over sliding "
                   "windows of the model's context) instead of the run's train/val split")
    p.add_argument("--tokenizer", metavar="PATH", help="with --pretrained: as for sample")
    p.add_argument("--stride", type=int, default=None, help="with --data: window distance (default: the context)")
    p.add_argument("--train_data", metavar="PATH", help="the run's training text, if not where training found it")
    p.add_argument("--eval_iters", type=int, default=None, help="batches per split (default: the run's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the eval batches")
    p.set_defaults(func=run_eval)

    p = sub.add_parser("plot", help="plot the loss curves of log.jsonl to a PNG (needs matplotlib)")
    p.add_argument("--out_dir", required=True, metavar="DIR")
    p.add_argument("--output", metavar="PNG", help="image path (default OUT_DIR/loss.png)")
    p.set_defaults(func=run_plot)

    p = sub.add_parser("demo", help="train the baby preset on Tiny Shakespeare, then sample from it",
                       allow_abbrev=False,
                       description="Train the baby preset (nanoGPT's CPU run) and print a sample. Config keys "
                                   "can be overridden as for train, e.g. --max_iters=500 for a quicker demo.")
    p.add_argument("--data", metavar="PATH", help="the text (default: Tiny Shakespeare, downloaded if needed)")
    p.add_argument("--out_dir", default="out-demo", metavar="DIR")
    p.add_argument("--max_new_tokens", type=int, default=500)
    p.add_argument("--sample_seed", type=int, default=1337, help="sampling seed")
    p.set_defaults(func=run_demo, accepts_overrides=True)


def _sample_args(p: argparse.ArgumentParser, out_dir_required: bool) -> None:
    p.add_argument("--out_dir", required=out_dir_required, metavar="DIR")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--max_new_tokens", type=int, default=500)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default 0.8)")
    p.add_argument("--top_k", type=int, default=None)
    p.add_argument("--top_p", type=float, default=None)
    p.add_argument("--seed", type=int, default=None, help="same seed, same text (default: random)")
    p.add_argument("--num_samples", type=int, default=1)


# --------------------------------------------------------------------------------------------- train
def run_train(args: argparse.Namespace) -> int:
    from .train import TrainingStopped, resume_config, train

    overrides = parse_overrides(getattr(args, "overrides", None) or [])
    if args.data is not None:
        overrides["dataset"] = args.data
    if args.resume:
        if args.out_dir is None:
            raise ValueError("--resume needs --out_dir (the run to continue)")
        cfg = resume_config(args.out_dir, overrides)
    elif args.init_from:
        from .pretrained import finetune_config
        if args.out_dir:
            overrides["out_dir"] = args.out_dir
        cfg = finetune_config(args.init_from, overrides)
    else:
        overrides["out_dir"] = args.out_dir or overrides.get("out_dir") or f"out-{args.preset}"
        cfg = make_config(args.preset, overrides)
    try:
        res = train(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    except TrainingStopped as e:
        print(f"tinygpt: {e}", file=sys.stderr)
        return 1
    if res.interrupted:
        return 130
    print(f"done: iter {res.iter_num}, train loss {res.train_loss:.4f}, val loss {res.val_loss:.4f}, "
          f"{res.elapsed_s:.0f} s, {res.tokens_per_s:,.0f} tokens/s; checkpoint in {res.out_dir}")
    return 0


# -------------------------------------------------------------------------------------------- sample
def run_sample(args: argparse.Namespace) -> int:
    from .sample import load_model, stream_text

    if args.max_new_tokens < 0 or args.num_samples < 1:
        raise ValueError(f"--max_new_tokens must be >= 0 and --num_samples >= 1; got {args.max_new_tokens}, "
                         f"{args.num_samples}")
    if (args.out_dir is None) == (args.pretrained is None):
        raise ValueError("sample needs --out_dir (a training run) or --pretrained (a GPT-2 folder), one of them")
    if args.pretrained:
        from .pretrained import sample_pretrained
        sample_pretrained(args.pretrained, args.prompt, args.max_new_tokens, args.temperature, args.top_k,
                          args.top_p, args.seed, args.num_samples, tokenizer=args.tokenizer)
        return 0
    if args.tokenizer:
        raise ValueError("--tokenizer goes with --pretrained (a training run has its own tokenizer)")
    model, tok, _ = load_model(args.out_dir)
    prompt = args.prompt
    rng = np.random.default_rng(args.seed)  # one stream for all samples: the first equals generate(seed=S)
    for k in range(args.num_samples):
        if k:
            print("\n---------------")
        sys.stdout.write(prompt)
        for piece in stream_text(model, tok, prompt, args.max_new_tokens, args.temperature, args.top_k,
                                 args.top_p, rng):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


# ---------------------------------------------------------------------------------------------- eval
def run_eval(args: argparse.Namespace) -> int:
    from .sample import evaluate
    from .windows import perplexity

    if args.data is not None:
        from .score import score_text
        r = score_text(args.data, args.out_dir, args.pretrained, args.tokenizer, stride=args.stride)
        print(f"{r['file']}: loss {r['loss']:.4f}, perplexity {r['perplexity']:.2f} "
              f"({r['tokens']:,} tokens in {r['windows']} windows)")
        return 0
    if args.out_dir is None or args.pretrained is not None:
        raise ValueError("eval needs --out_dir (a run's train/val split), or --data FILE with --out_dir or "
                         "--pretrained")
    losses = evaluate(args.out_dir, args.train_data, args.eval_iters, args.seed)
    print(f"train loss {losses['train']:.4f}, val loss {losses['val']:.4f} "
          f"(perplexity {perplexity(losses['train']):.2f} / {perplexity(losses['val']):.2f})")
    return 0


# ---------------------------------------------------------------------------------------------- plot
def run_plot(args: argparse.Namespace) -> int:
    from .data import atomic_write_bytes
    from .train import read_log

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("plot needs matplotlib: pip install 'tinygpt[plot]'") from None
    records = read_log(args.out_dir)
    if not records:
        raise FileNotFoundError(f"no eval records in {Path(args.out_dir) / 'log.jsonl'}; train first")
    its = [r["iter"] for r in records]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(its, [r["train_loss"] for r in records], marker="o", label="train")
    ax.plot(its, [r["val_loss"] for r in records], marker="o", label="val")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.set_title(str(args.out_dir))
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    out = Path(args.output) if args.output else Path(args.out_dir) / "loss.png"
    atomic_write_bytes(out, buf.getvalue())
    print(f"wrote {out}")
    return 0


# ---------------------------------------------------------------------------------------------- demo
def run_demo(args: argparse.Namespace) -> int:
    from .train import TrainingStopped, train
    from .sample import load_model, stream_text

    overrides = parse_overrides(getattr(args, "overrides", None) or [])
    overrides["out_dir"] = args.out_dir
    if args.data is not None:
        overrides["dataset"] = args.data
    if "max_iters" in overrides and "lr_decay_iters" not in overrides:  # a shorter run decays sooner
        overrides["lr_decay_iters"] = max(1, overrides["max_iters"])
    cfg = make_config("baby", overrides)
    print(f"training the baby preset ({cfg.max_iters} iterations) into {cfg.out_dir} ...", flush=True)
    try:
        res = train(cfg, overwrite=True)
    except TrainingStopped as e:
        print(f"tinygpt: {e}", file=sys.stderr)
        return 1
    if res.interrupted:
        return 130
    print(f"val loss {res.val_loss:.4f} after {res.iter_num} iterations ({res.elapsed_s:.0f} s). A sample:\n")
    model, tok, _ = load_model(cfg.out_dir)
    for piece in stream_text(model, tok, "\n", args.max_new_tokens, temperature=0.8, seed=args.sample_seed):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
