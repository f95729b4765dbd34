"""The BERT encoder's two figures: masked-token accuracy on Tiny Shakespeare's val split (against the
unigram baseline) and SMS spam test accuracy with the [CLS] head.

    TINYTENSOR_NUM_THREADS=1 python -m benchmarks.bert_tasks --json benchmarks/results/bert_tasks.json

1. **Tokenizer**: the project's byte-level BPE (``--vocab_size`` ids, the four specials last) learned from
   Tiny Shakespeare's TRAIN part (its first 90 %) and the SMS TRAIN split's texts (repeated
   ``--tok_sms_repeat`` times, so SMS spellings get merges too). No val or test text is ever seen.
2. **Pretraining** (``gpt.bert.pretrain``): masked-LM on Tiny Shakespeare's train tokens plus the SMS
   train texts as extra documents (share ``--lines_frac`` of the rows). The figure is the masked-token
   accuracy on Tiny Shakespeare's val split (its last 10 % of tokens), masked once with a fixed seed,
   beside the unigram baseline (always answering the training split's most frequent token).
   ``--sms_unlabelled`` adds the 4,080 SMS messages that the book's balancing leaves out (unlabelled;
   every copy of a val or test text removed: :func:`gpt.finetune.spam.unlabelled_texts`) to the lines.
3. **Fine-tuning** (``gpt.bert.classify``) on the book's balanced split: every ``--ft_lrs`` x
   ``--ft_epochs`` candidate is trained, the one with the best VALIDATION accuracy (ties: val loss) is
   chosen, and only its test figure is reported (the others' test figures are not recorded).
   With ``--cv_folds K`` the candidates are ranked instead by K-fold cross-validation over the book split's
   train + val rows (:func:`gpt.finetune.cv.cross_validate`, ``--cv_seeds`` init seeds; the test split is
   not read), and the chosen one is then trained once on the book split and scored on its test split.
   With ``--cv_members 1,2,3,4,5 --cv_sizes 1,3,5`` as well, seed ensembles are cross-validated
   (:func:`gpt.finetune.cv.cross_validate_ensemble`) and the (setting, size) with the best CV mean wins (ties:
   the smaller size); that many members are trained on the book split and the ensemble's test is read once.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks._util import machine_info, machine_line, write_json_atomic
from gpt.bert import BertClassifyConfig, PretrainConfig, fill, finetune_bert_classifier, pretrain, train_tokenizer
from gpt.bert.classify import BertMember, ensemble_report, finetune_bert_ensemble
from gpt.bert.io import META
from gpt.bert.pretrain import VAL_FRAC
from gpt.data import resolve_text
from gpt.finetune import spam
from gpt.finetune.cv import cross_validate, cross_validate_ensemble
from gpt.finetune.ensemble import parse_seeds

PROMPTS = ["To be or not to [MASK].", "My lord, I [MASK] you.", "Call now to claim your [MASK] prize!"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default="benchmarks/results/bert_tasks.json")
    ap.add_argument("--work", default=None, help="folder for the runs (default: a temporary one)")
    ap.add_argument("--vocab_size", type=int, default=2048)
    ap.add_argument("--tok_sms_repeat", type=int, default=3)
    ap.add_argument("--n_layer", type=int, default=4)
    ap.add_argument("--n_head", type=int, default=4)
    ap.add_argument("--n_embd", type=int, default=128)
    ap.add_argument("--block_size", type=int, default=96)
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--max_iters", type=int, default=2500)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--lines_frac", type=float, default=0.4)
    ap.add_argument("--sms_unlabelled", action="store_true",
                    help="pretrain on the SMS texts outside the balanced dataset too (no copy of a val/test text)")
    ap.add_argument("--eval_interval", type=int, default=500)
    ap.add_argument("--ft_lrs", default="1e-4,3e-4")
    ap.add_argument("--ft_epochs", default="6")
    ap.add_argument("--ft_dropouts", default="0.1")
    ap.add_argument("--ft_batch_size", type=int, default=16)
    ap.add_argument("--ensemble_seeds", default="", help="init seeds of an ensemble of the chosen setting (e.g. 1,2,3,4)")
    ap.add_argument("--reuse", action="store_true", help="keep WORK/mlm from an earlier run (fine-tune only)")
    ap.add_argument("--pretrain_only", action="store_true", help="stop after the pretraining (no fine-tune, no test)")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--ft_keep", default="best", help="best (by val) or last epoch's model")
    ap.add_argument("--cv_folds", type=int, default=0, help="rank candidates by K-fold CV (train + val rows)")
    ap.add_argument("--cv_seeds", default="123", help="init seeds of each CV fold run")
    ap.add_argument("--cv_members", default="", help="seed ensembles: member init seeds trained per fold (e.g. 1,2,3)")
    ap.add_argument("--cv_sizes", default="1,3", help="with --cv_members: the ensemble sizes compared")
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="bert-tasks-"))
    work.mkdir(parents=True, exist_ok=True)
    out = {"machine": machine_info(), "threads": os.environ.get("TINYTENSOR_NUM_THREADS"), "args": vars(args)}
    print(machine_line(out["machine"]), f"threads {out['threads']}", flush=True)

    rows = spam.read_spam_tsv(spam.resolve_spam_data())
    split = spam.book_split(rows)
    sms_train = [r.text for r in split["train"]]
    sms_lines = sms_train + (spam.unlabelled_texts(rows, split["val"] + split["test"]) if args.sms_unlabelled else [])
    if args.reuse and (work / "mlm" / META).is_file():
        prev = json.loads(Path(args.json).read_text(encoding="utf-8")) if Path(args.json).is_file() else {}
        out["mlm"] = {**prev.get("mlm", {}), "reused": str(work / "mlm")}
        out["mlm_args"] = prev.get("mlm_args", prev.get("args"))
        out["previous_spam"] = prev.get("spam")
    else:
        out["mlm"] = run_pretraining(work, sms_train, args, sms_lines)
        out["mlm_args"] = vars(args)
    write_json_atomic(args.json, out)
    if args.pretrain_only:
        return 0
    if args.cv_folds and args.cv_members:
        choose_ensemble_by_cv(work, args, out)
        return 0
    if args.cv_folds:
        return choose_by_cv(work, args, out)
    candidates = []
    grid = [(float(lr), int(ep), float(dr)) for lr in args.ft_lrs.split(",") for ep in args.ft_epochs.split(",")
            for dr in args.ft_dropouts.split(",")]
    for lr, epochs, dropout in grid:
        cfg = BertClassifyConfig(init_from=str(work / "mlm"), epochs=epochs, lr=lr, dropout=dropout,
                                 out_dir=str(work / f"spam-lr{lr:g}-e{epochs}-d{dropout:g}"),
                                 batch_size=args.ft_batch_size)
        t0 = time.perf_counter()
        r = finetune_bert_classifier(cfg, progress=False, quiet=True)   # quiet: no test report shown
        candidates.append((r, cfg, time.perf_counter() - t0))
        print(f"candidate lr {lr:g} epochs {epochs} dropout {dropout:g}: best val {100 * r.val['accuracy']:.2f} % "
              f"(loss {r.val['loss']:.4f}, epoch {r.best_epoch})", flush=True)
    best, cfg, wall = max(candidates, key=lambda c: (c[0].val["accuracy"], -c[0].val["loss"]))
    out["spam"] = {"chosen": {"lr": cfg.lr, "epochs": cfg.epochs, "dropout": cfg.dropout,
                              "best_epoch": best.best_epoch},
                   "val_accuracy": best.val["accuracy"], "test_accuracy": best.test["accuracy"],
                   "test_correct": round(best.test["accuracy"] * best.test["n"]), "test_n": best.test["n"],
                   "test_confusion": best.test["confusion"], "test_precision": best.test["precision"],
                   "test_recall": best.test["recall"], "finetune_wall_s": round(wall, 1),
                   "candidates_val_only": [{"lr": c.lr, "epochs": c.epochs, "dropout": c.dropout,
                                            "val_accuracy": r.val["accuracy"], "val_loss": r.val["loss"],
                                            "best_epoch": r.best_epoch}
                                           for r, c, _ in candidates]}
    write_json_atomic(args.json, out)
    if args.ensemble_seeds:   # the chosen run plus one run per init seed; the mean probabilities decide
        dirs = [cfg.out_dir]
        for s in args.ensemble_seeds.split(","):
            c = dataclasses.replace(cfg, init_seed=int(s), out_dir=f"{cfg.out_dir}-init{s}")
            finetune_bert_classifier(c, progress=False, quiet=True)
            dirs.append(c.out_dir)
        val, test = ensemble_report(dirs, "val"), ensemble_report(dirs, "test")
        out["spam_ensemble"] = {"members": len(dirs), "init_seeds": [cfg.seed] + [int(s) for s in
                                                                                args.ensemble_seeds.split(",")],
                                "val_accuracy": val["accuracy"], "test_accuracy": test["accuracy"],
                                "test_correct": round(test["accuracy"] * test["n"]), "test_n": test["n"],
                                "test_confusion": test["confusion"]}
        write_json_atomic(args.json, out)
        print(f"ensemble of {len(dirs)}: val {100 * val['accuracy']:.2f} %, test {100 * test['accuracy']:.2f} %")
    print(json.dumps({"mlm": {k: out["mlm"][k] for k in ("val_masked_accuracy", "unigram_baseline")},
                      "spam": {k: out["spam"][k] for k in ("chosen", "val_accuracy", "test_accuracy")}}, indent=1))
    return 0


def choose_by_cv(work: Path, args, out: dict) -> int:
    """Rank the fine-tuning grid by K-fold CV (no test text read), then train and test the chosen one once."""
    def fit(c, fold):
        return finetune_bert_classifier(c, progress=False, quiet=True, splits=fold)
    rows = spam.read_spam_tsv(spam.resolve_spam_data())
    ranked = []
    for lr in args.ft_lrs.split(","):
        for ep in args.ft_epochs.split(","):
            for dr in args.ft_dropouts.split(","):
                cfg = BertClassifyConfig(init_from=str(work / "mlm"), epochs=int(ep), lr=float(lr), dropout=float(dr),
                                         out_dir=str(work / f"cv-lr{lr}-e{ep}-d{dr}"), batch_size=args.ft_batch_size,
                                         keep=args.ft_keep)
                t0 = time.perf_counter()
                cv = cross_validate(cfg, args.cv_folds, rows, seeds=[int(x) for x in args.cv_seeds.split(",")],
                                    fit=fit)
                ranked.append((cv.mean_accuracy, cfg, {"lr": cfg.lr, "epochs": cfg.epochs, "dropout": cfg.dropout,
                                                       "keep": cfg.keep, "cv_mean": cv.mean_accuracy,
                                                       "cv_std": cv.std_accuracy, "cv_correct": cv.correct,
                                                       "cv_n": cv.n, "epoch_means": cv.epoch_means,
                                                       "wall_s": round(time.perf_counter() - t0, 1)}))
                print(f"candidate lr {lr} epochs {ep} dropout {dr}: CV {100 * cv.mean_accuracy:.2f} % "
                      f"({cv.correct}/{cv.n}); per epoch " + " ".join(f"{100 * a:.2f}" for a in cv.epoch_means),
                      flush=True)
                out["spam_cv_candidates"] = [r[2] for r in ranked]
                write_json_atomic(args.json, out)
    _, cfg, _ = max(ranked, key=lambda r: r[0])
    cfg = dataclasses.replace(cfg, out_dir=str(work / "spam-chosen"))
    t0 = time.perf_counter()
    best = finetune_bert_classifier(cfg, progress=False, quiet=True)
    out["spam"] = {"chosen_by": f"{args.cv_folds}-fold CV over train + val, seeds {args.cv_seeds}",
                   "chosen": {"lr": cfg.lr, "epochs": cfg.epochs, "dropout": cfg.dropout, "keep": cfg.keep,
                              "kept_epoch": best.best_epoch},
                   "val_accuracy": best.val["accuracy"], "test_accuracy": best.test["accuracy"],
                   "test_correct": round(best.test["accuracy"] * best.test["n"]), "test_n": best.test["n"],
                   "test_confusion": best.test["confusion"], "finetune_wall_s": round(time.perf_counter() - t0, 1)}
    write_json_atomic(args.json, out)
    print(f"chosen lr {cfg.lr:g} epochs {cfg.epochs} dropout {cfg.dropout:g}: test "
          f"{100 * best.test['accuracy']:.2f} % ({out['spam']['test_correct']}/{best.test['n']})", flush=True)
    return 0


def choose_ensemble_by_cv(work: Path, args, out: dict, rows: list | None = None) -> dict:
    """Rank (fine-tuning setting, ensemble size) pairs by K-fold CV of seed ensembles
    (:func:`gpt.finetune.cv.cross_validate_ensemble`; no test text read): the best CV mean accuracy wins,
    ties to the smaller ensemble, then to the earlier setting. The chosen setting's first n member seeds are
    then trained once on the book split and the ensemble's test figure is read once."""
    rows = rows if rows is not None else spam.read_spam_tsv(spam.resolve_spam_data())
    members = parse_seeds(args.cv_members)
    sizes = [int(n) for n in args.cv_sizes.split(",")]
    fit = lambda c, part: finetune_bert_classifier(c, progress=False, quiet=True, splits=part)   # noqa: E731
    table, best = [], None
    for lr in args.ft_lrs.split(","):
        for ep in args.ft_epochs.split(","):
            for dr in args.ft_dropouts.split(","):
                cfg = BertClassifyConfig(init_from=str(work / "mlm"), epochs=int(ep), lr=float(lr), dropout=float(dr),
                                         out_dir=str(work / f"cvens-lr{lr}-e{ep}-d{dr}"),
                                         batch_size=args.ft_batch_size, keep=args.ft_keep)
                t0 = time.perf_counter()
                cv = cross_validate_ensemble(cfg, args.cv_folds, rows, member_seeds=members, sizes=sizes,
                                             fit=fit, load_member=BertMember.load, kind="bert",
                                             say=lambda *a: print(*a, flush=True))
                wall = round(time.perf_counter() - t0, 1)
                for n in sizes:
                    d = cv.sizes[n]
                    table.append({"lr": cfg.lr, "epochs": cfg.epochs, "dropout": cfg.dropout, "keep": cfg.keep,
                                  "size": n, "cv_mean": d["mean_accuracy"], "cv_std": d["std_accuracy"],
                                  "cv_correct": d["correct"], "cv_n": d["n"], "groups": len(d["runs"]),
                                  "setting_wall_s": wall})
                    print(f"lr {lr} epochs {ep} dropout {dr} size {n}: CV {100 * d['mean_accuracy']:.2f} % "
                          f"({d['correct']}/{d['n']})", flush=True)
                    if best is None or d["mean_accuracy"] > best[0]:   # strict: ties keep the smaller / earlier
                        best = (d["mean_accuracy"], n, cfg)
                out["spam_cv_table"], out["spam_cv_members"] = table, cv.members
                write_json_atomic(args.json, out)
    _, n, cfg = best
    cfg = dataclasses.replace(cfg, out_dir=str(work / "spam-chosen-ensemble"))
    t0 = time.perf_counter()
    res = finetune_bert_ensemble(cfg, members[:n], rows=rows, overwrite=True, quiet=True)
    out["spam"] = {"chosen_by": f"{args.cv_folds}-fold CV of seed ensembles over train + val (members "
                                f"{args.cv_members}, sizes {args.cv_sizes}); best CV mean, ties to the smaller size",
                   "chosen": {"lr": cfg.lr, "epochs": cfg.epochs, "dropout": cfg.dropout, "keep": cfg.keep,
                              "size": n, "member_seeds": members[:n]},
                   "member_val_accuracy": [m.val["accuracy"] for m in res.members],
                   "val_accuracy": res.val["accuracy"], "test_accuracy": res.test["accuracy"],
                   "test_correct": round(res.test["accuracy"] * res.test["n"]), "test_n": res.test["n"],
                   "test_confusion": res.test["confusion"], "final_wall_s": round(time.perf_counter() - t0, 1)}
    write_json_atomic(args.json, out)
    print(f"chosen lr {cfg.lr:g} epochs {cfg.epochs} size {n}: test {100 * res.test['accuracy']:.2f} % "
          f"({out['spam']['test_correct']}/{res.test['n']})", flush=True)
    return out


