"""The seq2seq tasks (seeded, disjoint splits), batching, checkpoints, and the ``tinygpt seq2seq`` round trip."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

import tinytensor as tt
from gpt.cli import main
from gpt.seq2seq import TASKS, TrainSettings, collate, get_task, load_seq2seq, train
from gpt.seq2seq.tasks import split_of
from gpt.seq2seq.train import lr_cooldown, run_fraction
from tinytensor.optim import noam_lr


@pytest.mark.parametrize("name", list(TASKS))
def test_tasks_are_deterministic_by_seed_with_disjoint_splits(name):
    task = get_task(name)
    a, b = task.sample("train", 200, seed=3), task.sample("train", 200, seed=3)
    assert a == b and a != task.sample("train", 200, seed=4)
    splits = {s: task.sample(s, 300, seed=0, lengths=(10, 30) if name != "dates" else None)
              for s in ("train", "val", "test")}
    targets = {s: {t for _, t in pairs} for s, pairs in splits.items()}
    assert not targets["train"] & targets["test"] and not targets["train"] & targets["val"]
    assert not targets["val"] & targets["test"]
    assert all(split_of(t) == s for s, pairs in splits.items() for _, t in pairs)
    vocab = task.vocab()
    for src, tgt in splits["test"]:
        assert vocab.decode(vocab.encode(src)) == src
        if name == "copy":
            assert src == tgt and 10 <= len(src) <= 30
        elif name == "reverse":
            assert src[::-1] == tgt and 10 <= len(src) <= 30


def test_dates_map_every_spelling_to_iso():
    pairs = get_task("dates").sample("train", 400, seed=0)
    for src, tgt in pairs:
        y, m, d = map(int, tgt.split("-"))
        assert str(y) in src and 1900 <= y <= 2099
    srcs = {s for s, _ in pairs}
    assert any(" of " in s for s in srcs) and any("/" in s for s in srcs) and any("," in s for s in srcs)
    examples = dict((t, s) for s, t in pairs)
    assert len(examples) > 300                        # many different days


def test_unknown_task_and_split_list_the_names():
    with pytest.raises(tt.UsageError, match="unknown task 'sort'; the tasks are: copy, reverse, dates"):
        get_task("sort")
    with pytest.raises(tt.UsageError, match="split must be one of train, val, test, got 'dev'"):
        get_task("copy").sample("dev", 1, seed=0)
    with pytest.raises(tt.UsageError, match="character 'Z' at index 1"):
        get_task("copy").vocab().encode("aZ")


def test_collate_pads_and_shifts():
    vocab = get_task("copy").vocab()
    src, tgt_in, targets = collate([("ab", "ab"), ("abc", "cba")], vocab)
    a, b, c = vocab.encode("abc")
    np.testing.assert_array_equal(src, [[a, b, 0], [a, b, c]])
    np.testing.assert_array_equal(tgt_in, [[1, a, b, 0], [1, c, b, a]])
    np.testing.assert_array_equal(targets, [[a, b, 2, 0], [c, b, a, 2]])


TINY = ["--d_model", "16", "--n_head", "2", "--d_ff", "32", "--n_layer", "1", "--max_len", "24"]


def test_cli_train_then_translate_round_trip(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    code = main(["seq2seq", "train", "--task", "dates", "--out_dir", str(out), "--steps", "6", "--batch_size", "8",
                 "--eval_every", "3", "--eval_size", "10", "--test_size", "20", *TINY])
    assert code == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "result.json").read_text())
    assert f"exact match: {100 * result['exact_match']:.1f}%" in printed.splitlines()[-1]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "val_exact_match" in r] == [3, 6]
    assert log[-1]["result"]["exact_match"] == result["exact_match"] and result["test_size"] == 20
    model, vocab, meta = load_seq2seq(out)
    assert meta["task"] == "dates" and model.config.d_model == 16 and model.config.max_len == 24 and not model.training
    assert main(["seq2seq", "translate", "--out_dir", str(out), "3rd of May 1999", "4 Nov 2001"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("3rd of May 1999\n\n4 Nov 2001\n"))
    assert main(["seq2seq", "translate", "--out_dir", str(out), "--beam", "3"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(""))      # nothing to translate: a one-line error
    assert main(["seq2seq", "translate", "--out_dir", str(out)]) == 2
    assert "no texts: pass them as arguments or on stdin" in capsys.readouterr().err


def test_cli_bad_inputs_are_one_line_errors(tmp_path, capsys):
    assert main(["seq2seq", "train", "--task", "sort", "--out_dir", str(tmp_path)]) == 2
    assert "unknown task 'sort'; the tasks are: copy, reverse, dates" in capsys.readouterr().err
    assert main(["seq2seq", "translate", "--out_dir", str(tmp_path / "none"), "x"]) == 2
    assert "holds no trained seq2seq model" in capsys.readouterr().err
    assert main(["seq2seq", "train", "--task", "reverse", "--out_dir", str(tmp_path), *TINY[:-1], "20"]) == 2
    assert "max_len 20 is too short for reverse: its sequences have up to 30 characters" in capsys.readouterr().err
    out = tmp_path / "run"
    train(TrainSettings(task="copy", out_dir=str(out), steps=1, eval_every=1, eval_size=2, test_size=2,
                        train_lengths=(3, 5), test_lengths=(3, 5), long_lengths=None, quiet=True,
                        model=dict(d_model=8, n_head=2, d_ff=8, n_layer=1, max_len=8)))
    quiet = capsys.readouterr().out.splitlines()                    # quiet: the answer line alone
    assert len(quiet) == 1 and re.fullmatch(r"exact match: \d+\.\d%", quiet[0])
    assert main(["seq2seq", "translate", "--out_dir", str(out), "abcdefghij"]) == 2
    assert "has 10 characters, more than the model's max_len 8" in capsys.readouterr().err
    assert main(["seq2seq", "translate", "--out_dir", str(out), "aZ"]) == 2
    assert "character 'Z' at index 1" in capsys.readouterr().err
    (out / "model.safetensors").write_bytes(b"garbage")
    assert main(["seq2seq", "translate", "--out_dir", str(out), "ab"]) == 2
    assert "does not match the sha256" in capsys.readouterr().err


def test_lr_cooldown_falls_linearly_to_zero_over_the_last_fraction():
    assert [lr_cooldown(f, 0.25) for f in (0.0, 0.5, 0.75, 0.875, 1.0, 1.2)] == [1.0, 1.0, 1.0, 0.5, 0.0, 0.0]
    assert lr_cooldown(0.99, 0.0) == 1.0 and lr_cooldown(0.5, 1.0) == 0.5
    # the run ends at its step cap or its time limit, whichever comes first
    assert run_fraction(1, 10, 0.0, None) == 0.0 and run_fraction(6, 10, 1e6, None) == 0.5
    assert run_fraction(6, 10, 45.0, 1.0) == 0.75 and run_fraction(9, 10, 3.0, 1.0) == 0.8
    for bad in (-0.1, 1.5, True, "0.3"):
        with pytest.raises(tt.ConfigError, match=f"cooldown must be a fraction in \\[0, 1\\], got {bad!r}"):
            TrainSettings(task="copy", out_dir="x", cooldown=bad)


def test_train_with_cooldown_and_train_lengths(tmp_path, capsys):
    out = tmp_path / "run"
    train(TrainSettings(task="reverse", out_dir=str(out), steps=4, batch_size=4, warmup=2, eval_every=4, eval_size=4,
                        test_size=4, long_lengths=None, log_every=1, cooldown=0.5, quiet=True,
                        model=dict(d_model=16, n_head=2, d_ff=16, n_layer=1, max_len=32)))
    lrs = [r["lr"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "lr" in r]
    # steps 1..4 have run fractions 0, 1/4, 1/2, 3/4: only the last is in the cooldown, at half the lr
    np.testing.assert_allclose(lrs, [noam_lr(1, 16, 2), noam_lr(2, 16, 2), noam_lr(3, 16, 2), noam_lr(4, 16, 2) / 2])
    cli = tmp_path / "cli"
    assert main(["seq2seq", "train", "--task", "reverse", "--out_dir", str(cli), "--steps", "1", "--batch_size", "2",
                 "--eval_every", "1", "--eval_size", "2", "--test_size", "2", "--cooldown", "0.5",
                 "--train_lengths", "3", "5", "--quiet", *TINY[:-1], "42"]) == 0
    capsys.readouterr()
    settings = load_seq2seq(cli)[2]["settings"]
    assert settings["cooldown"] == 0.5 and settings["train_lengths"] == [3, 5]
