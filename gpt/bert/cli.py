"""``tinygpt bert pretrain | fill | classify | predict``: the BERT-style encoder's commands.

    tinygpt bert pretrain --data input.txt --out_dir out-bert --max_iters 2000
    tinygpt bert fill --out_dir out-bert --top_k 5 "To be or not to [MASK]"
    tinygpt bert classify --init_from out-bert --out_dir out-bert-spam      # SMS spam, head on [CLS]
    tinygpt bert classify --init_from out-bert --out_dir out-bert-ens --seeds 1,2,3 # a seed ensemble
    tinygpt bert predict --out_dir out-bert-spam "WINNER!! Claim your prize now"  # a run or an ensemble
"""
from __future__ import annotations

import argparse

from tinytensor.fileio import read_text
from tokenizer.cli import texts_or_stdin

from .classify import BertClassifyConfig, classify_texts, finetune_bert_classifier, finetune_bert_ensemble
from .pretrain import PretrainConfig, fill, pretrain

_MODEL_FLAGS = (("vocab_size", 2048), ("n_layer", 4), ("n_head", 4), ("n_embd", 128), ("block_size", 64),
                ("d_ff", 0))
_TRAIN_FLAGS = (("max_iters", int, 2000), ("batch_size", int, 32), ("lr", float, 1e-3), ("min_lr", float, 1e-4),
                ("warmup_iters", int, 100), ("weight_decay", float, 0.01), ("dropout", float, 0.1),
                ("eval_interval", int, 500), ("eval_windows", int, 0), ("seed", int, 1337))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bert", help="a BERT-style masked-LM encoder: pretrain, fill [MASK], classify SMS spam",
                       description="Pretrain a bidirectional encoder by filling in masked tokens (BERT's 80/10/10 "
                                   "rule), ask it to fill [MASK]s, or fine-tune it on SMS spam with a head on [CLS].")
    kinds = p.add_subparsers(dest="bert_command", metavar="COMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    pre = kinds.add_parser("pretrain", help="masked-LM pretraining on a text file (ends with the val accuracy)")
    pre.add_argument("--data", required=True, metavar="FILE", help="UTF-8 text; its last 10 %% of tokens is the val split")
    pre.add_argument("--out_dir", required=True, metavar="DIR", help="where log.jsonl and the model go")
    pre.add_argument("--lines", metavar="FILE", help="more training texts, one document per line (never in val)")
    pre.add_argument("--tokenizer", metavar="PATH", help="a saved tokenizer with [PAD] [CLS] [SEP] [MASK] "
                     "(default: learn a BPE of --vocab_size ids from the training text)")
    for name, default in _MODEL_FLAGS:
        pre.add_argument(f"--{name}", type=int, default=default, help=f"(default {default})")
    for name, typ, default in _TRAIN_FLAGS:
        pre.add_argument(f"--{name}", type=typ, default=default, help=f"(default {default})")
    pre.add_argument("--no_progress", action="store_true", help="no progress bar")
    pre.set_defaults(func=run_pretrain)

    f = kinds.add_parser("fill", help="print the top-k fillers of each [MASK] in a prompt, with probabilities")
    f.add_argument("--out_dir", default="out-bert", metavar="DIR", help="a pretraining run (default out-bert)")
    f.add_argument("--top_k", type=int, default=5, help="fillers per [MASK] (default 5)")
    f.add_argument("prompt", help='text with one or more [MASK], e.g. "To be or not to [MASK]"')
    f.set_defaults(func=run_fill)

    c = kinds.add_parser("classify", help="fine-tune a pretrained run on SMS spam (the book's split), head on [CLS]")
    c.add_argument("--init_from", required=True, metavar="DIR", help="a `tinygpt bert pretrain` run")
    c.add_argument("--out_dir", required=True, metavar="DIR", help="where log.jsonl, the model and metrics.json go")
    c.add_argument("--data", metavar="PATH", help="SMSSpamCollection TSV (default $TINYGPT_DATA/SMSSpamCollection.tsv)")
    for name, typ, default in (("epochs", int, 6), ("batch_size", int, 16), ("lr", float, 1e-4),
                               ("weight_decay", float, 0.01), ("warmup_steps", int, 30), ("dropout", float, 0.1),
                               ("max_len", int, None), ("seed", int, 123)):
        c.add_argument(f"--{name}", type=typ, default=default, help=f"(default {default})")
    c.add_argument("--lr_schedule", choices=("constant", "cosine"), default="cosine", help="(default cosine)")
    c.add_argument("--keep", choices=("best", "last"), default="best", help="the best-val epoch's model or the last")
    c.add_argument("--seeds", default=None, metavar="S1,S2,...",
                   help="a seed ensemble: one run per init seed (head init, data order) in --out_dir/member-S")
    c.add_argument("--overwrite", action="store_true", help="with --seeds: replace an ensemble in --out_dir")
    c.set_defaults(func=run_classify)

    pr = kinds.add_parser("predict", help="label texts with a fine-tuned run (label, probability, text)")
    pr.add_argument("--out_dir", required=True, metavar="DIR", help="a `tinygpt bert classify` run (or a --seeds ensemble)")
    pr.add_argument("texts", nargs="*", help="texts (default: stdin, one per line)")
    pr.set_defaults(func=run_predict)


def run_pretrain(args: argparse.Namespace) -> int:
    lines = [s for s in read_text(args.lines).splitlines() if s.strip()] if args.lines else []
    cfg = PretrainConfig(data=args.data, out_dir=args.out_dir, lines=lines, tokenizer=args.tokenizer,
                         **{k: getattr(args, k) for k, _ in _MODEL_FLAGS},
                         **{k: getattr(args, k) for k, _, _ in _TRAIN_FLAGS})
    pretrain(cfg, progress=not args.no_progress)
    return 0


def run_fill(args: argparse.Namespace) -> int:
    for k, fillers in enumerate(fill(args.out_dir, args.prompt, args.top_k), start=1):
        print(f"[MASK] {k}:")
        for text, p in fillers:
            print(f"  {p:7.2%}  {text!r}")
    return 0


def run_classify(args: argparse.Namespace) -> int:
    cfg = BertClassifyConfig(init_from=args.init_from, out_dir=args.out_dir, data=args.data, epochs=args.epochs,
                             batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                             lr_schedule=args.lr_schedule, warmup_steps=args.warmup_steps, dropout=args.dropout,
                             max_len=args.max_len, seed=args.seed, keep=args.keep)
    if args.seeds is not None:
        res = finetune_bert_ensemble(cfg, args.seeds, overwrite=args.overwrite)
        print(f"ensemble of {len(res.seeds)}: val accuracy {100 * res.val['accuracy']:.2f} %; test accuracy "
              f"{100 * res.test['accuracy']:.2f} %; {res.train_seconds:.0f} s training ({res.wall_seconds:.0f} s wall); "
              f"results in {res.out_dir}")
        return 0
    res = finetune_bert_classifier(cfg)
    print(f"best val accuracy {100 * res.val['accuracy']:.2f} % (epoch {res.best_epoch}); test accuracy "
          f"{100 * res.test['accuracy']:.2f} %; {res.train_seconds:.0f} s training; results in {res.out_dir}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    texts = texts_or_stdin(args.texts)
    for text, (label, p) in zip(texts, classify_texts(args.out_dir, texts)):
        print(f"{label}\t{p:.4f}\t{text}")
    return 0
