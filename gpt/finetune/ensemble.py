"""Seed ensembles of classifiers: N runs of one recipe that differ only in their init seed, read as one.

    res = train_ensemble(cfg, [1, 2, 3], fit, load_member)   # out_dir/member-1, member-2, member-3 + ensemble.json
    clf = load_ensemble(cfg.out_dir, Classifier.load)        # Classifier.load(out_dir) does this by itself
    clf.predict(["WINNER!! Claim your prize now"])           # the mean of the members' class probabilities

The ensemble's class probabilities are the plain mean of its members' (each a softmax of that member's
logits): ``p(k | x) = (1 / N) Σ_m p_m(k | x)``, and its prediction their argmax. Every member trains on
the same split (``cfg.seed`` splits; ``init_seed`` = the member's seed sets the init, dropout and
shuffling), and the members' own test figures are never computed: the test split is scored once, by the
ensemble.

This module knows no model: ``fit(cfg, splits)`` trains one member (a GPT or a BERT fine-tuning run) and
``load_member(dir)`` loads one as an object with ``labels`` and ``probabilities(texts) -> [N, K]``
(:class:`gpt.finetune.classify.Classifier`, :class:`gpt.bert.classify.BertMember`). The GPT wiring is
:func:`gpt.finetune.classify_ensemble.finetune_classifier_ensemble`, BERT's
:func:`gpt.bert.classify.finetune_bert_ensemble`.

An ensemble's folder::

    member-S/       one run per seed S (a checkpoint folder of its kind, with its own log and metrics)
    ensemble.json   {"format": "tinygpt-ensemble", "version": 1, "kind", "members": ["member-1", ...],
                     "seeds", "labels", "averaging": "mean-probability"}: written last, so a folder
                     with it holds every member
    metrics.json    the ensemble's val (and test) loss, accuracy, confusion matrix, precision / recall / F1,
                    each member's val accuracy, the training seconds of all members and the wall time
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tinytensor.errors import ConfigError, FileFormatError
from tinytensor.fileio import atomic_write_bytes, read_json_object

from . import spam
from .report import confusion_report, format_report, to_predictions

MANIFEST = "ensemble.json"
METRICS_FILE = "metrics.json"
FORMAT, VERSION = "tinygpt-ensemble", 1
AVERAGING = "mean-probability"


# ==================================================================================== the math
def mean_probabilities(probs) -> np.ndarray:
    """The members' mean class probabilities: ``probs`` is ``[M, N, K]`` (or a list of M ``[N, K]``),
    each row a distribution; returns ``[N, K]`` float64.

    Raises:
        ConfigError: no member, members of different shapes, or a row that is not a distribution.
    """
    if len(probs) == 0:
        raise ConfigError("an ensemble needs at least one member's probabilities, got none")
    shapes = {np.shape(p) for p in probs}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ConfigError(f"every member's probabilities must be one [N, K] shape, got {sorted(shapes)}")
    p = np.asarray(probs, dtype=np.float64)                              # [M, N, K]
    if p.size and (p.min() < 0 or np.abs(p.sum(axis=-1) - 1).max() > 1e-6):
        raise ConfigError("member probabilities must be non-negative rows summing to 1 (a softmax)")
    return p.mean(axis=0)


def probability_report(labels, probs: np.ndarray, num_classes: int) -> dict:
    """:func:`gpt.finetune.report.confusion_report` of ``argmax probs``, plus ``loss`` (the mean
    ``-log p(true class)``, floored at 1e-12) and ``predictions``."""
    labels = np.asarray(labels, dtype=np.int64)
    pred = np.argmax(probs, axis=-1)
    out = confusion_report(labels, pred, num_classes)
    out["loss"] = float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-12)))) if len(labels) \
        else 0.0
    out["predictions"] = pred.tolist()
    return out


def parse_seeds(text) -> list[int]:
    """``"1,2,3"`` (or a list of ints) -> ``[1, 2, 3]``.

    Raises:
        ConfigError: empty, not integers, or a seed twice (two identical members).
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        seeds = [int(str(s).strip()) for s in items if str(s).strip()]
    except ValueError:
        seeds = []
    if not seeds or len(seeds) != len(items) or any(isinstance(s, bool) for s in items):
        raise ConfigError(f"seeds must be a comma list of integers such as 1,2,3, got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must differ (equal seeds train equal members), got {seeds}")
    return seeds


