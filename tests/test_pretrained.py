"""GPT-2 folders (config.json + model.safetensors): loading, saving, sampling, fine-tuning init.

No network: every folder is written here with safetensors' NumPy API (or, for bfloat16 and damaged
files, byte by byte from the format's spec), and logits are checked against a NumPy GPT-2 forward
written below from GPT-2's definition, independent of tinytensor.
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from gpt.model import GPT, GPTConfig
from gpt.config import FINETUNE_DEFAULTS, finetune_values
from gpt.data import load_tokenizer
from gpt import load_pretrained
from gpt.hf import PretrainedFormatError, load_pretrained_into, read_safetensors, save_pretrained
from gpt.sample import sample_pretrained
from tinytensor.errors import ConfigError, DTypeError, FileFormatError, UsageError

L, H, C, V, P = 2, 2, 32, 100, 16        # n_layer, n_head, n_embd, vocab_size, n_positions
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


# ------------------------------------------------------------------------------------ helpers
def gpt2_weights(rng, n_layer=L, n_embd=C, vocab=V, n_pos=P) -> dict[str, np.ndarray]:
    """Random GPT-2 weights by the file's short names, Conv1D weights [in, out], float32.

    LayerNorm gains and all biases are random too, so a dropped bias or a wrong gain shows in the logits.
    """
    def normal(*shape, mean=0.0, std=0.2):
        return rng.normal(mean, std, size=shape).astype(np.float32)
    w = {"wte.weight": normal(vocab, n_embd), "wpe.weight": normal(n_pos, n_embd)}
    for i in range(n_layer):
        h = f"h.{i}."
        w.update({
            h + "ln_1.weight": normal(n_embd, mean=1.0, std=0.1), h + "ln_1.bias": normal(n_embd, std=0.1),
            h + "attn.c_attn.weight": normal(n_embd, 3 * n_embd), h + "attn.c_attn.bias": normal(3 * n_embd, std=0.1),
            h + "attn.c_proj.weight": normal(n_embd, n_embd), h + "attn.c_proj.bias": normal(n_embd, std=0.1),
            h + "ln_2.weight": normal(n_embd, mean=1.0, std=0.1), h + "ln_2.bias": normal(n_embd, std=0.1),
            h + "mlp.c_fc.weight": normal(n_embd, 4 * n_embd), h + "mlp.c_fc.bias": normal(4 * n_embd, std=0.1),
            h + "mlp.c_proj.weight": normal(4 * n_embd, n_embd), h + "mlp.c_proj.bias": normal(n_embd, std=0.1),
        })
    w["ln_f.weight"] = normal(n_embd, mean=1.0, std=0.1)
    w["ln_f.bias"] = normal(n_embd, std=0.1)
    return w


def hf_config(n_layer=L, n_head=H, n_embd=C, vocab=V, n_pos=P, **extra) -> dict:
    """A transformers GPT-2 config.json, as GPT2Config writes it (the fields that matter)."""
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
            "n_layer": n_layer, "n_head": n_head, "n_embd": n_embd, "vocab_size": vocab, "n_positions": n_pos,
            "n_ctx": n_pos, "n_inner": None, "layer_norm_epsilon": 1e-5, "resid_pdrop": 0.1, "embd_pdrop": 0.1,
            "attn_pdrop": 0.1, "scale_attn_weights": True, "tie_word_embeddings": True, **extra}


def write_dir(path: Path, w: dict[str, np.ndarray], config: dict | None = None, prefix: str = "transformer.",
              buffers: bool = False, lm_head: bool = False, dtype=None) -> Path:
    """Write a GPT-2 folder. ``buffers``/``lm_head``: add the mask buffers and the (tied) head, as the Hub's
    original ``gpt2`` file has them (that file also has no ``transformer.`` prefix)."""
    path.mkdir(parents=True, exist_ok=True)
    tensors = {prefix + k: (v.astype(dtype) if dtype else v) for k, v in w.items()}
    n_pos = w["wpe.weight"].shape[0]
    if buffers:
        for i in range(sum(k.endswith("ln_1.weight") for k in w)):
            tensors[f"{prefix}h.{i}.attn.bias"] = np.tril(np.ones((n_pos, n_pos), np.float32))[None, None]
            tensors[f"{prefix}h.{i}.attn.masked_bias"] = np.array(-1e4, dtype=np.float32)
    if lm_head:
        tensors["lm_head.weight"] = tensors[prefix + "wte.weight"].copy()
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(config or hf_config()))
    return path


def write_raw_safetensors(path: Path, tensors: dict[str, tuple[str, tuple, bytes]]) -> None:
    """The safetensors format by hand: u64 header length, JSON header (dtype, shape, offsets), data."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    path.write_bytes(len(hb).to_bytes(8, "little") + hb + b"".join(blobs))


