"""LoRA (Hu et al., 2021; the book's appendix E): train a low-rank update beside each frozen weight.

    replaced = apply_lora(model, rank=8, alpha=16, targets=("c_attn", "c_proj", "c_fc"), seed=0)
    ...train: only the lora_A / lora_B parameters (and whatever else is left unfrozen) learn...
    save_adapters(model, "adapters")             # adapters alone: adapter_model.safetensors + adapter_config.json
    load_adapters(base_model, "adapters")        # on top of the same base model (a checkpoint, a GPT-2 folder)
    merge_lora(model)                            # fold B A into W: a plain GPT again, no extra cost per token

A :class:`LoRALinear` keeps the wrapped layer's ``weight [out, in]`` and ``bias [out]`` (the same
Parameter objects, frozen, under the same names) and adds ``lora_A [r, in]`` and ``lora_B [out, r]``:

    y = x W^T + b + (alpha / r) · (x A^T) B^T

``A`` starts Kaiming-uniform (PyTorch's Linear init, ``a = √5``: ``U(±1/√in)``) and ``B`` at zero, so at
init the extra term is exactly zero and the layer computes what the base layer computes, bit for bit.
The layout is peft's (``lora_A.weight [r, in]``, ``lora_B.weight [out, r]``); the book writes the
transposes (``A [in, r]``, ``B [r, out]``) as ``x A B``.

Only the adapter arrays are new, so a model with adapters has the base model's parameter names plus
``<layer>.lora_A`` / ``<layer>.lora_B``; an adapter file names, for each layer, the base weight's shape,
and loading it onto a different base model is a :class:`~tinytensor.errors.ShapeError` naming them.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

import tinytensor as tt
from tinytensor import functional as F
from tinytensor import nn
from tinytensor.errors import ConfigError, FileFormatError, ShapeError
from tinytensor.fileio import atomic_write_bytes, read_json_object

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
FORMAT = "tinygpt-lora"
DEFAULT_TARGETS = ("c_attn", "c_proj", "c_fc")


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable rank-``r`` update scaled by ``alpha / r``.

    Args:
        base: the layer to adapt; its ``weight`` and ``bias`` Parameters are reused (and frozen).
        rank: ``r``, between 1 and ``min(in_features, out_features)``.
        alpha: the scale numerator (the update is ``(alpha / r) B A``).
        rng: draws ``A``'s init.

    Raises:
        ConfigError: a rank outside ``[1, min(in, out)]`` or a non-positive alpha, naming the layer's shape.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, rng: np.random.Generator | None = None):
        super().__init__()
        out_f, in_f = base.weight.shape
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 1 <= rank <= min(in_f, out_f):
            raise ConfigError(f"LoRA rank must be an int in [1, min(in, out)] = [1, {min(in_f, out_f)}] for a "
                              f"Linear with weight [out, in] = {list(base.weight.shape)}; got {rank!r}")
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
            raise ConfigError(f"LoRA alpha must be a positive number, got {alpha!r}")
        g = rng if rng is not None else tt.default_rng()
        self.in_features, self.out_features = in_f, out_f
        self.rank, self.alpha = int(rank), float(alpha)
        self.scaling = self.alpha / self.rank
        self.weight = base.weight.requires_grad_(False)                # [out, in] frozen
        self.bias = base.bias.requires_grad_(False) if base.bias is not None else None   # [out]
        dtype = base.weight.dtype
        bound = 1.0 / math.sqrt(in_f)  # kaiming_uniform_(a=√5): gain √(2/6) · √(3/in) = 1/√in
        self.lora_A = nn.Parameter(g.uniform(-bound, bound, size=(self.rank, in_f)).astype(dtype))   # [r, in]
        self.lora_B = nn.Parameter(np.zeros((out_f, self.rank), dtype=dtype))                        # [out, r]

    def forward(self, x: tt.Tensor) -> tt.Tensor:
        y = F.linear(x, self.weight, self.bias)                        # [..., out] the frozen layer
        h = F.linear(x, self.lora_A)                                   # [..., r]
        return y + F.linear(h, self.lora_B) * self.scaling             # [..., out]

    def delta(self) -> np.ndarray:
        """The update ``(alpha / r) B A`` as an ``[out, in]`` array (in the weight's dtype)."""
        return (self.scaling * (self.lora_B.data @ self.lora_A.data)).astype(self.weight.dtype)

    def merge(self) -> nn.Linear:
        """Fold the update into the weight in place (``W += (alpha / r) B A``) and return a plain
        ``nn.Linear`` holding the same weight and bias Parameters (trainable again), to put in this
        layer's place."""
        self.weight.data += self.delta()
        lin = nn.Linear.__new__(nn.Linear)   # no fresh init: the layer takes these Parameters as they are
        nn.Module.__init__(lin)
        lin.in_features, lin.out_features = self.in_features, self.out_features
        lin.weight = self.weight.requires_grad_(True)
        lin.bias = self.bias.requires_grad_(True) if self.bias is not None else None
        return lin

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
                f"alpha={self.alpha:g}")


