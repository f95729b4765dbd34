"""Training configuration: one dataclass, named presets, and typed ``--key=value`` overrides.

No ``exec``: a preset is a dict of field values, and every override is parsed with the type of the
field it names (``--max_iters=40`` is an int, ``--bias=false`` a bool), so a typo is an error that
lists the valid keys instead of a silently ignored global.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import typing
from dataclasses import dataclass
from pathlib import Path

from tinytensor.errors import ConfigError
from tinytensor.fileio import read_text

try:
    import tomllib                      # Python 3.11+
except ImportError:                     # Python 3.10: tomli, if it happens to be installed (not a dependency)
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None

from .data import load_tokenizer
from .hf import CONFIG_NAME, config_from_hf, read_config
from .hub import resolve_model
from .model import GPTConfig


# The model's fields in a TrainConfig are GPTConfig's, but vocab_size (the tokenizer fixes it), with
# the defaults of the baby preset's model.
DEFAULT_MODEL = GPTConfig(block_size=64, vocab_size=1, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=True)
SET_BY_TOKENIZER = ("vocab_size",)
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(GPTConfig) if f.name not in SET_BY_TOKENIZER)


@dataclass
class _RunFields:
    # I/O
    out_dir: str = "out"
    eval_interval: int = 250
    eval_iters: int = 20
    log_interval: int = 10               # log.jsonl gets the training loss every log_interval iterations
    health_interval: int = 0             # > 0: a "health" record every N iterations (gpt.health); 0 off
    # data
    dataset: str = "tinyshakespeare"     # a dataset name or a path to a text file (``--data`` sets it)
    tokenizer: str = "char"              # char | gpt2 | PATH to a saved tokenizer JSON
    gradient_accumulation_steps: int = 1
    batch_size: int = 12
    stride: int = 0                      # 0: random windows; N: the book's sliding windows N apart, in epochs


# model: GPTConfig's fields, typed as GPTConfig types them (between the data and the optimizer fields,
# the order of nanoGPT's train.py)
_ModelFields = dataclasses.make_dataclass(
    "_ModelFields",
    [(name, typing.get_type_hints(GPTConfig)[name], dataclasses.field(default=getattr(DEFAULT_MODEL, name)))
     for name in MODEL_FIELDS],
    bases=(_RunFields,))
_ModelFields.__module__ = __name__


@dataclass
class TrainConfig(_ModelFields):
    """Everything a training run needs. Field names follow nanoGPT's ``train.py``.

    The model's fields (``block_size``, ``n_layer``, ``n_head``, ``n_embd``, ``dropout``, ``bias``) are
    :class:`GPTConfig`'s, taken from its dataclass fields (:data:`MODEL_FIELDS`) and checked by its rules.
    """
    # AdamW
    learning_rate: float = 1e-3
    max_iters: int = 2000
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0               # global-norm clipping; 0 disables
    # learning-rate schedule
    decay_lr: bool = True
    warmup_iters: int = 100
    lr_decay_iters: int = 2000
    min_lr: float = 1e-4
    # system
    seed: int = 1337
    max_bad_steps: int = 5               # stop after this many non-finite steps in a row
    init_from: str = ""                  # fine-tune: a GPT-2 folder (config.json + model.safetensors)

    def __post_init__(self):
        for name in ("learning_rate", "min_lr", "beta1", "beta2", "weight_decay", "grad_clip", "dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        self.model_config(vocab_size=1)  # the model's fields, by GPTConfig's rules
        for name in ("eval_interval", "eval_iters", "log_interval", "gradient_accumulation_steps", "batch_size",
                     "lr_decay_iters", "max_bad_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("stride", "seed", "health_interval", "max_iters", "warmup_iters", "learning_rate", "min_lr",
                     "weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def model_config(self, vocab_size: int) -> GPTConfig:
        """The GPTConfig of this run's model, for a tokenizer of ``vocab_size`` ids."""
        return GPTConfig(vocab_size=vocab_size, **{name: getattr(self, name) for name in MODEL_FIELDS})

    @property
    def tokens_per_iter(self) -> int:
        return self.gradient_accumulation_steps * self.batch_size * self.block_size


