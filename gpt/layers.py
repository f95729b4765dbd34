"""The sub-layers of *Attention Is All You Need*, shared by the encoder–decoder and the BERT encoder.

An **encoder layer** is self-attention over the whole input (no causal mask) and a feed-forward
network; a **decoder layer** adds masked self-attention and cross-attention to the encoder's output.
Each sub-layer is wrapped in a residual connection and a LayerNorm, in one of two orders:

* post-LN, the paper's (``norm_first=False``): ``x = norm(x + dropout(sublayer(x)))``;
* pre-LN, GPT-2's (``norm_first=True``): ``x = x + dropout(sublayer(norm(x)))`` — trains without warm-up
  more easily, and needs a final LayerNorm after the stack.

The attention is :class:`tinytensor.nn.MultiheadAttention` (separate q / k / v projections), the same
module for self- and cross-attention. The GPT's own pre-LN block is :class:`gpt.blocks.Block`.

Shapes: B batch, S source length, T target length, C channels (d_model).
Masks follow ``F.scaled_dot_product_attention``: True = ignore; ``*_padding_mask`` is bool ``[B, n]``.
"""
from __future__ import annotations

import numpy as np

import tinytensor as tt
from tinytensor import nn
from tinytensor.errors import ConfigError

__all__ = ["DecoderLayer", "EncoderLayer", "FeedForward"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


class FeedForward(nn.Module):
    """The position-wise feed-forward network: ``w_2(dropout(act(w_1(x))))``, ``[B, n, C] -> [B, n, C]``."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, activation: str = "relu", bias: bool = True,
                 rng: np.random.Generator | None = None, dropout_rng: np.random.Generator | None = None):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ConfigError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.w_1 = nn.Linear(d_model, d_ff, bias=bias, rng=rng)      # [d_ff, C]
        self.act = _ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout, rng=dropout_rng)
        self.w_2 = nn.Linear(d_ff, d_model, bias=bias, rng=rng)      # [C, d_ff]

    def forward(self, x: tt.Tensor) -> tt.Tensor:
        return self.w_2(self.dropout(self.act(self.w_1(x))))          # [B, n, C]


class _Residual(nn.Module):
    """One sub-layer's residual connection and LayerNorm, post-LN or pre-LN (see the module docstring)."""

    def __init__(self, d_model: int, dropout: float, norm_first: bool, bias: bool,
                 dropout_rng: np.random.Generator | None):
        super().__init__()
        self.norm = nn.LayerNorm(d_model, bias=bias)
        self.dropout = nn.Dropout(dropout, rng=dropout_rng)
        self.norm_first = norm_first

    def forward(self, x: tt.Tensor, sublayer) -> tt.Tensor:
        if self.norm_first:
            return x + self.dropout(sublayer(self.norm(x)))           # pre-LN
        return self.norm(x + self.dropout(sublayer(x)))               # post-LN (the paper)


class EncoderLayer(nn.Module):
    """Self-attention over all positions, then the feed-forward network, each with its residual."""

    def __init__(self, d_model: int, n_head: int, d_ff: int, dropout: float = 0.1, norm_first: bool = False,
                 activation: str = "relu", bias: bool = True, rng: np.random.Generator | None = None,
                 dropout_rng: np.random.Generator | None = None):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_head, bias=bias, dropout=dropout, rng=rng)
        self.ff = FeedForward(d_model, d_ff, dropout, activation, bias, rng, dropout_rng)
        self.sub_attn = _Residual(d_model, dropout, norm_first, bias, dropout_rng)
        self.sub_ff = _Residual(d_model, dropout, norm_first, bias, dropout_rng)

    def forward(self, x: tt.Tensor, padding_mask=None) -> tt.Tensor:
        """``x [B, S, C]``; ``padding_mask [B, S]`` hides padded keys. Returns ``[B, S, C]``."""
        x = self.sub_attn(x, lambda h: self.self_attn(h, h, h, key_padding_mask=padding_mask))
        return self.sub_ff(x, self.ff)                                # [B, S, C]


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention to the encoder's output ``memory``, then the feed-forward."""

    def __init__(self, d_model: int, n_head: int, d_ff: int, dropout: float = 0.1, norm_first: bool = False,
                 activation: str = "relu", bias: bool = True, rng: np.random.Generator | None = None,
                 dropout_rng: np.random.Generator | None = None):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_head, bias=bias, dropout=dropout, rng=rng)
        self.cross_attn = nn.MultiheadAttention(d_model, n_head, bias=bias, dropout=dropout, rng=rng)
        self.ff = FeedForward(d_model, d_ff, dropout, activation, bias, rng, dropout_rng)
        self.sub_self = _Residual(d_model, dropout, norm_first, bias, dropout_rng)
        self.sub_cross = _Residual(d_model, dropout, norm_first, bias, dropout_rng)
        self.sub_ff = _Residual(d_model, dropout, norm_first, bias, dropout_rng)

    def forward(self, y: tt.Tensor, memory: tt.Tensor, tgt_padding_mask=None,
                memory_padding_mask=None) -> tt.Tensor:
        """``y [B, T, C]`` (target so far), ``memory [B, S, C]`` (encoder output). Returns ``[B, T, C]``.

        Target position i sees target positions 0..i (causal) and every unpadded source position.
        """
        y = self.sub_self(y, lambda h: self.self_attn(h, h, h, key_padding_mask=tgt_padding_mask, causal=True))
        y = self.sub_cross(y, lambda h: self.cross_attn(h, memory, memory, key_padding_mask=memory_padding_mask))
        return self.sub_ff(y, self.ff)                                # [B, T, C]