def run_pretraining(work: Path, sms_train: list, args, lines: list | None = None) -> dict:
    """Steps 1 and 2 of the module docstring; the pretraining figures. The tokenizer learns from
    ``sms_train``; the masked LM reads ``lines`` (default ``sms_train``) as its extra documents."""
    lines = sms_train if lines is None else lines
    text_path = resolve_text("tinyshakespeare")
    text = text_path.read_text(encoding="utf-8")
    t0 = time.perf_counter()
    tok = train_tokenizer(text[:int(len(text) * (1 - VAL_FRAC))] + ("\n" + "\n".join(sms_train)) * args.tok_sms_repeat,
                          args.vocab_size)
    tok_path = tok.save(work / "bert-bpe.json")
    tok_s = time.perf_counter() - t0

    pcfg = PretrainConfig(data=str(text_path), out_dir=str(work / "mlm"), lines=lines, lines_frac=args.lines_frac,
                          tokenizer=str(tok_path), n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                          block_size=args.block_size, batch_size=args.batch_size, max_iters=args.max_iters,
                          lr=args.lr, min_lr=args.lr / 10, dropout=args.dropout, eval_interval=args.eval_interval,
                          seed=args.seed)
    t0 = time.perf_counter()
    res = pretrain(pcfg, progress=False)
    pre_s = time.perf_counter() - t0
    return {"val_masked_accuracy": res.accuracy, "unigram_baseline": res.baseline, "val_loss": res.val_loss,
            "n_masked": res.n_masked, "tokenizer_seconds": round(tok_s, 1), "pretrain_wall_s": round(pre_s, 1),
            "log": res.log, "fill": {p: fill(str(work / "mlm"), p, top_k=3) for p in PROMPTS}}


if __name__ == "__main__":
    raise SystemExit(main())
