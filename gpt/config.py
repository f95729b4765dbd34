"""Training configuration: one dataclass, named presets, and typed ``--key=value`` overrides.

No ``exec``: a preset is a dict of field values, and every override is parsed with the type of the
field it names (``--max_iters=40`` is an int, ``--bias=false`` a bool), so a typo is an error that
lists the valid keys instead of a silently ignored global.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

from .model import GPTConfig


@dataclass
class TrainConfig:
    """Everything a training run needs. Field names follow nanoGPT's ``train.py``."""
    # I/O
    out_dir: str = "out"
    eval_interval: int = 250
    eval_iters: int = 20
    # data
    dataset: str = "tinyshakespeare"     # a dataset name or a path to a text file (``--data`` sets it)
    tokenizer: str = "char"              # char | gpt2 | PATH to a saved tokenizer JSON
    gradient_accumulation_steps: int = 1
    batch_size: int = 12
    block_size: int = 64
    stride: int = 0                      # 0: random windows; N: the book's sliding windows N apart, in epochs
    # model
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True
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
        self.model_config(vocab_size=1)  # the model's fields, by GPTConfig's rules
        for name in ("eval_interval", "eval_iters", "gradient_accumulation_steps", "batch_size",
                     "lr_decay_iters", "max_bad_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("stride", "seed", "max_iters", "warmup_iters", "learning_rate", "min_lr", "weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def model_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(block_size=self.block_size, vocab_size=vocab_size, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd, dropout=self.dropout, bias=self.bias)

    @property
    def tokens_per_iter(self) -> int:
        return self.gradient_accumulation_steps * self.batch_size * self.block_size


# nanoGPT's two Shakespeare-char runs, and a tiny one for smoke tests.
PRESETS: dict[str, dict[str, typing.Any]] = {
    # nanoGPT README, "I only have a macbook": the CPU run (val 1.88 at iter 2000). Biases as GPT-2
    # (nanoGPT's GPTConfig default): measured val 1.903 vs 1.916 without (200-batch evals, seed 1337)
    "baby": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, dropout=0.0,
                 max_iters=2000, lr_decay_iters=2000, learning_rate=1e-3, min_lr=1e-4, warmup_iters=100,
                 beta2=0.99, weight_decay=0.1, eval_interval=250, eval_iters=20, bias=True),
    # nanoGPT config/train_shakespeare_char.py: the GPU run (val 1.47 at iter 5000 on an A100)
    "shakespeare-char": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64, dropout=0.2,
                             max_iters=5000, lr_decay_iters=5000, learning_rate=1e-3, min_lr=1e-4,
                             warmup_iters=100, beta2=0.99, weight_decay=0.1, eval_interval=250,
                             eval_iters=200, bias=False),
    # Build a Large Language Model (From Scratch), ch. 5: GPT-2 small's shape with a 256-token context, 10
    # epochs over the-verdict.txt (5,145 GPT-2 tokens, 90/10 split) in non-overlapping windows, batches of 2,
    # AdamW lr 4e-4 constant, weight decay 0.1, dropout 0.1 (the book: train 0.57 / val 6.37 after 10 epochs).
    # Differences: the book's model has no qkv bias but biases elsewhere, and an untied output layer; here
    # bias=False drops every bias and lm_head is tied to wte. 9 batches an epoch: max_iters 90 = 10 epochs.
    "verdict": dict(n_layer=12, n_head=12, n_embd=768, block_size=256, stride=256, batch_size=2, dropout=0.1,
                    bias=False, dataset="the-verdict", tokenizer="gpt2", learning_rate=4e-4, decay_lr=False,
                    weight_decay=0.1, beta1=0.9, beta2=0.999, grad_clip=0.0, max_iters=90, lr_decay_iters=90,
                    warmup_iters=0, eval_interval=9, eval_iters=5, seed=123),
    # seconds on a laptop: for smoke tests of the whole pipeline
    "tiny": dict(n_layer=2, n_head=2, n_embd=32, block_size=16, batch_size=8, dropout=0.0, max_iters=40,
                 lr_decay_iters=40, learning_rate=3e-3, min_lr=3e-4, warmup_iters=5, eval_interval=20,
                 eval_iters=4, bias=False),
}


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
    """Parse ``text`` as ``typ`` for the field ``key``; raise ValueError naming both on failure."""
    if typ is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--{key} takes a bool (true/false), got {text!r}")
    try:
        if typ is int:
            return int(text)
        if typ is float:
            return float(text)
    except ValueError:
        raise ValueError(f"--{key} takes {typ.__name__}, got {text!r}") from None
    return text


def parse_overrides(args: list[str]) -> dict[str, typing.Any]:
    """Turn ``["--max_iters=40", "--seed", "3"]`` into ``{"max_iters": 40, "seed": 3}``, typed by field.

    Raises:
        ValueError: an unknown key (the message lists the valid ones), a missing or badly typed value.
    """
    types = field_types()
    out: dict[str, typing.Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ValueError(f"expected --key=value, got {arg!r}")
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if key not in types:
            raise ValueError(f"unknown config key {key!r}; valid keys: {', '.join(types)}")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                if types[key] is bool:  # a bare --bias means true
                    value = "true"
                else:
                    raise ValueError(f"--{key} needs a value (--{key}=VALUE)")
            else:
                i += 1
                value = args[i]
        out[key] = parse_value(key, value, types[key])
        i += 1
    return out


def make_config(preset: str | None = None, overrides: dict[str, typing.Any] | None = None) -> TrainConfig:
    """TrainConfig from the defaults, then a preset's values, then ``overrides``."""
    values: dict[str, typing.Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
        values.update(PRESETS[preset])
    values.update(overrides or {})
    unknown = sorted(set(values) - set(field_types()))
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; valid keys: {', '.join(field_types())}")
    return TrainConfig(**values)


def config_help() -> str:
    """One line per overridable key with its type and default, for ``tinygpt train --help``."""
    defaults = TrainConfig()
    return "\n".join(f"  --{f.name}={getattr(defaults, f.name)!r} ({t.__name__})"
                     for f, t in zip(dataclasses.fields(TrainConfig), field_types().values()))


__all__ = ["TrainConfig", "PRESETS", "make_config", "parse_overrides", "parse_value", "config_help"]
