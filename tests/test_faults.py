"""Faults a run meets: a kill mid-write, a full or read-only disk, torn and corrupted files, non-finite numbers,
untrusted sizes (issue 16). Every test here failed before its fix; each says which case it covers."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import subprocess
import time
import warnings

import numpy as np
import pytest

import gpt.model_config as model_config_mod
import gpt.train as train_mod
import tokenizer
from gpt.checkpoint import load_checkpoint, save_checkpoint
from gpt.cli import main
from gpt.data import prepare_tokens
from gpt.hf import PretrainedFormatError
from gpt.model import GPT, GPTConfig, NonFiniteLogitsError, sample_next
from gpt.sample import write_samples
from gpt.train import TrainingStopped, evaluate, read_log, train
from tinytensor import fileio
from tinytensor.errors import ConfigError, FileFormatError, OutputError, UsageError
from tokenizer import BPETokenizer, CharTokenizer

from test_gpt_train import TEXT, small


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "input.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


def _model_and_opt(vocab=5):
    m = GPT(GPTConfig(vocab_size=vocab, block_size=4, n_layer=1, n_head=1, n_embd=4), seed=0)
    return m, m.configure_optimizers(0.1, 1e-3, (0.9, 0.99)), CharTokenizer("abcde"[:vocab])


def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# ------------------------------------------------------------------ 1: the token cache is one unit
def test_a_token_cache_torn_between_its_files_is_encoded_again(tmp_path, monkeypatch):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("abcabcabcabcabcabcabcabcabcabc", encoding="utf-8")
    b.write_text("cbacbacbacbacbacbacbacbacbacba", encoding="utf-8")
    tok, data = CharTokenizer("abc"), tmp_path / "data"
    want, _, _ = prepare_tokens(a, tok, data)
    want = np.array(want)
    real, calls = fileio.atomic_save_npy, {"n": 0}

    def dies_after_train(path, arr):              # a kill after train.npy, before val.npy and meta.json
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(path, arr)
    monkeypatch.setattr("gpt.data.tokens.atomic_save_npy", dies_after_train)
    with pytest.raises(KeyboardInterrupt):
        prepare_tokens(b, tok, data)                  # train.npy now holds b's ids, meta.json still vouches for a
    monkeypatch.undo()
    got, _, _ = prepare_tokens(a, tok, data)
    np.testing.assert_array_equal(np.array(got), want)


# ------------------------------------------------------------------ 2: float config fields are finite
@pytest.mark.parametrize("field", ["learning_rate", "min_lr", "weight_decay", "grad_clip", "beta1", "beta2",
                                   "dropout"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_float_config_is_refused_by_name(tmp_path, text_file, field, value):
    with pytest.raises(ConfigError, match=field):
        small(tmp_path, text_file, **{field: value})


def test_a_nan_learning_rate_is_one_line_at_the_cli(tmp_path, text_file, capsys):
    code = main(["train", "--preset", "tiny", "--data", str(text_file), "--no_progress", "--out_dir",
                 str(tmp_path / "o"), "--learning_rate=nan", "--max_iters=4", "--eval_interval=2"])
    assert code == 2 and "learning_rate must be a finite number, got nan" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ 3: the last good checkpoint is good
def test_a_nan_eval_never_replaces_the_good_checkpoint(tmp_path, text_file, monkeypatch, capsys):
    real = train_mod.estimate_loss

    def nan_after_start(model, samplers, eval_iters, world=None):
        out = real(model, samplers, eval_iters, world)
        return out if train_mod_iter["it"] == 0 else {"train": out["train"], "val": float("nan")}
    train_mod_iter = {"it": 0}
    real_step = train_mod._train_step

    def step(run, lr):
        train_mod_iter["it"] = run.it + 1
        return real_step(run, lr)
    monkeypatch.setattr(train_mod, "estimate_loss", nan_after_start)
    monkeypatch.setattr(train_mod, "_train_step", step)
    cfg = small(tmp_path, text_file, max_iters=6, eval_interval=2)
    train(cfg, progress=False)
    c = load_checkpoint(cfg.out_dir)
    assert c.iter_num == 0 and sorted(p.name for p in c.path.parent.glob("ckpt-*")) == ["ckpt-0000000"]
    assert "the last good checkpoint (iter 0) is kept" in capsys.readouterr().err


def test_a_huge_learning_rate_stops_naming_the_checkpoint_that_is_good(tmp_path, text_file, monkeypatch):
    # a NaN weight after the first step (what lr=1e9 does to the tiny preset): evals are NaN from iter 2 on
    real_step = train_mod._train_step

    def poisoning(run, lr):
        out = real_step(run, lr)
        run.model.transformer.wte.weight.data[0, 0] = np.nan
        return out
    monkeypatch.setattr(train_mod, "_train_step", poisoning)
    cfg = small(tmp_path, text_file, learning_rate=1e9, warmup_iters=0, decay_lr=False, eval_interval=2,
                max_iters=30)
    with pytest.raises(TrainingStopped, match=r"the last good checkpoint is in .* \(iter 0\)"):
        train(cfg, progress=False)
    c = load_checkpoint(cfg.out_dir)
    assert c.iter_num == 0 and all(np.isfinite(a).all() for a in c.model_state.values())


def test_resuming_from_a_nan_weight_is_refused(tmp_path, text_file):
    cfg = small(tmp_path, text_file, max_iters=2, eval_interval=2)
    train(cfg, progress=False)
    c = load_checkpoint(cfg.out_dir)
    m = c.build_model()
    m.transformer.h[0].mlp.c_fc.weight.data[0, 0] = np.inf
    opt = m.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    save_checkpoint(cfg.out_dir, 2, m, opt, c.tokenizer, {k: v for k, v in c.state.items()
                                                         if k in ("train_config", "rng", "counters", "data")})
    with pytest.raises(FileFormatError, match="non-finite weights.*c_fc"):
        train(small(tmp_path, text_file, max_iters=4, eval_interval=2), resume=True, progress=False)


# ------------------------------------------------------------------ 4 and 14: sampling
@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("temperature", [0, 1.0])
def test_non_finite_logits_raise(bad, temperature):
    logits = np.array([[0.5, 1.0, bad, 0.1]])
    with pytest.raises(NonFiniteLogitsError, match="not finite"):
        sample_next(logits, temperature, rng=np.random.default_rng(0))


def test_a_tiny_temperature_is_greedy_without_warnings():
    logits = np.array([[0.5, 3.0, -1.0, 2.9], [4.0, 1.0, -np.inf, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for t in (1e-310, 1e-300, 5e-324):
            np.testing.assert_array_equal(sample_next(logits, t, rng=np.random.default_rng(1)), [1, 0])
            np.testing.assert_array_equal(sample_next(logits, t, top_k=2, top_p=0.5, rng=np.random.default_rng(1)),
                                          [1, 0])


def test_numpy_scalar_knobs_are_accepted():
    logits = np.array([[0.5, 3.0, -1.0, 2.9]])
    a = sample_next(logits, np.float32(0.5), top_k=np.int64(3), top_p=np.float32(0.9), rng=np.random.default_rng(3))
    b = sample_next(logits, 0.5, top_k=3, top_p=float(np.float32(0.9)), rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    m, _, tok = _model_and_opt()
    out = m.generate(np.array([1, 2]), np.int64(3), temperature=np.float32(0.5), top_p=np.float64(0.9), seed=0)
    assert out.shape == (5,)
    assert len(write_samples(m, tok, "ab", np.int64(2), np.float32(0.5), seed=0, num_samples=np.int64(1),
                             stream=open(os.devnull, "w"))[0]) == 2


# ------------------------------------------------------------------ 5: a lost checkpoint.json
def test_ckpt_folders_without_their_pointer_are_not_deleted_by_a_fresh_run(tmp_path, text_file):
    cfg = small(tmp_path, text_file, max_iters=2, eval_interval=2)
    train(cfg, progress=False)
    (tmp_path / "run" / "checkpoint.json").unlink()
    before = sorted(p.name for p in (tmp_path / "run").glob("ckpt-*"))
    with pytest.raises(ConfigError, match="already holds a checkpoint"):
        train(cfg, progress=False)
    assert sorted(p.name for p in (tmp_path / "run").glob("ckpt-*")) == before == ["ckpt-0000002"]
    train(cfg, overwrite=True, progress=False)                  # only --overwrite replaces them


# ------------------------------------------------------------------ 7: tinygpt eval --eval_iters
@pytest.mark.parametrize("n", [-3, 0])
def test_eval_iters_below_one_is_refused(tmp_path, text_file, capsys, n):
    cfg = small(tmp_path, text_file, max_iters=2, eval_interval=2)
    train(cfg, progress=False)
    with pytest.raises(ConfigError, match="eval_iters must be an int >= 1"):
        evaluate(cfg.out_dir, eval_iters=n)
    capsys.readouterr()
    assert main(["eval", "--out_dir", cfg.out_dir, "--eval_iters", str(n)]) == 2
    out = capsys.readouterr()
    assert "eval_iters" in out.err and "nan" not in out.out


# ------------------------------------------------------------------ 8: untrusted sizes
def test_a_state_json_with_other_sizes_is_refused_before_building(tmp_path):
    m, opt, tok = _model_and_opt()
    path = save_checkpoint(tmp_path, 1, m, opt, tok)
    state = json.loads((path / "state.json").read_text())
    state["model_config"]["n_layer"] = 10**9
    (path / "state.json").write_text(json.dumps(state))
    with pytest.raises(FileFormatError, match=r"state\.json does not match .*n_layer 1000000000 in state.json vs 1"):
        load_checkpoint(tmp_path)


def test_an_untied_head_round_trips_and_a_state_json_that_denies_it_is_refused(tmp_path):
    m = GPT(GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=1, n_embd=4, tie_weights=False), seed=0)
    _, _, tok = _model_and_opt()
    opt = m.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    path = save_checkpoint(tmp_path, 1, m, opt, tok)
    back = load_checkpoint(tmp_path).build_model()
    assert back.lm_head.weight is not back.transformer.wte.weight
    np.testing.assert_array_equal(back.lm_head.weight.data, m.lm_head.weight.data)
    state = json.loads((path / "state.json").read_text())
    state["model_config"]["tie_weights"] = True
    (path / "state.json").write_text(json.dumps(state))
    with pytest.raises(FileFormatError, match="tie_weights True in state.json vs False in the weights"):
        load_checkpoint(tmp_path)
    with pytest.raises(PretrainedFormatError, match="lm_head"):
        m.save_pretrained(tmp_path / "hf")             # GPT-2's format has no untied output layer


def _hf_folder(tmp_path, **config_changes):
    m = GPT(GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=1, n_embd=4), seed=0)
    d = m.save_pretrained(tmp_path / "hf")
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(config_changes)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


@pytest.mark.parametrize("key", ["n_layer", "n_embd", "n_positions", "vocab_size"])
def test_a_config_json_with_huge_sizes_is_refused_from_the_header(tmp_path, monkeypatch, key):
    d = _hf_folder(tmp_path, **{key: 10**6 if key != "n_layer" else 10**9, "n_head": 1})
    allocated = []
    monkeypatch.setattr(GPT, "__init__", lambda self, *a, **k: allocated.append(a) or 1 / 0)
    with pytest.raises(PretrainedFormatError, match=f"{key} 10+ in the config vs .* in the weights"):
        GPT.from_pretrained(d)
    assert not allocated


@pytest.mark.parametrize("override", ["--block_size=1000000000", "--n_embd=1000000"])
def test_a_model_too_big_for_memory_is_one_line(tmp_path, text_file, capsys, monkeypatch, override):
    monkeypatch.setattr(model_config_mod, "available_memory", lambda: 8 * 2**30)
    code = main(["train", "--preset", "tiny", "--data", str(text_file), "--no_progress", "--out_dir",
                 str(tmp_path / "o"), override, "--n_head=2"])
    err = capsys.readouterr().err
    assert code == 2 and "GiB" in err and "8.0 GiB is available" in err and len(err.strip().splitlines()) == 1


def test_memory_estimate_counts_every_parameter():
    for bias in (True, False):
        c = GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=6, bias=bias)
        assert model_config_mod.param_count(c) == GPT(c, seed=0).num_params(non_embedding=False)


# ------------------------------------------------------------------ 9: a torn log line
def test_a_torn_last_log_line_does_not_block_resume(tmp_path, text_file, capsys):
    cfg = small(tmp_path, text_file, max_iters=4, eval_interval=2)
    train(cfg, progress=False)
    log = tmp_path / "run" / "log.jsonl"
    with open(log, "a", encoding="utf-8") as f:
        f.write('{"iter": 6, "train_loss": 1.2, "val_lo')        # a crash mid-append
    assert [r["iter"] for r in read_log(cfg.out_dir)] == [0, 2, 4]
    capsys.readouterr()
    train(small(tmp_path, text_file, max_iters=6, eval_interval=2), resume=True, progress=False)
    assert "ignored a torn last line" in capsys.readouterr().err
    assert [r["iter"] for r in read_log(cfg.out_dir)] == [0, 2, 4, 6]


def test_a_damaged_log_line_in_the_middle_names_the_file(tmp_path):
    (tmp_path / "log.jsonl").write_text('{"iter": 0}\n{"iter": 2, "tr\n{"iter": 4}\n')
    with pytest.raises(FileFormatError, match=r"log\.jsonl, line 2"):
        read_log(tmp_path)


# ------------------------------------------------------------------ 10: full, read-only, in the way
def test_disk_full_while_writing_a_checkpoint_keeps_the_old_one(tmp_path, monkeypatch):
    m, opt, tok = _model_and_opt()
    first = save_checkpoint(tmp_path, 1, m, opt, tok)
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(OutputError, match=r"cannot write .*: No space left on device \[ENOSPC\]"):
        save_checkpoint(tmp_path, 2, m, opt, tok)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path).path == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", "ckpt-0000001"]


def test_disk_full_while_writing_the_token_cache(tmp_path, text_file, monkeypatch):
    real = os.fsync

    def full_under_data(fd):                      # only the cache's disk is full
        if str(tmp_path / "data") in os.readlink(f"/proc/self/fd/{fd}"):
            _enospc()
        return real(fd)
    monkeypatch.setattr(os, "fsync", full_under_data)
    with pytest.raises(OutputError, match=r"train\.npy: No space left on device"):
        prepare_tokens(text_file, CharTokenizer.from_text(TEXT), tmp_path / "data")
    assert list((tmp_path / "data").iterdir()) == []


def test_a_read_only_file_system_is_one_line(tmp_path, monkeypatch):
    def erofs(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    target = tmp_path / "x.json"
    target.write_text("old")
    monkeypatch.setattr(os, "replace", erofs)
    with pytest.raises(OutputError, match=r"x\.json: Read-only file system \[EROFS\]"):
        fileio.atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_an_out_dir_that_is_a_file_is_one_line(tmp_path, text_file, capsys):
    (tmp_path / "o").write_text("a file")
    assert main(["train", "--preset", "tiny", "--data", str(text_file), "--no_progress",
                 "--out_dir", str(tmp_path / "o"), "--max_iters=2"]) == 2
    err = capsys.readouterr().err
    assert "it is a file, not a folder" in err and "Traceback" not in err


def test_tokenizer_train_out_under_a_file_is_one_line(tmp_path, text_file, capsys):
    (tmp_path / "f").write_text("a file")
    assert main(["tokenizer", "train", "--input", str(text_file), "--vocab-size", "260",
                 "--out", str(tmp_path / "f" / "tok.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"tinygpt: error: cannot write {tmp_path / 'f' / 'tok.json'}: {tmp_path / 'f'} is a file, " \
                  f"not a folder [EEXIST]" or err.endswith("is a file, not a folder [ENOTDIR]")


def test_a_network_error_inside_an_atomic_write_is_not_an_output_error(tmp_path):
    with pytest.raises(ConnectionResetError):
        with fileio.atomic_open(tmp_path / "x"):
            raise ConnectionResetError(errno.ECONNRESET, "reset")


@contextlib.contextmanager
def _tmpfs(where, size: str):
    """A real small file system (a tmpfs of ``size``) at ``where``; skips the test where it cannot be mounted."""
    where.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and mount to make a small tmpfs")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_real_full_disk_keeps_the_old_checkpoint(tmp_path):
    with _tmpfs(tmp_path / "mnt", "256k") as mnt:
        m, opt, tok = _model_and_opt()
        first = save_checkpoint(mnt / "run", 1, m, opt, tok)
        big = GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=2, n_head=2, n_embd=64), seed=0)
        with pytest.raises(OutputError, match=r"No space left on device \[ENOSPC\]"):
            save_checkpoint(mnt / "run", 2, big, big.configure_optimizers(0.1, 1e-3, (0.9, 0.99)), tok)
        assert load_checkpoint(mnt / "run").path == first
        assert sorted(p.name for p in (mnt / "run").iterdir()) == ["checkpoint.json", "ckpt-0000001"]


def test_a_real_read_only_out_dir_is_one_line(tmp_path, text_file, capsys):
    with _tmpfs(tmp_path / "mnt", "1m") as mnt:
        (mnt / "o").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        assert main(["train", "--preset", "tiny", "--data", str(text_file), "--no_progress",
                     "--out_dir", str(mnt / "o"), "--max_iters=2"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"tinygpt: error: cannot write {mnt / 'o'}") and err.endswith(
            "Read-only file system [EROFS]") and len(err.splitlines()) == 1


# ------------------------------------------------------------------ kills at every step of a checkpoint write
def _killed_save(out_dir, kill_at: int) -> int:
    """Fork; in the child, ``os._exit`` (SIGKILL-like: no cleanup runs) at the ``kill_at``-th fsync/replace/
    rmtree/mkdtemp of a save at iteration 2; returns the child's exit code (0: it finished)."""
    pid = os.fork()
    if pid == 0:                                   # pragma: no cover - the child
        try:
            count = {"n": 0}

            def step(fn):
                def wrapped(*a, **k):
                    count["n"] += 1
                    if count["n"] == kill_at:
                        os._exit(9)
                    return fn(*a, **k)
                return wrapped
            import shutil
            import tempfile
            os.fsync, os.replace = step(os.fsync), step(os.replace)
            shutil.rmtree, tempfile.mkdtemp = step(shutil.rmtree), step(tempfile.mkdtemp)
            m, opt, tok = _model_and_opt()
            m.transformer.wte.weight.data[...] = 2.0
            save_checkpoint(out_dir, 2, m, opt, tok)
            os._exit(0)
        except BaseException:
            os._exit(3)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_kill_at_any_step_of_a_checkpoint_write_leaves_one_whole_checkpoint(tmp_path):
    outcomes = []
    for k in range(1, 40):
        d = tmp_path / f"k{k}"
        m, opt, tok = _model_and_opt()
        save_checkpoint(d, 1, m, opt, tok)
        code = _killed_save(d, k)
        assert code in (0, 9)
        c = load_checkpoint(d)                     # verifies every sha256: whole, and pointed to
        assert c.iter_num in (1, 2)
        assert (c.model_state["transformer.wte.weight"] == 2.0).all() == (c.iter_num == 2)
        old = time.time() + 1
        fileio.remove_stale_temps(d, older_than=old)              # what the next run does first
        assert not [p.name for p in d.iterdir() if p.name.startswith(".")]
        m2, opt2, _ = _model_and_opt()
        assert load_checkpoint(save_checkpoint(d, 3, m2, opt2, tok).parent).iter_num == 3
        outcomes.append(c.iter_num)
        if code == 0:
            break
    assert outcomes[0] == 1 and outcomes[-1] == 2 and len(outcomes) > 5