def reference_logits(w: dict[str, np.ndarray], n_head: int, ids: np.ndarray) -> np.ndarray:
    """GPT-2's forward in float64 NumPy from the file's weights (Conv1D: ``x @ W + b``)."""
    w = {k: v.astype(np.float64) for k, v in w.items()}

    def ln(x, g, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * g + b

    def gelu_new(x):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    B, T = ids.shape
    n_embd = w["wte.weight"].shape[1]
    D = n_embd // n_head
    x = w["wte.weight"][ids] + w["wpe.weight"][:T]                               # [B, T, C]
    n_layer = sum(k.endswith("ln_1.weight") for k in w)
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    for i in range(n_layer):
        p = lambda name: w[f"h.{i}.{name}"]  # noqa: E731
        h = ln(x, p("ln_1.weight"), p("ln_1.bias"))
        qkv = h @ p("attn.c_attn.weight") + p("attn.c_attn.bias")                # [B, T, 3C]
        q, k, v = (qkv[..., j * n_embd:(j + 1) * n_embd].reshape(B, T, n_head, D).transpose(0, 2, 1, 3)
                   for j in range(3))                                            # [B, H, T, D]
        att = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D)                         # [B, H, T, T]
        att = np.where(future, -np.inf, att)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, n_embd)
        x = x + y @ p("attn.c_proj.weight") + p("attn.c_proj.bias")
        h = ln(x, p("ln_2.weight"), p("ln_2.bias"))
        x = x + gelu_new(h @ p("mlp.c_fc.weight") + p("mlp.c_fc.bias")) @ p("mlp.c_proj.weight") + p("mlp.c_proj.bias")
    x = ln(x, w["ln_f.weight"], w["ln_f.bias"])
    return x @ w["wte.weight"].T                                                 # [B, T, V]


def all_logits(model: GPT, ids: np.ndarray) -> np.ndarray:
    """Logits at every position (the forward gives all of them when targets are passed)."""
    logits, _ = model(ids, np.zeros_like(ids))
    return logits.data


def file_weights(model_dir: Path) -> dict[str, np.ndarray]:
    """A saved folder's tensors by short name (no ``transformer.`` prefix)."""
    return {k.removeprefix("transformer."): v for k, v in load_file(str(model_dir / "model.safetensors")).items()}


@pytest.fixture
def weights(rng):
    return gpt2_weights(rng)


@pytest.fixture
def ids(rng):
    return rng.integers(0, V, size=(2, P))


