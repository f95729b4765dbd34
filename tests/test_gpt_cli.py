"""The tinygpt train / sample / eval / plot / demo commands, run in-process on a small text."""
from __future__ import annotations

import argparse
import io
import math
import re

import pytest

import gpt
import gpt.config
from gpt.checkpoint import load_checkpoint
from gpt.cli import build_parser, main
from gpt.config import make_config
from gpt.train import get_lr, read_log

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
    assert main(["sample", "--out_dir", str(out), "--prompt", "ROMEO€"]) == 2
    out, err = capsys.readouterr()
    assert out == ""                                   # nothing printed before the error
    assert err.startswith("tinygpt: error: the prompt's '€' (U+20AC, at index 5) is not among the")
    assert "unk_token" not in err                      # the library's argument is no flag of the CLI


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
    assert "unknown config key 'max_iter' (did you mean 'max_iters'?)" in err and "learning_rate" in err
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


# ------------------------------------------------------------------------------- the first hour (issue 20)
def _all_parsers(parser):
    """``(name, parser)`` for the parser and every sub-command's, recursively."""
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


def test_every_option_has_help_and_one_underscore_spelling():
    for name, parser in _all_parsers(build_parser()):
        for action in parser._actions:
            if not action.option_strings:
                continue
            assert action.help not in (None, argparse.SUPPRESS), f"{name} {action.option_strings} has no help"
            assert not any("-" in opt[2:] for opt in action.option_strings if opt.startswith("--")), \
                f"{name} {action.option_strings}: options are spelled with underscores"


def test_dashed_spellings_are_hidden_aliases(capsys):
    args = build_parser().parse_args(["sample", "--out-dir", "d", "--max-new-tokens", "3", "--top-k", "2",
                                      "--top_p", "0.5", "--num-samples", "2"])
    assert (args.out_dir, args.max_new_tokens, args.top_k, args.top_p, args.num_samples) == ("d", 3, 2, 0.5, 2)
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    shown = capsys.readouterr().out
    assert "--top_k" in shown and "--max_new_tokens" in shown and "--top-k" not in shown


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"tinygpt {gpt.__version__}\n"


def test_short_runs_fit_the_schedule_to_max_iters():
    baby = make_config("baby")
    assert (baby.max_iters, baby.warmup_iters, baby.lr_decay_iters) == (2000, 100, 2000)
    short = make_config("baby", {"max_iters": 50})
    assert (short.warmup_iters, short.lr_decay_iters) == (5, 50)          # 10 % of 50, and the run's end
    assert get_lr(5, short) == pytest.approx(1e-3) and get_lr(50, short) == pytest.approx(1e-4)
    kept = make_config("baby", {"max_iters": 50, "warmup_iters": 20, "lr_decay_iters": 40})
    assert (kept.warmup_iters, kept.lr_decay_iters) == (20, 40)          # set explicitly: as given


def test_train_prints_schedule_and_eta_and_logs_step_losses(tmp_path, capsys):
    text = tmp_path / "input.txt"
    text.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "out"
    rc = main(["train", "--preset", "tiny", "--data", str(text), "--out_dir", str(out), "--max_iters=8",
               "--eval_interval=4", "--log_interval=2", *TINY])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "schedule: 8 iterations; lr 3.00e-03 after 0 warm-up iterations, cosine decay to 3.00e-04 at iter 8" \
        in printed
    eta = [line for line in printed.splitlines() if line.startswith("eta: about")]
    assert len(eta) == 1 and "3 iterations at" in eta[0] and "+ 1 evals at" in eta[0]
    steps = read_log(out, kind="train")
    assert [r["iter"] for r in steps] == [0, 2, 4, 6] and all(r["kind"] == "train" for r in steps)
    assert all(math.isfinite(r["loss"]) and r["lr"] > 0 for r in steps)
    assert [r["iter"] for r in read_log(out)] == [0, 4, 8]               # eval records by default
    assert [r.get("kind") for r in read_log(out, kind=None)] == \
        ["eval", "train", "train", "eval", "train", "train", "eval"]

    # resume: the log is trimmed to the checkpoint (no duplicated steps), the done line has both times
    assert main(["train", "--out_dir", str(out), "--resume", "--max_iters=12", "--no_progress"]) == 0
    done = [line for line in capsys.readouterr().out.splitlines() if line.startswith("done:")][0]
    assert re.search(r"\d+ s this run, \d+ s in all", done)
    assert [r["iter"] for r in read_log(out, kind="train")] == [0, 2, 4, 6, 8, 10]


