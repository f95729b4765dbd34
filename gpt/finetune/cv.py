"""K-fold cross-validation of a classification recipe, without the test split.

    cv = cross_validate(ClassifyConfig(init_from="scratch", out_dir="cv-runs", ...), k=5)
    cv.mean_accuracy, cv.epoch_means          # mean over folds: of each fold's kept model, and per epoch

The book's validation split is 149 texts, so one text moves its accuracy by 0.67 points and settings
chosen on it do not carry over to the test split. Here the pool is the book split's TRAIN + VAL rows
(1,194 texts; the 300 test rows are never read), cut into ``k`` folds (:func:`gpt.finetune.spam.kfold`);
each fold trains on the other folds' rows and is scored on its own, so every pool row is scored once per
seed. The recipe's figure is the mean over folds (and seeds) of the fold models' accuracy.

A recipe can be a seed ensemble (:mod:`gpt.finetune.ensemble`): :func:`cross_validate_ensemble` trains M
member seeds on each fold's train rows and scores, for each ensemble size n, the mean probabilities of
disjoint groups of n members (seeds 1-n, n+1-2n, ...) on the fold's val rows, so single models and
ensembles of 3 or 5 are compared on the same folds and the same trained members.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinytensor.errors import ConfigError

from . import spam
from .classify import Classifier, ClassifyConfig, finetune_classifier
from .classify_ensemble import fit_gpt_member
from .ensemble import mean_probabilities, parse_seeds, probability_report, train_ensemble


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


@dataclass
class EnsembleCVResult:
    """``sizes[n]``: ``{"mean_accuracy", "std_accuracy", "correct", "n", "runs": [{"fold", "seeds",
    "accuracy", "correct", "n"}]}`` over every (fold, group of n members); ``members``: one
    ``{"fold", "seed", "accuracy", "train_seconds"}`` per trained member; ``fold_seconds``: each fold's wall."""
    sizes: dict = field(default_factory=dict)
    members: list = field(default_factory=list)
    fold_seconds: list = field(default_factory=list)


def cross_validate_ensemble(cfg, k: int = 4, rows: list | None = None, member_seeds=(1, 2, 3, 4, 5),
                            sizes=(1, 3, 5), fold_seed: int = 0, split_seed: int = spam.BOOK_SEED, say=None,
                            fit=None, load_member=None, kind: str = "gpt", fold_cfg=None) -> EnsembleCVResult:
    """K-fold CV of seed ensembles of ``cfg``: on each fold, :func:`gpt.finetune.ensemble.train_ensemble`
    trains one member per seed in ``member_seeds`` (into ``cfg.out_dir/fold-F``, overwritten); each size n in
    ``sizes`` is then scored on the fold's val rows for the groups ``member_seeds[0:n]``, ``[n:2n]``, ...

    ``fit`` / ``load_member``: one member's training and loading (default: the GPT's,
    :func:`gpt.finetune.classify_ensemble.fit_gpt_member` and ``Classifier.load``).
    ``fold_cfg(f, fold, cfg)``: the config fold ``f`` trains (default ``cfg``), e.g. one whose ``init_from``
    is an LM pretrained on that fold's train rows only, so no fold's val text reaches its model.

    Raises:
        ConfigError: a size that is not in ``[1, len(member_seeds)]``.
    """
    seeds = parse_seeds(member_seeds)
    if not sizes or any(isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(seeds) for n in sizes):
        raise ConfigError(f"ensemble sizes must be ints in [1, {len(seeds)}] (the member count), got {list(sizes)}")
    if rows is None:
        rows = spam.read_spam_tsv(spam.resolve_spam_data(cfg.data))
    folds = spam.kfold(pool_rows(rows, split_seed), k, fold_seed)
    out = EnsembleCVResult(sizes={n: {"runs": []} for n in sizes})
    for f, fold in enumerate(folds):
        run = dataclasses.replace(cfg, out_dir=str(Path(cfg.out_dir) / f"fold-{f}"))
        if fold_cfg is not None:
            run = fold_cfg(f, fold, run)
        res = train_ensemble(run, seeds, fit or fit_gpt_member(overwrite=True), load_member or Classifier.load, kind,
                             splits=fold, overwrite=True)
        out.fold_seconds.append(res.wall_seconds)
        labels = [r.label for r in fold["val"]]
        probs = res.member_probs["val"]
        for s, m, p in zip(seeds, res.members, probs):
            acc = probability_report(labels, p, p.shape[1])["accuracy"]
            out.members.append({"fold": f, "seed": s, "accuracy": acc, "train_seconds": m.train_seconds})
        for n in sizes:
            for g in range(0, len(seeds) - n + 1, n):
                rep = probability_report(labels, mean_probabilities(probs[g:g + n]), probs[0].shape[1])
                out.sizes[n]["runs"].append({"fold": f, "seeds": seeds[g:g + n], "accuracy": rep["accuracy"],
                                             "correct": round(rep["accuracy"] * rep["n"]), "n": rep["n"]})
        if say is not None:
            say(f"  fold {f}: members " + " ".join(f"{100 * m['accuracy']:.1f}" for m in out.members[-len(seeds):])
                + "; " + ", ".join(f"size {n}: " + " ".join(f"{100 * r['accuracy']:.1f}" for r in out.sizes[n]["runs"]
                                                         if r["fold"] == f) for n in sizes)
                + f"; {res.wall_seconds:.0f} s")
    for n, d in out.sizes.items():
        acc = np.array([r["accuracy"] for r in d["runs"]])
        d.update(mean_accuracy=float(acc.mean()), std_accuracy=float(acc.std()),
                 correct=sum(r["correct"] for r in d["runs"]), n=sum(r["n"] for r in d["runs"]))
    return out


__all__ = ["CVResult", "EnsembleCVResult", "cross_validate", "cross_validate_ensemble", "pool_rows"]