# ------------------------------------------------------------------------------------ loading
@pytest.mark.parametrize("layout", ["GPT2LMHeadModel", "hub gpt2 (no prefix, buffers, lm_head)"])
def test_load_matches_numpy_forward(tmp_path, weights, ids, layout):
    if layout == "GPT2LMHeadModel":
        d = write_dir(tmp_path / "m", weights)
    else:
        d = write_dir(tmp_path / "m", weights, prefix="", buffers=True, lm_head=True)
    model = load_pretrained(d)
    assert model.config == GPTConfig(block_size=P, vocab_size=V, n_layer=L, n_head=H, n_embd=C, dropout=0.0, bias=True)
    assert not model.training
    np.testing.assert_allclose(all_logits(model, ids), reference_logits(weights, H, ids), rtol=1e-4, atol=1e-5)
    # the layout change is a transpose, nothing more
    sd = model.state_dict()
    np.testing.assert_array_equal(sd["transformer.h.1.attn.c_attn.weight"], weights["h.1.attn.c_attn.weight"].T)
    assert sd["transformer.h.1.mlp.c_fc.weight"].shape == (4 * C, C)
    assert model.lm_head.weight is model.transformer.wte.weight


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_upcast_to_float32(tmp_path, weights, ids, dtype):
    d = tmp_path / "m"
    if dtype == "float16":
        write_dir(d, weights, dtype=np.float16)
        expected = {k: v.astype(np.float16).astype(np.float32) for k, v in weights.items()}
    else:  # NumPy has no bfloat16: write the format by hand, bfloat16 = the top 16 bits of a float32
        d.mkdir()
        expected, raw = {}, {}
        for k, v in weights.items():
            bits = (np.ascontiguousarray(v).view(np.uint32) >> 16).astype("<u2")
            expected[k] = (bits.astype(np.uint32) << 16).view(np.float32)
            raw["transformer." + k] = ("BF16", v.shape, bits.tobytes())
        write_raw_safetensors(d / "model.safetensors", raw)
        (d / "config.json").write_text(json.dumps(hf_config()))
    model = load_pretrained(d)
    sd = model.state_dict()
    assert all(a.dtype == np.float32 for a in sd.values())
    np.testing.assert_array_equal(sd["transformer.wte.weight"], expected["wte.weight"])
    np.testing.assert_array_equal(sd["transformer.h.0.mlp.c_proj.weight"], expected["h.0.mlp.c_proj.weight"].T)
    np.testing.assert_allclose(all_logits(model, ids), reference_logits(expected, H, ids), rtol=1e-4, atol=1e-5)


