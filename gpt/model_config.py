"""GPTConfig: the shape of a GPT (its own module so that gpt.hf can map configs without importing the model)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from tinytensor.errors import ConfigError, DTypeError

__all__ = ["GPTConfig", "INITS", "available_memory", "check_memory", "param_count"]

INITS = ("gpt2", "torch")   # GPTConfig.weight_init: GPT-2's weight init, or PyTorch's module defaults (the book's)


@dataclass
class GPTConfig:
    """The model's shape. Defaults are GPT-2 small (124M) as in nanoGPT.

    Attributes:
        block_size: longest context the model sees (positions 0 .. block_size-1).
        vocab_size: number of token ids.
        n_layer: transformer blocks.
        n_head: attention heads per block; must divide ``n_embd``.
        n_embd: channels of the residual stream.
        dropout: dropout probability on attention weights and residual branches while training.
        bias: whether Linear and LayerNorm layers have biases (GPT-2 has them).
        tie_weights: the output layer ``lm_head`` is the token embedding ``wte`` (GPT-2's weight tying);
            ``False`` gives ``lm_head`` its own ``[V, C]`` weight (the book's ``GPTModel``).
        weight_init: how a fresh model's weights are drawn. ``"gpt2"``: GPT-2's scheme (weights N(0, 0.02),
            residual projections N(0, 0.02/√(2·n_layer)), biases 0). ``"torch"``: PyTorch's module
            defaults, as the book's ``GPTModel`` gets them (embeddings N(0, 1), Linear weights and biases
            uniform in ±1/√fan_in); with ``tie_weights`` this gives N(0, 1) output weights and huge
            first logits, so the two are not allowed together.
    """
    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True
    tie_weights: bool = True
    weight_init: str = "gpt2"

    def __post_init__(self):
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"GPTConfig.{name} must be a positive int, got {value!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"GPTConfig: n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.bias, (bool, np.bool_)):
            raise DTypeError(f"GPTConfig.bias must be a bool, got {self.bias!r}")
        if not isinstance(self.tie_weights, (bool, np.bool_)):
            raise DTypeError(f"GPTConfig.tie_weights must be a bool, got {self.tie_weights!r}")
        if self.weight_init not in INITS:
            raise ConfigError(f"GPTConfig.weight_init must be one of {', '.join(INITS)}, got {self.weight_init!r}")
        if self.weight_init == "torch" and self.tie_weights:
            raise ConfigError("GPTConfig: weight_init='torch' draws wte from N(0, 1), too large for a tied output "
                              "layer: set tie_weights=False with it (as the book's GPTModel)")


def param_count(c: GPTConfig) -> int:
    """The number of parameters of a GPT of config ``c``, from the shapes alone (nothing allocated).

    Per block: ``ln_1``, ``ln_2`` (C each, +C biases), ``c_attn`` C·3C, ``c_proj`` C·C, ``c_fc`` C·4C,
    ``mlp.c_proj`` 4C·C (+3C + C + 4C + C + 2C biases); plus ``wte`` V·C (also the output layer), ``wpe`` T·C and
    ``ln_f``; an untied ``lm_head`` adds V·C. Python ints: no overflow for any size.
    """
    C, bias = int(c.n_embd), bool(c.bias)
    block = 12 * C * C + 2 * C + (11 * C if bias else 0)
    head = 0 if c.tie_weights else int(c.vocab_size) * C
    return int(c.vocab_size) * C + head + int(c.block_size) * C + int(c.n_layer) * block + C + (C if bias else 0)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable`` in /proc/meminfo, else the free
    physical pages), or None if this system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(c: GPTConfig, copies: int = 4, itemsize: int = 4) -> int:
    """Raise ConfigError if a GPT of config ``c`` cannot fit in memory; returns the bytes it needs.

    Training holds ``copies`` arrays of every parameter (weights, gradients, AdamW's two moments: 4) of
    ``itemsize`` bytes (float32); activations come on top, so this is a lower bound.
    """
    need = param_count(c) * copies * itemsize
    have = available_memory()
    if have is not None and need > have:
        raise ConfigError(
            f"the model (n_layer={c.n_layer}, n_embd={c.n_embd}, block_size={c.block_size}, vocab_size="
            f"{c.vocab_size}) has {param_count(c):,} parameters and needs at least {need / 2**30:,.1f} GiB "
            f"({copies} x {itemsize} bytes each: weights, grads and AdamW's moments), but only "
            f"{have / 2**30:,.1f} GiB is available; choose a smaller model")
    return need