# ------------------------------------------------------------------ 11: corrupted files
def _ckpt(tmp_path):
    m, opt, tok = _model_and_opt()
    return save_checkpoint(tmp_path, 1, m, opt, tok)


def _resha(path):
    state = json.loads((path / "state.json").read_text())
    for f in state["files"]:
        state["files"][f] = fileio.sha256_file(path / f)
    (path / "state.json").write_text(json.dumps(state))


@pytest.mark.parametrize("case, match", [
    ("pointer-empty", r"checkpoint\.json is not valid JSON"),
    ("pointer-truncated", r"checkpoint\.json is not valid JSON"),
    ("pointer-list", r"checkpoint\.json must hold a JSON object, got list"),
    ("pointer-path", r"checkpoint\.json: 'latest' must name a checkpoint folder"),
    ("state-empty", r"state\.json is not valid JSON"),
    ("state-truncated", r"state\.json is not valid JSON"),
    ("state-n_layer", r"state\.json does not match .*model\.safetensors: n_layer 2"),
    ("state-files", r"state\.json: 'files' must map"),
    ("state-optimizer", r"optimizer\.safetensors does not hold the moments"),
    ("pickle-weights", r"model\.safetensors is not a readable safetensors file"),
    ("state-lr", r"state\.json: an optimizer param group needs finite lr"),
    ("state-counters", r"state\.json: counters must be numbers"),
])
def test_corrupted_checkpoint_files_name_the_file(tmp_path, case, match):
    path = _ckpt(tmp_path)
    pointer, state_path = tmp_path / "checkpoint.json", path / "state.json"
    state = json.loads(state_path.read_text())
    if case == "pointer-empty":
        pointer.write_text("")
    elif case == "pointer-truncated":
        pointer.write_text(pointer.read_text()[:10])
    elif case == "pointer-list":
        pointer.write_text("[1, 2]")
    elif case == "pointer-path":
        pointer.write_text(json.dumps({"latest": "../../etc", "iter_num": 1}))
    elif case == "state-empty":
        state_path.write_text("")
    elif case == "state-truncated":
        state_path.write_text(state_path.read_text()[:50])
    elif case == "state-n_layer":
        state["model_config"]["n_layer"] = 2
        state_path.write_text(json.dumps(state))
    elif case == "state-files":
        state["files"] = [1, 2]
        state_path.write_text(json.dumps(state))
    elif case == "state-optimizer":
        state["optimizer"]["steps"]["99"] = 1
        state_path.write_text(json.dumps(state))
    elif case == "state-lr":
        state["optimizer"]["param_groups"][0]["lr"] = "fast"
        state_path.write_text(json.dumps(state))
    elif case == "state-counters":
        state["counters"] = {"iter_num": [1]}
        state_path.write_text(json.dumps(state))
    elif case == "pickle-weights":
        (path / "model.safetensors").write_bytes(pickle.dumps({"a": [1, 2, 3]}))
        _resha(path)
    with pytest.raises(FileFormatError, match=match):
        load_checkpoint(tmp_path)