def test_sharded_weights(tmp_path, weights, ids):
    d = tmp_path / "m"
    d.mkdir()
    names = sorted(weights)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for fname, keys in shards.items():
        save_file({"transformer." + k: weights[k] for k in keys}, str(d / fname), metadata={"format": "pt"})
        weight_map.update({"transformer." + k: fname for k in keys})
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (d / "config.json").write_text(json.dumps(hf_config()))
    np.testing.assert_allclose(all_logits(load_pretrained(d), ids), reference_logits(weights, H, ids),
                               rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------ saving
def test_save_load_round_trip_is_bit_exact(tmp_path, ids):
    model = GPT(GPTConfig(block_size=P, vocab_size=V, n_layer=L, n_head=H, n_embd=C, bias=True), seed=3)
    rng = np.random.default_rng(0)
    for _, p in model.named_parameters():           # non-trivial LayerNorms and biases
        p.data[...] += rng.normal(0, 0.1, p.shape).astype(p.dtype)
    d = save_pretrained(model, tmp_path / "out")
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.safetensors"]   # no temp files left
    back = load_pretrained(d)
    assert back.config == model.config
    a, b = model.state_dict(), back.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    np.testing.assert_array_equal(all_logits(back, ids), all_logits(model, ids))

    # the file is GPT-2's layout, checked without our loader: the NumPy forward on it gives our logits
    w = file_weights(d)
    assert "lm_head.weight" not in w and not any("attn.bias" == k[-9:] and "c_" not in k for k in w)
    assert w["h.0.attn.c_attn.weight"].shape == (C, 3 * C) and w["h.0.mlp.c_proj.weight"].shape == (4 * C, C)
    np.testing.assert_allclose(reference_logits(w, H, ids), all_logits(model, ids), rtol=1e-4, atol=1e-5)
    cfg = json.loads((d / "config.json").read_text())
    assert {k: cfg[k] for k in ("n_layer", "n_head", "n_embd", "vocab_size", "n_positions")} == \
        {"n_layer": L, "n_head": H, "n_embd": C, "vocab_size": V, "n_positions": P}
    assert cfg["activation_function"] == "gelu_new" and cfg["layer_norm_epsilon"] == 1e-5
    assert cfg["tie_word_embeddings"] is True and cfg["eos_token_id"] is None   # no <|endoftext|> in 100 ids

    save_pretrained(back, d)                         # overwriting a folder in place works
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.safetensors"]


def test_load_skips_the_init_and_copies_the_file_bit_for_bit_through_the_tiled_transpose(tmp_path, ids):
    # n_embd 80 > the 64-wide copy tiles, and not a multiple of them: the Conv1D weights take the tiled path
    cfg = GPTConfig(block_size=70, vocab_size=V, n_layer=1, n_head=2, n_embd=80, bias=True)
    model = GPT(cfg, seed=5)
    rng = np.random.default_rng(1)
    for _, p in model.named_parameters():
        p.data[...] += rng.normal(0, 0.1, p.shape).astype(p.dtype)
    d = save_pretrained(model, tmp_path / "out")
    back = load_pretrained(d)
    w = file_weights(d)
    for name, p in back.named_parameters():
        short = name.removeprefix("transformer.")
        assert p.data.flags.c_contiguous and p.data.flags.writeable and p.dtype == np.float32, name
        want = w[short].T if short.endswith(CONV1D) else w[short]
        assert np.array_equal(p.data, want) and np.array_equal(p.data, model.state_dict()[name]), name
    np.testing.assert_array_equal(all_logits(back, ids), all_logits(model, ids))


def test_a_model_built_without_init_refuses_to_run_until_every_weight_is_loaded(ids):
    cfg = GPTConfig(block_size=P, vocab_size=V, n_layer=L, n_head=H, n_embd=C, bias=True)
    source = GPT(cfg, seed=2)
    empty = GPT(cfg, seed=2, init=False)
    with pytest.raises(UsageError, match="init=False"):
        empty(ids)
    with pytest.raises(UsageError, match="init=False"):
        empty.generate(ids[:1, :2], max_new_tokens=1)
    state = source.state_dict()
    partial = {k: v for k, v in state.items() if "wpe" not in k}
    empty.load_state_dict(partial, strict=False)                 # the position embeddings are still garbage
    with pytest.raises(UsageError, match="never loaded"):
        empty(ids)
    empty.load_state_dict(state)
    np.testing.assert_array_equal(all_logits(empty, ids), all_logits(source, ids))


def test_read_safetensors_gives_read_only_views_equal_to_safetensors_own_reader(tmp_path, weights):
    d = write_dir(tmp_path / "m", weights)
    got = read_safetensors(d / "model.safetensors")
    want = load_file(str(d / "model.safetensors"))
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), k
    with pytest.raises(ValueError, match="read-only"):
        got["transformer.wte.weight"][0, 0] = 1.0            # the file's bytes, never written through


def test_save_model_without_biases_writes_zero_biases(tmp_path, ids):
    model = GPT(GPTConfig(block_size=P, vocab_size=V, n_layer=L, n_head=H, n_embd=C, bias=False), seed=4)
    d = save_pretrained(model, tmp_path / "nobias")
    w = file_weights(d)
    assert np.all(w["h.1.attn.c_attn.bias"] == 0) and w["h.1.attn.c_attn.bias"].shape == (3 * C,)
    assert np.all(w["ln_f.bias"] == 0) and w["h.0.mlp.c_fc.bias"].shape == (4 * C,)
    back = load_pretrained(d)
    assert back.config.bias is True
    np.testing.assert_allclose(all_logits(back, ids), all_logits(model, ids), rtol=1e-6, atol=1e-6)


def test_save_rejects_non_gpt(tmp_path):
    with pytest.raises(DTypeError, match="needs a GPT"):
        save_pretrained(object(), tmp_path / "x")