# nanoGPT's two Shakespeare-char runs, the book's chapter 5 run, and a tiny one for smoke tests.
PRESETS: dict[str, dict[str, typing.Any]] = {
    # nanoGPT README, "I only have a macbook": the CPU run (nanoGPT reports val 1.88 at iter 2000), with
    # biases as GPT-2 has them (nanoGPT's GPTConfig default)
    "baby": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, dropout=0.0,
                 max_iters=2000, lr_decay_iters=2000, learning_rate=1e-3, min_lr=1e-4, warmup_iters=100,
                 beta2=0.99, weight_decay=0.1, eval_interval=250, eval_iters=20, bias=True),
    # nanoGPT config/train_shakespeare_char.py: the GPU run (nanoGPT reports val 1.47 at iter 5000)
    "shakespeare-char": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64, dropout=0.2,
                             max_iters=5000, lr_decay_iters=5000, learning_rate=1e-3, min_lr=1e-4,
                             warmup_iters=100, beta2=0.99, weight_decay=0.1, eval_interval=250,
                             eval_iters=200, bias=False),
    # Build a Large Language Model (From Scratch), ch. 5: GPT-2 small's shape with a 256-token context, 10
    # epochs over the-verdict.txt (5,145 GPT-2 tokens, 90/10 split) in non-overlapping windows, batches of 2,
    # AdamW lr 4e-4 constant, weight decay 0.1, dropout 0.1 (the book: train 0.57 / val 6.37 after 10 epochs).
    # The book's GPTModel keeps PyTorch's default init (embeddings N(0, 1)) and an untied output layer:
    # weight_init="torch", tie_weights=False. With GPT-2's init instead, the same run stalls near train 5.9
    # (docs/instruct.md). One difference left: bias=False drops every bias, the book only qkv's.
    # 9 batches an epoch: max_iters 90 = 10 epochs.
    "verdict": dict(n_layer=12, n_head=12, n_embd=768, block_size=256, stride=256, batch_size=2, dropout=0.1,
                    bias=False, tie_weights=False, weight_init="torch", dataset="the-verdict", tokenizer="gpt2",
                    learning_rate=4e-4, decay_lr=False,
                    weight_decay=0.1, beta1=0.9, beta2=0.999, grad_clip=0.0, max_iters=90, lr_decay_iters=90,
                    warmup_iters=0, eval_interval=9, eval_iters=5, seed=123),
    # a tiny model and few iterations: for smoke tests of the whole pipeline
    "tiny": dict(n_layer=2, n_head=2, n_embd=32, block_size=16, batch_size=8, dropout=0.0, max_iters=40,
                 lr_decay_iters=40, learning_rate=3e-3, min_lr=3e-4, warmup_iters=5, eval_interval=20,
                 eval_iters=4, bias=False),
}


# A short run warms up for at most this fraction of its iterations (a preset's 100 warm-up iterations would
# be all of a 50-iteration run).
WARMUP_FRACTION = 0.1


def schedule_defaults(values: dict[str, typing.Any], explicit: typing.Collection[str]) -> dict[str, typing.Any]:
    """``values`` with the LR schedule fitted to ``max_iters``, for the keys not in ``explicit``.

    ``lr_decay_iters`` follows ``max_iters`` (the cosine reaches ``min_lr`` at the end of the run), and
    ``warmup_iters`` is capped at ``WARMUP_FRACTION`` of ``max_iters`` (rounded down). A key the user set
    (in ``explicit``: a ``--key=value`` or a config file's key) is kept as given.

    Example:
        >>> v = schedule_defaults({"max_iters": 50, "warmup_iters": 100, "lr_decay_iters": 2000}, {"max_iters"})
        >>> v["warmup_iters"], v["lr_decay_iters"]
        (5, 50)
    """
    out = dict(values)
    max_iters = out.get("max_iters", TrainConfig.max_iters)
    if "lr_decay_iters" not in explicit:
        out["lr_decay_iters"] = max(1, max_iters)
    if "warmup_iters" not in explicit:
        out["warmup_iters"] = min(out.get("warmup_iters", TrainConfig.warmup_iters),
                                  int(WARMUP_FRACTION * max_iters))
    return out