def _bpe_file(tmp_path):
    p = BPETokenizer().train("ab ab ab abc abc", 259).save(tmp_path / "bpe.json")
    return p, json.loads(p.read_text())


@pytest.mark.parametrize("case, match", [
    ("no-merges", "'merges' must be a list"),
    ("merges-5", r"a merge is \[left, right, new\], got 5"),
    ("merge-id-huge", "uses an id not defined before it"),
    ("merge-bool", r"a merge is \[left, right, new\]"),
    ("byte-ids", "byte_ids must be 256 distinct ids"),
    ("pattern", "invalid tokenizer pattern"),
    ("special-huge", "special_tokens must map strings to ids"),
    ("doubling", "longer than"),
])
def test_corrupted_bpe_files_name_the_file(tmp_path, case, match):
    p, data = _bpe_file(tmp_path)
    if case == "no-merges":
        del data["merges"]
    elif case == "merges-5":
        data["merges"] = [5]
    elif case == "merge-id-huge":
        data["merges"][-1][2] = 10**12
    elif case == "merge-bool":
        data["merges"][0] = [True, 98, 256]
    elif case == "byte-ids":
        data["byte_ids"] = "abc"
    elif case == "pattern":
        data["pattern"] = "(unclosed"
    elif case == "special-huge":
        data["special_tokens"] = {"<|x|>": 10**12}
    elif case == "doubling":                     # each merge joins the last token with itself: 2**40 bytes
        data["merges"] = [[97, 97, 256]] + [[256 + i, 256 + i, 257 + i] for i in range(40)]
    p.write_text(json.dumps(data))
    with pytest.raises(FileFormatError, match=match) as e:
        tokenizer.load(p)
    assert str(p) in str(e.value)


