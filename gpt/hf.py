"""GPT-2 weights in Hugging Face's layout, and nothing else: config mapping, name mapping, safetensors.

    model = GPT.from_pretrained("gpt2")         # a name (gpt.hub) or a folder; also gpt.load_pretrained
    model.save_pretrained("my-gpt2")            # also gpt.hf.save_pretrained(model, "my-gpt2")
    # transformers.GPT2LMHeadModel.from_pretrained("my-gpt2") now gives the same logits

A model folder is what ``transformers``' ``GPT2LMHeadModel.save_pretrained`` writes::

    config.json          n_layer, n_head, n_embd, n_positions, vocab_size, layer_norm_epsilon,
                         activation_function ("gelu_new": GELU's tanh form, which tinygpt uses), ...
    model.safetensors    the weights by name (or model.safetensors.index.json and its shards)
    encoder.json         GPT-2's tokenizer, optional: used by gpt.sample.sample_pretrained and
                         gpt.config.finetune_config (gpt.data.load_tokenizer reads it)
    vocab.bpe

How the weights file differs from tinygpt's parameters (``transformer.h.0.attn.c_attn.weight`` [3C, C]):

* names may carry a ``transformer.`` prefix (``GPT2LMHeadModel``) or not (``GPT2Model``; the Hub's
  ``gpt2`` file); tinygpt's always do.
* ``c_attn``, ``c_proj`` and ``c_fc`` are GPT-2's ``Conv1D`` layers: weight ``[in, out]``, the
  transpose of tinygpt's ``Linear`` ``[out, in]``. They are transposed on the way in and out.
* ``h.{i}.attn.bias`` / ``h.{i}.attn.masked_bias`` are causal-mask buffers of older files: skipped.
* ``lm_head.weight`` is the token embedding (tied): absent, or equal to ``wte.weight``.
* float16 / bfloat16 (and float64) weights are cast to float32.

Only safetensors is read, never ``pytorch_model.bin`` (a pickle). A missing, unexpected or mis-shaped
tensor, or a config tinygpt's GPT cannot represent, raises :class:`PretrainedFormatError` (a
``tinytensor.errors.FileFormatError``) naming every offending tensor or field.
"""
from __future__ import annotations

import json
import math
import mmap
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save as st_save

from tinytensor import nn
from tinytensor.errors import DTypeError, FileFormatError, UsageError
from tinytensor.fileio import atomic_write_bytes, atomic_write_text

from tokenizer.gpt2 import gpt2_files

from .data.tokenizers import HF_TOKENIZER_FILES, TINYGPT_TOKENIZER_NAME
from .hub import resolve_model
from .model_config import GPTConfig, param_count

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"

_PREFIX = "transformer."
# GPT-2's Conv1D layers: weight [in, out] in the file, [out, in] (Linear) in tinygpt
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_BUFFER = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")      # causal-mask buffers, not weights
_GPT2_PARAM = re.compile(r"(wte|wpe)\.weight|ln_f\.(weight|bias)"
                         r"|h\.\d+\.(ln_1|ln_2|attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.(weight|bias)")
# transformers' names for GELU's tanh form, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), the one tinygpt uses
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
GPT2_EOT_ID = 50256


class PretrainedFormatError(FileFormatError):
    """A model folder whose config or weights tinygpt's GPT cannot take; the message says which and why."""