# ------------------------------------------------------------------------------------ bad folders
def test_missing_files(tmp_path, weights):
    with pytest.raises(FileNotFoundError, match="no folder"):
        load_pretrained(tmp_path / "nope")
    d = write_dir(tmp_path / "m", weights)
    (d / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(d)
    (d / "config.json").write_text(json.dumps(hf_config()))
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin, a pickle"):
        load_pretrained(d)


@pytest.mark.parametrize("cut", ["data", "header"])
def test_truncated_file(tmp_path, weights, cut):
    d = write_dir(tmp_path / "m", weights)
    f = d / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[:-100] if cut == "data" else data[:20])
    with pytest.raises(PretrainedFormatError, match=r"model\.safetensors is not a readable safetensors file.*truncated"):
        load_pretrained(d)


def test_missing_unexpected_and_misshaped_tensors_are_named(tmp_path, weights):
    w = dict(weights)
    del w["h.1.mlp.c_fc.bias"]
    w["h.0.attn.c_attn.weight"] = w["h.0.attn.c_attn.weight"].T.copy()   # [out, in]: forgot Conv1D's layout
    w["h.0.attn.rotary.weight"] = np.zeros(3, np.float32)
    with pytest.raises(PretrainedFormatError) as e:
        load_pretrained(write_dir(tmp_path / "m", w))
    msg = str(e.value)
    assert "missing transformer.h.1.mlp.c_fc.bias" in msg
    assert "unexpected transformer.h.0.attn.rotary.weight" in msg
    assert "transformer.h.0.attn.c_attn.weight (96, 32), expected (32, 96) [in, out], Conv1D layout" in msg
    assert "n_layer=2, n_head=2, n_embd=32, vocab_size=100, n_positions=16" in msg


def test_config_that_does_not_match_the_weights(tmp_path, weights):
    d = write_dir(tmp_path / "m", weights, config=hf_config(n_layer=3, n_embd=64, n_head=4))
    with pytest.raises(PretrainedFormatError) as e:
        load_pretrained(d)
    msg = str(e.value)
    assert "(from config.json; the weights look like n_layer=2, n_embd=32, vocab_size=100, n_positions=16: " \
           "does config.json belong to them?)" in msg
    assert "missing transformer.h.2.ln_1.weight" in msg
    assert "transformer.h.0.attn.c_attn.weight (32, 96), expected (64, 192) [in, out], Conv1D layout" in msg


