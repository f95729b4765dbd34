"""A classifier's figures from its labels and predictions (or class probabilities), and their text.

    rep = confusion_report(labels, pred, 2)          # accuracy, confusion matrix, precision / recall / F1
    print(format_report({**rep, "loss": 0.1}))
    probs = softmax_rows(logits)                     # [N, K] float64, each row sums to 1
    to_predictions(probs, ("ham", "spam"))           # [Prediction(label, probability, probabilities), ...]

Shared by the GPT classifier (:mod:`gpt.finetune.classify`), its seed ensembles (:mod:`gpt.finetune.ensemble`)
and the BERT classifier (:mod:`gpt.bert.classify`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import spam


@dataclass(frozen=True)
class Prediction:
    """A text's predicted label, its probability, and every class's probability."""
    label: str
    probability: float
    probabilities: dict


def softmax_rows(logits) -> np.ndarray:
    """``exp(z - max z) / Σ exp(z - max z)`` over the last axis, in float64: ``[N, K]`` class probabilities."""
    z = np.asarray(logits, dtype=np.float64)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


def to_predictions(probs: np.ndarray, labels) -> list[Prediction]:
    """One :class:`Prediction` per row of ``probs [N, K]``: the argmax class, its probability, all of them."""
    out = []
    for row in np.asarray(probs):
        k = int(np.argmax(row))
        out.append(Prediction(labels[k], float(row[k]), {name: float(v) for name, v in zip(labels, row)}))
    return out


def confusion_report(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> dict:
    """Accuracy, confusion matrix ``C[true, predicted]``, and per class ``precision_k = C[k,k] / Σ_i C[i,k]``,
    ``recall_k = C[k,k] / Σ_j C[k,j]``, ``F1_k = 2 P R / (P + R)`` (0 where a denominator is 0)."""
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(conf, (np.asarray(labels), np.asarray(pred)), 1)
    tp = np.diag(conf).astype(np.float64)
    precision = np.divide(tp, conf.sum(axis=0), out=np.zeros_like(tp), where=conf.sum(axis=0) > 0)
    recall = np.divide(tp, conf.sum(axis=1), out=np.zeros_like(tp), where=conf.sum(axis=1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    return {"accuracy": float(tp.sum() / max(1, conf.sum())), "n": int(conf.sum()), "confusion": conf.tolist(),
            "precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist()}


def format_report(rep: dict, labels=spam.LABELS, title: str = "test") -> str:
    """The accuracy, the confusion matrix and per-class precision / recall / F1 as a few lines of text."""
    w = max(len(s) for s in labels) + 2
    lines = [f"{title}: accuracy {100 * rep['accuracy']:.2f} % ({round(rep['accuracy'] * rep['n'])}/{rep['n']}), "
             f"loss {rep['loss']:.4f}",
             " " * (w + 7) + "predicted",
             "true".ljust(w + 7) + "".join(s.rjust(w) for s in labels)]
    for k, row in enumerate(rep["confusion"]):
        lines.append(f"  {labels[k]:<{w + 5}}" + "".join(str(v).rjust(w) for v in row))
    lines.append("class".ljust(w + 7) + "precision  recall      F1")
    for k, name in enumerate(labels):
        lines.append(f"  {name:<{w + 5}}{rep['precision'][k]:9.4f}{rep['recall'][k]:8.4f}{rep['f1'][k]:8.4f}")
    return "\n".join(lines)


__all__ = ["Prediction", "softmax_rows", "to_predictions", "confusion_report", "format_report"]
