"""A seed ensemble of GPT spam classifiers (:mod:`gpt.finetune.ensemble` with the GPT fine-tuning).

    res = finetune_classifier_ensemble(ClassifyConfig(init_from="scratch", out_dir="out-ens", ...), [1, 2, 3])
    res.test["accuracy"]                       # the mean probabilities of the 3 members, on the test split
    Classifier.load("out-ens").predict([...])  # averages the members too
"""
from __future__ import annotations

from .classify import Classifier, ClassifyConfig, finetune_classifier
from .ensemble import EnsembleResult, train_ensemble


def fit_gpt_member(overwrite: bool = False, progress: bool = False):
    """``fit(cfg, splits)`` for :func:`gpt.finetune.ensemble.train_ensemble`: one quiet GPT fine-tuning run."""
    def fit(cfg: ClassifyConfig, splits: dict):
        return finetune_classifier(cfg, progress=progress, quiet=True, overwrite=overwrite, splits=splits)
    return fit


def finetune_classifier_ensemble(cfg: ClassifyConfig, seeds, rows: list | None = None, splits: dict | None = None,
                                 overwrite: bool = False, progress: bool = False,
                                 quiet: bool = False) -> EnsembleResult:
    """Train ``cfg`` once per init seed into ``cfg.out_dir/member-S`` (same split: ``cfg.seed``), then
    score the mean of the members' class probabilities on val and test; see
    :func:`gpt.finetune.ensemble.train_ensemble` for the folder and the arguments."""
    return train_ensemble(cfg, seeds, fit_gpt_member(overwrite, progress), Classifier.load, "gpt", rows=rows,
                          splits=splits, overwrite=overwrite, say=None if quiet else (lambda *a: print(*a, flush=True)))


__all__ = ["finetune_classifier_ensemble", "fit_gpt_member"]