@pytest.mark.parametrize("change, match", [
    ({"activation_function": "gelu"}, "activation_function 'gelu' is not supported"),
    ({"activation_function": "relu"}, "GELU's tanh form"),
    ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon 1e-06, but tinygpt's LayerNorm uses eps 1e-05"),
    ({"model_type": "gpt_neo"}, "only GPT-2"),
    ({"n_inner": 100}, "n_inner=100"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True is not supported"),
    ({"n_layer": 0}, "n_layer must be a positive integer"),
    ({"n_head": 5}, "divisible"),
    ({"n_layer": None}, "n_layer must be a positive integer, got None"),
])
def test_unsupported_config(tmp_path, weights, change, match):
    d = write_dir(tmp_path / "m", weights, config=hf_config(**change))
    with pytest.raises(PretrainedFormatError, match=match):
        load_pretrained(d)


def test_config_missing_field_and_bad_json(tmp_path, weights):
    cfg = hf_config()
    del cfg["n_positions"], cfg["n_ctx"]
    d = write_dir(tmp_path / "m", weights, config=cfg)
    with pytest.raises(PretrainedFormatError, match="missing n_positions or n_ctx"):
        load_pretrained(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(PretrainedFormatError, match="config.json is not valid JSON"):
        load_pretrained(d)


def test_untied_head_duplicates_and_integer_weights(tmp_path, weights):
    d = write_dir(tmp_path / "untied", weights, prefix="")
    t = load_file(str(d / "model.safetensors"))
    t["lm_head.weight"] = t["wte.weight"] + 1.0
    save_file(t, str(d / "model.safetensors"))
    with pytest.raises(PretrainedFormatError, match=r"lm_head\.weight \(100, 32\) differs from wte\.weight \(100, 32\): an untied"):
        load_pretrained(d)

    t = {"transformer." + k: v for k, v in weights.items()}
    t["wpe.weight"] = weights["wpe.weight"]
    t["transformer.ln_f.bias"] = np.zeros(C, dtype=np.int32)
    save_file(t, str(d / "model.safetensors"))
    with pytest.raises(PretrainedFormatError, match=r"given twice .* wpe\.weight; not floating point: "
                                                    r"transformer\.ln_f\.bias \(int32\)"):
        load_pretrained(d)


# ------------------------------------------------------------------------------------ fine-tuning init
def test_load_into_a_shorter_context_crops_positions(tmp_path, weights, rng):
    d = write_dir(tmp_path / "m", weights)
    short = GPT(GPTConfig(block_size=8, vocab_size=V, n_layer=L, n_head=H, n_embd=C, dropout=0.1), seed=0)
    load_pretrained_into(short, d)
    np.testing.assert_array_equal(short.state_dict()["transformer.wpe.weight"], weights["wpe.weight"][:8])
    x = rng.integers(0, V, size=(1, 8))
    short.eval()
    np.testing.assert_allclose(all_logits(short, x), reference_logits(weights, H, x), rtol=1e-4, atol=1e-5)

    with pytest.raises(PretrainedFormatError, match=r"block_size 32 is longer than the folder's n_positions 16"):
        load_pretrained_into(GPT(GPTConfig(block_size=32, vocab_size=V, n_layer=L, n_head=H, n_embd=C)), d)
    with pytest.raises(PretrainedFormatError, match=r"n_layer \(3 vs 2\), bias \(False vs True\)"):
        load_pretrained_into(GPT(GPTConfig(block_size=8, vocab_size=V, n_layer=3, n_head=H, n_embd=C, bias=False)), d)


# ------------------------------------------------------------------------------------ tokenizer, sampling
def write_byte_tokenizer(d: Path) -> int:
    """A tiny GPT-2-format tokenizer (256 byte tokens with id = byte, two merges, <|endoftext|>); returns its size."""
    from tokenizer import bytes_to_unicode
    chars = list(bytes_to_unicode().values())
    encoder = {ch: i for i, ch in enumerate(chars)}
    merges = [("h", "e"), ("l", "l")]
    for a, b in merges:
        encoder[a + b] = len(encoder)
    encoder["<|endoftext|>"] = len(encoder)
    (d / "encoder.json").write_text(json.dumps(encoder), encoding="utf-8")
    (d / "vocab.bpe").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return len(encoder)


def test_sample_pretrained_streams_and_matches_generate(tmp_path, rng):
    d = tmp_path / "m"
    d.mkdir()
    vocab = write_byte_tokenizer(d)
    write_dir(d, gpt2_weights(rng, vocab=vocab), config=hf_config(vocab=vocab))
    out = io.StringIO()
    texts = sample_pretrained(d, prompt="hello", max_new_tokens=12, temperature=0.9, top_k=50, top_p=0.95,
                              seed=7, num_samples=2, stream=out)
    assert len(texts) == 2
    assert out.getvalue() == "hello" + texts[0] + "\n\n---------------\nhello" + texts[1] + "\n"
    again = sample_pretrained(d, prompt="hello", max_new_tokens=12, temperature=0.9, top_k=50, top_p=0.95,
                              seed=7, num_samples=2, stream=io.StringIO())
    assert again == texts

    # the streamed text is the decoded continuation of model.generate with the same seed (and the cache)
    model, tok = load_pretrained(d), load_tokenizer(d)
    prompt_ids = tok.encode("hello")
    assert prompt_ids == [256, 257, ord("o")]                # he, ll, o (byte ids = byte values here)
    ids = model.generate(np.array(prompt_ids), 12, temperature=0.9, top_k=50, top_p=0.95, seed=7)
    assert texts[0] == tok.decode(ids[len(prompt_ids):].tolist())
    greedy = sample_pretrained(d, prompt="hello", max_new_tokens=5, temperature=0, stream=io.StringIO())
    assert greedy[0] == tok.decode(model.generate(np.array(prompt_ids), 5, temperature=0)[3:].tolist())


def test_tokenizer_sources(tmp_path, rng):
    d = tmp_path / "m"
    d.mkdir()
    write_dir(d, gpt2_weights(rng))
    with pytest.raises(FileNotFoundError, match="no tokenizer at .*encoder.json and vocab.bpe"):
        sample_pretrained(d, "hi", 1, stream=io.StringIO())
    tdir = tmp_path / "tok"
    tdir.mkdir()
    vocab = write_byte_tokenizer(tdir)
    with pytest.raises(ConfigError, match=f"the tokenizer has {vocab} ids but the model's vocab_size is {V}"):
        load_tokenizer(tdir, vocab_size=V)
    tok = load_tokenizer(tdir)
    saved = tok.save(tmp_path / "tok.json")
    assert load_tokenizer(saved).encode("hello") == tok.encode("hello")


def test_pretrained_format_error_is_the_projects_file_format_error():
    assert issubclass(PretrainedFormatError, FileFormatError)   # the CLI prints it as one line


def test_finetune_values(tmp_path, rng):
    d = tmp_path / "m"
    d.mkdir()
    vocab = write_byte_tokenizer(d)
    write_dir(d, gpt2_weights(rng, vocab=vocab), config=hf_config(vocab=vocab))
    out = tmp_path / "run"
    v = finetune_values(d, {"out_dir": str(out), "max_iters": 3, "block_size": 8})
    assert (v["n_layer"], v["n_head"], v["n_embd"], v["bias"]) == (L, H, C, True)
    assert v["max_iters"] == 3 and v["block_size"] == 8 and v["init_from"] == str(d)
    assert v["learning_rate"] == FINETUNE_DEFAULTS["learning_rate"] and v["decay_lr"] is False
    assert Path(v["tokenizer"]) == out / "gpt2-tokenizer.json"
    from tokenizer import load
    assert load(v["tokenizer"]).encode("hello") == load_tokenizer(d).encode("hello")

    with pytest.raises(ConfigError, match=r"fixes .*cannot set \{'n_layer': 4\}"):
        finetune_values(d, {"out_dir": str(out), "n_layer": 4})
    with pytest.raises(ConfigError, match="block_size 64 is longer than .* n_positions 16"):
        finetune_values(d, {"out_dir": str(out), "block_size": 64})
    write_dir(d, gpt2_weights(rng), config=hf_config())          # vocab 100, the tokenizer's 259
    with pytest.raises(ConfigError, match=f"the tokenizer has {vocab} ids but .* has vocab_size {V}; fine-tuning"):
        finetune_values(d, {"out_dir": str(out), "block_size": 8})


# ------------------------------------------------------------------------------------ transformers parity
def test_transformers_loads_our_files_and_we_load_theirs(tmp_path, ids):
    """Skipped unless transformers (and torch) are installed: the ``bench`` extra."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = GPT(GPTConfig(block_size=P, vocab_size=V, n_layer=L, n_head=H, n_embd=C), seed=5)
    rng = np.random.default_rng(1)
    for _, p in model.named_parameters():
        p.data[...] += rng.normal(0, 0.1, p.shape).astype(p.dtype)
    d = save_pretrained(model, tmp_path / "ours")
    hf, info = transformers.GPT2LMHeadModel.from_pretrained(str(d), output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    hf.eval()
    with torch.no_grad():
        ref = hf(torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(all_logits(model, ids), ref, rtol=0, atol=1e-5)

    # and back: a folder transformers wrote loads here with transformers' logits
    hf_cfg = transformers.GPT2Config(n_layer=L, n_head=H, n_embd=C, vocab_size=V, n_positions=P,
                                     bos_token_id=None, eos_token_id=None)
    torch.manual_seed(0)
    theirs = transformers.GPT2LMHeadModel(hf_cfg).eval()
    theirs.save_pretrained(str(tmp_path / "theirs"))
    with torch.no_grad():
        ref = theirs(torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(all_logits(load_pretrained(tmp_path / "theirs"), ids), ref, rtol=0, atol=1e-5)
