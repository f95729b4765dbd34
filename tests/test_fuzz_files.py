"""Fuzzing every file reader with random bytes and random mutations of a valid file (issue 16).

A damaged or hostile file must raise the project's own error (a UsageError subclass, or FileNotFoundError
for a missing file): never another exception, never a hang (a small deadline), never a large allocation
(a header claiming huge shapes is refused from the header). Each reader gets a valid file to mutate.
"""
from __future__ import annotations

import json
import resource
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save as st_save

import tokenizer
from gpt import hf
from gpt.checkpoint import load_checkpoint, save_checkpoint
from gpt.config import make_config
from gpt.model import GPT, GPTConfig
from gpt.train import resume_config, train
from tinytensor.errors import UsageError
from tinytensor.fileio import sha256_file
from tokenizer import BPETokenizer, CharTokenizer

OURS = (UsageError, FileNotFoundError)
FUZZ = settings(max_examples=100, deadline=1000, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(autouse=True)
def _memory_cap():
    """No reader may allocate much: cap the address space 1 GiB above what the process already has."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        now = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (now + 2**30, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _mutate(data: bytes, draw) -> bytes:
    """Flip, drop, insert or truncate bytes of ``data`` (a few edits)."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "drop", "insert", "truncate", "digit"]))
        i = draw(st.integers(0, max(len(out) - 1, 0)))
        if kind == "flip" and out:
            out[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "drop" and out:
            del out[i:i + draw(st.integers(1, 8))]
        elif kind == "insert":
            out[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "truncate":
            del out[i:]
        elif kind == "digit":                      # numbers are where sizes and ids hide
            out[i:i] = draw(st.sampled_from([b"9", b"99999999999", b"-1", b"1e308", b"0"]))
    return bytes(out)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                           max_leaves=10)


def _replace_somewhere(doc, draw):
    """Replace one value somewhere in a JSON document by a random JSON value."""
    if isinstance(doc, dict) and doc and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(doc)))
        return {**doc, key: _replace_somewhere(doc[key], draw)}
    if isinstance(doc, list) and doc and draw(st.booleans()):
        i = draw(st.integers(0, len(doc) - 1))
        return doc[:i] + [_replace_somewhere(doc[i], draw)] + doc[i + 1:]
    return draw(JSON_VALUES)


@st.composite
def variants(draw, valid: bytes, is_json: bool = True):
    how = draw(st.sampled_from(["random", "bytes", "json"] if is_json else ["random", "bytes"]))
    if how == "random":
        return draw(st.binary(max_size=200))
    if how == "bytes":
        return _mutate(valid, draw)
    return json.dumps(_replace_somewhere(json.loads(valid), draw)).encode()


def _raises_only_ours(fn, *args):
    try:
        fn(*args)
    except OURS:
        pass


# ---------------------------------------------------------------------------------------- the files
def _tiny_model():
    return GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4), seed=0)


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("valid")
    m = _tiny_model()
    opt = m.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    m(np.array([[1, 2, 3]]), np.array([[2, 3, 4]]))[1].backward()
    opt.step()
    ckpt = save_checkpoint(d / "run", 1, m, opt, CharTokenizer("abcde"))
    hf_dir = m.save_pretrained(d / "hf", CharTokenizer("abcde"))
    bpe = BPETokenizer().train("ab ab ab abc abc abd", 259).save(d / "bpe.json")
    return {"run": d / "run", "ckpt": ckpt, "hf": hf_dir, "bpe": bpe, "char": ckpt / "tokenizer.json"}


def _write(tmp: Path, name: str, data: bytes) -> Path:
    p = tmp / name
    p.write_bytes(data)
    return p