# ------------------------------------------------------------------------------------ whole models
def _linears(model: nn.Module, targets) -> list[tuple[nn.Module, str, str]]:
    """``(parent, attribute, dotted name)`` of every ``nn.Linear`` whose attribute name is in ``targets``."""
    found = []
    for prefix, parent in model.named_modules():
        for attr, child in parent.named_children():
            if attr in targets and isinstance(child, (nn.Linear, LoRALinear)):
                found.append((parent, attr, f"{prefix}.{attr}" if prefix else attr))
    return found


def parse_targets(targets) -> tuple[str, ...]:
    """``"c_attn,c_proj"`` or a sequence of names as a tuple; ConfigError when empty."""
    names = tuple(t.strip() for t in (targets.split(",") if isinstance(targets, str) else targets) if t.strip())
    if not names:
        raise ConfigError(f"LoRA targets must name at least one layer (e.g. {','.join(DEFAULT_TARGETS)}), "
                          f"got {targets!r}")
    return names


def apply_lora(model: nn.Module, rank: int, alpha: float, targets=DEFAULT_TARGETS, seed: int = 0,
               freeze: bool = True) -> list[str]:
    """Replace each targeted ``nn.Linear`` of ``model`` by a :class:`LoRALinear`; return their dotted names.

    Args:
        model: e.g. a GPT or a classifier holding one.
        rank, alpha: as :class:`LoRALinear`.
        targets: attribute names of the layers to adapt (GPT's ``c_attn``, ``c_proj``, ``c_fc``).
        seed: seeds the ``A`` inits (one stream, layers in model order).
        freeze: first freeze every parameter of ``model`` (then only the adapters train; unfreeze a
            classification head or anything else afterwards).

    Raises:
        ConfigError: no layer matches ``targets``, a layer that already has adapters, or a bad rank / alpha.
    """
    targets = parse_targets(targets)
    found = _linears(model, targets)
    if not found:
        raise ConfigError(f"apply_lora: no nn.Linear named {', '.join(targets)} in {type(model).__name__}")
    already = [name for parent, attr, name in found if isinstance(getattr(parent, attr), LoRALinear)]
    if already:
        raise ConfigError(f"apply_lora: {', '.join(already[:4])} already have adapters")
    if freeze:
        for p in model.parameters():
            p.requires_grad_(False)
            p.grad = None
    rng = np.random.default_rng(seed)
    for parent, attr, _ in found:
        setattr(parent, attr, LoRALinear(getattr(parent, attr), rank, alpha, rng))
    return [name for _, _, name in found]


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Every :class:`LoRALinear` of ``model`` by dotted name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its weight (:meth:`LoRALinear.merge`), leaving plain ``nn.Linear`` layers
    with the base parameter names; returns how many layers were merged."""
    n = 0
    for prefix, parent in list(model.named_modules()):
        for attr, child in list(parent.named_children()):
            if isinstance(child, LoRALinear):
                setattr(parent, attr, child.merge())
                n += 1
    return n


def merged_state_dict(model: nn.Module) -> dict[str, np.ndarray]:
    """``model``'s state dict as :func:`merge_lora` would leave it, without changing ``model``:
    ``W + (alpha / r) B A`` under each adapted weight's name, no ``lora_A`` / ``lora_B`` entries."""
    layers = lora_layers(model)
    out = {}
    for name, arr in model.state_dict().items():
        owner, _, leaf = name.rpartition(".")
        if owner in layers:
            if leaf in ("lora_A", "lora_B"):
                continue
            if leaf == "weight":
                arr = arr + layers[owner].delta()
        out[name] = arr
    return out


