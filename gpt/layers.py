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

from dataclasses import dataclass

import numpy as np

import tinytensor as tt
from tinytensor import nn
from tinytensor.errors import ConfigError

__all__ = ["DecoderLayer", "EncoderLayer", "FeedForward", "LayerCache"]

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
        return self.norm(self.dropout(sublayer(x)), residual=x)      # post-LN: norm(x + ...), the add fused


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


@dataclass
class LayerCache:
    """One decoder layer's state for incremental decoding (inference only, no gradients).

    ``memory_k``, ``memory_v [B, H, S, D]``: the encoder output projected once for cross-attention;
    ``self_k``, ``self_v [B, H, t, D]``: the self-attention keys/values of the t target positions so far.
    """
    memory_k: tt.Tensor
    memory_v: tt.Tensor
    self_k: tt.Tensor | None = None
    self_v: tt.Tensor | None = None

    def append(self, k: tt.Tensor, v: tt.Tensor) -> tuple[tt.Tensor, tt.Tensor]:
        """Add one step's ``k``, ``v [B, H, 1, D]``; return all of them ``[B, H, t + 1, D]``."""
        if self.self_k is None:
            self.self_k, self.self_v = k, v
        else:
            self.self_k = tt.concatenate([self.self_k, k], axis=2)    # [B, H, t + 1, D]
            self.self_v = tt.concatenate([self.self_v, v], axis=2)    # [B, H, t + 1, D]
        return self.self_k, self.self_v

    def select(self, rows: np.ndarray) -> LayerCache:
        """The cache of batch rows ``rows`` (beam search keeps the surviving hypotheses' rows)."""
        pick = [None if a is None else tt.Tensor(a.data[rows]) for a in
                (self.memory_k, self.memory_v, self.self_k, self.self_v)]
        return LayerCache(*pick)


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

    def cache(self, memory: tt.Tensor) -> LayerCache:
        """An empty cache holding ``memory [B, S, C]`` projected for cross-attention (done once)."""
        return LayerCache(*self.cross_attn.project_kv(memory, memory))

    def step(self, y: tt.Tensor, cache: LayerCache, memory_padding_mask=None) -> tt.Tensor:
        """:meth:`forward` for the newest target position only: ``y [B, 1, C]`` -> ``[B, 1, C]``.

        The new position's self-attention keys/values join ``cache``; it sees every earlier position
        (so no causal mask is needed) and the cached, projected encoder output.
        """
        def self_attn(h):
            k, v = cache.append(*self.self_attn.project_kv(h, h))    # [B, H, t + 1, D] each
            return self.self_attn.attend(h, k, v)
        y = self.sub_self(y, self_attn)
        y = self.sub_cross(y, lambda h: self.cross_attn.attend(h, cache.memory_k, cache.memory_v,
                                                               key_padding_mask=memory_padding_mask))
        return self.sub_ff(y, self.ff)                                # [B, 1, C]
