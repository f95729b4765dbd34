"""Checkpoints: safetensors for arrays, JSON for everything else, never pickle.

One checkpoint is one folder in ``out_dir``::

    ckpt-0002000/
      model.safetensors      the model's parameters by GPT-2 name (transformer.wte.weight, ...)
      optimizer.safetensors  AdamW's exp_avg / exp_avg_sq as state.<i>.exp_avg, state.<i>.exp_avg_sq
      tokenizer.json         the tokenizer (tokenizer.save format)
      state.json             iteration, configs, AdamW steps and hyperparameters, RNG and sampler
                             states, counters, and the sha256 of each file above
    checkpoint.json          {"latest": "ckpt-0002000", "iter_num": 2000}

Writing is atomic: the folder is built under a temporary name (each file fsynced), renamed into place,
and only then does ``checkpoint.json`` (replaced atomically) point at it; older checkpoint folders are
deleted after that. A crash at any moment leaves the previous checkpoint whole and pointed to.

Reading trusts nothing: ``checkpoint.json`` and ``state.json`` are checked field by field, every file
against its recorded sha256, and the model config against the shapes in ``model.safetensors`` before any
model is built; each problem is a FileFormatError naming the file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from tinytensor.errors import FileFormatError, UsageError
from tinytensor.fileio import (atomic_write_text, default_mode, fsync_dir, read_json_object, sha256_file, write_synced,
                               writing)

from .data import load_tokenizer, tokenizer_bytes
from .model import GPT, GPTConfig

__all__ = ["Checkpoint", "FORMAT", "POINTER", "VERSION", "has_checkpoint", "holds_run", "load_checkpoint",
           "load_model", "save_checkpoint"]

FORMAT = "tinygpt-checkpoint"
VERSION = 1
POINTER = "checkpoint.json"
_NAME = re.compile(r"ckpt-\d{7,}(\.\d+)?")       # a checkpoint folder's name (never a path)


_FILES = ("model.safetensors", "optimizer.safetensors", "tokenizer.json")


@dataclass
class Checkpoint:
    """A loaded checkpoint: its folder, ``state.json`` contents, the arrays, and the tokenizer."""
    path: Path
    state: dict[str, Any]
    model_state: dict[str, np.ndarray]
    optimizer_state: dict[str, Any]
    tokenizer: Any

    @property
    def iter_num(self) -> int:
        return int(self.state["iter_num"])

    @property
    def model_config(self) -> GPTConfig:
        return GPTConfig(**self.state["model_config"])

    def load_weights(self, model: GPT) -> None:
        """Copy this checkpoint's weights into ``model``; FileFormatError if their names or shapes differ."""
        try:
            model.load_state_dict(self.model_state, strict=True)
        except (KeyError, UsageError) as e:
            raise FileFormatError(f"{self.path / 'model.safetensors'} does not fit the model state.json "
                                  f"describes: {e}") from None

    def load_optimizer(self, optimizer) -> None:
        """Restore AdamW's moments, steps and hyperparameters; FileFormatError if they do not fit ``optimizer``."""
        try:
            optimizer.load_state_dict(self.optimizer_state)
        except (KeyError, IndexError, ValueError) as e:
            raise FileFormatError(f"{self.path / 'optimizer.safetensors'} does not fit the model's optimizer: "
                                  f"{e}") from None

    def build_model(self) -> GPT:
        """A GPT with this checkpoint's config and weights (and its dropout stream, if saved)."""
        model = GPT(self.model_config, seed=0, init=False)   # every weight is loaded next
        self.load_weights(model)
        rng_state = self.state.get("rng", {}).get("dropout")
        if rng_state is not None:
            model.dropout_rng.bit_generator.state = rng_state
        return model


def _write_file(path: Path, data: bytes) -> str:
    """Write and fsync one file of a checkpoint folder being built (the folder's rename is the atomic step)."""
    write_synced(path, data)
    return hashlib.sha256(data).hexdigest()


