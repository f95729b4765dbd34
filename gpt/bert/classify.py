"""SMS spam fine-tuning of a pretrained BERT with a head on ``[CLS]``.

    cfg = BertClassifyConfig(init_from="out-bert", out_dir="out-bert-spam")
    res = finetune_bert_classifier(cfg)       # log.jsonl, the best-val model, metrics.json
    res.test["accuracy"]

It reuses the GPT classification fine-tuning's pieces (:mod:`gpt.finetune`): the book's balanced
70 / 10 / 20 split (:func:`gpt.finetune.spam.book_split`), its batches, its ``evaluate`` (loss,
accuracy, confusion matrix, precision / recall / F1), its report text and its learning-rate
schedule. What differs is the model: each text is framed ``[CLS] text [SEP]`` (cut to ``max_len``),
padded with ``[PAD]``, and read at ``[CLS]`` through BERT's pooler (:class:`BertClassifier`); every
parameter trains. The best epoch by validation accuracy (ties: validation loss) is kept, and the test
split is scored once, by that model.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import tinytensor as tt
from tinytensor import optim
from tinytensor.errors import ConfigError
from tinytensor.fileio import append_jsonl, atomic_write_bytes
from tinytensor.ops.checks import check_int_fields

from ..data import encode
from ..finetune import spam
from ..finetune import ensemble
from ..finetune.classify import KEEP, ClassifyResult, evaluate, step_lr_at
from ..finetune.report import confusion_report, format_report, softmax_rows
from .io import load_bert, read_meta, save_bert
from .masking import frame, special_ids
from .model import BertClassifier

LOG_FILE, METRICS_FILE = "log.jsonl", "metrics.json"


@dataclass
class BertClassifyConfig:
    """One fine-tuning run (``tinygpt bert classify`` sets these from its flags).

    Attributes:
        init_from: a ``tinygpt bert pretrain`` run folder.
        out_dir: where the log, the best model and metrics.json go.
        data: the SMS spam TSV (None: ``$TINYGPT_DATA``, the cache, or the download).
        epochs, batch_size, lr, weight_decay, lr_schedule, warmup_steps, grad_clip: AdamW over every parameter.
        dropout: while fine-tuning (replaces the pretraining config's).
        max_len: ``[CLS] text [SEP]`` cut to this many tokens (None: the model's block_size).
        seed: the split (the book's 123), and shuffling and the head's init unless ``init_seed`` is given.
        init_seed: shuffling and the head's init (None: ``seed``); several runs that differ only here
            make an ensemble (:func:`ensemble_report`) on the same split.
        keep: ``best`` (the best-val epoch's model) or ``last`` (the final epoch's).
    """
    init_from: str
    out_dir: str
    data: str | None = None
    epochs: int = 6
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.01
    lr_schedule: str = "cosine"
    warmup_steps: int = 30
    grad_clip: float = 1.0
    dropout: float = 0.1
    max_len: int | None = None
    seed: int = spam.BOOK_SEED
    init_seed: int | None = None
    eval_batch_size: int = 64
    keep: str = "best"

    def __post_init__(self):
        check_int_fields(self, ("epochs", "batch_size", "eval_batch_size"))
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        if self.keep not in KEEP:
            raise ConfigError(f"keep must be best or last, got {self.keep!r}")


def encode_rows(rows: list, tok, max_len: int) -> spam.Encoded:
    """Each text as ``[CLS] ids [SEP]`` cut to ``max_len``, with its label and the number cut."""
    sp = special_ids(tok)
    raw = [encode(tok, r.text) for r in rows]
    ids = [frame(r, sp, max_len) for r in raw]
    return spam.Encoded(ids, np.array([r.label for r in rows], dtype=np.int64), max_len,
                        sum(len(r) > max_len - 2 for r in raw))


def finetune_bert_classifier(cfg: BertClassifyConfig, progress: bool = True, quiet: bool = False,
                             rows: list | None = None, splits: dict | None = None) -> ClassifyResult:
    """Fine-tune; keep the best-val (or, ``keep="last"``, the final) model in ``cfg.out_dir``; return its
    val and test reports.

    ``rows``: ``spam.Example`` rows to split instead of reading ``cfg.data`` (tests use small slices).
    ``splits``: ``{"train", "val"[, "test"]}`` rows instead of the book's split (a cross-validation fold,
    :func:`gpt.finetune.spam.kfold`; without ``"test"`` no test figure is computed: ``result.test`` None).
    """
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    if read_meta(cfg.init_from).get("task") != "mlm":
        raise ConfigError(f"{cfg.init_from} is already a classifier; start from a `tinygpt bert pretrain` run")
    bert, tok, _ = load_bert(cfg.init_from, dropout=cfg.dropout)
    init_seed = cfg.seed if cfg.init_seed is None else cfg.init_seed
    model = BertClassifier(bert, len(spam.LABELS), seed=init_seed)
    max_len = min(cfg.max_len or bert.config.block_size, bert.config.block_size)
    pad = special_ids(tok).pad
    splits = spam.resolve_splits(splits, rows, cfg.data, cfg.seed)
    data = {k: encode_rows(v, tok, max_len) for k, v in splits.items()}
    say(f"data: {', '.join(f'{len(d)} {k} ({d.truncated} cut to {max_len})' for k, d in data.items())} texts")

    params = list(model.parameters())
    opt = optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                       {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}], lr=cfg.lr)
    steps_per_epoch = len(data["train"]) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"the training split has {len(data['train'])} texts, fewer than batch_size={cfg.batch_size}")
    total = cfg.epochs * steps_per_epoch
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / LOG_FILE, b"")
    state = {"labels": list(spam.LABELS), "max_len": max_len, "base": str(cfg.init_from),
             "classify_config": dataclasses.asdict(cfg)}
    shuffle = np.random.default_rng([init_seed, 1])
    best = {"epoch": 0, "accuracy": -1.0, "loss": math.inf}
    log, step, train_s = [], 0, 0.0
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        losses = []
        for idx, lengths, labels in spam.iter_batches(data["train"], cfg.batch_size, pad, shuffle, drop_last=True):
            for g in opt.param_groups:
                g["lr"] = step_lr_at(step, cfg.lr, total, cfg.lr_schedule, cfg.warmup_steps)
            _, loss = model(idx, lengths, labels)
            loss.backward()
            optim.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            model.zero_grad()
            losses.append(loss.item())
            step += 1
        train_s += time.perf_counter() - t0
        val = evaluate(model, data["val"], pad, cfg.eval_batch_size)
        rec = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val["loss"],
               "val_accuracy": val["accuracy"], "train_seconds": round(train_s, 3)}
        append_jsonl(out_dir / LOG_FILE, rec)
        log.append(rec)
        improved = cfg.keep == "last" or (val["accuracy"], -val["loss"]) > (best["accuracy"], -best["loss"])
        print(f"epoch {epoch}: train loss {rec['train_loss']:.4f}, val loss {val['loss']:.4f} acc "
              f"{100 * val['accuracy']:.2f} %" + (" (best)" if improved and cfg.keep == "best" else ""),
              file=sys.stderr if quiet else sys.stdout, flush=True)
        if improved:
            best = {"epoch": epoch, "accuracy": val["accuracy"], "loss": val["loss"]}
            save_bert(out_dir, model, tok, {**state, "best": best})

    best_model, _, _ = load_bert(out_dir)
    reports = {k: evaluate(best_model, data[k], pad, cfg.eval_batch_size) for k in ("val", "test") if k in data}
    metrics = {"labels": list(spam.LABELS), "best_epoch": best["epoch"], "train_seconds": round(train_s, 3),
               "max_len": max_len, **{k: {kk: vv for kk, vv in r.items() if kk != "predictions"}
                                      for k, r in reports.items()}}
    atomic_write_bytes(out_dir / METRICS_FILE, (json.dumps(metrics, indent=1) + "\n").encode())
    if "test" in reports:
        say(format_report(reports["test"], title=f"test (kept: epoch {best['epoch']})"))
    n = model.num_parameters()
    return ClassifyResult(out_dir, best["epoch"], reports["val"], reports.get("test"), n, n, train_s, log)


class BertMember:
    """A fine-tuned run ready for texts: ``labels`` and ``probabilities(texts) -> [N, K]`` (what an ensemble
    member needs, :mod:`gpt.finetune.ensemble`)."""

    def __init__(self, out_dir):
        self.model, self.tokenizer, doc = load_bert(out_dir)
        if doc.get("task") != "classify":
            raise ConfigError(f"{out_dir} is a pretraining run; fine-tune it with `tinygpt bert classify` first")
        self.labels, self.max_len, self.pad = list(doc["labels"]), int(doc["max_len"]), special_ids(self.tokenizer).pad

    @classmethod
    def load(cls, out_dir) -> "BertMember":
        return cls(out_dir)

    def probabilities(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        enc = encode_rows([spam.Example(t, 0) for t in texts], self.tokenizer, self.max_len)
        return _probabilities(self.model, enc, self.pad, batch_size)


def classify_texts(out_dir, texts: list[str]) -> list[tuple[str, float]]:
    """``(label, probability)`` for each text, by a fine-tuned run in ``out_dir``, or by the mean
    probabilities of a seed ensemble's members (:func:`finetune_bert_ensemble`)."""
    clf = ensemble.load_ensemble(out_dir, BertMember.load) if ensemble.is_ensemble(out_dir) else BertMember(out_dir)
    probs = clf.probabilities(list(texts))                          # [N, K]
    return [(clf.labels[int(np.argmax(p))], float(np.max(p))) for p in probs]


def finetune_bert_ensemble(cfg: BertClassifyConfig, seeds, rows: list | None = None, splits: dict | None = None,
                           overwrite: bool = False, quiet: bool = False) -> ensemble.EnsembleResult:
    """One fine-tuning run of the same pretrained BERT per init seed (head init and data order; the split
    is ``cfg.seed``'s) into ``cfg.out_dir/member-S``; val and test scored by the mean of their probabilities
    (:func:`gpt.finetune.ensemble.train_ensemble`)."""
    def fit(c, part):
        return finetune_bert_classifier(c, progress=False, quiet=True, splits=part)
    return ensemble.train_ensemble(cfg, seeds, fit, BertMember.load, "bert", rows=rows, splits=splits,
                                   overwrite=overwrite, say=None if quiet else (lambda *a: print(*a, flush=True)))


def ensemble_report(out_dirs: list, split: str = "test", data: str | None = None, rows: list | None = None,
                    seed: int = spam.BOOK_SEED) -> dict:
    """The report (:func:`gpt.finetune.report.confusion_report`) of the mean class probabilities of several
    fine-tuned runs on one split of the book's split with ``seed``; each run frames texts to its own max_len."""
    rows = rows if rows is not None else spam.read_spam_tsv(spam.resolve_spam_data(data))
    part = spam.book_split(rows, seed)[split]
    probs = ensemble.mean_probabilities([BertMember(d).probabilities([r.text for r in part]) for d in out_dirs])
    return confusion_report(np.array([r.label for r in part]), np.argmax(probs, axis=-1), len(spam.LABELS))


def _probabilities(model: BertClassifier, enc: spam.Encoded, pad: int, batch_size: int = 64) -> np.ndarray:
    rows = [np.zeros((0, model.num_classes))]
    with tt.no_grad():
        for idx, lengths, _ in spam.iter_batches(enc, batch_size, pad):
            logits, _ = model(idx, lengths)
            rows.append(softmax_rows(logits.data))
    return np.concatenate(rows)                                       # [N, K] softmax


__all__ = ["BertClassifyConfig", "BertMember", "finetune_bert_classifier", "finetune_bert_ensemble", "encode_rows",
           "classify_texts", "ensemble_report"]
