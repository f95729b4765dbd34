"""K-fold cross-validation of a classification recipe, without the test split.

    cv = cross_validate(ClassifyConfig(init_from="scratch", out_dir="cv-runs", ...), k=5)
    cv.mean_accuracy, cv.epoch_means          # mean over folds: of each fold's kept model, and per epoch

The book's validation split is 149 texts, so one text moves its accuracy by 0.67 points and settings
chosen on it do not carry over to the test split. Here the pool is the book split's TRAIN + VAL rows
(1,194 texts; the 300 test rows are never read), cut into ``k`` folds (:func:`gpt.finetune.spam.kfold`);
each fold trains on the other folds' rows and is scored on its own, so every pool row is scored once per
seed. The recipe's figure is the mean over folds (and seeds) of the fold models' accuracy.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import spam
from .classify import ClassifyConfig, finetune_classifier


@dataclass
class CVResult:
    """Per run (fold x seed): ``{"fold", "seed", "n_val", "kept_epoch", "accuracy", "epoch_accuracy"}``;
    ``mean_accuracy``: the mean of the kept models' fold accuracies; ``epoch_means[e]``: the mean
    fold accuracy after epoch ``e + 1``; ``correct`` / ``n``: pooled counts of the kept models."""
    runs: list = field(default_factory=list)
    mean_accuracy: float = 0.0
    std_accuracy: float = 0.0
    epoch_means: list = field(default_factory=list)
    correct: int = 0
    n: int = 0


def pool_rows(rows: list[spam.Example], split_seed: int = spam.BOOK_SEED) -> list[spam.Example]:
    """The book split's train then val rows (its test rows left out)."""
    s = spam.book_split(rows, split_seed)
    return s["train"] + s["val"]


def _fit_gpt(cfg: ClassifyConfig, fold: dict):
    return finetune_classifier(cfg, progress=False, quiet=True, overwrite=True, splits=fold)


def cross_validate(cfg, k: int = 5, rows: list | None = None, fold_seed: int = 0,
                   seeds: tuple | list | None = None, split_seed: int = spam.BOOK_SEED,
                   say=None, fit=None) -> CVResult:
    """Train ``cfg`` on each of ``k`` folds of the pool (:func:`pool_rows`), for each init seed in
    ``seeds`` (default: ``cfg.seed``); fold runs go to ``cfg.out_dir/fold-F-seed-S`` (overwritten).

    ``fit(cfg, fold)`` trains one fold and returns a :class:`gpt.finetune.classify.ClassifyResult`
    (default: :func:`gpt.finetune.classify.finetune_classifier`; a BERT recipe passes
    ``lambda c, fold: finetune_bert_classifier(c, progress=False, quiet=True, splits=fold)``).

    The recipe's ``keep`` rule picks each fold's model on that fold's own val part when ``keep="best"``
    (an optimistic figure); ``keep="last"`` scores the final epoch's model, an unbiased one.
    """
    if rows is None:
        rows = spam.read_spam_tsv(spam.resolve_spam_data(cfg.data))
    folds = spam.kfold(pool_rows(rows, split_seed), k, fold_seed)
    out, curves = CVResult(), []
    for seed in (seeds if seeds is not None else (cfg.seed,)):
        for f, fold in enumerate(folds):
            run = dataclasses.replace(cfg, seed=int(seed), out_dir=str(Path(cfg.out_dir) / f"fold-{f}-seed-{seed}"))
            res = (fit or _fit_gpt)(run, fold)
            n = res.val["n"]
            row = {"fold": f, "seed": int(seed), "n_val": n, "kept_epoch": res.best_epoch,
                   "accuracy": res.val["accuracy"], "correct": round(res.val["accuracy"] * n),
                   "epoch_accuracy": [r["val_accuracy"] for r in res.log], "train_seconds": res.train_seconds}
            out.runs.append(row)
            curves.append(row["epoch_accuracy"])
            if say is not None:
                say(f"  fold {f} seed {seed}: {100 * row['accuracy']:.2f} % ({row['correct']}/{n}), kept epoch "
                    f"{row['kept_epoch']}, per epoch " + " ".join(f"{100 * a:.1f}" for a in row["epoch_accuracy"]))
    acc = np.array([r["accuracy"] for r in out.runs])
    out.mean_accuracy, out.std_accuracy = float(acc.mean()), float(acc.std())
    out.epoch_means = np.mean(np.array(curves), axis=0).tolist()
    out.correct, out.n = sum(r["correct"] for r in out.runs), sum(r["n_val"] for r in out.runs)
    return out


__all__ = ["CVResult", "cross_validate", "pool_rows"]