def save_checkpoint(out_dir: str | os.PathLike, iter_num: int, model: GPT, optimizer, tokenizer,
                    state: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint of ``model``, ``optimizer`` (AdamW) and ``tokenizer`` at ``iter_num``.

    Args:
        out_dir: the run's folder.
        iter_num: the number of optimizer steps taken (the iteration to resume at).
        model: the GPT.
        optimizer: its AdamW, or None (a weights-only checkpoint).
        tokenizer: anything with ``save(path)``.
        state: more JSON-able state (train config, RNG states, counters) stored in ``state.json``.

    Returns:
        The checkpoint folder.
    """
    out_dir = Path(out_dir)
    with writing(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{iter_num:07d}"
    latest, k = _latest_name(out_dir), 1
    while name == latest:  # saving again at the same iteration: never touch the current checkpoint
        name, k = f"ckpt-{iter_num:07d}.{k}", k + 1
    with writing(out_dir):
        tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{name}.tmp-"))
        os.chmod(tmp, default_mode(directory=True))
    try:
        files: dict[str, str] = {}
        params = {k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}
        files["model.safetensors"] = _write_file(tmp / "model.safetensors",
                                                 st_save(params, metadata={"format": "pt"}))
        opt_json = None
        if optimizer is not None:
            sd = optimizer.state_dict()
            arrays, steps = {}, {}
            for i, st in sd["state"].items():
                steps[str(i)] = int(st["step"])
                for k in ("exp_avg", "exp_avg_sq"):
                    arrays[f"state.{i}.{k}"] = np.ascontiguousarray(st[k])
            files["optimizer.safetensors"] = _write_file(tmp / "optimizer.safetensors", st_save(arrays))
            groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
                      for g in sd["param_groups"]]
            opt_json = {"type": type(optimizer).__name__, "param_groups": groups, "steps": steps}
        files["tokenizer.json"] = _write_file(tmp / "tokenizer.json", tokenizer_bytes(tokenizer))
        doc = {"format": FORMAT, "version": VERSION, "iter_num": int(iter_num),
               "model_config": dataclasses.asdict(model.config),
               "param_names": list(params), "optimizer": opt_json, "files": files, **(state or {})}
        doc.setdefault("rng", {})["dropout"] = model.dropout_rng.bit_generator.state
        _write_file(tmp / "state.json", (json.dumps(doc, indent=1) + "\n").encode())
        fsync_dir(tmp)
        final = out_dir / name
        with writing(final):
            if final.exists():  # a stale folder of this name that the pointer does not name
                shutil.rmtree(final)
            os.replace(tmp, final)
        fsync_dir(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer = {"latest": name, "iter_num": int(iter_num)}
    atomic_write_text(out_dir / POINTER, json.dumps(pointer) + "\n")
    # only now is the new checkpoint the current one: drop the older ones and any half-written folders
    for p in out_dir.iterdir():
        if p.is_dir() and p.name != name and (p.name.startswith("ckpt-") or p.name.startswith(".ckpt-")):
            shutil.rmtree(p, ignore_errors=True)
    return final


def _latest_name(out_dir: Path) -> str | None:
    p = out_dir / POINTER
    if not p.is_file():
        return None
    name = read_json_object(p).get("latest")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise FileFormatError(f"{p}: 'latest' must name a checkpoint folder like ckpt-0000100, got {name!r}")
    return name


def has_checkpoint(out_dir: str | os.PathLike) -> bool:
    name = _latest_name(Path(out_dir))
    return name is not None and (Path(out_dir) / name / "state.json").is_file()


def holds_run(out_dir: str | os.PathLike) -> bool:
    """Whether ``out_dir`` holds a run: a ``checkpoint.json`` or any ``ckpt-*`` folder (even unpointed-to)."""
    d = Path(out_dir)
    if not d.is_dir():
        return False
    return (d / POINTER).exists() or any(p.name.startswith("ckpt-") and p.is_dir() for p in d.iterdir())


def _check_state(path: Path, state: dict[str, Any]) -> GPTConfig:
    """The fields of ``state.json`` a load relies on, and its model config; FileFormatError naming the file."""
    where = path / "state.json"
    if state.get("format") != FORMAT:
        raise FileFormatError(f"{where} is not a {FORMAT} file")
    if state.get("version") != VERSION:
        raise FileFormatError(f"{path}: unsupported checkpoint version {state.get('version')!r}")
    it = state.get("iter_num")
    if isinstance(it, bool) or not isinstance(it, int) or it < 0:
        raise FileFormatError(f"{where}: iter_num must be an int >= 0, got {it!r}")
    files = state.get("files")
    if not isinstance(files, dict) or "model.safetensors" not in files or not all(
            isinstance(k, str) and k in _FILES and isinstance(v, str) for k, v in files.items()):
        raise FileFormatError(f"{where}: 'files' must map {', '.join(_FILES)} to sha256 strings, got {files!r:.200}")
    opt = state.get("optimizer")
    if opt is not None and not (isinstance(opt, dict) and isinstance(opt.get("steps"), dict)
                                and isinstance(opt.get("param_groups"), list)
                                and all(isinstance(g, dict) for g in opt["param_groups"])
                                and all(isinstance(v, int) and not isinstance(v, bool) for v in opt["steps"].values())
                                and "optimizer.safetensors" in files):
        raise FileFormatError(f"{where}: 'optimizer' must hold 'steps' (int by parameter) and 'param_groups'")
    for g in (opt or {}).get("param_groups", []):
        betas = g.get("betas")
        ok = all(_finite(g.get(k)) and g[k] >= 0 for k in ("lr", "eps", "weight_decay")) \
            and isinstance(betas, list) and len(betas) == 2 and all(_finite(b) and 0 <= b < 1 for b in betas)
        if not ok:
            raise FileFormatError(f"{where}: an optimizer param group needs finite lr, eps, weight_decay >= 0 "
                                  f"and two betas in [0, 1); got {str(g)[:160]}")
    for key in ("rng", "counters", "train_config", "data"):
        if not isinstance(state.get(key, {}), dict):
            raise FileFormatError(f"{where}: {key!r} must be a JSON object, got {state[key]!r:.200}")
    counters = state.get("counters", {})
    if not all(_finite(v) or (k in ("train_loss", "val_loss") and (v is None or isinstance(v, float)))
               for k, v in counters.items()):
        raise FileFormatError(f"{where}: counters must be numbers, got {str(counters)[:160]}")
    data = state.get("data", {})
    if not all(isinstance(data.get(k), (str, type(None))) for k in ("source", "text_sha256")):
        raise FileFormatError(f"{where}: data.source and data.text_sha256 must be strings, got {str(data)[:160]}")
    for name, rng_state in state.get("rng", {}).items():
        try:
            np.random.PCG64().state = rng_state          # what restoring it will do, on a throwaway generator
        except (ValueError, TypeError, KeyError, OverflowError) as e:
            raise FileFormatError(f"{where}: rng.{name} is not a PCG64 state ({e})") from None
    cfg = state.get("model_config")
    if not isinstance(cfg, dict):
        raise FileFormatError(f"{where}: model_config must be a JSON object, got {cfg!r:.200}")
    try:
        return GPTConfig(**cfg)
    except (UsageError, TypeError) as e:
        raise FileFormatError(f"{where}: bad model_config ({e})") from None


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        return st_load(path.read_bytes())
    except SafetensorError as e:
        raise FileFormatError(f"{path} is not a readable safetensors file ({e})") from None


def _check_weights(path: Path, config: GPTConfig, weights: dict[str, np.ndarray]) -> None:
    """``state.json``'s model config against the shapes in ``model.safetensors``, before any model is built.

    A config edited to other sizes would otherwise allocate a model of those sizes first (10**9 layers).
    """
    where = path / "state.json"
    c, implied = config, {}
    # a model that wraps the GPT (a classifier: gpt.transformer...) names the same tensors under a prefix
    pre = next((k[:-len("transformer.wte.weight")] for k in weights if k.endswith("transformer.wte.weight")), "")
    wte, wpe = weights.get(pre + "transformer.wte.weight"), weights.get(pre + "transformer.wpe.weight")
    if wte is None or wpe is None or wte.ndim != 2 or wpe.ndim != 2:
        raise FileFormatError(f"{path / 'model.safetensors'} has no 2-D transformer.wte.weight and wpe.weight")
    implied["vocab_size"], implied["n_embd"] = wte.shape
    implied["block_size"] = wpe.shape[0]
    blocks = pre + "transformer.h."
    implied["n_layer"] = len({k[len(blocks):].split(".")[0] for k in weights if k.startswith(blocks)})
    implied["bias"] = pre + "transformer.ln_f.bias" in weights
    implied["tie_weights"] = pre + "lm_head.weight" not in weights     # a tied head is stored once, as wte
    differ = {k: (getattr(c, k), v) for k, v in implied.items() if getattr(c, k) != v}
    if differ:
        raise FileFormatError(f"{where} does not match {path / 'model.safetensors'}: "
                              + ", ".join(f"{k} {a} in state.json vs {b} in the weights"
                                          for k, (a, b) in differ.items()))


def load_checkpoint(out_dir: str | os.PathLike, verify: bool = True) -> Checkpoint:
    """Load the latest checkpoint of ``out_dir`` (or a checkpoint folder given directly).

    Raises:
        FileNotFoundError: no checkpoint there.
        FileFormatError: not a checkpoint of this format and version, or a file whose sha256 differs from
            the one recorded (a damaged checkpoint).
    """
    path = Path(out_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint in {str(path)!r}: not a folder")
    if not (path / "state.json").is_file():
        name = _latest_name(path)
        if name is None:
            raise FileNotFoundError(f"no checkpoint in {str(path)!r} (no {POINTER}); train one into it first")
        path = path / name
        if not path.is_dir():
            raise FileNotFoundError(f"{POINTER} names {name}, which is missing from {out_dir}")
    state = read_json_object(path / "state.json")
    config = _check_state(path, state)
    if verify:
        for fname, digest in state["files"].items():
            if not (path / fname).is_file():
                raise FileFormatError(f"{path / fname} is missing: the checkpoint is damaged")
            got = sha256_file(path / fname)
            if got != digest:
                raise FileFormatError(f"{path / fname} has sha256 {got}, the checkpoint recorded {digest}: "
                                 f"the file is damaged")
    model_state = _read_arrays(path / "model.safetensors")
    _check_weights(path, config, model_state)
    opt = state.get("optimizer")
    optimizer_state: dict[str, Any] = {}
    if opt is not None:
        arrays = _read_arrays(path / "optimizer.safetensors")
        missing = [f"state.{i}.{k}" for i in opt["steps"] for k in ("exp_avg", "exp_avg_sq")
                   if f"state.{i}.{k}" not in arrays]
        if missing or not all(i.isdigit() for i in opt["steps"]):
            raise FileFormatError(f"{path / 'optimizer.safetensors'} does not hold the moments state.json lists "
                                  f"(missing {missing[:4]})")
        optimizer_state = {
            "state": {int(i): {"step": step, "exp_avg": arrays[f"state.{i}.exp_avg"],
                               "exp_avg_sq": arrays[f"state.{i}.exp_avg_sq"]}
                      for i, step in opt["steps"].items()},
            "param_groups": [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()}
                             for g in opt["param_groups"]],
        }
    tokenizer = load_tokenizer(path / "tokenizer.json", config.vocab_size)
    return Checkpoint(path, state, model_state, optimizer_state, tokenizer)


def load_model(out_dir: str | os.PathLike) -> tuple[GPT, Any, Checkpoint]:
    """The latest checkpoint's model (in eval mode), its tokenizer, and the checkpoint itself."""
    ckpt = load_checkpoint(out_dir)
    model = ckpt.build_model()
    model.eval()
    return model, ckpt.tokenizer, ckpt
