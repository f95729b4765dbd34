"""The transformer's reusable pieces: the KV cache, causal self-attention, the MLP and the pre-LN block.

GPT (:mod:`gpt.model`) stacks :class:`Block`; other models (an encoder-decoder, BERT) import these
pieces. Each takes a ``config``: any object with ``n_embd``, ``n_head``, ``dropout`` and ``bias``
(:class:`KVCache` also reads ``n_layer`` and ``block_size``), such as :class:`gpt.model.GPTConfig`.
``init=False`` leaves the weights uninitialised (``np.empty``) for a caller that loads them next.
Parameter names are GPT-2's (``c_attn``, ``c_proj``, ``c_fc``, ``ln_1``, ``ln_2``), weights in
``Linear``'s ``[out, in]`` layout.

Shapes: B batch, T time (sequence), C channels (n_embd), H heads, D = C / H head size,
S keys seen by attention (T, or more with a KV cache).
"""
from __future__ import annotations

import numpy as np

import tinytensor as tt
from tinytensor import functional as F
from tinytensor import nn

__all__ = ["Block", "CausalSelfAttention", "KVCache", "MLP", "causal_attention_weights"]


class KVCache:
    """Keys and values of the positions seen so far, per layer: ``[B, H, block_size, D]`` buffers.

    ``length`` is how many positions are filled; a forward pass with a cache appends its T positions,
    attends over all ``length + T`` and takes positions ``length .. length+T-1``.
    """

    def __init__(self, config, batch_size: int, dtype=np.float32):
        hs = config.n_embd // config.n_head
        shape = (config.n_layer, batch_size, config.n_head, config.block_size, hs)
        self.k = np.zeros(shape, dtype=dtype)
        self.v = np.zeros(shape, dtype=dtype)
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.k.shape[3]


def causal_attention_weights(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """softmax(q kᵀ / √D) with the causal mask, in float64: the probabilities the fused attention uses.

    q ``[B, H, T, D]``, k ``[B, H, S, D]`` (S >= T: query i is position i + S - T and sees keys 0 .. i + S - T).
    Returns ``[B, H, T, S]``; masked entries are exactly 0.
    """
    T, S, D = q.shape[2], k.shape[2], q.shape[3]
    scores = q.astype(np.float64) @ k.astype(np.float64).swapaxes(-1, -2) / np.sqrt(D)   # [B, H, T, S]
    visible = np.arange(S)[None, :] <= np.arange(T)[:, None] + (S - T)                   # [T, S]
    scores = np.where(visible, scores, -np.inf)
    scores -= scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    return p / p.sum(axis=-1, keepdims=True)


class CausalSelfAttention(nn.Module):

    def __init__(self, config, rng: np.random.Generator, dropout_rng: np.random.Generator, init: bool = True):
        super().__init__()
        # key, query, value projections for all heads, in one matrix: weight [3C, C]
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias, rng=rng, init=init)
        # output projection: weight [C, C]
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias, rng=rng, init=init)
        self.resid_dropout = nn.Dropout(config.dropout, rng=dropout_rng)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.dropout_rng = dropout_rng
        # set keep_weights = True to keep the last forward's attention probabilities [B, H, T, S] as
        # self.weights (a NumPy copy for inspection, e.g. `tinygpt attention`; training never needs it)
        self.keep_weights = False
        self.weights: np.ndarray | None = None

    def forward(self, x: tt.Tensor, cache: KVCache | None = None, layer: int = 0) -> tt.Tensor:
        B, T, C = x.shape
        H, D = self.n_head, C // self.n_head
        q, k, v = tt.split(self.c_attn(x), 3, axis=2)                 # 3 x [B, T, C]
        q = q.reshape(B, T, H, D).transpose(0, 2, 1, 3)                # [B, H, T, D]
        k = k.reshape(B, T, H, D).transpose(0, 2, 1, 3)                # [B, H, T, D]
        v = v.reshape(B, T, H, D).transpose(0, 2, 1, 3)                # [B, H, T, D]
        if cache is not None:  # inference only (no graph): append, then attend over everything cached
            start, end = cache.length, cache.length + T
            cache.k[layer, :, :, start:end] = k.data
            cache.v[layer, :, :, start:end] = v.data
            k = tt.Tensor(cache.k[layer, :, :, :end])                  # [B, H, S, D]
            v = tt.Tensor(cache.v[layer, :, :, :end])                  # [B, H, S, D]
        if self.keep_weights:
            self.weights = causal_attention_weights(q.data, k.data)    # [B, H, T, S]
        # causal: query i (the last T of S positions) sees keys 0 .. i + S - T
        y = F.scaled_dot_product_attention(q, k, v, causal=True, dropout_p=self.dropout,
                                           training=self.training, rng=self.dropout_rng)  # [B, H, T, D]
        y = y.transpose(0, 2, 1, 3).reshape(B, T, C)                   # [B, T, C] heads side by side
        return self.resid_dropout(self.c_proj(y))                      # [B, T, C]


class MLP(nn.Module):

    def __init__(self, config, rng: np.random.Generator, dropout_rng: np.random.Generator, init: bool = True):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias, rng=rng,
                              init=init)                                              # [4C, C]
        self.gelu = nn.GELU()                                                                 # tanh form
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias, rng=rng,
                                init=init)                                            # [C, 4C]
        self.dropout = nn.Dropout(config.dropout, rng=dropout_rng)

    def forward(self, x: tt.Tensor) -> tt.Tensor:
        x = self.gelu(self.c_fc(x))                                    # [B, T, 4C]
        return self.dropout(self.c_proj(x))                            # [B, T, C]


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, config, rng: np.random.Generator, dropout_rng: np.random.Generator, init: bool = True):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, rng, dropout_rng, init)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config, rng, dropout_rng, init)

    def forward(self, x: tt.Tensor, cache: KVCache | None = None, layer: int = 0) -> tt.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)                  # [B, T, C]
        x = x + self.mlp(self.ln_2(x))                                 # [B, T, C]
        return x