def _unknown_key(key: str, valid: typing.Iterable[str]) -> ConfigError:
    """ConfigError for an unknown config key: the closest valid key (difflib), then all of them."""
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint}; valid keys: {', '.join(valid)}")


def field_types() -> dict[str, type]:
    """``{field name: its type}`` for TrainConfig (Optional[X] given as X)."""
    hints = typing.get_type_hints(TrainConfig)
    out = {}
    for f in dataclasses.fields(TrainConfig):
        t = hints[f.name]
        args = [a for a in typing.get_args(t) if a is not type(None)]
        out[f.name] = args[0] if args else t
    return out


def parse_value(key: str, text: str, typ: type):
    """Parse ``text`` as ``typ`` for the field ``key``; raise ConfigError naming both on failure."""
    if typ is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"--{key} takes a bool (true/false), got {text!r}")
    try:
        if typ is int:
            return int(text)
        if typ is float:
            return float(text)
    except ValueError:
        raise ConfigError(f"--{key} takes {typ.__name__}, got {text!r}") from None
    return text


def parse_overrides(args: list[str]) -> dict[str, typing.Any]:
    """Turn ``["--max_iters=40", "--seed", "3"]`` into ``{"max_iters": 40, "seed": 3}``, typed by field.

    Raises:
        ConfigError: an unknown key (the message lists the valid ones), a missing or badly typed value.
    """
    types = field_types()
    out: dict[str, typing.Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"expected --key=value, got {arg!r}")
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if key not in types:
            raise _unknown_key(key, types)
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                if types[key] is bool:  # a bare --bias means true
                    value = "true"
                else:
                    raise ConfigError(f"--{key} needs a value (--{key}=VALUE)")
            else:
                i += 1
                value = args[i]
        out[key] = parse_value(key, value, types[key])
        i += 1
    return out


