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
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from tinytensor.errors import FileFormatError
from tinytensor.fileio import atomic_write_text, default_mode, fsync_dir, sha256_file

from .data import load_tokenizer, tokenizer_bytes
from .model import GPT, GPTConfig

__all__ = ["Checkpoint", "FORMAT", "POINTER", "VERSION", "has_checkpoint", "load_checkpoint", "load_model",
           "save_checkpoint"]

FORMAT = "tinygpt-checkpoint"
VERSION = 1
POINTER = "checkpoint.json"


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

    def build_model(self) -> GPT:
        """A GPT with this checkpoint's config and weights (and its dropout stream, if saved)."""
        model = GPT(self.model_config, seed=0)
        model.load_state_dict(self.model_state, strict=True)
        rng_state = self.state.get("rng", {}).get("dropout")
        if rng_state is not None:
            model.dropout_rng.bit_generator.state = rng_state
        return model


def _write_file(path: Path, data: bytes) -> str:
    """Write and fsync one file of a checkpoint folder being built (the folder's rename is the atomic step)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
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
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{iter_num:07d}"
    latest, k = _latest_name(out_dir), 1
    while name == latest:  # saving again at the same iteration: never touch the current checkpoint
        name, k = f"ckpt-{iter_num:07d}.{k}", k + 1
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
    return json.loads(p.read_text()).get("latest")


def has_checkpoint(out_dir: str | os.PathLike) -> bool:
    name = _latest_name(Path(out_dir))
    return name is not None and (Path(out_dir) / name / "state.json").is_file()


def load_checkpoint(out_dir: str | os.PathLike, verify: bool = True) -> Checkpoint:
    """Load the latest checkpoint of ``out_dir`` (or a checkpoint folder given directly).

    Raises:
        FileNotFoundError: no checkpoint there.
        FileFormatError: not a checkpoint of this format and version, or a file whose sha256 differs from
            the one recorded (a damaged checkpoint).
    """
    path = Path(out_dir)
    if not (path / "state.json").is_file():
        name = _latest_name(path)
        if name is None:
            raise FileNotFoundError(f"no checkpoint in {str(path)!r} (no {POINTER}); train one into it first")
        path = path / name
        if not path.is_dir():
            raise FileNotFoundError(f"{POINTER} names {name}, which is missing from {out_dir}")
    state = json.loads((path / "state.json").read_text())
    if state.get("format") != FORMAT:
        raise FileFormatError(f"{path}/state.json is not a {FORMAT} file")
    if state.get("version") != VERSION:
        raise FileFormatError(f"{path}: unsupported checkpoint version {state.get('version')!r}")
    if verify:
        for fname, digest in state["files"].items():
            got = sha256_file(path / fname)
            if got != digest:
                raise FileFormatError(f"{path / fname} has sha256 {got}, the checkpoint recorded {digest}: "
                                 f"the file is damaged")
    model_state = st_load((path / "model.safetensors").read_bytes())
    opt = state.get("optimizer")
    optimizer_state: dict[str, Any] = {}
    if opt is not None:
        arrays = st_load((path / "optimizer.safetensors").read_bytes())
        optimizer_state = {
            "state": {int(i): {"step": step, "exp_avg": arrays[f"state.{i}.exp_avg"],
                               "exp_avg_sq": arrays[f"state.{i}.exp_avg_sq"]}
                      for i, step in opt["steps"].items()},
            "param_groups": [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()}
                             for g in opt["param_groups"]],
        }
    tokenizer = load_tokenizer(path / "tokenizer.json")
    return Checkpoint(path, state, model_state, optimizer_state, tokenizer)


def load_model(out_dir: str | os.PathLike) -> tuple[GPT, Any, Checkpoint]:
    """The latest checkpoint's model (in eval mode), its tokenizer, and the checkpoint itself."""
    ckpt = load_checkpoint(out_dir)
    model = ckpt.build_model()
    model.eval()
    return model, ckpt.tokenizer, ckpt