# ================================================================================= the folder
def is_ensemble(out_dir: str | os.PathLike) -> bool:
    """Whether ``out_dir`` holds an ensemble (its ``ensemble.json``)."""
    return (Path(out_dir) / MANIFEST).is_file()


def write_manifest(out_dir: str | os.PathLike, members: list[str], seeds: list[int], kind: str, labels,
                   extra: dict | None = None) -> Path:
    """Write ``out_dir/ensemble.json`` naming the member folders (relative to ``out_dir``); returns its path."""
    doc = {"format": FORMAT, "version": VERSION, "kind": kind, "members": list(members),
           "seeds": [int(s) for s in seeds], "labels": list(labels), "averaging": AVERAGING, **(extra or {})}
    return atomic_write_bytes(Path(out_dir) / MANIFEST, (json.dumps(doc, indent=1) + "\n").encode())


def read_manifest(out_dir: str | os.PathLike) -> dict:
    """``out_dir/ensemble.json``, checked: the format and version, a non-empty list of member folders
    inside ``out_dir`` that exist, the averaging rule.

    Raises:
        FileNotFoundError: no manifest there.
        FileFormatError (a ValueError): anything else wrong, naming the manifest's path.
    """
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no ensemble manifest; train one with --seeds 1,2,3")
    doc = read_json_object(path)
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise FileFormatError(f"{path} is not a {FORMAT} version {VERSION} manifest (format "
                              f"{doc.get('format')!r}, version {doc.get('version')!r})")
    members = doc.get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, str) and m for m in members):
        raise FileFormatError(f"{path}: 'members' must be a non-empty list of folder names, got {members!r}")
    for m in members:
        if Path(m).is_absolute() or ".." in Path(m).parts:
            raise FileFormatError(f"{path}: member {m!r} must be a folder inside {Path(out_dir)}")
        if not (Path(out_dir) / m).is_dir():
            raise FileFormatError(f"{path}: member folder {m!r} is missing from {Path(out_dir)}")
    if doc.get("averaging") != AVERAGING:
        raise FileFormatError(f"{path}: averaging must be {AVERAGING!r}, got {doc.get('averaging')!r}")
    return doc