def make_config(preset: str | None = None, overrides: dict[str, typing.Any] | None = None) -> TrainConfig:
    """TrainConfig from the defaults, then a preset's values, then ``overrides``.

    With a preset, the LR schedule follows ``max_iters`` unless ``overrides`` set it (see
    :func:`schedule_defaults`); without one (a resumed or fine-tuning run) every value is taken as given.
    """
    values: dict[str, typing.Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
        values.update(PRESETS[preset])
    values.update(overrides or {})
    unknown = sorted(set(values) - set(field_types()))
    if unknown:
        raise _unknown_key(unknown[0], field_types())
    if preset is not None:
        values = schedule_defaults(values, explicit=set(overrides or {}))
    return TrainConfig(**values)


def read_config_file(path: str | os.PathLike) -> dict[str, typing.Any]:
    """The config keys of a TOML file (``max_iters = 500``, ``learning_rate = 1e-3``, ...), type-checked.

    The file holds TrainConfig keys at its top level; an int is accepted where a float is expected.

    Raises:
        ConfigError: not TOML, an unknown key, a value of the wrong type, or Python 3.10 without ``tomli``.
    """
    if tomllib is None:
        raise ConfigError(f"reading {path} needs tomllib (Python 3.11+); on Python 3.10, pip install tomli")
    try:
        data = tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    types = field_types()
    for key, value in data.items():
        if key not in types:
            raise ConfigError(f"{path}: {_unknown_key(key, types)}")
        want = types[key]
        if not _has_type(value, want):
            raise ConfigError(f"{path}: {key} takes {want.__name__}, got {value!r}")
        if want is float:
            data[key] = float(value)
    return data


def _has_type(value: typing.Any, want: type) -> bool:
    """``isinstance`` as a config file means it: a bool is no number, an int will do for a float."""
    if want is bool or isinstance(value, bool):
        return want is bool and isinstance(value, bool)
    if want is float:
        return isinstance(value, (int, float))
    return isinstance(value, want)


def config_help() -> str:
    """One line per overridable key with its type and default, for ``tinygpt train --help``."""
    defaults = TrainConfig()
    return "\n".join(f"  --{f.name}={getattr(defaults, f.name)!r} ({t.__name__})"
                     for f, t in zip(dataclasses.fields(TrainConfig), field_types().values()))


# ---------------------------------------------------------------------------------------- fine-tuning
# nanoGPT's config/finetune_shakespeare.py (lr 3e-5 constant, 20 iterations, eval every 5, no dropout),
# scaled to a CPU: 256-token windows, 4 x 8 = 32 sequences (8,192 tokens) per iteration instead of 32 x 1024.
FINETUNE_DEFAULTS: dict[str, typing.Any] = dict(
    block_size=256, batch_size=4, gradient_accumulation_steps=8, max_iters=20, learning_rate=3e-5,
    decay_lr=False, warmup_iters=0, lr_decay_iters=20, min_lr=3e-5, eval_interval=5, eval_iters=10,
    dropout=0.0, weight_decay=0.1, beta1=0.9, beta2=0.95, grad_clip=1.0, out_dir="out-finetune")
_FIXED_BY_MODEL = ("n_layer", "n_head", "n_embd", "bias")
TOKENIZER_SAVE_NAME = "gpt2-tokenizer.json"


def finetune_values(init_from: str | os.PathLike, overrides: dict[str, typing.Any] | None = None
                    ) -> dict[str, typing.Any]:
    """The TrainConfig values for fine-tuning the GPT-2 folder (or name: ``gpt2``, ...) ``init_from``.

    :data:`FINETUNE_DEFAULTS`, then the model's shape (``n_layer``, ``n_head``, ``n_embd``, ``bias``), then
    ``overrides`` (they may not change the shape). ``tokenizer`` in ``overrides`` says where the tokenizer
    comes from (see :func:`gpt.data.load_tokenizer`; default the folder's files); it is saved as
    ``OUT_DIR/gpt2-tokenizer.json`` and the returned ``tokenizer`` value points at that file.

    Raises:
        ConfigError: an override of the model's shape, ``block_size`` beyond ``n_positions``, or a tokenizer
            whose size is not the model's ``vocab_size``.
    """
    init_from = resolve_model(init_from)                 # a GPT-2 name is downloaded once (gpt.hub)
    pcfg = config_from_hf(read_config(init_from), source=str(Path(init_from) / CONFIG_NAME))
    overrides = dict(overrides or {})
    shape = {k: getattr(pcfg, k) for k in _FIXED_BY_MODEL}
    clash = {k: overrides[k] for k in _FIXED_BY_MODEL if k in overrides and overrides[k] != shape[k]}
    if clash:
        raise ConfigError(f"the pretrained model {init_from} fixes {shape}; cannot set {clash}")
    tok_source = overrides.pop("tokenizer", None)
    values = schedule_defaults({**FINETUNE_DEFAULTS, **overrides}, explicit=set(overrides))
    values = {**values, **shape, "init_from": str(init_from)}
    if values["block_size"] > pcfg.block_size:
        raise ConfigError(f"block_size {values['block_size']} is longer than {init_from}'s n_positions "
                          f"{pcfg.block_size}")
    if tok_source == "char":
        raise ConfigError("a pretrained GPT-2 needs its own BPE tokenizer, not the char tokenizer")
    tok = load_tokenizer(tok_source if tok_source is not None else init_from)
    if tok.vocab_size != pcfg.vocab_size:
        raise ConfigError(f"the tokenizer has {tok.vocab_size} ids but {init_from} has vocab_size "
                          f"{pcfg.vocab_size}; fine-tuning sizes the model by the tokenizer, so they must match")
    values["tokenizer"] = str(tok.save(Path(values["out_dir"]) / TOKENIZER_SAVE_NAME))
    return values


def finetune_config(init_from: str | os.PathLike, overrides: dict[str, typing.Any] | None = None) -> TrainConfig:
    """:func:`finetune_values` as a ``TrainConfig``."""
    return make_config(None, finetune_values(init_from, overrides))


__all__ = ["DEFAULT_MODEL", "FINETUNE_DEFAULTS", "MODEL_FIELDS", "PRESETS", "TrainConfig", "WARMUP_FRACTION",
           "config_help", "finetune_config", "finetune_values", "make_config", "parse_overrides", "parse_value",
           "read_config_file", "schedule_defaults"]
