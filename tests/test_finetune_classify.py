"""Classification fine-tuning (gpt/finetune): the spam split, padding and the last real token, frozen
layers, a short run that learns, the two CLI commands, the GPT-2 and LoRA paths, and bad input."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import tinytensor as tt
from gpt import GPT, GPTConfig
from gpt.checkpoint import load_checkpoint
from gpt.cli import main
from gpt.finetune import spam
from gpt.finetune.classify import (Classifier, ClassifyConfig, GPTClassifier, build_classifier,
                                   confusion_report, end_token_id, finetune_classifier, load_classifier,
                                   set_trainable, step_lr_at)
from gpt.finetune.cv import cross_validate, pool_rows
from gpt.lora import load_adapters
from tinytensor.errors import ConfigError, FileFormatError
from tokenizer import BPETokenizer

CFG = GPTConfig(block_size=32, vocab_size=50, n_layer=3, n_head=2, n_embd=16)

HAM = ["see you at six", "ok lar joking", "are we still on for dinner", "call me when you get home",
       "i will be late sorry", "what time is the game", "love you mum", "sure thing", "on my way now"]
SPAM = ["WINNER claim your 1000 prize now call 09061701461", "FREE entry txt WIN to 87121",
        "URGENT you have won a cash award call 08712300220", "Txt STOP to end, 150p/msg claim now",
        "Congratulations! FREE ringtone reply WIN to 85069"]


def _synthetic_rows(n_ham=60, n_spam=40, seed=0) -> list[spam.Example]:
    """ham: two ordinary phrases; spam: a spam phrase and an ordinary one (so words alone overlap)."""
    rng = np.random.default_rng(seed)
    rows = [spam.Example(f"{HAM[rng.integers(len(HAM))]} {HAM[rng.integers(len(HAM))]}", 0) for _ in range(n_ham)]
    rows += [spam.Example(f"{SPAM[rng.integers(len(SPAM))]} {HAM[rng.integers(len(HAM))]}", 1) for _ in range(n_spam)]
    return rows


def _write_tsv(path, rows) -> str:
    path.write_text("".join(f"{spam.LABELS[r.label]}\t{r.text}\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture
def byte_tok(tmp_path):
    """A byte-level tokenizer (256 ids, no merges): any text, no download."""
    tok = BPETokenizer(pattern="gpt2").train("", vocab_size=256)
    return str(tok.save(tmp_path / "bytes.json"))


# ---------------------------------------------------------------------------------------------- data
def test_book_split_on_the_real_file(spam_tsv):
    rows = spam.read_spam_tsv(spam_tsv)
    assert len(rows) == 5574 and sum(r.label for r in rows) == 747
    s = spam.book_split(rows)
    assert [len(s[k]) for k in ("train", "val", "test")] == [1045, 149, 300]
    everything = s["train"] + s["val"] + s["test"]
    assert sum(r.label for r in everything) == 747 and len({r.line for r in everything}) == 1494
    again = spam.book_split(rows)
    assert [r.line for r in again["test"]] == [r.line for r in s["test"]]        # seeded
    assert [r.line for r in spam.book_split(rows, seed=1)["test"]] != [r.line for r in s["test"]]


def test_unlabelled_texts_are_the_rows_balancing_leaves_out_minus_held_out_copies():
    rows = [spam.Example(f"ham {i}", 0, i + 1) for i in range(8)] + [spam.Example(f"spam {i}", 1, 9 + i)
                                                                     for i in range(3)]
    rows.append(spam.Example("ham 0", 0, 12))          # a repeated message: equal value, another row
    kept = {r.line for r in spam.balance(rows)}
    left = [r.text for r in rows if r.line not in kept]
    assert len(left) == 6 and spam.unlabelled_texts(rows, []) == left               # file order
    held = [r for r in rows if r.line in kept and r.label == 0][:1]
    copy = spam.Example("  HAM   " + held[0].text.split()[1], 0, 99)           # case and spaces differ
    out = spam.unlabelled_texts(rows + [copy], held)
    assert held[0].text not in out and copy.text not in out
    assert len(out) == len(left) - left.count(held[0].text)


def test_unlabelled_texts_on_the_real_file(spam_tsv):
    rows = spam.read_spam_tsv(spam_tsv)
    s = spam.book_split(rows)
    assert len(spam.unlabelled_texts(rows, [])) == 5574 - 1494
    out = spam.unlabelled_texts(rows, s["val"] + s["test"])
    held = {" ".join(r.text.lower().split()) for r in s["val"] + s["test"]}
    assert len(out) == 4080 - 49 and not held & {" ".join(t.lower().split()) for t in out}


def test_read_spam_tsv_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.tsv"
    p.write_text("ham\tfine\nspam no tab here\n", encoding="utf-8")
    with pytest.raises(FileFormatError, match=r"bad\.tsv:2: no tab"):
        spam.read_spam_tsv(p)
    p.write_text("ham\tfine\n\nphishing\tclick here\n", encoding="utf-8")
    with pytest.raises(FileFormatError, match=r"bad\.tsv:3: unknown label 'phishing'"):
        spam.read_spam_tsv(p)
    p.write_text("", encoding="utf-8")
    with pytest.raises(FileFormatError, match=r"bad\.tsv holds no label<TAB>text rows"):
        spam.read_spam_tsv(p)
    with pytest.raises(FileFormatError, match="no SMS spam file"):
        spam.resolve_spam_data(tmp_path / "missing.tsv")


def test_pad_batch_and_truncation():
    idx, lengths = spam.pad_batch([np.array([5, 6, 7]), np.array([8])], pad_id=0)
    assert idx.tolist() == [[5, 6, 7], [8, 0, 0]] and lengths.tolist() == [3, 1]
    tok = BPETokenizer(pattern="gpt2").train("", vocab_size=256)
    ids, cut = spam.encode_texts(["abcdef", "ab"], tok, max_len=4)
    assert [i.tolist() for i in ids] == [[97, 98, 99, 100], [97, 98]] and cut == 1


# -------------------------------------------------------------------------------------- the model
def test_last_real_token_with_right_padding(rng):
    model = GPTClassifier(GPT(CFG, seed=1), 2, seed=0)
    model.eval()
    seqs = [rng.integers(0, 49, size=n) for n in (7, 3, 12)]
    alone = np.concatenate([model(s[None, :])[0].data for s in seqs])     # [3, 2] each unpadded
    for pad in (0, 49):   # the pad id is immaterial: causal attention, read before the pads
        idx, lengths = spam.pad_batch(seqs, pad_id=pad)
        batched = model(idx, lengths)[0].data
        np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-6)
    # reading the last position instead (the book's [:, -1]) would see pads: different logits
    assert not np.allclose(model(idx)[0].data, alone, atol=1e-3)


def test_lengths_are_checked():
    model = GPTClassifier(GPT(CFG, seed=1), 2)
    with pytest.raises(tt.ShapeError, match=r"lengths must lie in \[1, T=4\]"):
        model(np.zeros((2, 4), dtype=np.int64), np.array([4, 5]))


@pytest.mark.parametrize("trainable, n_blocks", [("last", 1), ("2", 2), (0, 0), ("all", 3)])
def test_frozen_parameters_get_no_grad(rng, trainable, n_blocks):
    model = GPTClassifier(GPT(CFG, seed=1), 2, seed=0)
    n, total = set_trainable(model, trainable)
    idx, lengths = spam.pad_batch([rng.integers(0, 49, size=k) for k in (5, 9)], 0)
    _, loss = model(idx, lengths, np.array([0, 1]))
    loss.backward()
    first_trainable = CFG.n_layer - n_blocks
    for name, p in model.named_parameters():
        block = int(name.split(".")[3]) if ".h." in name else None
        should = (trainable == "all" or name.startswith(("head.", "gpt.transformer.ln_f."))
                  or (block is not None and block >= first_trainable))
        assert p.requires_grad == should and (p.grad is not None) == should, name
    assert n == sum(p.size for p in model.parameters() if p.requires_grad)
    if trainable != "all":
        # the frozen blocks record no graph: their output does not require grad
        h0 = model.gpt.transformer.h[0](model.gpt.transformer.wte(idx))
        assert (first_trainable == 0) == h0.requires_grad


def test_bad_trainable():
    model = GPTClassifier(GPT(CFG, seed=1), 2)
    for bad in ("4", "-1", "first", True):
        with pytest.raises(ConfigError, match="trainable must be all, last or a block count"):
            set_trainable(model, bad)


def test_lr_schedules():
    assert [step_lr_at(s, 1e-3, 10) for s in (0, 5, 9)] == [1e-3] * 3          # constant: the book's
    lrs = [step_lr_at(s, 1e-3, 10, "cosine", warmup_steps=2) for s in range(10)]
    assert lrs[0] == pytest.approx(1e-3 / 3) and lrs[1] == pytest.approx(2e-3 / 3)   # linear warmup
    assert lrs[2] == pytest.approx(1e-3)                                            # the peak after warmup
    assert lrs[-1] == pytest.approx(1e-4)                                           # lr / 10 at the last step
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:]))                            # decaying all the way
    assert step_lr_at(0, 1e-3, 1, "cosine") == pytest.approx(1e-3)                 # one step: no decay yet
    with pytest.raises(ConfigError, match="lr_schedule must be one of constant, cosine, got 'linear'"):
        ClassifyConfig(init_from="scratch", out_dir="x", lr_schedule="linear")
    with pytest.raises(ConfigError, match="warmup_steps must be an int >= 0, got -1"):
        ClassifyConfig(init_from="scratch", out_dir="x", warmup_steps=-1)


def test_confusion_report():
    rep = confusion_report(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), 2)
    assert rep["confusion"] == [[1, 1], [1, 2]] and rep["accuracy"] == 0.6
    assert rep["precision"] == [0.5, 2 / 3] and rep["recall"] == [0.5, 2 / 3]


# -------------------------------------------------------------------------------------- training
def test_short_run_on_a_slice_of_the_real_data_learns(spam_tsv, tmp_path):
    """400 real messages (200 spam): a 1-block GPT from scratch with GPT-2's BPE, 3 epochs."""
    rows = spam.read_spam_tsv(spam_tsv)
    rng = np.random.default_rng(0)
    ham = [r for r in rows if r.label == 0]
    sp = [r for r in rows if r.label == 1]
    part = [ham[i] for i in rng.permutation(len(ham))[:200]] + [sp[i] for i in rng.permutation(len(sp))[:200]]
    cfg = ClassifyConfig(init_from="scratch", out_dir=str(tmp_path / "run"), epochs=3, batch_size=16, lr=2e-3,
                         trainable="all", tokenizer="gpt2", max_len=64,
                         sizes=dict(n_layer=1, n_head=2, n_embd=32, block_size=64))
    res = finetune_classifier(cfg, progress=False, quiet=True, rows=part)
    assert res.test["n"] == 80
    assert res.test["accuracy"] >= 0.85, res.log   # 73/80 = 0.9125 when written (best val: epoch 2); chance 0.5
    assert res.log[-1]["train_loss"] < res.log[0]["train_loss"]