class EnsembleClassifier:
    """Members read as one classifier: ``probabilities`` is their mean, ``predict`` its argmax.

    Has :class:`gpt.finetune.classify.Classifier`'s reading API (``probabilities``, ``predict``, calling
    it on one text), so ``tinygpt classify`` and ``Classifier.load`` serve both."""

    def __init__(self, members: list, labels, paths: list | None = None):
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        for m in members:
            if list(m.labels) != list(labels):
                raise ConfigError(f"every member must have the labels {list(labels)}, one has {list(m.labels)}")
        self.members, self.labels, self.paths = list(members), list(labels), list(paths or [])

    def probabilities(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """``(1 / N) Σ_m p_m`` : ``[len(texts), K]``."""
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts; for one text call the classifier: clf(text)")
        return mean_probabilities([m.probabilities(list(texts), batch_size) for m in self.members])

    def predict(self, texts: list[str], batch_size: int = 32) -> list:
        return to_predictions(self.probabilities(texts, batch_size), self.labels)

    def __call__(self, text: str):
        return self.predict([text])[0]


def load_ensemble(out_dir: str | os.PathLike, load_member: Callable) -> EnsembleClassifier:
    """The ensemble in ``out_dir``, each member loaded by ``load_member(path)``.

    Raises:
        FileFormatError: a bad manifest, or members whose labels differ from the manifest's.
    """
    doc = read_manifest(out_dir)
    paths = [Path(out_dir) / m for m in doc["members"]]
    try:
        return EnsembleClassifier([load_member(p) for p in paths], doc.get("labels") or spam.LABELS, paths)
    except ConfigError as e:
        raise FileFormatError(f"{Path(out_dir) / MANIFEST}: {e}") from None


# =================================================================================== training
@dataclass
class EnsembleResult:
    """What :func:`train_ensemble` made: the members' results, the ensemble's reports (``test`` None
    without a test split), each member's probabilities per split (``[N, K]`` each), and the times."""
    out_dir: Path
    seeds: list
    members: list
    val: dict
    test: dict | None
    member_probs: dict = field(default_factory=dict)
    train_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def trainable(self) -> int:        # per member (every member has the same count)
        return self.members[0].trainable

    @property
    def total(self) -> int:
        return self.members[0].total


def train_ensemble(cfg, seeds, fit: Callable, load_member: Callable, kind: str, rows: list | None = None,
                   splits: dict | None = None, overwrite: bool = False, say=None) -> EnsembleResult:
    """Train one member per seed (``dataclasses.replace(cfg, init_seed=s, out_dir=out_dir/member-s)``) with
    ``fit(member_cfg, {"train", "val"})``, score the mean of their probabilities on val (and test, if the
    split has one), and write the manifest and metrics.json.

    Args:
        cfg: a :class:`gpt.finetune.classify.ClassifyConfig` or :class:`gpt.bert.classify.BertClassifyConfig`.
        seeds: the members' init seeds (:func:`parse_seeds`).
        fit: trains one member on the splits it is given; returns a ``ClassifyResult``.
        load_member: loads a trained member (see the module docstring).
        kind: ``gpt`` or ``bert``, recorded in the manifest.
        rows, splits: as :func:`gpt.finetune.spam.resolve_splits` (default: the book's split of ``cfg.data``).
        overwrite: replace an ensemble already in ``cfg.out_dir`` (else that is a ConfigError).
        say: a print function for progress lines (None: silent).
    """
    t0 = time.perf_counter()
    seeds = parse_seeds(seeds)
    out_dir = Path(cfg.out_dir)
    if is_ensemble(out_dir) and not overwrite:
        raise ConfigError(f"{out_dir} already holds an ensemble; pass another --out_dir, or --overwrite to replace it")
    splits = spam.resolve_splits(splits, rows, cfg.data, cfg.seed)
    scored = [k for k in ("val", "test") if k in splits]
    texts = {k: [r.text for r in splits[k]] for k in scored}
    members, probs, labels = [], {k: [] for k in scored}, None
    for s in seeds:
        mcfg = dataclasses.replace(cfg, init_seed=s, out_dir=str(out_dir / f"member-{s}"))
        res = fit(mcfg, {"train": splits["train"], "val": splits["val"]})   # no member reads the test split
        member = load_member(mcfg.out_dir)
        labels = list(member.labels)
        for k in scored:
            probs[k].append(member.probabilities(texts[k]))
        members.append(res)
        if say is not None:
            say(f"member seed {s}: val {100 * res.val['accuracy']:.2f} %, {res.train_seconds:.0f} s training")
    reports = {k: probability_report([r.label for r in splits[k]], mean_probabilities(probs[k]), len(labels))
               for k in scored}
    write_manifest(out_dir, [f"member-{s}" for s in seeds], seeds, kind, labels,
                   {"config": {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("out_dir", "init_seed")}})
    result = EnsembleResult(out_dir, seeds, members, reports["val"], reports.get("test"), probs,
                            sum(m.train_seconds for m in members), time.perf_counter() - t0)
    metrics = {"labels": labels, "seeds": seeds, "averaging": AVERAGING, "trainable_per_member": result.trainable,
               "total_per_member": result.total, "train_seconds": round(result.train_seconds, 3),
               "wall_seconds": round(result.wall_seconds, 3),
               "member_val_accuracy": [m.val["accuracy"] for m in members],
               **{k: {kk: vv for kk, vv in r.items() if kk != "predictions"} for k, r in reports.items()}}
    atomic_write_bytes(out_dir / METRICS_FILE, (json.dumps(metrics, indent=1) + "\n").encode())
    if say is not None:
        say(format_report(reports["val"], labels, title=f"val, ensemble of {len(seeds)}"))
        if result.test is not None:
            say(format_report(result.test, labels, title=f"test, ensemble of {len(seeds)}"))
    return result


__all__ = ["MANIFEST", "EnsembleClassifier", "EnsembleResult", "mean_probabilities", "probability_report",
           "parse_seeds", "is_ensemble", "write_manifest", "read_manifest", "load_ensemble", "train_ensemble"]
