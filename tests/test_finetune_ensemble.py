"""Seed ensembles of classifiers (gpt/finetune/ensemble.py): the averaging math, a 2-member ensemble that
round-trips through its folder and gives the mean of its members' probabilities (Python API and CLI), bad
manifests, and the ensemble cross-validation harness."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from gpt.checkpoint import load_checkpoint
from gpt.cli import main
from gpt.finetune import spam
from gpt.finetune.classify import Classifier, ClassifyConfig
from gpt.finetune.classify_ensemble import finetune_classifier_ensemble
from gpt.finetune.cv import cross_validate_ensemble, pool_rows
from gpt.finetune.ensemble import (MANIFEST, EnsembleClassifier, load_ensemble, mean_probabilities, parse_seeds,
                                   probability_report, read_manifest, write_manifest)
from tinytensor.errors import ConfigError, FileFormatError
from tokenizer import BPETokenizer

HAM = ["see you at six", "ok lar joking", "are we still on for dinner", "call me when you get home"]
SPAM = ["WINNER claim your 1000 prize now call 09061701461", "FREE entry txt WIN to 87121"]


def _rows(n_ham=40, n_spam=30, seed=0) -> list[spam.Example]:
    rng = np.random.default_rng(seed)
    return ([spam.Example(f"{HAM[rng.integers(len(HAM))]} {HAM[rng.integers(len(HAM))]}", 0, i) for i in range(n_ham)]
            + [spam.Example(f"{SPAM[rng.integers(len(SPAM))]} {HAM[rng.integers(len(HAM))]}", 1, n_ham + i)
               for i in range(n_spam)])


def _cfg(tmp_path, out="ens", **kw) -> ClassifyConfig:
    tok = BPETokenizer(pattern="gpt2").train("", vocab_size=257, special_tokens=["<|endoftext|>"])
    path = tok.save(tmp_path / "tok.json")
    return ClassifyConfig(**{"init_from": "scratch", "out_dir": str(tmp_path / out), "epochs": 1, "batch_size": 8,
                             "lr": 3e-3, "trainable": "all", "tokenizer": str(path), "end_token": True, "keep": "last",
                             "sizes": dict(n_layer=1, n_head=2, n_embd=16, block_size=64), **kw})


# ------------------------------------------------------------------------------------------- the math
def test_mean_probabilities_and_their_report():
    a = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    b = np.array([[0.5, 0.5], [0.6, 0.4], [0.2, 0.8]])
    m = mean_probabilities([a, b])
    np.testing.assert_allclose(m, [[0.7, 0.3], [0.4, 0.6], [0.4, 0.6]], atol=1e-15)
    rep = probability_report([0, 1, 0], m, 2)
    assert rep["predictions"] == [0, 1, 1] and rep["confusion"] == [[1, 1], [0, 1]]
    assert rep["accuracy"] == pytest.approx(2 / 3)
    assert rep["loss"] == pytest.approx(-(np.log(0.7) + np.log(0.6) + np.log(0.4)) / 3)
    # the mean of members can be right where each member alone is wrong on some texts
    assert [int(np.argmax(r)) for r in a] == [0, 1, 0] and [int(np.argmax(r)) for r in b] == [0, 0, 1]
    np.testing.assert_array_equal(mean_probabilities(np.stack([a])), a)            # one member: itself
    with pytest.raises(ConfigError, match="at least one member"):
        mean_probabilities([])
    with pytest.raises(ConfigError, match=r"one \[N, K\] shape, got \[\(2, 2\), \(3, 2\)\]"):
        mean_probabilities([a, b[:2]])
    with pytest.raises(ConfigError, match="summing to 1"):
        mean_probabilities([a, b * 2])


def test_parse_seeds():
    assert parse_seeds("1,2, 3") == [1, 2, 3] and parse_seeds([4, 5]) == [4, 5]
    for bad in ("", "1,x", "1,,2", [True]):
        with pytest.raises(ConfigError, match="comma list of integers"):
            parse_seeds(bad)
    with pytest.raises(ConfigError, match=r"seeds must differ.*\[1, 1\]"):
        parse_seeds("1,1")


# --------------------------------------------------------------------------------- a trained ensemble
def test_two_member_ensemble_round_trips_and_averages(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    res = finetune_classifier_ensemble(cfg, "1,2", rows=_rows(), quiet=True)
    out = tmp_path / "ens"
    doc = json.loads((out / MANIFEST).read_text())
    assert doc["members"] == ["member-1", "member-2"] and doc["seeds"] == [1, 2] and doc["kind"] == "gpt"
    for s in (1, 2):       # every member on the same (book) split, the seed only in init / shuffling
        member_cfg = load_checkpoint(out / f"member-{s}").state["classify_config"]
        assert member_cfg["seed"] == 123 and member_cfg["init_seed"] == s
    m1, m2 = Classifier.load(out / "member-1"), Classifier.load(out / "member-2")
    ens = Classifier.load(out)
    assert isinstance(ens, EnsembleClassifier) and ens.labels == ["ham", "spam"]
    texts = ["WINNER claim your prize", "see you at six", "FREE entry ok lar"]
    p1, p2, pe = m1.probabilities(texts), m2.probabilities(texts), ens.probabilities(texts)
    assert not np.allclose(p1, p2, atol=1e-4)                       # different seeds, different members
    np.testing.assert_allclose(pe, (p1 + p2) / 2, atol=1e-12)
    pred = ens("see you at six")
    assert pred.probabilities["spam"] == pytest.approx(pe[1, 1]) and pred.label == ens.labels[int(np.argmax(pe[1]))]

    # the reported figures are those of the mean probabilities on the book split's val / test rows
    s = spam.book_split(_rows())
    for k in ("val", "test"):
        want = probability_report([r.label for r in s[k]], ens.probabilities([r.text for r in s[k]]), 2)
        got = getattr(res, k)
        assert got["confusion"] == want["confusion"] and got["loss"] == pytest.approx(want["loss"], abs=1e-9)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["confusion"] == res.test["confusion"] and metrics["seeds"] == [1, 2]
    assert "test" not in json.loads((out / "member-1" / "metrics.json").read_text())   # no member reads test
    assert res.trainable == res.total == res.members[0].total

    assert main(["classify", "--out_dir", str(out), "see you at six"]) == 0     # the CLI reads it the same way
    label, prob, _ = capsys.readouterr().out.strip().split("\t")
    assert label == pred.label and float(prob) == pytest.approx(pred.probability, abs=1e-4)
    with pytest.raises(ConfigError, match="already holds an ensemble"):
        finetune_classifier_ensemble(cfg, "1,2", rows=_rows(), quiet=True)


def test_cli_seeds_trains_an_ensemble(tmp_path, capsys):
    data = tmp_path / "sms.tsv"
    data.write_text("".join(f"{spam.LABELS[r.label]}\t{r.text}\n" for r in _rows()), encoding="utf-8")
    cfg = _cfg(tmp_path)
    assert main(["finetune", "classify", "--data", str(data), "--init_from", "scratch", "--tokenizer", cfg.tokenizer,
                 "--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--block_size", "64", "--epochs", "1",
                 "--batch_size", "8", "--lr", "3e-3", "--trainable", "all", "--end_token", "--seeds", "3,4",
                 "--out_dir", str(tmp_path / "cli-ens"), "--no_progress"]) == 0
    printed = capsys.readouterr().out
    assert "test, ensemble of 2: accuracy" in printed and "precision" in printed and "ensemble of 2: val accuracy" in printed
    assert read_manifest(tmp_path / "cli-ens")["seeds"] == [3, 4]
    assert main(["finetune", "classify", "--data", str(data), "--init_from", "scratch", "--tokenizer", cfg.tokenizer,
                 "--out_dir", str(tmp_path / "bad"), "--seeds", "1,1"]) == 2
    assert "seeds must differ" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ bad manifests
def test_bad_manifest_raises_value_error_naming_the_path(tmp_path):
    d = tmp_path / "ens"
    (d / "member-1").mkdir(parents=True)
    path = str(d / MANIFEST)
    cases = [("{not json", "is not valid JSON"),
             (json.dumps({"format": "other", "version": 1}), "is not a tinygpt-ensemble version 1 manifest"),
             (json.dumps({"format": "tinygpt-ensemble", "version": 1, "members": []}), "non-empty list"),
             (json.dumps({"format": "tinygpt-ensemble", "version": 1, "members": ["member-2"],
                          "averaging": "mean-probability"}), "member folder 'member-2' is missing"),
             (json.dumps({"format": "tinygpt-ensemble", "version": 1, "members": ["../x"],
                          "averaging": "mean-probability"}), "must be a folder inside"),
             (json.dumps({"format": "tinygpt-ensemble", "version": 1, "members": ["member-1"],
                          "averaging": "vote"}), "averaging must be 'mean-probability'")]
    for text, message in cases:
        (d / MANIFEST).write_text(text)
        with pytest.raises(ValueError, match=message) as e:
            Classifier.load(d)
        assert path in str(e.value) and isinstance(e.value, FileFormatError)
    with pytest.raises(FileNotFoundError, match="no ensemble manifest"):
        read_manifest(tmp_path)

    class Member:        # members whose labels disagree with the manifest's
        labels = ["a", "b"]
    write_manifest(d, ["member-1"], [1], "gpt", ["ham", "spam"])
    with pytest.raises(ValueError, match=f"{path}.*labels"):
        load_ensemble(d, lambda p: Member())


# ------------------------------------------------------------------------------- cross-validation
def test_cross_validate_ensemble_scores_sizes_on_the_same_members(tmp_path):
    cfg = _cfg(tmp_path, out="cv")
    rows = _rows()
    cv = cross_validate_ensemble(cfg, k=2, rows=rows, member_seeds=[1, 2], sizes=[1, 2])
    pool = pool_rows(rows)                               # 60 balanced rows: 42 train + 6 val in the pool
    assert [(r["fold"], r["seeds"]) for r in cv.sizes[1]["runs"]] == [(0, [1]), (0, [2]), (1, [1]), (1, [2])]
    assert [(r["fold"], r["seeds"]) for r in cv.sizes[2]["runs"]] == [(0, [1, 2]), (1, [1, 2])]
    assert cv.sizes[1]["n"] == 2 * len(pool) and cv.sizes[2]["n"] == len(pool)
    assert [m["accuracy"] for m in cv.members] == [r["accuracy"] for r in cv.sizes[1]["runs"]]
    assert cv.sizes[2]["mean_accuracy"] == pytest.approx(np.mean([r["accuracy"] for r in cv.sizes[2]["runs"]]))
    assert (tmp_path / "cv" / "fold-1" / MANIFEST).is_file() and len(cv.fold_seconds) == 2
    with pytest.raises(ConfigError, match=r"ensemble sizes must be ints in \[1, 2\]"):
        cross_validate_ensemble(cfg, k=2, rows=rows, member_seeds=[1, 2], sizes=[3])


def test_cross_validate_ensemble_fold_cfg_sees_each_fold_and_sets_its_config(tmp_path):
    """``fold_cfg`` (per-fold LMs in benchmarks.finetune_cv --fold_lms) gets each fold's own train rows, none
    of that fold's val rows, and the config it returns is the one the fold's members train."""
    cfg = _cfg(tmp_path, out="cv")
    rows = _rows()
    seen = []

    def fold_cfg(f, fold, run):
        seen.append((f, {r.line for r in fold["train"]}, {r.line for r in fold["val"]}, run.out_dir))
        return dataclasses.replace(run, out_dir=run.out_dir + "-own")

    cv = cross_validate_ensemble(cfg, k=2, rows=rows, member_seeds=[1], sizes=[1], fold_cfg=fold_cfg)
    assert [s[0] for s in seen] == [0, 1] and len(cv.members) == 2
    pool = {r.line for r in pool_rows(rows)}
    for f, train, val, out_dir in seen:
        assert train and val and not (train & val) and train | val == pool
        assert out_dir == str(tmp_path / "cv" / f"fold-{f}")
    for f in (0, 1):                                   # the members trained the returned config
        assert (tmp_path / "cv" / f"fold-{f}-own" / MANIFEST).is_file()
        assert not (tmp_path / "cv" / f"fold-{f}").exists()


def test_fold_lms_pretrains_each_fold_on_its_train_rows_once_and_records_its_figures(tmp_path, monkeypatch):
    """benchmarks.finetune_cv's ``FoldLMs``: one LM per fold from that fold's train rows, the preset's
    arguments, its info kept in ``infos``; a second pass reuses the LMs on disk (the same infos, no pretraining)."""
    from benchmarks import finetune_classify as fc
    from benchmarks import finetune_cv
    calls = []

    def fake_pretrain(work, data, args, train_rows=None):
        calls.append((work.name, args.lm_iters, args.block_size, len(train_rows)))
        (work / "lm").mkdir(parents=True)
        return work / "lm", {"iters": args.lm_iters, "wall_s": 1.5, "rows": len(train_rows)}

    monkeypatch.setattr(fc, "pretrain", fake_pretrain)
    monkeypatch.setattr(spam, "resolve_spam_data", lambda data: data)
    fold = {"train": _rows()[:30], "val": _rows()[30:40]}
    for _ in range(2):
        lms = finetune_cv.FoldLMs(tmp_path / "lms", "spam.tsv", "cv_lm")
        run = lms(1, fold, _cfg(tmp_path))
        assert run.init_from == str(tmp_path / "lms" / "fold-lm-1" / "lm")
        assert lms.infos == {1: {"iters": 1500, "wall_s": 1.5, "rows": 30}}
    assert calls == [("fold-lm-1", 1500, 128, 30)]
    assert finetune_cv.RECIPES["lm_lora_foldlm"] == {**finetune_cv.RECIPES["lm_lora"], "lm": "cv_lm"}


def test_pretrain_reads_the_unlabelled_texts_but_no_copy_of_a_held_out_text(tmp_path, monkeypatch):
    """benchmarks.finetune_classify.pretrain with ``lm_unlabelled``: the LM's corpus holds the texts that
    balancing left out (twice), and none equal to a balanced row outside ``train_rows`` (val, test, a fold's val)."""
    import argparse
    from benchmarks import finetune_classify as fc
    rows = [spam.Example(f"ham message {i}", 0, i + 1) for i in range(30)]
    rows += [spam.Example(f"spam offer {i}", 1, 31 + i) for i in range(10)]
    balanced = spam.balance(rows)
    held = [r for r in balanced if r.label == 0][5]
    rows.append(spam.Example(held.text.upper(), 0, 41))         # a copy of a balanced ham text, left out by balance
    tsv = tmp_path / "spam.tsv"
    tsv.write_text("".join(f"{spam.LABELS[r.label]}\t{r.text}\n" for r in rows), encoding="utf-8")
    corpora = []
    monkeypatch.setattr(fc, "train", lambda cfg, **kw: corpora.append(open(cfg.dataset, encoding="utf-8").read())
                        or argparse.Namespace(iter_num=1, train_loss=1.0, val_loss=1.0, tokens_per_s=1.0))
    args = argparse.Namespace(lm_corpus="sms", lm_sms_repeat=1, lm_unlabelled=2, seed=123, vocab_size=270,
                              n_layer=1, n_head=2, n_embd=16, block_size=32, lm_batch_size=2, lm_dropout=0.0,
                              lm_lr=1e-3, lm_iters=1)
    train_rows = [r for r in spam.read_spam_tsv(tsv) if r.line in {b.line for b in balanced} and r.text != held.text]
    _, info = fc.pretrain(tmp_path / "w", tsv, args, train_rows=train_rows)
    text = corpora[0]
    left_out = [r.text for r in rows[:40] if r.line not in {b.line for b in balanced}]
    assert len(left_out) == 20 and all(text.count(t + "\n") == 2 for t in left_out)
    assert held.text.upper() not in text and held.text not in text
    assert all(r.text in text for r in train_rows)
    assert info["corpus"] == ["sms texts outside the balanced dataset x 2", "sms train texts"]