@pytest.mark.parametrize("case", ["no-chars", "chars-int", "special-str", "unk-list", "long-char"])
def test_corrupted_char_files_name_the_file(tmp_path, case):
    p = CharTokenizer("abc", special_tokens=["<|e|>"]).save(tmp_path / "c.json")
    data = json.loads(p.read_text())
    if case == "no-chars":
        del data["chars"]
    elif case == "chars-int":
        data["chars"] = [1, 2]
    elif case == "special-str":
        data["special_tokens"] = {"<|e|>": "3"}
    elif case == "unk-list":
        data["unk_token"] = ["x"]
    elif case == "long-char":
        data["chars"] = ["ab", "c"]
    p.write_text(json.dumps(data))
    with pytest.raises(FileFormatError) as e:
        tokenizer.load(p)
    assert str(p) in str(e.value)


# ------------------------------------------------------------------ 12, 13: empty data, a bad prompt
def test_an_empty_data_file_says_so(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["train", "--preset", "tiny", "--data", str(empty), "--no_progress",
                 "--out_dir", str(tmp_path / "o")]) == 2
    assert f"{empty} is empty" in capsys.readouterr().err


def test_a_prompt_outside_the_vocabulary_prints_nothing(tmp_path):
    m, _, tok = _model_and_opt()
    out_path = tmp_path / "out.txt"
    with open(out_path, "w") as out, pytest.raises(UsageError, match="'z'"):
        write_samples(m, tok, "abz", 3, seed=0, stream=out)
    assert out_path.read_text() == ""


