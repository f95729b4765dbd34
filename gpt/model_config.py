"""GPTConfig: the shape of a GPT (its own module so that gpt.hf can map configs without importing the model)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinytensor.errors import ConfigError, DTypeError

__all__ = ["GPTConfig"]


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
    """
    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True

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