# ------------------------------------------------------------------------------------------ config
def read_config(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The folder's ``config.json`` as a dict.

    Raises:
        FileNotFoundError: no such folder or no ``config.json`` in it.
        PretrainedFormatError: the file is not a JSON object.
    """
    path = Path(model_dir) / CONFIG_NAME
    if not path.is_file():
        what = "folder" if not Path(model_dir).is_dir() else CONFIG_NAME
        raise FileNotFoundError(f"no {what} at {str(path if what == CONFIG_NAME else model_dir)!r}: a GPT-2 "
                                f"folder holds {CONFIG_NAME} and {WEIGHTS_NAME} (as transformers' "
                                f"save_pretrained writes them)")
    try:
        hf = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PretrainedFormatError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(hf, dict):
        raise PretrainedFormatError(f"{path} must hold a JSON object, got {type(hf).__name__}")
    return hf


def config_from_hf(hf: dict[str, Any], dropout: float = 0.0, source: str = CONFIG_NAME) -> GPTConfig:
    """The GPTConfig for a transformers GPT-2 config dict (``n_positions`` becomes ``block_size``).

    Raises:
        PretrainedFormatError: a missing or bad size, or a setting tinygpt's GPT does not have (another
            model type or activation, ``n_inner != 4 * n_embd``, cross-attention, ...). The LayerNorm
            epsilon is checked against the model's in :func:`load_pretrained`.
    """
    model_type = hf.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise PretrainedFormatError(f"{source}: model_type is {model_type!r}; only GPT-2 ('gpt2') is supported")

    def size(*keys: str) -> int:
        key = next((k for k in keys if k in hf), None)
        if key is None:
            raise PretrainedFormatError(f"{source}: missing {' or '.join(keys)}")
        v = hf[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise PretrainedFormatError(f"{source}: {key} must be a positive integer, got {v!r}")
        return v

    n_layer, n_head, n_embd = size("n_layer"), size("n_head"), size("n_embd")
    vocab_size, block_size = size("vocab_size"), size("n_positions", "n_ctx")
    act = hf.get("activation_function", "gelu_new")
    if act not in TANH_GELUS:
        raise PretrainedFormatError(f"{source}: activation_function {act!r} is not supported; tinygpt's GPT "
                                    f"uses GELU's tanh form ({', '.join(TANH_GELUS)})")
    n_inner = hf.get("n_inner")
    if n_inner is not None and n_inner != 4 * n_embd:
        raise PretrainedFormatError(f"{source}: n_inner={n_inner!r}; tinygpt's MLP is 4 * n_embd = {4 * n_embd} wide")
    for key, want in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                      ("add_cross_attention", False)):
        if hf.get(key, want) != want:
            raise PretrainedFormatError(f"{source}: {key}={hf[key]!r} is not supported (tinygpt's GPT has {want})")
    try:
        return GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=n_layer, n_head=n_head,
                         n_embd=n_embd, dropout=dropout, bias=True)
    except UsageError as e:
        raise PretrainedFormatError(f"{source}: {e}") from None


def hf_config(model: nn.Module) -> dict[str, Any]:
    """The transformers GPT-2 ``config.json`` dict describing ``model``."""
    c = model.config
    eot = GPT2_EOT_ID if c.vocab_size > GPT2_EOT_ID else None    # GPT-2's <|endoftext|>, if the vocab has it
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_positions": c.block_size,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": _layer_norm_eps(model),
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "dtype": "float32",
    }


def _layer_norm_eps(model: nn.Module) -> float:
    eps = {m.eps for _, m in model.named_modules() if isinstance(m, nn.LayerNorm)}
    if len(eps) != 1:
        raise PretrainedFormatError(f"the model's LayerNorms use different epsilons {sorted(eps)}; GPT-2 has one")
    return float(eps.pop())


# ----------------------------------------------------------------------------------------- weights
def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of one safetensors file, by name: read-only views of the file, memory-mapped.

    Nothing is copied here: the tensors are NumPy views of a read-only ``mmap`` of the file (the
    format is an 8-byte header length, a JSON header of dtypes, shapes and byte offsets, then the raw
    little-endian data), so the one copy is into the model's parameters. The mapping lives as long as
    a view does. :func:`save_pretrained` replaces a file rather than rewriting it in place, so a
    mapped file's bytes do not change underneath.

    NumPy has no bfloat16: those tensors are widened to float32 (a bfloat16 is the top half of a float32,
    so this is exact); NumPy has no float8 either: those are refused.

    Raises:
        PretrainedFormatError: the file is truncated, not safetensors, or holds float8 tensors.
    """
    path = Path(path)
    start, meta = _safetensors_header(path)    # checked (offsets inside the file) before anything is read
    with open(path, "rb") as f:
        data = np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), dtype=np.uint8)
    out: dict[str, np.ndarray] = {}
    for name, entry in meta.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        raw = data[start + begin:start + end]
        kind = entry["dtype"]
        if kind not in _NUMPY_DTYPE:
            raise PretrainedFormatError(f"{path}: tensor {name!r} is {kind}, which NumPy cannot hold; save the "
                                        f"weights as float32, float16 or bfloat16")
        if kind == "BF16":
            # subtle: bfloat16 bits are the high 16 bits of the float32 with the same value
            arr = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = raw.view(_NUMPY_DTYPE[kind])
        out[name] = arr.reshape(entry["shape"])
    return out


def _unreadable(path: Path, why: str) -> PretrainedFormatError:
    return PretrainedFormatError(f"{path} is not a readable safetensors file ({why}); is it truncated or "
                                 f"damaged? Download or save it again")