# ------------------------------------------------------------------ 16: stale temp files
def test_stale_temp_files_are_cleaned_at_the_start_of_a_run(tmp_path, text_file, capsys):
    cfg = small(tmp_path, text_file, max_iters=2, eval_interval=2)
    train(cfg, progress=False)
    run = tmp_path / "run"
    stale = [run / ".checkpoint.json.k1l2m3n4.tmp", run / ".log.jsonl.x9_aa8zz.tmp",
             run / "data" / ".meta.json.qqqqqqqq.tmp"]
    for p in stale:
        p.write_text("half")
        os.utime(p, (time.time() - 60, time.time() - 60))
    (run / ".ckpt-0000004.tmp-abc12345").mkdir()
    os.utime(run / ".ckpt-0000004.tmp-abc12345", (time.time() - 60, time.time() - 60))
    keep, keep_tmp = run / ".hidden-user-file", run / ".notes.tmp"
    keep.write_text("mine")
    keep_tmp.write_text("mine too")
    os.utime(keep_tmp, (time.time() - 60, time.time() - 60))
    train(small(tmp_path, text_file, max_iters=4, eval_interval=2), resume=True, progress=False)
    assert not any(p.exists() for p in stale) and not (run / ".ckpt-0000004.tmp-abc12345").exists()
    assert keep.read_text() == "mine" and keep_tmp.read_text() == "mine too"
    assert "left by an interrupted write" in capsys.readouterr().err


def test_a_temp_file_newer_than_the_run_is_left_alone(tmp_path):
    young = tmp_path / ".log.jsonl.abcd1234.tmp"
    young.write_text("in use")
    assert fileio.remove_stale_temps(tmp_path, older_than=time.time() - 60) == [] and young.exists()


# ------------------------------------------------------------------ the one JSON reader of run files
@pytest.mark.parametrize("content, match", [
    (b"", r"x\.json is not valid JSON"), (b'{"a": 1', r"x\.json is not valid JSON"),
    (b"\xff\xfe", r"x\.json is not valid JSON \(UnicodeDecodeError"),
    (b"[1, 2]", r"x\.json must hold a JSON object, got list"),
])
def test_read_json_object_names_the_file_and_the_fault(tmp_path, content, match):
    (tmp_path / "x.json").write_bytes(content)
    with pytest.raises(FileFormatError, match=match):
        fileio.read_json_object(tmp_path / "x.json")
    (tmp_path / "y.json").write_bytes(b'{"a": [1]}')
    assert fileio.read_json_object(tmp_path / "y.json") == {"a": [1]}
    with pytest.raises(FileNotFoundError):
        fileio.read_json_object(tmp_path / "missing.json")