def test_cli_finetune_then_classify(tmp_path, capsys, byte_tok, monkeypatch):
    data = _write_tsv(tmp_path / "sms.tsv", _synthetic_rows())
    out = tmp_path / "out"
    rc = main(["finetune", "classify", "--data", data, "--init_from", "scratch", "--tokenizer", byte_tok,
               "--n_layer", "2", "--n_head", "2", "--n_embd", "16", "--block_size", "64", "--epochs", "2",
               "--batch_size", "8", "--lr", "3e-3", "--trainable", "last", "--out_dir", str(out), "--no_progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "trainable parameters:" in printed and "precision" in printed and "test accuracy" in printed
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy"} <= set(log[0])
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.array(metrics["test"]["confusion"]).sum() == metrics["test"]["n"] == 16   # balanced 40 + 40, 20 %
    assert load_checkpoint(out).state["task"] == "classify"

    assert main(["classify", "--out_dir", str(out), "WINNER claim your prize", "see you at six"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].endswith("\tWINNER claim your prize")
    label, prob, _ = lines[1].split("\t")
    assert label in spam.LABELS and 0.5 <= float(prob) <= 1.0
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("one\n\ntwo\n"))
    assert main(["classify", "--out_dir", str(out)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("\n  \n"))   # no text at all: one line, exit 2
    assert main(["classify", "--out_dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "tinygpt: error: no texts: pass them as arguments or on stdin, one per line"

    clf = Classifier.load(out)   # the Python API gives what the CLI printed
    pred = clf("see you at six")
    assert pred.label == label and abs(pred.probability - float(prob)) < 1e-4
    assert abs(sum(pred.probabilities.values()) - 1) < 1e-9


def test_gpt2_folder_start_and_lora(tmp_path, capsys, gpt2_vocab):
    """A random tiny GPT-2 folder (save_pretrained; GPT-2 BPE from $TINYGPT_DATA/gpt2), fine-tuned with LoRA."""
    gpt2_dir = tmp_path / "tiny-gpt2"
    GPT(GPTConfig(block_size=64, vocab_size=50257, n_layer=2, n_head=2, n_embd=16), seed=0).save_pretrained(gpt2_dir)
    data = _write_tsv(tmp_path / "sms.tsv", _synthetic_rows(40, 20))
    out = tmp_path / "lora"
    rc = main(["finetune", "classify", "--data", data, "--init_from", str(gpt2_dir), "--out_dir", str(out),
               "--epochs", "1", "--lora_rank", "2", "--lora_alpha", "4", "--lora_targets", "c_attn,c_fc",
               "--lr", "1e-3", "--no_progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "pad id 50256" in printed and "mode lora" in printed
    # 2 blocks x (c_attn 2·(16+48) + c_fc 2·(16+64)) + head 16·2+2
    assert "trainable parameters: 610 of" in printed
    assert (out / "lora" / "adapter_model.safetensors").is_file()

    # adapters alone on top of the GPT-2 folder give the saved (merged) classifier's logits
    merged, _, _ = load_classifier(out)
    fresh = GPTClassifier(GPT.from_pretrained(gpt2_dir), 2, seed=99)
    load_adapters(fresh, out / "lora")
    fresh.eval()
    idx = np.array([[464, 3290, 318, 257], [40, 716, 257, 50256]])
    lengths = np.array([4, 3])
    np.testing.assert_allclose(fresh(idx, lengths)[0].data, merged(idx, lengths)[0].data, atol=1e-5)


def test_cli_bad_inputs(tmp_path, capsys, byte_tok):
    data = _write_tsv(tmp_path / "sms.tsv", _synthetic_rows())
    base = ["finetune", "classify", "--data", data, "--init_from", "scratch", "--tokenizer", byte_tok,
            "--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--out_dir", str(tmp_path / "o"), "--no_progress"]
    assert main(base + ["--lora_rank", "0"]) == 2
    assert "lora_rank must be >= 1" in capsys.readouterr().err
    assert main(base + ["--lora_rank", "17"]) == 2
    assert "[1, 16] for a Linear with weight [out, in] = [48, 16]" in capsys.readouterr().err
    assert main(base + ["--lora_rank", "2", "--trainable", "all"]) == 2
    assert "not both" in capsys.readouterr().err
    (tmp_path / "bad.tsv").write_text("ham\tok\nspam\n", encoding="utf-8")
    assert main(base[:3] + [str(tmp_path / "bad.tsv")] + base[4:]) == 2
    assert "bad.tsv:2: no tab" in capsys.readouterr().err
    assert main(["classify", "--out_dir", str(tmp_path / "nothing"), "hi"]) == 2
    capsys.readouterr()
    ok = base + ["--epochs", "1", "--block_size", "64"]
    assert main(ok) == 0 and main(ok) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert main(ok + ["--overwrite"]) == 0


def test_start_from_a_tinygpt_train_run(tmp_path, capsys):
    """A `tinygpt train` checkpoint (char tokenizer of the messages' text) as the body; its tokenizer is used."""
    rows = _synthetic_rows()
    text = tmp_path / "msgs.txt"
    text.write_text("\n".join(r.text for r in rows) + "\n", encoding="utf-8")
    lm = tmp_path / "lm"
    assert main(["train", "--preset", "tiny", "--data", str(text), "--out_dir", str(lm), "--max_iters=2",
                 "--eval_interval=2", "--eval_iters=1", "--block_size=64", "--no_progress"]) == 0
    out = tmp_path / "clf"
    assert main(["finetune", "classify", "--data", _write_tsv(tmp_path / "sms.tsv", rows), "--init_from", str(lm),
                 "--out_dir", str(out), "--epochs", "1", "--lr", "1e-3", "--no_progress"]) == 0
    printed = capsys.readouterr().out
    assert "pad id 0" in printed and "mode last" in printed
    assert load_checkpoint(out).state["base"]["kind"] == "checkpoint"
    with pytest.raises(ConfigError, match="is a classifier run"):
        finetune_classifier(ClassifyConfig(init_from=str(out), out_dir=str(tmp_path / "again")), quiet=True, rows=rows)


# ------------------------------------------------------------------- the end token and k-fold CV
def test_end_token_is_appended_after_cutting():
    tok = BPETokenizer(pattern="gpt2").train("", vocab_size=257, special_tokens=["<|endoftext|>"])
    assert end_token_id(tok) == 256
    ids, cut = spam.encode_texts(["abcdef", "ab"], tok, max_len=4, end_id=256)
    assert [i.tolist() for i in ids] == [[97, 98, 99, 256], [97, 98, 256]] and cut == 1
    with pytest.raises(ConfigError, match="max_len must be >= 2"):
        spam.encode_texts(["ab"], tok, max_len=1, end_id=256)
    assert end_token_id(tok, "\n") == 10                             # a one-token text: byte 10
    with pytest.raises(ConfigError, match="'<\\|endoftext\\|>' is neither a special token"):
        end_token_id(BPETokenizer(pattern="gpt2").train("", vocab_size=256))
    with pytest.raises(ConfigError, match="'ab' is neither"):
        end_token_id(tok, "ab")


def test_end_token_run_predicts_with_it(tmp_path, capsys):
    tok = BPETokenizer(pattern="gpt2").train("", vocab_size=257, special_tokens=["<|endoftext|>"])
    path = str(tok.save(tmp_path / "tok.json"))
    cfg = ClassifyConfig(init_from="scratch", out_dir=str(tmp_path / "run"), epochs=2, batch_size=8, lr=3e-3,
                         trainable="all", tokenizer=path, end_token=True, keep="last",
                         sizes=dict(n_layer=1, n_head=2, n_embd=16, block_size=64))
    res = finetune_classifier(cfg, progress=False, quiet=True, rows=_synthetic_rows())
    assert res.best_epoch == 2                                     # keep="last": the final epoch's model
    err = capsys.readouterr().err                                  # no epoch is called "best" under keep="last"
    assert "epoch 2: train loss" in err and "(best)" not in err
    st = load_checkpoint(tmp_path / "run").state
    assert st["end_id"] == 256 and st["pad_id"] == 256             # one id; pads told apart by length
    clf = Classifier.load(tmp_path / "run")
    assert clf.end_id == 256
    model, _, _ = load_classifier(tmp_path / "run")
    with_end = model(np.array([[115, 101, 101, 256]]))[0].data      # "see" + <|endoftext|>
    p = np.exp(with_end - with_end.max())
    assert abs(clf.predict(["see"])[0].probabilities["spam"] - (p / p.sum())[0, 1]) < 1e-5
    with pytest.raises(ConfigError, match="keep must be one of best, last"):
        ClassifyConfig(init_from="scratch", out_dir="x", keep="first")


def test_kfold_is_disjoint_covering_and_seeded():
    rows = [spam.Example(f"t{i}", i % 2, i + 1) for i in range(23)]
    folds = spam.kfold(rows, 4, seed=0)
    vals = [[r.line for r in f["val"]] for f in folds]
    assert sorted(len(v) for v in vals) == [5, 6, 6, 6]
    assert sorted(x for v in vals for x in v) == list(range(1, 24))             # every row once
    for f, v in zip(folds, vals):
        assert not set(v) & {r.line for r in f["train"]} and len(f["train"]) + len(v) == 23
    assert [[r.line for r in f["val"]] for f in spam.kfold(rows, 4, seed=0)] == vals   # seeded
    assert [[r.line for r in f["val"]] for f in spam.kfold(rows, 4, seed=1)] != vals
    for bad in (1, 24, 2.0, True):
        with pytest.raises(ConfigError, match="kfold needs an int k"):
            spam.kfold(rows, bad)


def test_cross_validation_pool_leaves_the_test_split_out(spam_tsv, tmp_path):
    rows = spam.read_spam_tsv(spam_tsv)
    pool = pool_rows(rows)
    test = {r.line for r in spam.book_split(rows)["test"]}
    assert len(pool) == 1194 and not test & {r.line for r in pool}
    small = _synthetic_rows()
    cfg = ClassifyConfig(init_from="scratch", out_dir=str(tmp_path / "cv"), epochs=1, batch_size=8, lr=3e-3,
                         trainable="all", tokenizer="gpt2", keep="last",
                         sizes=dict(n_layer=1, n_head=2, n_embd=16, block_size=64))
    cv = cross_validate(cfg, k=3, rows=small, seeds=[0, 1])
    pool_small = pool_rows(small)
    assert [(r["fold"], r["seed"]) for r in cv.runs] == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    assert cv.n == 2 * len(pool_small) == 2 * 64                    # 80 balanced: 56 train + 8 val
    assert cv.correct == sum(r["correct"] for r in cv.runs)
    assert abs(cv.mean_accuracy - np.mean([r["accuracy"] for r in cv.runs])) < 1e-12
    assert len(cv.epoch_means) == 1
    with pytest.raises(ConfigError, match="splits needs train and val"):
        finetune_classifier(cfg, progress=False, quiet=True, splits={"train": small})


@pytest.mark.parametrize("norms, per_ln", [("none", 0), ("weight", 16), ("all", 32)])
def test_lora_norms_train_the_layernorms_too(tmp_path, byte_tok, norms, per_ln):
    """lora_norms: the LayerNorm gains (and biases) train beside the adapters and head, nothing else does;
    they move, are saved with the adapters, and the adapters alone on the base give the saved logits."""
    data = _write_tsv(tmp_path / "sms.tsv", _synthetic_rows(40, 20))
    cfg = ClassifyConfig(init_from="scratch", tokenizer=byte_tok, out_dir=str(tmp_path / norms), data=data,
                         sizes=dict(n_layer=2, n_head=2, n_embd=16, block_size=64), epochs=1, batch_size=8,
                         lr=1e-2, lora_rank=2, lora_alpha=4, lora_targets="c_attn", lora_norms=norms)
    model, _, summary = build_classifier(cfg)
    n_ln = 2 * 2 + 1                          # ln_1, ln_2 per block + ln_f
    assert summary["trainable"] == 2 * 2 * (16 + 48) + (16 * 2 + 2) + n_ln * per_ln
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n or n.startswith("head") or ".ln_" in n for n in names)
    assert sum(".ln_" in n for n in names) == n_ln * per_ln // 16
    res = finetune_classifier(cfg, progress=False, quiet=True)
    assert res.trainable == summary["trainable"]
    merged, _, _ = load_classifier(cfg.out_dir)
    ln1 = merged.gpt.transformer.h[0].ln_1
    assert (not np.allclose(ln1.weight.data, 1.0)) == (norms != "none")
    assert (not np.allclose(ln1.bias.data, 0.0)) == (norms == "all")
    fresh, _, _ = build_classifier(dataclasses.replace(cfg, lora_rank=None, lora_norms="none", trainable="all"))
    load_adapters(fresh, tmp_path / norms / "lora")
    fresh.eval()
    idx, lengths = np.array([[70, 71, 72, 73], [74, 75, 76, 0]]), np.array([4, 3])
    np.testing.assert_allclose(fresh(idx, lengths)[0].data, merged(idx, lengths)[0].data, atol=1e-5)


def test_lora_norms_needs_lora():
    with pytest.raises(ConfigError, match="lora_norms"):
        ClassifyConfig(init_from="scratch", out_dir="o", lora_norms="weight")
    with pytest.raises(ConfigError, match="lora_norms"):
        ClassifyConfig(init_from="scratch", out_dir="o", lora_rank=2, lora_norms="gains")
