"""Spam classification on the book's test split: accuracy, wall time, trainable share, peak RSS.

    python -m benchmarks.finetune_classify --json benchmarks/results/finetune_classify.json

GPT-2's weights cannot be downloaded here, so the runs start from models made on this machine:

* ``scratch``: a GPT from random init with GPT-2's BPE, every parameter trained on the classification task;
* ``pretrained``: a BPE tokenizer learned from the TRAIN split's texts, a small GPT LM-pretrained on those
  texts only (``gpt.train``; never a validation or test text), then fine-tuned (all parameters) and, on
  the same base, with LoRA (adapters + head). The pretraining time is counted in the run's time.

``--preset accuracy`` (issue 15's bar, chosen by VALIDATION accuracy only, the test split read once at the end):

* ``scratch``: a byte-level tokenizer (BPE with no merges: 256 ids, so no text has an unseen token),
  2 blocks x 64, lr 2e-3 with warmup + cosine decay, 8 epochs;
* ``pretrained`` / ``lora``: the LM is pretrained on a mixed corpus, ``--lm_corpus mixed``: Tiny
  Shakespeare, the-verdict, the instruction data's texts and the train split's texts (3 times), with the
  BPE (1,024) learned from the train split's texts; 3 blocks x 128, 600 iterations; then all trainable
  (lr 3e-4, cosine) and LoRA on that base.

``--preset cv`` / ``--preset cv_lm`` (issue 17): recipes ranked by 4-fold cross-validation over the book
split's train + val rows (``benchmarks.finetune_cv``; the test split is not read there), then run here once:

* ``cv`` (``--runs scratch``): GPT-2's BPE with ``<|endoftext|>`` appended to every text, 2 blocks x 64,
  lr 1e-3 cosine, 8 epochs, dropout 0.2, the last epoch's model;
* ``cv_lm`` (``--runs pretrained,lora``): the accuracy preset's LM pretrained 1,500 iterations, a newline
  appended to every text, the last epoch's model.

``--seeds 1,2,3`` makes every run a seed ensemble (:mod:`gpt.finetune.ensemble`): one member per init seed
on the same split, scored by their mean probabilities; the time is that of all members (plus the LM's
pretraining). ``--lm_from WORK`` starts the LM runs from the LM that ``benchmarks.finetune_cv --work WORK``
pretrained with the same settings (its recorded pretraining time is counted) instead of pretraining again.

Peak RSS of ``--trainable last`` vs ``all`` is measured in fresh subprocesses (``os.wait4``'s ``ru_maxrss``)
on a random GPT-2-shaped folder (``save_pretrained``), a few steps each.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._util import machine_info, machine_line, write_json_atomic
from gpt.config import make_config
from gpt.finetune import spam
from gpt.finetune.classify import ClassifyConfig, finetune_classifier
from gpt.finetune.classify_ensemble import finetune_classifier_ensemble
from gpt.train import train
from gpt.data import resolve_text
from tokenizer import BPETokenizer

# the chosen recipe (by validation accuracy; see the module docstring); flags given on the command line win
PRESETS = {"accuracy": dict(
    scratch_tokenizer="byte", scratch_layers=2, scratch_embd=64, scratch_epochs=8, scratch_lr=2e-3,
    scratch_dropout=0.1, lr_schedule="cosine", warmup_steps=20,
    lm_corpus="mixed", lm_sms_repeat=3, n_layer=3, n_head=4, n_embd=128, lm_batch_size=16, lm_iters=600,
    lm_lr=2e-3, lm_dropout=0.0, ft_epochs=6, ft_lr=3e-4,
    lora_rank=4, lora_alpha=16.0, lora_targets="c_attn,c_fc", lora_epochs=12, lora_lr=3e-3)}
# issue 17: chosen by 4-fold cross-validation over the book split's train + val rows, 2 init seeds
# (benchmarks.finetune_cv; test never read there): GPT-2 BPE + <|endoftext|> appended, cosine, last epoch kept
PRESETS["cv"] = dict(
    scratch_tokenizer="gpt2", scratch_layers=2, scratch_embd=64, scratch_epochs=8, scratch_lr=1e-3,
    scratch_dropout=0.2, lr_schedule="cosine", warmup_steps=20, end_token="<|endoftext|>", keep="last")
# issue 17, LM-pretrained and LoRA (benchmarks.finetune_cv's lm_all / lm_lora recipes, same CV): the accuracy
# preset's LM pretrained 1,500 iterations, a newline (the LM's separator between texts) appended, last epoch kept
PRESETS["cv_lm"] = dict(PRESETS["accuracy"], lm_iters=1500, lm_end_token="\n", keep="last")
# session 12's LoRA candidate (issue 15): the scratch winner's tokenizer and body (GPT-2 BPE, 2 x 64) as an LM
# on the train texts alone (x 3), then LoRA r 8 on every Linear + head; chosen by a rule fixed beforehand
# (benchmarks/results/finetune_lora_rule_s12.md) on cross-validation with one LM per fold
# session 15's candidate (issue 15, 17): cv_lm's LM with the SMS texts outside the book's balanced dataset added to
# its corpus (unlabelled; copies of held-out texts removed), twice
PRESETS["cv_lm_unlabelled"] = dict(PRESETS["cv_lm"], lm_unlabelled=2)
PRESETS["cv_lm_gpt2"] = dict(
    lm_corpus="sms_repeat", lm_sms_repeat=3, lm_tokenizer="gpt2", n_layer=2, n_head=4, n_embd=64, block_size=128,
    lm_batch_size=8, lm_iters=500, lm_lr=2e-3, lm_dropout=0.0, lm_end_token="\n", keep="last",
    lr_schedule="cosine", warmup_steps=20, lora_rank=8, lora_alpha=16.0, lora_targets="c_attn,c_proj,c_fc",
    lora_epochs=12, lora_lr=3e-3)

RSS_SNIPPET = """
import sys, numpy as np
from gpt.finetune import spam
from gpt.finetune.classify import ClassifyConfig, finetune_classifier
rows = spam.read_spam_tsv(spam.resolve_spam_data(sys.argv[1]))
rng = np.random.default_rng(0)
part = [rows[i] for i in rng.permutation(len(rows))[:600]]
cfg = ClassifyConfig(init_from=sys.argv[2], out_dir=sys.argv[3], epochs=1, batch_size=16, trainable=sys.argv[4],
                     max_len=64)
