"""The encoder–decoder Transformer of *Attention Is All You Need* (Vaswani et al., 2017), scaled down.

    from gpt import Transformer, TransformerConfig
    model = Transformer(TransformerConfig(vocab_size=40, d_model=128, n_head=4, d_ff=512, n_layer=2), seed=0)
    logits, loss = model(src, tgt_in, targets)     # src [B, S], tgt_in / targets [B, T] int arrays

The paper's figure, top to bottom: the source and target tokens share one embedding (scaled by
``sqrt(d_model)``) plus the fixed sinusoidal positions and dropout; the **encoder** is N
:class:`~gpt.layers.EncoderLayer` (self-attention over the whole source, feed-forward); the **decoder** is
N :class:`~gpt.layers.DecoderLayer` (masked self-attention over the target so far, cross-attention to the
encoder's output ``memory``, feed-forward); the output projection is the embedding matrix again (tied
weights). Residuals and LayerNorms are post-LN as in the paper, or pre-LN (``norm_first``), which then
needs a final LayerNorm after each stack.

Masks, built in one place (:meth:`Transformer.source_padding`): source padding is hidden from the
encoder's self-attention and from the decoder's cross-attention. The target needs only the causal mask:
targets are right-padded, so a real position never sees a padded one (they all come later), and the
padded positions' outputs are ignored by the loss (``ignore_index=pad_id``).

Shapes: B batch, S source length, T target length, C = d_model, V vocabulary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import tinytensor as tt
import tinytensor.functional as F
from tinytensor import nn
from tinytensor.errors import ConfigError, DTypeError, ShapeError, UsageError
from tinytensor.ops.checks import check_int_fields

from .layers import DecoderLayer, EncoderLayer, LayerCache

__all__ = ["Transformer", "TransformerConfig"]


@dataclass
class TransformerConfig:
    """The sizes of an encoder–decoder (the paper's base model: 512, 8, 2048, 6, 0.1).

    ``max_len`` bounds the source and the decoder's input (BOS + target) alike. ``pad_id``, ``bos_id``
    and ``eos_id`` are the special tokens of the shared vocabulary.
    """
    vocab_size: int
    d_model: int = 128
    n_head: int = 4
    d_ff: int = 512
    n_layer: int = 2                  # encoder layers
    n_dec_layer: int | None = None    # decoder layers (default: n_layer)
    dropout: float = 0.1
    max_len: int = 64
    norm_first: bool = False          # False: the paper's post-LN; True: pre-LN + final LayerNorms
    activation: str = "relu"
    label_smoothing: float = 0.0      # the paper uses 0.1
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self):
        if self.n_dec_layer is None:
            self.n_dec_layer = self.n_layer
        check_int_fields(self, ("vocab_size", "d_model", "n_head", "d_ff", "n_layer", "n_dec_layer", "max_len"),
                         1, "TransformerConfig.")
        if self.d_model % self.n_head:
            raise ConfigError(f"TransformerConfig: d_model {self.d_model} must be a multiple of n_head {self.n_head}")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.label_smoothing <= 1.0:
            raise ConfigError(f"TransformerConfig: dropout must be in [0, 1) and label_smoothing in [0, 1], "
                              f"got {self.dropout!r}, {self.label_smoothing!r}")
        ids = {"pad_id": self.pad_id, "bos_id": self.bos_id, "eos_id": self.eos_id}
        for name, v in ids.items():
            if not isinstance(v, int) or not 0 <= v < self.vocab_size:
                raise ConfigError(f"TransformerConfig.{name} must be a token id in [0, {self.vocab_size}), got {v!r}")
        if len(set(ids.values())) != 3:
            raise ConfigError(f"TransformerConfig: pad_id, bos_id and eos_id must differ, got {ids}")


def _ids(x, name: str, max_len: int, vocab_size: int) -> np.ndarray:
    """``x`` as an int64 ``[B, n]`` array of token ids, checked against the config (errors name the value)."""
    a = np.asarray(x.data if isinstance(x, tt.Tensor) else x)
    if a.dtype.kind not in "iu":
        raise DTypeError(f"Transformer: {name} must hold integer token ids, got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[1] == 0:
        raise ShapeError(f"Transformer: {name} must be [B, n] token ids with n >= 1, got shape {a.shape}")
    if a.shape[1] > max_len:
        raise ShapeError(f"Transformer: {name} has length {a.shape[1]}, longer than max_len {max_len}")
    if a.size and (a.min() < 0 or a.max() >= vocab_size):
        bad = a.min() if a.min() < 0 else a.max()
        raise UsageError(f"Transformer: {name} holds token id {bad}, outside [0, {vocab_size})")
    return a.astype(np.int64, copy=False)


class Transformer(nn.Module):
    """The encoder–decoder: :meth:`encode` the source once, :meth:`decode` the target against it.

    Args:
        config: the sizes.
        seed: seeds the weight init and (a separate stream) dropout; ``None`` draws from tinytensor's
            default generator.
    """

    def __init__(self, config: TransformerConfig, seed: int | None = None):
        super().__init__()
        self.config = c = config
        if seed is None:
            seed = int(tt.default_rng().integers(2**63))
        init_seq, dropout_seq = np.random.SeedSequence(seed).spawn(2)
        rng = np.random.default_rng(init_seq)
        self.dropout_rng = np.random.default_rng(dropout_seq)
        self.embed = nn.Embedding(c.vocab_size, c.d_model, rng=rng)               # [V, C], shared and tied
        # N(0, C^-1/2): times sqrt(C) the inputs have unit variance, and the tied logits start small
        self.embed.weight.data[...] = rng.normal(0.0, c.d_model ** -0.5, size=self.embed.weight.shape)
        # a buffer [max_len, C], kept in float64 so a model cast to float64 (to_dtype) gets exact positions
        self.pos = nn.SinusoidalPositions(c.max_len, c.d_model, dtype=np.float64)
        self.drop = nn.Dropout(c.dropout, rng=self.dropout_rng)
        layer_args = (c.d_model, c.n_head, c.d_ff, c.dropout, c.norm_first, c.activation)
        self.encoder = nn.ModuleList(EncoderLayer(*layer_args, rng=rng, dropout_rng=self.dropout_rng)
                                     for _ in range(c.n_layer))
        self.decoder = nn.ModuleList(DecoderLayer(*layer_args, rng=rng, dropout_rng=self.dropout_rng)
                                     for _ in range(c.n_dec_layer))
        if c.norm_first:    # pre-LN leaves each stack's output un-normalised
            self.enc_norm = nn.LayerNorm(c.d_model)
            self.dec_norm = nn.LayerNorm(c.d_model)

    # ------------------------------------------------------------------------------------ pieces
    def source_padding(self, src: np.ndarray) -> np.ndarray | None:
        """The source's key-padding mask ``[B, S]`` (True = pad), or None when nothing is padded (the
        attention then takes its fused, mask-free kernel)."""
        mask = src == self.config.pad_id                             # [B, S]
        return mask if mask.any() else None

    def embed_tokens(self, ids: np.ndarray, offset: int = 0) -> tt.Tensor:
        """``dropout(embed(ids) * sqrt(C) + PE[offset : offset + n])`` for ``ids [B, n]`` -> ``[B, n, C]``."""
        x = self.embed(ids) * math.sqrt(self.config.d_model)         # [B, n, C]
        n = ids.shape[1]
        x = x + self.pos.pe.data[offset:offset + n].astype(x.dtype, copy=False)   # [B, n, C]
        return self.drop(x)                                          # [B, n, C]

    def project(self, h: tt.Tensor) -> tt.Tensor:
        """Decoder states ``[B, T, C]`` -> logits ``[B, T, V]`` through the tied embedding."""
        return F.linear(h, self.embed.weight)                        # h @ embed.T: [B, T, V]

    def check_padding_mask(self, mask, src: np.ndarray) -> np.ndarray | None:
        """A caller's source padding mask: bool ``[B, S]`` like ``src``."""
        if mask is None:
            return None
        m = np.asarray(mask.data if isinstance(mask, tt.Tensor) else mask)
        if m.dtype != np.bool_:
            raise DTypeError(f"Transformer: src_padding_mask must be bool (True = pad), got dtype {m.dtype}")
        if m.shape != src.shape:
            raise ShapeError(f"Transformer: src_padding_mask has shape {m.shape}, the source {src.shape}")
        return m

    # ------------------------------------------------------------------------------------- passes
    def encode(self, src, src_padding_mask=None) -> tuple[tt.Tensor, np.ndarray | None]:
        """The encoder: ``src [B, S]`` -> ``(memory [B, S, C], padding mask [B, S] or None)``.

        Without ``src_padding_mask`` the mask is ``src == pad_id``.
        """
        c = self.config
        src = _ids(src, "the source", c.max_len, c.vocab_size)        # [B, S]
        mask = self.source_padding(src) if src_padding_mask is None else self.check_padding_mask(src_padding_mask, src)
        x = self.embed_tokens(src)                                    # [B, S, C]
        for layer in self.encoder:
            x = layer(x, padding_mask=mask)                           # [B, S, C]
        if c.norm_first:
            x = self.enc_norm(x)                                      # [B, S, C]
        return x, mask

    def decode(self, tgt_in, memory: tt.Tensor, memory_padding_mask=None) -> tt.Tensor:
        """The decoder over a whole target prefix: ``tgt_in [B, T]`` (BOS first) -> logits ``[B, T, V]``."""
        c = self.config
        tgt_in = _ids(tgt_in, "the decoder input (BOS + target)", c.max_len, c.vocab_size)   # [B, T]
        if memory.ndim != 3 or memory.shape[0] != tgt_in.shape[0] or memory.shape[2] != c.d_model:
            raise ShapeError(f"Transformer.decode: memory must be [{tgt_in.shape[0]}, S, {c.d_model}], "
                             f"got {memory.shape}")
        y = self.embed_tokens(tgt_in)                                 # [B, T, C]
        for layer in self.decoder:
            y = layer(y, memory, memory_padding_mask=memory_padding_mask)   # [B, T, C]
        if c.norm_first:
            y = self.dec_norm(y)                                      # [B, T, C]
        return self.project(y)                                        # [B, T, V]

    def start_cache(self, memory: tt.Tensor) -> list[LayerCache]:
        """One :class:`~gpt.layers.LayerCache` per decoder layer, the encoder output projected once."""
        return [layer.cache(memory) for layer in self.decoder]

    def decode_step(self, token: np.ndarray, position: int, cache: list[LayerCache],
                    memory_padding_mask=None) -> tt.Tensor:
        """Incremental :meth:`decode`: the newest token ``[B, 1]`` at ``position`` -> logits ``[B, 1, V]``,
        the same as the last row of ``decode`` over the whole prefix (the layers' keys/values are cached)."""
        c = self.config
        if position >= c.max_len:
            raise ShapeError(f"Transformer.decode_step: position {position} is past max_len {c.max_len}")
        y = self.embed_tokens(np.asarray(token, dtype=np.int64), offset=position)   # [B, 1, C]
        for layer, layer_cache in zip(self.decoder, cache):
            y = layer.step(y, layer_cache, memory_padding_mask)       # [B, 1, C]
        if c.norm_first:
            y = self.dec_norm(y)                                      # [B, 1, C]
        return self.project(y)                                        # [B, 1, V]

    def forward(self, src, tgt_in, targets=None) -> tuple[tt.Tensor, tt.Tensor | None]:
        """Teacher forcing: ``src [B, S]``, ``tgt_in [B, T]`` (BOS + target) -> ``(logits [B, T, V], loss)``.

        ``loss`` (None without ``targets [B, T]``, the target + EOS) is the mean cross-entropy over the
        non-pad targets, with the config's label smoothing.
        """
        memory, mask = self.encode(src)                               # [B, S, C]
        logits = self.decode(tgt_in, memory, mask)                    # [B, T, V]
        if targets is None:
            return logits, None
        t = np.asarray(targets.data if isinstance(targets, tt.Tensor) else targets)
        if t.shape != logits.shape[:2]:
            raise ShapeError(f"Transformer: targets have shape {t.shape}, the decoder input {logits.shape[:2]}")
        loss = F.cross_entropy(logits, t, ignore_index=self.config.pad_id,
                               label_smoothing=self.config.label_smoothing)
        return logits, loss

    def configure_optimizer(self, lr: float = 1.0, weight_decay: float = 0.0) -> tt.optim.AdamW:
        """The paper's Adam: betas (0.9, 0.98), eps 1e-9 (AdamW with ``weight_decay=0`` is exactly Adam);
        the learning rate comes from :func:`tinytensor.optim.noam_lr` each step."""
        return tt.optim.AdamW(self.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9, weight_decay=weight_decay)