MAX_HEADER = 100 * 2**20          # safetensors' own limit on the JSON header
_SLACK_PARAMS = 2**20             # a config may describe this many parameters more than its weights hold
_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
             "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8}
_NUMPY_DTYPE = {"BOOL": "?", "U8": "u1", "I8": "i1", "U16": "<u2", "I16": "<i2", "F16": "<f2", "BF16": "<u2",
                "U32": "<u4", "I32": "<i4", "F32": "<f4", "U64": "<u8", "I64": "<i8", "F64": "<f8"}


def _safetensors_header(path: Path) -> tuple[int, dict]:
    """``(data start, header dict)``: the format is an 8-byte little-endian header length, then JSON.

    Checked before anything is allocated: the length fits in the file (and under :data:`MAX_HEADER`), every
    entry has a known dtype, a shape of ints >= 0 and offsets inside the file whose span is the shape's bytes.

    Raises:
        PretrainedFormatError: any of that fails.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < n <= min(MAX_HEADER, size - 8):
            raise _unreadable(path, f"header length {n} for a file of {size} bytes")
        raw = f.read(n)
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise _unreadable(path, f"its header is not JSON: {e}") from None
    if not isinstance(meta, dict):
        raise _unreadable(path, "its header is not a JSON object")
    data = size - 8 - n
    for name, entry in meta.items():
        if name == "__metadata__":
            continue
        ok = isinstance(entry, dict) and entry.get("dtype") in _ITEMSIZE and isinstance(entry.get("shape"), list) \
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in entry["shape"]) \
            and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2 \
            and all(isinstance(o, int) and not isinstance(o, bool) for o in entry["data_offsets"])
        if ok:
            begin, end = entry["data_offsets"]
            ok = 0 <= begin <= end <= data and end - begin == math.prod(entry["shape"]) * _ITEMSIZE[entry["dtype"]]
        if not ok:
            raise _unreadable(path, f"header entry {name!r} is not a tensor inside the file: {str(entry)[:120]}")
    return 8 + n, meta


def weight_shapes(model_dir: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in the folder's weights, from the file headers alone (no tensor is read).

    Raises:
        FileNotFoundError, PretrainedFormatError: as :func:`read_weights`.
    """
    d = Path(model_dir)
    if (d / WEIGHTS_NAME).is_file():
        files = [d / WEIGHTS_NAME]
    elif (d / INDEX_NAME).is_file():
        try:
            files = [d / s for s in sorted(set(json.loads((d / INDEX_NAME).read_text(encoding="utf-8"))["weight_map"]
                                               .values()))]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise PretrainedFormatError(f"{d / INDEX_NAME} is not a safetensors index ({e!r})") from None
        for f in files:
            if f.parent != d or not f.is_file():
                raise PretrainedFormatError(f"{d / INDEX_NAME} names a shard {f.name!r} that is not a file in {d}")
    else:
        return read_weights(d)   # raises the FileNotFoundError that says what is there
    shapes: dict[str, tuple[int, ...]] = {}
    for f in files:
        shapes.update((k, tuple(v["shape"])) for k, v in _safetensors_header(f)[1].items() if k != "__metadata__")
    return shapes


def check_config_fits_weights(config: GPTConfig, model_dir: str | os.PathLike, source: str = CONFIG_NAME) -> None:
    """Refuse a config whose model the weights' headers are far too small for, before it is built.

    A ``config.json`` saying ``n_layer: 10**9`` would otherwise allocate that model first.

    Raises:
        PretrainedFormatError: a size differs (names it and both values).
    """
    shapes = weight_shapes(model_dir)
    looks = _sizes_from_shapes(shapes)
    said = {"n_layer": config.n_layer, "n_embd": config.n_embd, "vocab_size": config.vocab_size,
            "n_positions": config.block_size}
    differ = {k: (v, looks.get(k)) for k, v in said.items() if looks.get(k) != v}
    # a small mismatch is built and then reported tensor by tensor (hf_to_state_dict); a model much larger
    # than the weights it is to hold is refused here, before it is allocated
    in_file = sum(math.prod(s) for s in shapes.values())
    if differ and param_count(config) > 4 * in_file + _SLACK_PARAMS:
        raise PretrainedFormatError(
            f"{source} does not fit the weights in {model_dir}: " + ", ".join(
                f"{k} {a} in the config vs {b} in the weights" for k, (a, b) in differ.items())
            + f" ({param_count(config):,} parameters for {in_file:,} stored values)")