finetune_classifier(cfg, progress=False, quiet=True, rows=part)
"""


def _run(label: str, cfg: ClassifyConfig, extra_s: float = 0.0, seeds: str | None = None) -> dict:
    t0 = time.perf_counter()
    if seeds:
        res = finetune_classifier_ensemble(cfg, seeds)
        res.best_epoch, res.log = [m.best_epoch for m in res.members], res.members[0].log
        label = f"{label}, ensemble of {len(res.seeds)} (init seeds {seeds})"
    else:
        res = finetune_classifier(cfg, progress=False)
    wall = time.perf_counter() - t0
    row = {"run": label, "init_from": cfg.init_from, "test_accuracy": res.test["accuracy"],
           "test_correct": round(res.test["accuracy"] * res.test["n"]), "test_n": res.test["n"],
           "test_loss": res.test["loss"], "val_accuracy": res.val["accuracy"], "best_epoch": res.best_epoch,
           "confusion": res.test["confusion"], "precision": res.test["precision"], "recall": res.test["recall"],
           "trainable": res.trainable, "total": res.total, "trainable_pct": 100 * res.trainable / res.total,
           "finetune_wall_s": wall, "pretrain_wall_s": extra_s, "total_wall_s": wall + extra_s,
           "epochs": [{k: r[k] for k in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")}
                      for r in res.log],
           "config": {k: v for k, v in vars(cfg).items() if k not in ("out_dir",)}}
    if seeds:
        row["members"] = [{"seed": s, "val_accuracy": m.val["accuracy"], "train_seconds": m.train_seconds}
                          for s, m in zip(res.seeds, res.members)]
        row["epochs"] = "per member: see each member's log.jsonl"
    print(f"{label}: test {100 * row['test_accuracy']:.2f} % ({row['test_correct']}/{row['test_n']}), "
          f"{row['trainable']:,}/{row['total']:,} trainable ({row['trainable_pct']:.2f} %), "
          f"{row['total_wall_s']:.0f} s in all", flush=True)
    return row


def lm_corpus(train_text: str, args, unlabelled: str = "") -> tuple[str, list[str]]:
    """The LM's text and the names of its parts, in order: for ``mixed``, Tiny Shakespeare, then the-verdict
    and the instruction data's texts if ``$TINYGPT_DATA`` has them; then ``unlabelled`` (the SMS texts outside
    the book's balanced dataset) ``lm_unlabelled`` times; then the train split's texts, once (``sms``) or
    ``lm_sms_repeat`` times (``sms_repeat``, ``mixed``). gpt.train's own val is the text's last 10 %."""
    parts, names = [], []
    if args.lm_corpus == "mixed":
        parts.append(resolve_text("tinyshakespeare").read_text(encoding="utf-8"))
        names.append("tinyshakespeare")
        folder = Path(os.environ.get("TINYGPT_DATA", "."))
        if (folder / "the-verdict.txt").is_file():
            parts.append((folder / "the-verdict.txt").read_text(encoding="utf-8"))
            names.append("the-verdict")
        if (folder / "instruction-data.json").is_file():
            entries = json.loads((folder / "instruction-data.json").read_text(encoding="utf-8"))
            parts.append("\n\n".join("\n".join(x for x in (e["instruction"], e["input"], e["output"]) if x)
                                     for e in entries))
            names.append("instruction-data texts")
    if unlabelled:
        parts.append(unlabelled * args.lm_unlabelled)
        names.append(f"sms texts outside the balanced dataset x {args.lm_unlabelled}")
    repeat = 1 if args.lm_corpus == "sms" else args.lm_sms_repeat
    parts.append(train_text * repeat)
    names.append("sms train texts" if args.lm_corpus == "sms" else f"sms train texts x {repeat}")
    return "\n".join(parts), names


def pretrain(work: Path, data: Path, args, train_rows: list | None = None) -> tuple[Path, dict]:
    """A tokenizer (``args.lm_tokenizer``: ``sms-bpe``, a BPE learned from the train texts, or ``gpt2``) and
    an LM on :func:`lm_corpus`; returns the run folder. ``train_rows``: the texts to use (default the book
    split's train rows; cross-validation passes a fold's train rows).

    ``lm_unlabelled`` > 0 adds the 4,080 messages that the book's balancing leaves out
    (:func:`gpt.finetune.spam.unlabelled_texts`), less every copy of a balanced row's text that is not in
    ``train_rows`` (the val and test texts; in cross-validation the fold's val texts too).

    No validation or test text is ever in the tokenizer's or the LM's text."""
    t0 = time.perf_counter()
    rows = spam.read_spam_tsv(data)
    if train_rows is None:
        train_rows = spam.book_split(rows, args.seed)["train"]
    train_text = "\n".join(r.text for r in train_rows) + "\n"
    unlabelled = ""
    if getattr(args, "lm_unlabelled", 0):
        train_lines = {r.line for r in train_rows}
        held_out = [r for r in spam.balance(rows, args.seed) if r.line not in train_lines]
        unlabelled = "\n".join(spam.unlabelled_texts(rows, held_out, args.seed)) + "\n"
    text, names = lm_corpus(train_text, args, unlabelled)
    work.mkdir(parents=True, exist_ok=True)
    (work / "lm-corpus.txt").write_text(text, encoding="utf-8")
    if getattr(args, "lm_tokenizer", "sms-bpe") == "gpt2":
        tok_path, vocab = "gpt2", 50257
    else:
        tok = BPETokenizer(pattern="gpt2").train(train_text, vocab_size=args.vocab_size)
        tok_path, vocab = tok.save(work / "sms-bpe.json"), tok.vocab_size
    cfg = make_config(None, dict(
        dataset=str(work / "lm-corpus.txt"), tokenizer=str(tok_path), out_dir=str(work / "lm"),
        n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd, block_size=args.block_size,
        batch_size=args.lm_batch_size, dropout=args.lm_dropout, learning_rate=args.lm_lr, max_iters=args.lm_iters,
        lr_decay_iters=args.lm_iters, warmup_iters=min(50, args.lm_iters // 10), min_lr=args.lm_lr / 10,
        eval_interval=max(1, args.lm_iters // 4), eval_iters=5, seed=args.seed))
    res = train(cfg, overwrite=True, progress=False)
    info = {"wall_s": time.perf_counter() - t0, "iters": res.iter_num, "train_loss": res.train_loss,
            "val_loss_on_train_texts_tail": res.val_loss, "tokens_per_s": res.tokens_per_s,
            "vocab_size": vocab, "corpus": names, "corpus_chars": len(text),
            "lm_train_tokens": "the first 90 % of the corpus (the last 10 % is gpt.train's own val)"}
    print(f"pretrain: {info['wall_s']:.0f} s, {res.iter_num} iters, train loss {res.train_loss:.3f}, "
          f"val loss {res.val_loss:.3f}", flush=True)
    return work / "lm", info


def peak_rss(work: Path, data: Path) -> dict:
    """Peak RSS (MB) of one short epoch with ``--trainable last`` and ``all`` on a random GPT-2-shaped model."""
    from gpt import GPT, GPTConfig
    d = work / "gpt2-random"
    GPT(GPTConfig(block_size=128, vocab_size=50257, n_layer=6, n_head=8, n_embd=256), seed=0).save_pretrained(d)
    out = {"model": "random GPT-2 folder n_layer 6, n_embd 256, vocab 50257; 600 random rows, book split "
                     "(105 train texts), batch 16, max_len 64, 1 epoch (6 steps)"}
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    for mode in ("last", "all"):
        p = subprocess.Popen([sys.executable, "-c", RSS_SNIPPET, str(data), str(d), str(work / f"rss-{mode}"), mode],
                             env=env)
        _, status, usage = os.wait4(p.pid, 0)
        if status != 0:
            raise RuntimeError(f"the {mode} RSS run failed with status {status}")
        out[f"peak_rss_mb_{mode}"] = usage.ru_maxrss / 1024      # Linux: kilobytes
    print(f"peak RSS: last {out['peak_rss_mb_last']:.0f} MB, all {out['peak_rss_mb_all']:.0f} MB", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--runs", default="scratch,pretrained,lora,rss")
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--json", default=None)
    ap.add_argument("--preset", choices=sorted(PRESETS), default=None,
                    help="accuracy: the recipe chosen by validation accuracy for issue 15's bar")
    ap.add_argument("--seeds", default=None, help="every run a seed ensemble of these init seeds (1,2,3)")
    ap.add_argument("--lm_from", default=None, help="a benchmarks.finetune_cv --work folder whose LM to start from")
    ap.add_argument("--lr_schedule", default="constant", help="every fine-tune's: constant or cosine")
    ap.add_argument("--warmup_steps", type=int, default=0)
    ap.add_argument("--end_token", default="", help="appended to every text: <|endoftext|>, or a one-token text")
    ap.add_argument("--keep", default="best", help="best (by val) or last epoch's model")
    ap.add_argument("--lm_end_token", default="", help="appended to every text by the LM-pretrained runs (e.g. a newline)")
    # scratch
    ap.add_argument("--scratch_tokenizer", default="gpt2", help="gpt2, or byte (BPE with no merges: 256 ids)")
    ap.add_argument("--scratch_layers", type=int, default=2)
    ap.add_argument("--scratch_embd", type=int, default=64)
    ap.add_argument("--scratch_epochs", type=int, default=6)
    ap.add_argument("--scratch_lr", type=float, default=5e-4)
    ap.add_argument("--scratch_dropout", type=float, default=0.2)
    # pretrained
    ap.add_argument("--vocab_size", type=int, default=1024)
    ap.add_argument("--lm_corpus", choices=("sms", "sms_repeat", "mixed"), default="sms", help="see lm_corpus()")
    ap.add_argument("--lm_tokenizer", choices=("sms-bpe", "gpt2"), default="sms-bpe",
                    help="the LM's tokenizer: a BPE of --vocab_size learned from the train texts, or GPT-2's")
    ap.add_argument("--lm_sms_repeat", type=int, default=3)
    ap.add_argument("--lm_unlabelled", type=int, default=0,
                    help="add the SMS texts outside the balanced dataset this many times (no held-out copies)")
    ap.add_argument("--lm_lr", type=float, default=1e-3)
    ap.add_argument("--lm_dropout", type=float, default=0.1)
    ap.add_argument("--n_layer", type=int, default=3)
    ap.add_argument("--n_head", type=int, default=4)
    ap.add_argument("--n_embd", type=int, default=96)
    ap.add_argument("--block_size", type=int, default=128)
    ap.add_argument("--lm_batch_size", type=int, default=8)
    ap.add_argument("--lm_iters", type=int, default=400)
    ap.add_argument("--ft_epochs", type=int, default=4)
    ap.add_argument("--ft_lr", type=float, default=3e-4)
    ap.add_argument("--lora_rank", type=int, default=2)
    ap.add_argument("--lora_alpha", type=float, default=8.0)
    ap.add_argument("--lora_targets", default="c_attn,c_fc")
    ap.add_argument("--lora_norms", default="none", help="none, weight or all: LayerNorm gains / biases train too")
    ap.add_argument("--lora_epochs", type=int, default=6)
    ap.add_argument("--lora_lr", type=float, default=3e-3)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", choices=sorted(PRESETS), default=None)
    ap.set_defaults(**PRESETS.get(pre.parse_known_args(argv)[0].preset, {}))
    args = ap.parse_args(argv)
    runs = args.runs.split(",")
    data = spam.resolve_spam_data(args.data)
    info = machine_info()
    print(machine_line(info), flush=True)
    out = {"machine": info, "note": "2-core machine shared with other jobs: times may be slowed by contention",
           "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "scratch" in runs:
            scratch_tok = args.scratch_tokenizer
            if scratch_tok == "byte":       # the 256 single bytes, nothing learned: no data involved
                scratch_tok = str(BPETokenizer(pattern="gpt2").train("", vocab_size=256).save(work / "byte.json"))
            cfg = ClassifyConfig(init_from="scratch", out_dir=str(work / "scratch"), data=str(data),
                                 epochs=args.scratch_epochs, batch_size=16, lr=args.scratch_lr, trainable="all",
                                 dropout=args.scratch_dropout, seed=args.seed, tokenizer=scratch_tok,
                                 lr_schedule=args.lr_schedule, warmup_steps=args.warmup_steps,
                                 end_token=args.end_token or False, keep=args.keep,
                                 sizes=dict(n_layer=args.scratch_layers, n_head=4, n_embd=args.scratch_embd,
                                            block_size=128 if args.scratch_tokenizer == "gpt2" else 512))
            out["runs"].append(_run(f"scratch ({args.scratch_tokenizer} tokens, all trainable)", cfg, seeds=args.seeds))
        if "pretrained" in runs or "lora" in runs:
            if args.lm_from:
                from benchmarks.finetune_cv import pretrained_lm
                lm, out["pretrain"] = pretrained_lm(Path(args.lm_from), data, args.lm_iters)
                lm = Path(lm)
            else:
                lm, out["pretrain"] = pretrain(work, data, args)
            pre_s = out["pretrain"]["wall_s"]
            if "pretrained" in runs:
                cfg = ClassifyConfig(init_from=str(lm), out_dir=str(work / "ft"), data=str(data), epochs=args.ft_epochs,
                                     batch_size=16, lr=args.ft_lr, trainable="all", dropout=0.1, seed=args.seed,
                                     lr_schedule=args.lr_schedule, warmup_steps=args.warmup_steps,
                                     end_token=args.lm_end_token or False, keep=args.keep)
                out["runs"].append(_run(f"LM-pretrained ({args.lm_corpus} corpus), all trainable", cfg, pre_s,
                                        args.seeds))
            if "lora" in runs:
                cfg = ClassifyConfig(init_from=str(lm), out_dir=str(work / "lora"), data=str(data),
                                     epochs=args.lora_epochs, batch_size=16, lr=args.lora_lr, dropout=0.1,
                                     seed=args.seed, lora_rank=args.lora_rank, lora_alpha=args.lora_alpha,
                                     lora_targets=args.lora_targets, lora_norms=args.lora_norms,
                                     lr_schedule=args.lr_schedule,
                                     warmup_steps=args.warmup_steps, end_token=args.lm_end_token or False,
                                     keep=args.keep)
                norms = "" if args.lora_norms == "none" else f" + LayerNorm {args.lora_norms}"
                out["runs"].append(_run(f"LM-pretrained + LoRA r={args.lora_rank} ({args.lora_targets}){norms} + head",
                                        cfg, pre_s, args.seeds))
        if "rss" in runs:
            out["rss"] = peak_rss(work, data)
    if args.json:
        write_json_atomic(args.json, out)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