def count_trainable(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (shared parameters counted once)."""
    params = list(model.parameters())
    return sum(p.size for p in params if p.requires_grad), sum(p.size for p in params)


# ------------------------------------------------------------------------------------- adapter files
def save_adapters(model: nn.Module, out_dir: str | os.PathLike, extra: dict | None = None,
                  include_trainable: bool = True) -> Path:
    """Write ``out_dir/adapter_model.safetensors`` (the adapters, and with ``include_trainable`` every other
    trainable parameter, e.g. a new classification head) and ``out_dir/adapter_config.json``, atomically.

    The JSON names, per adapted layer, its rank, alpha and base weight shape ``[out, in]``, the shapes of
    the other saved tensors, and ``extra`` (e.g. what the base model was).
    """
    layers = lora_layers(model)
    if not layers:
        raise ConfigError(f"save_adapters: {type(model).__name__} has no LoRA layers (apply_lora first)")
    tensors: dict[str, np.ndarray] = {}
    for name, m in layers.items():
        tensors[f"{name}.lora_A"] = np.ascontiguousarray(m.lora_A.data)
        tensors[f"{name}.lora_B"] = np.ascontiguousarray(m.lora_B.data)
    full = {}
    if include_trainable:
        for name, p in model.named_parameters():
            if p.requires_grad and name not in tensors:
                tensors[name] = np.ascontiguousarray(p.data)
                full[name] = list(p.shape)
    config = {
        "format": FORMAT, "version": 1,
        "layers": {name: {"rank": m.rank, "alpha": m.alpha, "base_shape": [m.out_features, m.in_features]}
                   for name, m in layers.items()},
        "targets": sorted({name.rsplit(".", 1)[-1] for name in layers}),
        "full_parameters": full,
        **(extra or {}),
    }
    d = Path(out_dir)
    atomic_write_bytes(d / ADAPTER_WEIGHTS, st_save(tensors, metadata={"format": FORMAT}))
    atomic_write_bytes(d / ADAPTER_CONFIG, (json.dumps(config, indent=1) + "\n").encode())
    return d


def read_adapter_config(adapter_dir: str | os.PathLike) -> dict:
    """The ``adapter_config.json`` of an adapter folder; FileFormatError if it is missing or not ours."""
    path = Path(adapter_dir) / ADAPTER_CONFIG
    if not path.is_file():
        raise FileFormatError(f"no {ADAPTER_CONFIG} in {str(adapter_dir)!r}: an adapter folder holds "
                              f"{ADAPTER_WEIGHTS} and {ADAPTER_CONFIG} (written by save_adapters)")
    config = read_json_object(path)
    if config.get("format") != FORMAT or not isinstance(config.get("layers"), dict):
        raise FileFormatError(f"{path} is not a {FORMAT} adapter config")
    return config


def load_adapters(model: nn.Module, adapter_dir: str | os.PathLike, seed: int = 0) -> list[str]:
    """Put the adapters of ``adapter_dir`` on ``model`` (its base weights stay as they are).

    Layers without adapters get them first (:func:`apply_lora` with the saved rank and alpha, every
    parameter frozen, then the saved ones made trainable); then the saved arrays are copied in.

    Returns:
        The adapted layers' names.

    Raises:
        FileFormatError: a missing or damaged adapter folder.
        ShapeError: the adapters were made for a different base model: names every layer that is missing
            or whose weight shape differs (saved shape vs this model's).
    """
    config = read_adapter_config(adapter_dir)
    path = Path(adapter_dir) / ADAPTER_WEIGHTS
    try:
        tensors = st_load(path.read_bytes())
    except (OSError, SafetensorError) as e:
        raise FileFormatError(f"{path} is not a readable safetensors file ({e})") from None
    modules = dict(model.named_modules())
    problems = []
    for name, spec in config["layers"].items():
        m = modules.get(name)
        if m is None or not isinstance(m, (nn.Linear, LoRALinear)):
            problems.append(f"{name}: no such Linear layer in this model")
            continue
        shape = list(m.weight.shape)
        if shape != list(spec["base_shape"]):
            problems.append(f"{name}: adapters for weight [out, in] = {spec['base_shape']}, this model has {shape}")
        elif isinstance(m, LoRALinear) and (m.rank, m.alpha) != (spec["rank"], float(spec["alpha"])):
            problems.append(f"{name}: rank/alpha {spec['rank']}/{spec['alpha']} saved, {m.rank}/{m.alpha} applied")
    own = dict(model.named_parameters())
    for name, shape in config.get("full_parameters", {}).items():
        if name not in own:
            problems.append(f"{name}: no such parameter in this model (saved {shape})")
        elif list(own[name].shape) != list(shape):
            problems.append(f"{name}: saved {shape}, this model has {list(own[name].shape)}")
    if problems:
        raise ShapeError(f"{adapter_dir}: these adapters belong to a different base model: " + "; ".join(problems))
    rng = np.random.default_rng(seed)
    for name, spec in config["layers"].items():
        m = modules[name]
        if isinstance(m, nn.Linear):
            parent_name, _, attr = name.rpartition(".")
            m = LoRALinear(m, spec["rank"], float(spec["alpha"]), rng)
            setattr(modules[parent_name] if parent_name else model, attr, m)
        for leaf in ("lora_A", "lora_B"):
            arr = tensors.get(f"{name}.{leaf}")
            param = getattr(m, leaf)
            if arr is None or arr.shape != param.shape:
                raise FileFormatError(f"{path}: {name}.{leaf} is missing or has shape "
                                      f"{None if arr is None else arr.shape}, expected {param.shape}")
            np.copyto(param.data, arr, casting="same_kind")
    for name in config.get("full_parameters", {}):
        np.copyto(own[name].data, tensors[name], casting="same_kind")
    return list(config["layers"])


__all__ = ["LoRALinear", "apply_lora", "merge_lora", "merged_state_dict", "lora_layers", "count_trainable",
           "save_adapters", "load_adapters", "read_adapter_config", "parse_targets", "DEFAULT_TARGETS",
           "ADAPTER_WEIGHTS", "ADAPTER_CONFIG"]
