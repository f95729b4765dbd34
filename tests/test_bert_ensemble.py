"""A seed ensemble of BERT spam classifiers (gpt.bert.classify.finetune_bert_ensemble, the shared
gpt.finetune.ensemble): members of one pretrained body differ in head init and data order, and
`tinygpt bert predict` / classify_texts give the mean of their probabilities."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gpt.bert import Bert, BertClassifyConfig, BertConfig, save_bert, special_ids, train_tokenizer
from gpt.bert.classify import BertMember, classify_texts, finetune_bert_ensemble
from gpt.cli import main
from gpt.finetune.ensemble import MANIFEST
from test_bert import _rows as _bert_rows


def _rows() -> list:
    return _bert_rows(30)   # the BERT tests' labelled texts, 30 per class


TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer.\n" * 20


def test_bert_ensemble_averages_its_members(tmp_path, capsys):
    tok = train_tokenizer(TEXT + "".join(r.text + "\n" for r in _rows()), 300)
    save_bert(tmp_path / "pre", Bert(BertConfig(vocab_size=300, block_size=32, n_layer=1, n_head=2, n_embd=16,
                                                pad_id=special_ids(tok).pad), seed=0), tok, {})
    cfg = BertClassifyConfig(init_from=str(tmp_path / "pre"), out_dir=str(tmp_path / "ens"), epochs=1,
                             batch_size=8, lr=3e-3, warmup_steps=0, keep="last")
    res = finetune_bert_ensemble(cfg, [5, 6], rows=_rows(), quiet=True)
    out = tmp_path / "ens"
    assert json.loads((out / MANIFEST).read_text())["kind"] == "bert" and res.test["n"] == 12
    texts = ["WINNER!! claim your FREE prize now", "see you at six"]
    p5 = BertMember(out / "member-5").probabilities(texts)
    p6 = BertMember(out / "member-6").probabilities(texts)
    assert not np.allclose(p5, p6, atol=1e-4)                     # head init and data order differ
    mean = (p5 + p6) / 2
    got = classify_texts(out, texts)
    assert [p for _, p in got] == pytest.approx(mean.max(axis=1).tolist(), abs=1e-12)
    assert [label for label, _ in got] == [["ham", "spam"][k] for k in mean.argmax(axis=1)]
    assert main(["bert", "predict", "--out_dir", str(out)] + texts) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [float(s.split("\t")[1]) for s in lines] == pytest.approx(mean.max(axis=1).tolist(), abs=1e-4)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["confusion"] == res.test["confusion"] and len(metrics["member_val_accuracy"]) == 2


def test_bert_tasks_chooses_the_ensemble_size_by_cv(tmp_path):
    """benchmarks.bert_tasks --cv_members: one CV row per size, the best CV mean chosen (ties: the smaller
    size), then that many members trained on the book split and its test read once."""
    import argparse

    from benchmarks.bert_tasks import choose_ensemble_by_cv
    tok = train_tokenizer(TEXT + "".join(r.text + "\n" for r in _rows()), 300)
    save_bert(tmp_path / "mlm", Bert(BertConfig(vocab_size=300, block_size=32, n_layer=1, n_head=2, n_embd=16,
                                                pad_id=special_ids(tok).pad), seed=0), tok, {})
    args = argparse.Namespace(cv_members="1,2,3", cv_sizes="1,3", ft_lrs="3e-3", ft_epochs="1", ft_dropouts="0.1",
                              ft_batch_size=8, ft_keep="last", cv_folds=2, json=str(tmp_path / "r.json"))
    out = choose_ensemble_by_cv(tmp_path, args, {}, rows=_rows())
    table = out["spam_cv_table"]
    assert [r["size"] for r in table] == [1, 3] and [r["groups"] for r in table] == [6, 2]   # per fold: 3, 1
    assert all(2 * r["cv_n"] == r["groups"] * 48 for r in table)   # 48 pool rows (train + val) in 2 folds
    best = max(r["cv_mean"] for r in table)
    assert out["spam"]["chosen"]["size"] == min(r["size"] for r in table if r["cv_mean"] == best)
    assert out["spam"]["test_n"] == 12 and len(out["spam"]["member_val_accuracy"]) == out["spam"]["chosen"]["size"]
    assert out["spam_cv_members"] and json.loads((tmp_path / "r.json").read_text())["spam"] == out["spam"]
