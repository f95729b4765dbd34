"""``tinygpt finetune classify`` (train a spam classifier) and ``tinygpt classify`` (use one).

    tinygpt finetune classify --init_from out-sms --out_dir out-spam --epochs 5 --trainable last
    tinygpt finetune classify --init_from gpt2-dir --out_dir out-spam-lora --lora_rank 8 --lora_alpha 16
    tinygpt finetune classify --init_from scratch --n_layer 2 --n_embd 64 --out_dir out-spam-scratch --lr 1e-3
    tinygpt finetune classify --init_from scratch --out_dir out-spam-ens --seeds 1,2,3   # a seed ensemble
    tinygpt classify --out_dir out-spam "WINNER!! Claim your prize now"     # a run or an ensemble
    cat messages.txt | tinygpt classify --out_dir out-spam          # one text per line
"""
from __future__ import annotations

import argparse

from tokenizer.cli import texts_or_stdin

from ..lora import DEFAULT_TARGETS
from .classify import KEEP, LR_SCHEDULES, Classifier, ClassifyConfig, finetune_classifier
from .classify_ensemble import finetune_classifier_ensemble

_SIZES = ("n_layer", "n_head", "n_embd", "block_size")


def add_kind(kinds: argparse._SubParsersAction) -> None:
    """Register ``classify`` under ``tinygpt finetune``."""
    p = kinds.add_parser("classify", help="fine-tune a GPT as an SMS spam classifier (the book's chapter 6)",
                         description="Fine-tune a GPT to classify SMS messages as ham or spam, on the book's "
                                     "balanced 70/10/20 split. Writes log.jsonl, the best-val checkpoint and "
                                     "metrics.json (test accuracy, confusion matrix, precision/recall) to --out_dir.")
    p.add_argument("--data", metavar="PATH", help="SMSSpamCollection TSV (label<TAB>text); default "
                   "$TINYGPT_DATA/SMSSpamCollection.tsv, the cache, or UCI's zip downloaded")
    p.add_argument("--init_from", required=True, metavar="DIR|scratch",
                   help="a GPT-2 folder (config.json + model.safetensors), a `tinygpt train` run folder, or scratch")
    p.add_argument("--out_dir", required=True, metavar="DIR", help="where the checkpoint, log.jsonl and metrics.json go")
    p.add_argument("--epochs", type=int, default=5, help="passes over the train split (default 5)")
    p.add_argument("--batch_size", type=int, default=8, help="texts per step (default 8)")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default 5e-5; 1e-3 from scratch)")
    p.add_argument("--weight_decay", type=float, default=0.1, help="AdamW weight decay (default 0.1)")
    p.add_argument("--lr_schedule", choices=LR_SCHEDULES, default="constant",
                   help="constant (the book's), or cosine: warmup, then decay to lr/10 at the last step")
    p.add_argument("--warmup_steps", type=int, default=0, help="with --lr_schedule cosine")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout while fine-tuning (default 0)")
    p.add_argument("--trainable", default=None, metavar="last|all|N",
                   help="what trains: the last N blocks + ln_f + head (default last = 1), or all")
    p.add_argument("--max_len", type=int, default=None, help="cut texts to this many tokens (default: block_size)")
    p.add_argument("--pad_to_max", action="store_true", help="pad every batch to --max_len, not to its longest text")
    p.add_argument("--end_token", nargs="?", const=True, default=False, metavar="TOKEN",
                   help="append <|endoftext|> (or TOKEN: a special token, or a one-token text such as a "
                        "newline) to every text, so the classified token is always the same one")
    p.add_argument("--keep", choices=KEEP, default="best",
                   help="the model kept: best (by val accuracy, the book's) or last (the final epoch's)")
    p.add_argument("--seed", type=int, default=123, help="split, shuffling and init seed (the book's 123)")
    p.add_argument("--seeds", default=None, metavar="S1,S2,...",
                   help="train a seed ensemble: one member per init seed (same --seed split) in --out_dir/member-S; "
                        "its val / test figures are those of the members' mean probabilities")
    p.add_argument("--lora_rank", type=int, default=None, help="train LoRA adapters of this rank (and the head) instead")
    p.add_argument("--lora_alpha", type=float, default=16.0, help="LoRA scale: the update is (alpha / rank) B A x (default 16)")
    p.add_argument("--lora_targets", default=",".join(DEFAULT_TARGETS), help="Linear layers to adapt (comma list)")
    p.add_argument("--lora_norms", choices=("none", "weight", "all"), default="none",
                   help="with LoRA, also train the LayerNorm gains (weight) or gains and biases (all)")
    p.add_argument("--tokenizer", metavar="PATH|gpt2", help="for scratch or a GPT-2 folder without tokenizer files")
    for name in _SIZES:
        p.add_argument(f"--{name}", type=int, default=None, help="with --init_from scratch")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out_dir")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_finetune_classify)


def add_toplevel(sub: argparse._SubParsersAction) -> None:
    """Register ``tinygpt classify`` (called by the ``finetune`` parent, :mod:`gpt.finetune.cli`)."""
    p = sub.add_parser("classify", help="label texts with a fine-tuned classifier (prints label and probability)")
    p.add_argument("--out_dir", required=True, metavar="DIR", help="a `tinygpt finetune classify` run (or a --seeds ensemble)")
    p.add_argument("texts", nargs="*", help="texts to classify (default: stdin, one per line)")
    p.set_defaults(func=run_classify)


def run_finetune_classify(args: argparse.Namespace) -> int:
    sizes = {k: getattr(args, k) for k in _SIZES if getattr(args, k) is not None}
    cfg = ClassifyConfig(init_from=args.init_from, out_dir=args.out_dir, data=args.data, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                         lr_schedule=args.lr_schedule, warmup_steps=args.warmup_steps,
                         dropout=args.dropout, trainable=args.trainable, max_len=args.max_len,
                         pad_to_max=args.pad_to_max, seed=args.seed, lora_rank=args.lora_rank,
                         lora_alpha=args.lora_alpha, lora_targets=args.lora_targets, lora_norms=args.lora_norms, sizes=sizes,
                         tokenizer=args.tokenizer, end_token=args.end_token, keep=args.keep)
    if args.seeds is not None:
        res = finetune_classifier_ensemble(cfg, args.seeds, overwrite=args.overwrite, progress=not args.no_progress)
        print(f"ensemble of {len(res.seeds)}: val accuracy {100 * res.val['accuracy']:.2f} %; test accuracy "
              f"{100 * res.test['accuracy']:.2f} %; {res.train_seconds:.0f} s training ({res.wall_seconds:.0f} s wall); "
              f"results in {res.out_dir}")
        return 0
    res = finetune_classifier(cfg, progress=not args.no_progress, overwrite=args.overwrite)
    print(f"val accuracy {100 * res.val['accuracy']:.2f} % (kept epoch {res.best_epoch}); test accuracy "
          f"{100 * res.test['accuracy']:.2f} %; {res.train_seconds:.0f} s training; results in {res.out_dir}")
    return 0


def run_classify(args: argparse.Namespace) -> int:
    texts = texts_or_stdin(args.texts)
    clf = Classifier.load(args.out_dir)
    for text, pred in zip(texts, clf.predict(texts)):
        print(f"{pred.label}\t{pred.probability:.4f}\t{text}")
    return 0
