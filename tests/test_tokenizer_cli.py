"""``tinygpt tokenizer train|encode|decode``, run in-process through the real ``tinygpt`` parser."""
from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import pytest

import tokenizer
from tokenizer import cli

CORPUS = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
          "the slings and arrows of outrageous fortune, or to take arms against a sea of troubles.\n") * 20

_DATA = os.environ.get("TINYGPT_DATA")
_HAVE_GPT2 = bool(_DATA) and (Path(_DATA) / "gpt2" / "encoder.json").is_file() and (
    Path(_DATA) / "gpt2" / "vocab.bpe"
).is_file()


def run(argv, capsys, stdin: str | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def trained(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    out = tmp_path / "tok.json"
    code, _, err = run(["train", "--input", str(corpus), "--vocab-size", "300", "--special-token", "<|endoftext|>",
                        "--out", str(out)], capsys)
    assert code == 0, err
    assert "43 merges" in err
    return out


def test_add_parser_registers_tokenizer_commands():
    top = argparse.ArgumentParser()
    sub = top.add_subparsers(dest="command")
    cli.add_parser(sub)
    args = top.parse_args(["tokenizer", "train", "--input", "a", "--vocab_size", "300", "--out", "b"])
    assert args.func is cli._cmd_train and args.pattern == "gpt4" and args.vocab_size == 300
    assert top.parse_args(["tokenizer", "decode", "1", "2"]).ids == ["1", "2"]
    assert top.parse_args(["tokenizer"]).func(None) == 2  # no action: usage, exit 2


def test_tinygpt_entry_point_has_tokenizer():
    gpt_cli = pytest.importorskip("gpt.cli")
    parser = gpt_cli.build_parser()
    args = parser.parse_args(["tokenizer", "encode", "--tokenizer", "t.json", "--text", "hi"])
    assert args.func is cli._cmd_encode


def test_train_encode_decode_round_trip(trained, capsys, monkeypatch):
    tok = tokenizer.load(trained)
    assert tok.vocab_size == 300 and tok.special_tokens == {"<|endoftext|>": 299}
    code, out, _ = run(["encode", "--tokenizer", str(trained), "--text", "To be, or not to be"], capsys)
    assert code == 0
    ids = [int(x) for x in out.split()]
    assert ids == tok.encode("To be, or not to be")
    code, out, _ = run(["decode", "--tokenizer", str(trained), *map(str, ids)], capsys)
    assert code == 0 and out == "To be, or not to be\n"
    # ids from stdin, in the list form Python prints
    code, out, _ = run(["decode", "--tokenizer", str(trained)], capsys, stdin=str(ids), monkeypatch=monkeypatch)
    assert code == 0 and out == "To be, or not to be\n"


def test_encode_from_file_and_stdin(trained, tmp_path, capsys, monkeypatch):
    f = tmp_path / "in.txt"
    f.write_text("the question\n", encoding="utf-8")
    tok = tokenizer.load(trained)
    code, out, _ = run(["encode", "--tokenizer", str(trained), "--input", str(f)], capsys)
    assert code == 0 and [int(x) for x in out.split()] == tok.encode("the question\n")
    code, out, _ = run(["encode", "--tokenizer", str(trained)], capsys, stdin="sea of troubles",
                       monkeypatch=monkeypatch)
    assert code == 0 and [int(x) for x in out.split()] == tok.encode("sea of troubles")


def test_special_tokens_need_allow_special(trained, capsys):
    code, _, err = run(["encode", "--tokenizer", str(trained), "--text", "end<|endoftext|>"], capsys)
    assert code == 2
    assert err == ("tinygpt: error: the text contains the special token '<|endoftext|>' (at index 3); pass "
                   "--allow_special to encode special tokens as their ids\n")   # the flag, not allowed_special=
    for flag in ("--allow_special", "--allow-special"):              # the dashed spelling is an alias
        code, out, _ = run(["encode", "--tokenizer", str(trained), "--text", "end<|endoftext|>", flag], capsys)
        assert code == 0 and out.split()[-1] == "299"


def test_unknown_character_names_no_library_argument(tmp_path, capsys):
    path = tokenizer.CharTokenizer.from_text("abc").save(tmp_path / "char.json")
    code, _, err = run(["encode", "--tokenizer", str(path), "--text", "abz"], capsys)
    assert code == 2 and err.startswith("tinygpt: error: 'z' at index 2 of the text is not in the tokenizer's "
                                        "vocabulary of 3")
    assert "unk_token" not in err


def test_options_are_spelled_with_underscores_and_dashes_are_hidden_aliases(capsys):
    """(The ``trained`` fixture trains with the dashed spellings end to end.)"""
    top = argparse.ArgumentParser()
    cli.add_parser(top.add_subparsers(dest="command"))
    cli.add_dash_aliases(top)
    for spelling in (["--vocab_size", "260", "--special_token", "<|x|>"],
                     ["--vocab-size", "260", "--special-token", "<|x|>"]):
        args = top.parse_args(["tokenizer", "train", "--input", "a", "--out", "b", *spelling])
        assert (args.vocab_size, args.special_token) == (260, ["<|x|>"])
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    shown = capsys.readouterr().out
    assert "--vocab_size" in shown and "--special_token" in shown and "--vocab-size" not in shown


def test_errors_exit_2_with_a_message(trained, tmp_path, capsys):
    code, _, err = run(["decode", "--tokenizer", str(trained), "99999"], capsys)
    assert code == 2 and "99999" in err
    code, _, err = run(["decode", "--tokenizer", str(trained), "12", "x"], capsys)
    assert code == 2 and "'x'" in err
    code, _, err = run(["encode", "--text", "hi"], capsys)
    assert code == 2 and "--tokenizer" in err
    code, _, err = run(["encode", "--tokenizer", str(tmp_path / "missing.json"), "--text", "hi"], capsys)
    assert code == 2 and "missing.json" in err
    corpus = tmp_path / "c.txt"
    corpus.write_text("abc", encoding="utf-8")
    code, _, err = run(["train", "--input", str(corpus), "--vocab-size", "100", "--out", str(tmp_path / "o.json")],
                       capsys)
    assert code == 2 and "256" in err


def test_train_with_gpt2_pattern(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    out = tmp_path / "tok.json"
    code, _, _ = run(["train", "--input", str(corpus), "--vocab-size", "280", "--pattern", "gpt2", "--out", str(out)],
                     capsys)
    assert code == 0
    assert tokenizer.load(out).pattern == tokenizer.GPT2_PATTERN


@pytest.mark.skipif(not _HAVE_GPT2, reason="needs GPT-2's files in $TINYGPT_DATA/gpt2 (TINYGPT_DATA unset or absent)")
def test_gpt2_flag(capsys):
    code, out, _ = run(["encode", "--gpt2", "--text", "hello world"], capsys)
    assert code == 0 and out.split() == ["31373", "995"]
    code, out, _ = run(["decode", "--gpt2", "31373", "995"], capsys)
    assert code == 0 and out == "hello world\n"
