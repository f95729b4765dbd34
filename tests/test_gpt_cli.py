"""The tinygpt train / sample / eval / plot / demo commands, run in-process on a small text."""
from __future__ import annotations

import pytest

from gpt.cli import main
from gpt.train import read_log

TEXT = ("ROMEO:\nBut soft, what light through yonder window breaks?\n"
        "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\n") * 20
TINY = ["--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=8", "--batch_size=4", "--eval_iters=2",
        "--no_progress"]


@pytest.fixture
def run(tmp_path, capsys):
    """A trained tiny run: (out_dir, text path)."""
    text = tmp_path / "input.txt"
    text.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "out"
    rc = main(["train", "--preset", "tiny", "--data", str(text), "--out_dir", str(out), "--max_iters=4",
               "--eval_interval", "2", "--seed=3", *TINY])
    assert rc == 0
    assert "val loss" in capsys.readouterr().out
    return out, text


def test_train_writes_log_and_checkpoint(run):
    out, _ = run
    assert [r["iter"] for r in read_log(out)] == [0, 2, 4]
    assert (out / "checkpoint.json").is_file()


def test_resume_from_the_command_line(run, capsys):
    out, _ = run
    assert main(["train", "--out_dir", str(out), "--resume", "--max_iters=6", "--no_progress"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert [r["iter"] for r in read_log(out)] == [0, 2, 4, 6]


def test_sample_streams_prompt_and_continuation_reproducibly(run, capsys):
    out, _ = run
    args = ["sample", "--out_dir", str(out), "--prompt", "ROMEO:", "--max_new_tokens", "40", "--seed", "5"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert first.startswith("ROMEO:") and len(first) == len("ROMEO:") + 40 + 1
    assert main(args) == 0
    assert capsys.readouterr().out == first
    assert main(args[:-1] + ["6", "--top_k", "3", "--temperature", "1.2"]) == 0
    assert capsys.readouterr().out != first


def test_sample_rejects_unknown_characters(run, capsys):
    out, _ = run
    assert main(["sample", "--out_dir", str(out), "--prompt", "€"]) == 2
    assert "not in this CharTokenizer" in capsys.readouterr().err


def test_eval_and_plot(run, capsys):
    out, text = run
    assert main(["eval", "--out_dir", str(out), "--eval_iters", "2"]) == 0
    assert "val loss" in capsys.readouterr().out
    pytest.importorskip("matplotlib")
    assert main(["plot", "--out_dir", str(out)]) == 0
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_unknown_key_is_an_error_listing_valid_keys(tmp_path, capsys):
    rc = main(["train", "--preset", "tiny", "--out_dir", str(tmp_path / "x"), "--max_iter=3"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown config key 'max_iter'" in err and "max_iters" in err and "learning_rate" in err
    with pytest.raises(SystemExit):
        main(["sample", "--out_dir", str(tmp_path), "--max_iters=3"])   # only train takes config keys


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["sample", "--out_dir", str(tmp_path / "none")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_demo(tmp_path, capsys):
    text = tmp_path / "input.txt"
    text.write_text(TEXT * 3, encoding="utf-8")
    rc = main(["demo", "--data", str(text), "--out_dir", str(tmp_path / "demo"), "--max_iters", "1",
               "--max_new_tokens", "20", "--eval_iters=1", "--n_layer=1", "--n_embd=32"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "A sample:" in out


def test_only_user_errors_become_one_line(monkeypatch, capsys):
    """A UsageError or a missing path is one line and exit code 2; any other exception is a bug: it propagates."""
    from gpt.commands import evaluate
    from tinytensor.errors import ConfigError

    def fail_with(exc):
        def run(args):
            raise exc
        return run

    for exc in (ConfigError("bad value 3"), FileNotFoundError("no file x"), PermissionError("denied y")):
        monkeypatch.setattr(evaluate, "add_parser", _parser_with(fail_with(exc)))
        assert main(["eval", "--out_dir", "d"]) == 2
        err = capsys.readouterr().err
        assert err == f"tinygpt: error: {exc}\n"
    for exc in (ValueError("a bug"), TypeError("another bug"), KeyError("k")):
        monkeypatch.setattr(evaluate, "add_parser", _parser_with(fail_with(exc)))
        with pytest.raises(type(exc)):
            main(["eval", "--out_dir", "d"])


def _parser_with(run):
    def add_parser(sub):
        p = sub.add_parser("eval")
        p.add_argument("--out_dir")
        p.set_defaults(func=run)
    return add_parser
