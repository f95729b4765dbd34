"""Instruction fine-tuning (gpt/finetune): format, split, collate, loss, training, the CLI, bad input."""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import tinytensor as tt
from tinytensor import functional as F
from gpt.checkpoint import save_checkpoint
from gpt.cli import main
from gpt.finetune.instruct import (InstructConfig, batch_loss, finetune_instruct, generate_response, judge_score,
                                   response_loss)
from gpt.finetune.instruct_data import (IGNORE_INDEX, EncodedEntry, InstructionDataset, collate, encode_entry,
                                        format_entry, load_instruction_data, split_entries)
from gpt.model import GPT, GPTConfig
from tinytensor.errors import FileFormatError, UsageError
from tokenizer import CharTokenizer

EOS = 0
I = IGNORE_INDEX
DATA_SHA256 = "7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944"


def _entry(ids, n_prompt, n_query):
    return EncodedEntry(np.array(ids, dtype=np.int64), n_prompt, n_query)


# a hand-made batch: 3 entries of lengths 5, 2 and 3 (prompt 2 / query 3 tokens where they have them)
BATCH = [_entry([11, 12, 13, 14, 15], 2, 3), _entry([21, 22], 1, 2), _entry([31, 32, 33], 1, 2)]


def test_collate_pads_shifts_and_ignores_the_padding_after_the_first_end_of_text():
    x, y = collate(BATCH, EOS)
    assert x.tolist() == [[11, 12, 13, 14, 15],
                          [21, 22, EOS, EOS, EOS],
                          [31, 32, 33, EOS, EOS]]
    assert y.tolist() == [[12, 13, 14, 15, EOS],
                          [22, EOS, I, I, I],
                          [32, 33, EOS, I, I]]
    assert x.dtype == y.dtype == np.int64


def test_collate_prompt_and_query_masks():
    _, y = collate(BATCH, EOS, mask="prompt")       # targets predicting prompt tokens 1 .. n_prompt-1
    assert y.tolist() == [[I, 13, 14, 15, EOS],
                          [22, EOS, I, I, I],
                          [32, 33, EOS, I, I]]
    _, y = collate(BATCH, EOS, mask="query")        # only the answer and its end-of-text count
    assert y.tolist() == [[I, I, 14, 15, EOS],
                          [I, EOS, I, I, I],
                          [I, 33, EOS, I, I]]


def test_collate_max_length_truncates_and_ignore_index_is_a_parameter():
    x, y = collate(BATCH, EOS, ignore_index=-100, max_length=3)
    assert x.tolist() == [[11, 12, 13], [21, 22, EOS], [31, 32, 33]]
    assert y.tolist() == [[12, 13, 14], [22, EOS, -100], [32, 33, EOS]]
    with pytest.raises(UsageError, match="empty batch"):
        collate([], EOS)


def test_format_entry_is_the_alpaca_prompt():
    prompt, header, output = format_entry({"instruction": "Add 2 and 3.", "input": "", "output": "5"})
    assert prompt == ("Below is an instruction that describes a task. Write a response that appropriately "
                      "completes the request.\n\n### Instruction:\nAdd 2 and 3.")
    assert header == "\n\n### Response:\n" and output == "5"
    prompt, _, _ = format_entry({"instruction": "Spell it.", "input": "freind", "output": "friend"})
    assert prompt.endswith("### Instruction:\nSpell it.\n\n### Input:\nfreind")


def test_split_is_the_books_85_10_5():
    train, test, val = split_entries(list(range(1100)))
    assert (len(train), len(test), len(val)) == (935, 110, 55)
    assert train[-1] == 934 and test[0] == 935 and val[0] == 1045


def test_fully_ignored_batch_gives_zero_loss_and_zero_grad_not_nan():
    """tinytensor's cross_entropy mean over no counted row is NaN (as PyTorch); batch_loss special-cases it."""
    model = GPT(GPTConfig(block_size=8, vocab_size=10, n_layer=1, n_head=2, n_embd=8), seed=0)
    x = np.array([[1, 2, 3]])
    y = np.full((1, 3), IGNORE_INDEX)
    logits, _ = model(x, return_all=True)
    assert math.isnan(F.cross_entropy(logits, y, ignore_index=IGNORE_INDEX).item())
    loss = batch_loss(model, x, y)
    assert loss.item() == 0.0
    loss.backward()
    assert all(not np.any(p.grad) for p in model.parameters() if p.grad is not None)
    y2 = np.array([[2, IGNORE_INDEX, 4]])
    want = F.cross_entropy(model(x, return_all=True)[0], y2, ignore_index=IGNORE_INDEX).item()
    assert batch_loss(model, x, y2).item() == pytest.approx(want, rel=1e-7)


