"""``tinygpt seq2seq``: train the encoder–decoder on a task, or translate with a trained one.

    tinygpt seq2seq train --task reverse --out_dir out-reverse --steps 3000 --d_model 64
    tinygpt seq2seq translate --out_dir out-dates "3rd of November 1999"     # 1999-11-03
    printf '3 Nov 1999\\n04/07/1776\\n' | tinygpt seq2seq translate --out_dir out-dates --beam 4
"""
from __future__ import annotations

import argparse

from tinytensor.errors import UsageError
from tokenizer.cli import texts_or_stdin

from ..seq2seq import TASKS, TrainSettings, load_seq2seq, train, translate

_SIZES = ("d_model", "n_head", "d_ff", "n_layer", "n_dec_layer", "max_len")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("seq2seq", help="train an encoder-decoder on copy / reverse / dates, or translate with it")
    cmds = p.add_subparsers(dest="seq2seq_command", metavar="ACTION", required=True)
    t = cmds.add_parser("train", help="train on a task; ends by printing the held-out exact match")
    t.add_argument("--task", required=True, help=f"one of: {', '.join(TASKS)}")
    t.add_argument("--out_dir", required=True, metavar="DIR", help="where the model, log.jsonl and result.json go")
    t.add_argument("--steps", type=int, default=TrainSettings.steps,
                   help="optimizer steps at most (default %(default)s)")
    t.add_argument("--batch_size", type=int, default=TrainSettings.batch_size,
                   help="pairs per step (default %(default)s)")
    t.add_argument("--lr_factor", type=float, default=TrainSettings.lr_factor, help="the schedule's factor "
                   "(lr = factor d_model^-0.5 min(step^-0.5, step warmup^-1.5); default %(default)s)")
    t.add_argument("--warmup", type=int, default=TrainSettings.warmup, help="warm-up steps (default %(default)s)")
    t.add_argument("--eval_every", type=int, default=TrainSettings.eval_every, help="steps between validation "
                   "evaluations (default %(default)s)")
    t.add_argument("--eval_size", type=int, default=TrainSettings.eval_size,
                   help="validation pairs (default %(default)s)")
    t.add_argument("--test_size", type=int, default=TrainSettings.test_size, help="test pairs (default %(default)s)")
    t.add_argument("--max_minutes", type=float, default=None, help="stop training after this many minutes")
    t.add_argument("--cooldown", type=float, default=TrainSettings.cooldown, help="the run's last fraction (of "
                   "--steps or --max_minutes, whichever ends first) over which the lr falls linearly to 0 "
                   "(default %(default)s: none)")
    t.add_argument("--train_lengths", type=int, nargs=2, default=None, metavar=("LO", "HI"),
                   help="copy / reverse: training string lengths (default: the task's, 1 30)")
    t.add_argument("--seed", type=int, default=0,
                   help="seeds the weights, the training pairs and the evaluation pairs (default 0)")
    t.add_argument("--beam", type=int, default=1, help="beam size for the evaluations (default 1: greedy)")
    for name in _SIZES:
        t.add_argument(f"--{name}", type=int, default=None, help="model size override")
    t.add_argument("--dropout", type=float, default=None, help="model dropout (default 0.1)")
    t.add_argument("--label_smoothing", type=float, default=None, help="default 0")
    t.add_argument("--norm_first", action="store_true", help="pre-LN instead of the paper's post-LN")
    t.add_argument("--quiet", action="store_true", help="print only the final exact match line")
    t.set_defaults(func=run_train)
    r = cmds.add_parser("translate", help="decode texts (arguments, or one per line on standard input)")
    r.add_argument("--out_dir", required=True, metavar="DIR", help="a folder seq2seq train wrote")
    r.add_argument("--beam", type=int, default=1, help="beam size (default 1: greedy)")
    r.add_argument("texts", nargs="*", help="inputs to translate (none: read standard input, one per line)")
    r.set_defaults(func=run_translate)


def run_train(args: argparse.Namespace) -> int:
    if args.task not in TASKS:
        raise UsageError(f"unknown task {args.task!r}; the tasks are: {', '.join(TASKS)}")
    model = {k: getattr(args, k) for k in (*_SIZES, "dropout", "label_smoothing") if getattr(args, k) is not None}
    if args.norm_first:
        model["norm_first"] = True
    train(TrainSettings(task=args.task, out_dir=args.out_dir, steps=args.steps, batch_size=args.batch_size,
                        model=model, lr_factor=args.lr_factor, warmup=args.warmup, seed=args.seed,
                        eval_every=args.eval_every, eval_size=args.eval_size, test_size=args.test_size,
                        beam=args.beam, max_minutes=args.max_minutes, cooldown=args.cooldown,
                        train_lengths=None if args.train_lengths is None else tuple(args.train_lengths),
                        quiet=args.quiet))
    return 0


def run_translate(args: argparse.Namespace) -> int:
    if args.beam < 1:
        raise UsageError(f"--beam must be >= 1, got {args.beam}")
    model, vocab, _ = load_seq2seq(args.out_dir)
    texts = texts_or_stdin(args.texts)
    for text in texts:
        if len(text) > model.config.max_len:
            raise UsageError(f"input {text!r} has {len(text)} characters, more than the model's max_len "
                             f"{model.config.max_len}")
        vocab.encode(text)       # an unknown character: a one-line error before any output
    for line in translate(model, vocab, texts, beam=args.beam):
        print(line)
    return 0