# ------------------------------------------------------------------------------------------- tests
def test_safetensors_header_claiming_huge_shapes_is_refused_without_allocating(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [2**40, 2**20], "data_offsets": [0, 2**62]}}).encode()
    p = _write(tmp_path, "model.safetensors", struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(hf.PretrainedFormatError, match="not a tensor inside the file"):
        hf.read_safetensors(p)
    p = _write(tmp_path, "model.safetensors", struct.pack("<Q", 2**60) + b"{}")
    with pytest.raises(hf.PretrainedFormatError, match="header length"):
        hf.read_safetensors(p)


@FUZZ
@given(data=st.data())
def test_fuzz_safetensors(valid_files, tmp_path_factory, data):
    valid = (valid_files["hf"] / hf.WEIGHTS_NAME).read_bytes()
    blob = data.draw(variants(valid, is_json=False))
    d = tmp_path_factory.mktemp("st")
    _raises_only_ours(hf.read_safetensors, _write(d, hf.WEIGHTS_NAME, blob))


@FUZZ
@given(data=st.data())
def test_fuzz_config_json(valid_files, tmp_path_factory, data):
    valid = (valid_files["hf"] / hf.CONFIG_NAME).read_bytes()
    d = tmp_path_factory.mktemp("hf")
    (d / hf.WEIGHTS_NAME).write_bytes((valid_files["hf"] / hf.WEIGHTS_NAME).read_bytes())
    (d / hf.TINYGPT_TOKENIZER_NAME).write_bytes((valid_files["hf"] / hf.TINYGPT_TOKENIZER_NAME).read_bytes())
    _write(d, hf.CONFIG_NAME, data.draw(variants(valid)))
    _raises_only_ours(GPT.from_pretrained, d)


@FUZZ
@given(data=st.data())
def test_fuzz_tokenizer_json(valid_files, tmp_path_factory, data):
    which = data.draw(st.sampled_from(["bpe", "char"]))
    blob = data.draw(variants(valid_files[which].read_bytes()))
    p = _write(tmp_path_factory.mktemp("tok"), "tok.json", blob)
    try:
        tok = tokenizer.load(p)
    except OURS:
        return
    tok.decode(list(range(min(tok.vocab_size, 300))))   # a tokenizer that loads is usable
    assert tok.vocab_size < 2**31


def _copy_run(src: Path, dst: Path) -> Path:
    for p in src.rglob("*"):
        if p.is_file():
            q = dst / p.relative_to(src)
            q.parent.mkdir(parents=True, exist_ok=True)
            q.write_bytes(p.read_bytes())
    return dst


@FUZZ
@given(data=st.data())
def test_fuzz_state_json(valid_files, tmp_path_factory, data):
    run = _copy_run(valid_files["run"], tmp_path_factory.mktemp("run"))
    state = run / valid_files["ckpt"].name / "state.json"
    state.write_bytes(data.draw(variants(state.read_bytes())))
    try:
        c = load_checkpoint(run, verify=False)
    except OURS:
        return
    c.build_model()                                  # what loads builds (sizes were checked against the weights)


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint_json(valid_files, tmp_path_factory, data):
    run = _copy_run(valid_files["run"], tmp_path_factory.mktemp("run"))
    pointer = run / "checkpoint.json"
    pointer.write_bytes(data.draw(variants(pointer.read_bytes())))
    _raises_only_ours(load_checkpoint, run)


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint_weights(valid_files, tmp_path_factory, data):
    """model.safetensors mutated, with state.json's sha256 updated to match (a deliberate edit)."""
    run = _copy_run(valid_files["run"], tmp_path_factory.mktemp("run"))
    ck = run / valid_files["ckpt"].name
    w = ck / "model.safetensors"
    w.write_bytes(data.draw(variants(w.read_bytes(), is_json=False)))
    state = json.loads((ck / "state.json").read_text())
    state["files"]["model.safetensors"] = sha256_file(w)
    (ck / "state.json").write_text(json.dumps(state))
    try:
        c = load_checkpoint(run)
    except OURS:
        return
    try:
        c.build_model()
    except OURS:
        pass


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("trained")
    text = d / "input.txt"
    text.write_text("abcdefgh abcdefgh\n" * 40, encoding="utf-8")
    cfg = make_config(None, dict(out_dir=str(d / "run"), dataset=str(text), n_layer=1, n_head=1, n_embd=8,
                                 block_size=8, batch_size=2, max_iters=2, lr_decay_iters=2, warmup_iters=0,
                                 eval_interval=2, eval_iters=1))
    train(cfg, progress=False)
    return d / "run"


@settings(max_examples=40, deadline=2000, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_fuzz_state_json_on_resume(trained_run, tmp_path_factory, data):
    """A resume reads more of state.json (train config, RNG streams, counters, AdamW's groups)."""
    run = _copy_run(trained_run, tmp_path_factory.mktemp("resume"))
    state = next(run.glob("ckpt-*")) / "state.json"
    state.write_bytes(data.draw(variants(state.read_bytes())))
    try:
        cfg = resume_config(run)
        train(cfg, resume=True, progress=False)
    except OURS:
        pass