# ------------------------------------------------------------------------------------- a tiny run
ENTRIES = [{"instruction": f"Say {w}.", "input": "" if k % 3 else "loud", "output": f"{w} {w}!"}
           for k, w in enumerate(["cat", "dog", "sun", "sea", "red", "owl", "fig", "elm", "ant", "bee"] * 4)]


@pytest.fixture
def tiny_run(tmp_path):
    """A tiny char-level tinygpt checkpoint that knows <|endoftext|>, and the instruction file."""
    text = "".join("".join(format_entry(e)) for e in ENTRIES)
    tok = CharTokenizer.from_text(text, special_tokens=["<|endoftext|>"])
    model = GPT(GPTConfig(block_size=192, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=32), seed=1)
    save_checkpoint(tmp_path / "base", 0, model, None, tok, {})
    data = tmp_path / "data.json"
    data.write_text(json.dumps(ENTRIES), encoding="utf-8")
    return tmp_path, tok, data


def test_finetune_lowers_the_test_response_loss_and_writes_answers(tiny_run):
    tmp, tok, data = tiny_run
    cfg = InstructConfig(init_from=str(tmp / "base"), data=str(data), out_dir=str(tmp / "ft"), epochs=8,
                         batch_size=4, learning_rate=3e-3, eval_interval=8, eval_batches=2, max_new_tokens=12,
                         test_limit=2)
    s = finetune_instruct(cfg, progress=lambda _: None)
    before, after = s["test_response_loss_before"], s["test_response_loss_after"]
    assert s["steps"] == 8 * (34 // 4)                    # 34 train entries, drop_last
    assert after["loss"] < before["loss"] - 1.0
    assert after["perplexity"] == pytest.approx(math.exp(after["loss"]))
    rows = json.loads((tmp / "ft" / "test-responses.json").read_text())
    assert len(rows) == 2 and {"instruction", "output", "model_response"} <= set(rows[0])
    log = [json.loads(l) for l in (tmp / "ft" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [8 * k for k in range(1, len(log) + 1)]


def test_response_loss_counts_only_answer_tokens(tiny_run):
    tmp, tok, _ = tiny_run
    ds = InstructionDataset(ENTRIES[:3], tok, block_size=192)
    model = GPT(GPTConfig(block_size=192, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16), seed=0)
    r = response_loss(model, ds, batch_size=2)
    assert r["tokens"] == sum(len(e["output"]) + 1 for e in ENTRIES[:3])   # each answer + its end-of-text
    with tt.no_grad():
        per = [F.cross_entropy(model(x, return_all=True)[0], y, ignore_index=I, reduction="sum").item()
               for x, y in [collate([ds[i]], ds.eos_id, mask="query") for i in range(3)]]
    assert r["loss"] == pytest.approx(sum(per) / r["tokens"], rel=1e-6)


def test_generation_stops_at_end_of_text(tiny_run):
    tmp, tok, _ = tiny_run
    model = GPT(GPTConfig(block_size=192, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16), seed=0)
    eot = tok.special_tokens["<|endoftext|>"]
    model.lm_head.weight.data[eot] += 50.0        # the end-of-text row dominates: it is sampled first
    assert generate_response(model, tok, ENTRIES[0], max_new_tokens=20) == ""


def test_cli_finetune_instruct_then_chat(tiny_run, capsys, monkeypatch):
    tmp, tok, data = tiny_run
    out = tmp / "cli"
    assert main(["finetune", "instruct", "--data", str(data), "--init_from", str(tmp / "base"), "--out_dir",
                 str(out), "--epochs", "1", "--batch_size", "4", "--learning_rate", "3e-3", "--max_new_tokens", "5",
                 "--test_limit", "1", "--mask_prompt"]) == 0
    text = capsys.readouterr().out
    assert "test response loss before" in text and "test response loss after" in text
    assert json.loads((out / "instruct.json").read_text())["steps"] == 34 // 4
    assert main(["chat", "--out_dir", str(out), "--prompt", "Say cat.", "--max_new_tokens", "6", "--seed", "1"]) == 0
    one = capsys.readouterr().out
    assert one.endswith("\n") and len(one) <= 7
    asked = []
    lines = iter(["Say dog.", "Say sun.", "", "never read"])
    monkeypatch.setattr("builtins.input", lambda prompt="": asked.append(prompt) or next(lines))
    assert main(["chat", "--out_dir", str(out), "--max_new_tokens", "4", "--temperature", "0"]) == 0
    assert asked == ["instruction> "] * 3                    # two answers, then the empty line ends
    assert capsys.readouterr().out.endswith("\n")


def test_judge_hook_gets_json_and_returns_a_score(tmp_path):
    script = tmp_path / "judge.py"
    script.write_text("import json, sys\nd = json.load(sys.stdin)\n"
                      "print(100 if d['response'] == d['reference'] else 25)\n", encoding="utf-8")
    entry = {"instruction": "x", "input": "", "output": "yes"}
    cmd = f"python {script}"
    assert judge_score(cmd, entry, "yes") == 100.0 and judge_score(cmd, entry, "no") == 25.0
    bad = tmp_path / "bad.py"
    bad.write_text("print('great')\n", encoding="utf-8")
    with pytest.raises(UsageError, match="0 to 100"):
        judge_score(f"python {bad}", entry, "no")


# ----------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("content, match", [
    ("", "is empty"),
    ("[]", "non-empty JSON list"),
    ("{not json", "is not JSON"),
    (json.dumps([{"instruction": "a", "output": "b"}, {"instruction": "c"}]), r"entry 1 .*\['output'\]"),
    (json.dumps([{"output": "b"}]), r"entry 0 .*\['instruction'\]"),
    (json.dumps(["text"]), "entry 0 is a str"),
])
def test_bad_instruction_files_name_the_file_and_entry(tmp_path, content, match):
    p = tmp_path / "bad.json"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(FileFormatError, match=match) as e:
        load_instruction_data(p)
    assert str(p) in str(e.value)


def test_entries_longer_than_the_context_are_an_error_unless_truncated(tiny_run, capsys):
    tmp, tok, data = tiny_run
    with pytest.raises(UsageError, match=r"data.json: entry 7 is \d+ tokens, longer than the "
                                         r"context \(64\)"):
        InstructionDataset(ENTRIES[:3], tok, block_size=64, source="data.json", first_index=7)
    ds = InstructionDataset(ENTRIES[:3], tok, block_size=64, truncate=True)
    x, y = ds.batch([0, 1])
    assert x.shape[1] == 64 == y.shape[1]
    rc = main(["finetune", "instruct", "--data", str(tmp / "missing.json"), "--init_from", str(tmp / "base")])
    assert rc == 2 and "no instruction data" in capsys.readouterr().err


def test_tokenizer_without_end_of_text_is_an_error():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(UsageError, match="endoftext"):
        InstructionDataset([{"instruction": "a", "output": "b"}], tok, block_size=500)


# --------------------------------------------------------------------------------- the real data set
def _instruction_data() -> Path:
    p = Path(os.environ.get("TINYGPT_DATA", "")) / "instruction-data.json"
    if not p.is_file():
        pytest.skip("instruction-data.json not in $TINYGPT_DATA")
    return p


def test_the_books_data_set_splits_and_encodes_piecewise_as_whole():
    p = _instruction_data()
    assert hashlib.sha256(p.read_bytes()).hexdigest() == DATA_SHA256
    from tokenizer import load_gpt2
    tok = load_gpt2()
    entries = load_instruction_data(p)
    assert [len(s) for s in split_entries(entries)] == [935, 110, 55]
    for e in entries:
        enc = encode_entry(e, tok)
        assert enc.ids.tolist() == tok.encode_ordinary("".join(format_entry(e)))


@pytest.mark.parametrize("mask_prompt", [False, True])
def test_pipeline_equals_the_pytorch_twin_over_30_steps_in_float64(mask_prompt):
    """Same weights, same entries in the same order: our collate/mask/loss/AdamW vs the book's, in torch."""
    pytest.importorskip("torch")
    from benchmarks.instruct_parity import parity_entries, run_parity
    r = run_parity(parity_entries(_instruction_data()), steps=30, mask_prompt=mask_prompt, block_size=256)
    assert r["max_rel_diff"] < 1e-5
    assert r["last_loss"] < r["first_loss"]