def test_read_log_and_plot_of_an_old_log_without_kinds_and_of_step_records(tmp_path, capsys):
    (tmp_path / "log.jsonl").write_text('{"iter": 0, "train_loss": 4.0, "val_loss": 4.1}\n')
    assert read_log(tmp_path) == [{"iter": 0, "train_loss": 4.0, "val_loss": 4.1}]
    assert read_log(tmp_path, kind="train") == []
    pytest.importorskip("matplotlib")
    assert main(["plot", "--out_dir", str(tmp_path)]) == 0
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "log.jsonl").write_text('{"kind": "train", "iter": 0, "loss": 4.2, "lr": 0.1, "elapsed_s": 1}\n'
                                        '{"kind": "train", "iter": 10, "loss": 3.9, "lr": 0.1, "elapsed_s": 2}\n')
    assert main(["plot", "--out_dir", str(tmp_path), "--output", str(tmp_path / "steps.png")]) == 0
    assert (tmp_path / "steps.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "log.jsonl").write_text("")
    assert main(["plot", "--out_dir", str(tmp_path)]) == 2
    assert "no records" in capsys.readouterr().err


def test_unknown_key_suggests_the_closest(tmp_path, capsys):
    assert main(["train", "--preset", "tiny", "--out_dir", str(tmp_path / "x"), "--learning_rte=0.1"]) == 2
    assert "unknown config key 'learning_rte' (did you mean 'learning_rate'?)" in capsys.readouterr().err


def test_config_file_with_overrides_on_top(tmp_path, capsys):
    text = tmp_path / "input.txt"
    text.write_text(TEXT, encoding="utf-8")
    toml = tmp_path / "my.toml"
    toml.write_text('max_iters = 3\nlearning_rate = 1\nn_layer = 1\nn_head = 2\nn_embd = 16\nblock_size = 8\n'
                    'batch_size = 4\neval_iters = 1\nseed = 7\nout_dir = "%s"\n' % (tmp_path / "from-toml"))
    rc = main(["train", "--preset", "tiny", "--data", str(text), "--config", str(toml), "--seed=9",
               "--no_progress"])
    assert rc == 0
    saved = load_checkpoint(tmp_path / "from-toml", verify=False).state["train_config"]
    assert (saved["max_iters"], saved["learning_rate"], saved["seed"], saved["lr_decay_iters"]) == (3, 1.0, 9, 3)
    capsys.readouterr()
    toml.write_text("max_iter = 3\n")
    assert main(["train", "--config", str(toml)]) == 2
    assert "unknown config key 'max_iter' (did you mean 'max_iters'?)" in capsys.readouterr().err
    toml.write_text('max_iters = "3"\n')
    assert main(["train", "--config", str(toml)]) == 2
    assert "max_iters takes int, got '3'" in capsys.readouterr().err
    toml.write_text("max_iters = \n")
    assert main(["train", "--config", str(toml)]) == 2
    assert "is not valid TOML" in capsys.readouterr().err


def test_config_file_on_python_310_without_tomli(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpt.config, "tomllib", None)
    toml = tmp_path / "my.toml"
    toml.write_text("max_iters = 3\n")
    assert main(["train", "--config", str(toml)]) == 2
    err = capsys.readouterr().err
    assert "needs tomllib (Python 3.11+)" in err and "pip install tomli" in err


def test_sample_prompt_from_a_file_and_stdin(run, tmp_path, monkeypatch, capsys):
    out, _ = run
    base = ["sample", "--out_dir", str(out), "--max_new_tokens", "10", "--seed", "5"]
    assert main(base + ["--prompt", "JULIET:\n"]) == 0
    expected = capsys.readouterr().out
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("JULIET:\n", encoding="utf-8")
    assert main(base + ["--prompt_file", str(prompt)]) == 0
    assert capsys.readouterr().out == expected
    monkeypatch.setattr("sys.stdin", io.StringIO("JULIET:\n"))
    assert main(base + ["--prompt", "-"]) == 0
    assert capsys.readouterr().out == expected
    assert expected.startswith("JULIET:\n")


def test_demo_does_not_overwrite_a_run_without_overwrite(run, capsys):
    out, text = run
    before = (out / "checkpoint.json").read_bytes()
    assert main(["demo", "--data", str(text), "--out_dir", str(out), "--max_iters=1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "checkpoint.json").read_bytes() == before