def read_weights(model_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """The folder's tensors: ``model.safetensors``, or the shards ``model.safetensors.index.json`` lists.

    Raises:
        FileNotFoundError: neither file (the message says if a pickle ``pytorch_model.bin`` is there).
        PretrainedFormatError: a damaged file or index.
    """
    d = Path(model_dir)
    if (d / WEIGHTS_NAME).is_file():
        return read_safetensors(d / WEIGHTS_NAME)
    if (d / INDEX_NAME).is_file():
        try:
            weight_map = json.loads((d / INDEX_NAME).read_text(encoding="utf-8"))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise PretrainedFormatError(f"{d / INDEX_NAME} is not a safetensors index ({e!r})") from None
        out: dict[str, np.ndarray] = {}
        for shard in shards:
            if not isinstance(shard, str) or Path(shard).name != shard or not (d / shard).is_file():
                raise PretrainedFormatError(f"{d / INDEX_NAME} names a shard {shard!r} that is not a file in {d}")
            out.update(read_safetensors(d / shard))
        return out
    hint = (" It has pytorch_model.bin, a pickle, which tinygpt does not read: convert it to safetensors "
            "(e.g. load it with transformers and call save_pretrained(dir, safe_serialization=True)).") \
        if (d / "pytorch_model.bin").is_file() else ""
    raise FileNotFoundError(f"no {WEIGHTS_NAME} (or {INDEX_NAME}) in {str(d)!r}.{hint}")


def _short(name: str) -> str:
    return name[len(_PREFIX):] if name.startswith(_PREFIX) else name


def _listing(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def hf_to_state_dict(tensors: dict[str, np.ndarray], model: nn.Module, hf: dict[str, Any] | None = None,
                     source: str = WEIGHTS_NAME) -> dict[str, np.ndarray]:
    """Turn a GPT-2 weights file's tensors into ``model``'s state dict (names, layout and dtype).

    ``wpe.weight`` may have more rows than ``model.config.block_size`` (fine-tuning with a shorter
    context): the first ``block_size`` rows are kept. ``hf`` is the config, for ``n_positions`` and
    ``tie_word_embeddings``.

    The arrays are views of ``tensors`` (transposed for Conv1D, sliced for ``wpe``) in the file's float
    dtype: :meth:`~tinytensor.nn.Module.load_state_dict` copies and casts them into the parameters.

    Raises:
        PretrainedFormatError: naming every missing, unexpected, duplicate, non-float or mis-shaped tensor,
            or an ``lm_head.weight`` that differs from ``wte.weight`` (an untied head, which this GPT lacks).
    """
    hf = hf or {}
    own = {name: p for name, p in model.named_parameters()}
    n_positions = hf.get("n_positions", hf.get("n_ctx", model.config.block_size))
    style = _PREFIX if any(k.startswith(_PREFIX) for k in tensors) else ""   # spell names as the file does
    out: dict[str, np.ndarray] = {}
    seen: set[str] = set()                                      # our names the file has, valid or not
    unexpected, duplicate, misshaped, bad_dtype = [], [], [], []
    lm_head = None
    for key, arr in tensors.items():
        name = _short(key)
        if _BUFFER.fullmatch(name):
            continue
        if name == "lm_head.weight":
            lm_head = (key, arr)
            continue
        ours = _PREFIX + name
        if ours not in own:
            unexpected.append(key)
            continue
        if ours in seen:
            duplicate.append(key)
            continue
        seen.add(ours)
        p = own[ours]
        conv = name.endswith(_CONV1D)
        want = tuple(reversed(p.shape)) if conv else tuple(p.shape)
        if name == "wpe.weight":
            want = (n_positions,) + want[1:]
        if arr.dtype.kind != "f":
            bad_dtype.append(f"{key} ({arr.dtype})")
            continue
        if tuple(arr.shape) != want:
            layout = " [in, out], Conv1D layout" if conv else ""
            misshaped.append(f"{key} {tuple(arr.shape)}, expected {want}{layout}")
            continue
        arr = arr.T if conv else arr
        if name == "wpe.weight":
            arr = arr[:p.shape[0]]
        out[ours] = arr           # a view: load_state_dict makes the one copy (and the cast to float32)
    missing = [style + _short(n) for n in own if n not in seen]
    problems = []
    if missing:
        problems.append(f"missing {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listing(unexpected)}")
    if duplicate:
        problems.append(f"given twice (with and without the {_PREFIX!r} prefix) {_listing(duplicate)}")
    if misshaped:
        problems.append(f"wrong shape: {_listing(misshaped)}")
    if bad_dtype:
        problems.append(f"not floating point: {_listing(bad_dtype)}")
    if problems:
        c = model.config
        said = {"n_layer": c.n_layer, "n_embd": c.n_embd, "vocab_size": c.vocab_size, "n_positions": n_positions}
        looks = _sizes_in_file(tensors)
        hint = ""
        if any(looks.get(k, v) != v for k, v in said.items()):
            hint = ("; the weights look like " + ", ".join(f"{k}={looks[k]}" for k in said if k in looks)
                    + f": does {CONFIG_NAME} belong to them?")
        raise PretrainedFormatError(
            f"{source} does not fit GPT-2 with n_layer={c.n_layer}, n_head={c.n_head}, n_embd={c.n_embd}, "
            f"vocab_size={c.vocab_size}, n_positions={n_positions} (from {CONFIG_NAME}{hint}): "
            + "; ".join(problems))

    wte = out[_PREFIX + "wte.weight"]
    if lm_head is not None:
        key, arr = lm_head
        if arr.shape != wte.shape or not np.array_equal(np.asarray(arr, dtype=wte.dtype), wte):
            raise PretrainedFormatError(
                f"{source}: {key} {tuple(arr.shape)} differs from {style}wte.weight {wte.shape}: an untied "
                f"output layer, which tinygpt's GPT (lm_head tied to wte) cannot hold")
    elif hf.get("tie_word_embeddings", True) is False:
        raise PretrainedFormatError(f"{source}: {CONFIG_NAME} says tie_word_embeddings=false but there is no "
                                    f"lm_head.weight")
    return out


def _sizes_in_file(tensors: dict[str, np.ndarray]) -> dict[str, int]:
    """The sizes a weights file implies: layers from the ``h.{i}`` names, the rest from the embeddings."""
    return _sizes_from_shapes({k: arr.shape for k, arr in tensors.items()})


def _sizes_from_shapes(shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    layers = [int(m.group(1)) for k in shapes if (m := re.match(r"h\.(\d+)\.", _short(k)))]
    if layers:
        sizes["n_layer"] = max(layers) + 1
    for key, shape in shapes.items():
        if _short(key) == "wte.weight" and len(shape) == 2:
            sizes["vocab_size"], sizes["n_embd"] = shape
        elif _short(key) == "wpe.weight" and len(shape) == 2:
            sizes["n_positions"] = shape[0]
    return sizes


def state_dict_to_hf(model: nn.Module) -> dict[str, np.ndarray]:
    """``model``'s weights as GPT-2's file holds them: ``transformer.`` names, Conv1D ``[in, out]``, float32.

    A model without biases (``bias=False``) gets zero biases: GPT-2 always has them, and adding zero
    changes nothing. ``lm_head.weight`` is left out (tied to ``wte``), as transformers does.

    Raises:
        PretrainedFormatError: a parameter GPT-2 does not have (e.g. an untied ``lm_head.weight``).
    """
    params = dict(model.named_parameters())
    others = [n for n in params if not (n.startswith(_PREFIX) and _GPT2_PARAM.fullmatch(_short(n)))]
    if others:
        raise PretrainedFormatError(f"save_pretrained: parameters GPT-2's layout has no place for: {_listing(others)}")
    out: dict[str, np.ndarray] = {}
    for name, p in params.items():
        arr = p.data
        out[name] = np.ascontiguousarray(arr.T if name.endswith(_CONV1D) else arr, dtype=np.float32)
        bias = name[:-len("weight")] + "bias"
        if name.endswith(".weight") and "wte" not in name and "wpe" not in name and bias not in params:
            out[bias] = np.zeros(arr.shape[0], dtype=np.float32)   # [out] for Linear, [C] for LayerNorm
    return out


# ------------------------------------------------------------------------------------ load and save
def load_pretrained_into(model: nn.Module, model_dir: str | os.PathLike, hf: dict[str, Any] | None = None,
                         tensors: dict[str, np.ndarray] | None = None) -> nn.Module:
    """Copy a GPT-2 folder's weights into an existing ``model`` (the fine-tuning start).

    The model must have the folder's ``n_layer``, ``n_head``, ``n_embd`` and ``vocab_size``, biases,
    and ``block_size <= n_positions`` (its position embeddings are the first ``block_size`` rows,
    nanoGPT's ``crop_block_size``). Dropout is the model's own.

    Raises:
        PretrainedFormatError: the shapes differ, or the folder is unusable (see :func:`load_pretrained`).
    """
    model_dir = resolve_model(model_dir)
    hf = read_config(model_dir) if hf is None else hf
    source = str(Path(model_dir) / CONFIG_NAME)
    want = config_from_hf(hf, model.config.dropout, source)
    c = model.config
    differ = {k: (getattr(c, k), getattr(want, k)) for k in ("n_layer", "n_head", "n_embd", "vocab_size", "bias")
              if getattr(c, k) != getattr(want, k)}
    if differ:
        raise PretrainedFormatError(f"{model_dir}: the model and the folder differ in "
                                    + ", ".join(f"{k} ({a} vs {b})" for k, (a, b) in differ.items()))
    if c.block_size > want.block_size:
        raise PretrainedFormatError(f"{model_dir}: block_size {c.block_size} is longer than the folder's "
                                    f"n_positions {want.block_size}")
    eps = hf.get("layer_norm_epsilon", 1e-5)
    ours = _layer_norm_eps(model)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not math.isclose(eps, ours, rel_tol=1e-6):
        raise PretrainedFormatError(f"{source}: layer_norm_epsilon {eps!r}, but tinygpt's LayerNorm uses "
                                    f"eps {ours}; other values are not supported")
    tensors = read_weights(model_dir) if tensors is None else tensors
    state = hf_to_state_dict(tensors, model, hf, str(Path(model_dir) / WEIGHTS_NAME))
    model.load_state_dict(state, strict=True)
    return model


def save_pretrained(model: nn.Module, model_dir: str | os.PathLike, tokenizer=None) -> Path:
    """Write ``model`` as a GPT-2 folder that transformers' ``GPT2LMHeadModel.from_pretrained`` loads.

    Writes ``model.safetensors`` (``transformer.`` names, Conv1D weights ``[in, out]``, float32, no
    ``lm_head.weight``: it is tied), the tokenizer's files, then ``config.json``, each atomically (a
    temporary file in the folder, fsynced, then ``os.replace``d). :meth:`GPT.from_pretrained` gives back the
    same arrays bit for bit.

    The tokenizer makes the folder self-contained (``gpt.data.load_tokenizer(folder)`` reads it back):

    * ``tokenizer=None`` on a model of GPT-2's vocabulary (50,257 ids): GPT-2's own files, copied as
      ``vocab.json`` + ``merges.txt`` (transformers' names), when they are on this machine
      (``$TINYGPT_DATA/gpt2`` or the cache); nothing is downloaded for it.
    * a tokenizer object: saved as ``tinygpt-tokenizer.json`` (this project's format).

    Returns:
        The folder.
    """
    if not isinstance(getattr(model, "config", None), GPTConfig):
        raise DTypeError(f"save_pretrained needs a GPT, got {type(model).__name__}")
    d = Path(model_dir)
    d.mkdir(parents=True, exist_ok=True)
    tensors = state_dict_to_hf(model)
    config = hf_config(model)
    atomic_write_bytes(d / WEIGHTS_NAME, st_save(tensors, metadata={"format": "pt"}))
    if tokenizer is not None:
        tokenizer.save(d / TINYGPT_TOKENIZER_NAME)
    elif model.config.vocab_size == GPT2_EOT_ID + 1:
        try:
            encoder_json, vocab_bpe = gpt2_files(download=False)
        except FileNotFoundError:
            pass                       # GPT-2's files are not on this machine: the folder has no tokenizer
        else:
            atomic_write_bytes(d / HF_TOKENIZER_FILES[0], Path(encoder_json).read_bytes())
            atomic_write_bytes(d / HF_TOKENIZER_FILES[1], Path(vocab_bpe).read_bytes())
    atomic_write_text(d / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    return d


__all__ = ["CONFIG_NAME", "GPT2_EOT_ID", "INDEX_NAME", "TANH_GELUS", "WEIGHTS_NAME", "PretrainedFormatError",
           "check_config_fits_weights", "config_from_hf", "hf_config", "hf_to_state_dict", "load_pretrained_into",
           "read_config", "read_safetensors", "read_weights", "save_pretrained", "state_dict_to_hf", "weight_shapes"]
