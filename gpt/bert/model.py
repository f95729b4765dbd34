"""A BERT-style encoder: bidirectional self-attention, a masked-LM head and a ``[CLS]`` classifier.

The same engine as the GPT (:mod:`gpt.model`), three differences (Devlin et al. 2018):

* every position attends to every other (no causal mask); only ``[PAD]`` keys are hidden;
* the stack is the paper's post-LN :class:`gpt.layers.EncoderLayer` (``norm_first=False``, as BERT),
  after an embedding LayerNorm;
* it is trained to fill in hidden tokens (:mod:`gpt.bert.masking`), not to predict the next one.

Reading top to bottom (B batch, T positions, C = ``n_embd``, V vocabulary, M masked positions)::

    x = LayerNorm(wte[idx] + wpe[:T] (+ wse[segments]))        embeddings           [B, T, C]
    x = EncoderLayer(x, padding_mask=idx == pad_id) x n_layer                       [B, T, C]
    MLM:      logits = LayerNorm(gelu(dense(x))) @ wte.T + bias  (tied decoder)     [B, T, V]
    pooler:   pooled = tanh(dense(x[:, 0]))                      (the [CLS] state)  [B, C]
    classify: logits = head(dropout(pooled))                                        [B, K]

Parameter names follow google-research/bert's ``modeling.py`` loosely, in this project's spelling:
``embeddings.{wte,wpe,wse,ln}``, ``encoder.{i}.*`` (EncoderLayer's names), ``mlm.{dense,ln,bias}``,
``pooler``; :class:`BertClassifier` adds ``head``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import tinytensor as tt
from tinytensor import functional as F
from tinytensor import nn
from tinytensor.errors import ConfigError, DTypeError, ShapeError
from tinytensor.ops.checks import check_int_fields

from ..layers import EncoderLayer

IGNORE_INDEX = -100          # targets at unchosen positions (F.cross_entropy's ignore_index)


@dataclass
class BertConfig:
    """The encoder's sizes.

    Attributes:
        vocab_size: V, including the four special tokens.
        block_size: the longest input (learned positions ``wpe [block_size, C]``).
        n_layer, n_head, n_embd: encoder layers, attention heads, channels C.
        d_ff: the feed-forward's inner size (0: ``4 * n_embd``, BERT's ratio).
        dropout: on embeddings, attention weights, sub-layer outputs and before the classifier head.
        n_segments: segment (sentence A / B) embeddings ``wse [n_segments, C]``; 0: none.
        pad_id: the ``[PAD]`` id: those keys are masked out of attention.
        norm_first: False (BERT, post-LN) or True (pre-LN, with a final LayerNorm).
    """
    vocab_size: int = 1024
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    d_ff: int = 0
    dropout: float = 0.1
    n_segments: int = 0
    pad_id: int = 0
    norm_first: bool = False

    def __post_init__(self):
        check_int_fields(self, ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"), 1, "BertConfig.")
        check_int_fields(self, ("d_ff", "n_segments"), 0, "BertConfig.")
        if self.n_embd % self.n_head:
            raise ConfigError(f"BertConfig: n_embd {self.n_embd} must be a multiple of n_head {self.n_head}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ConfigError(f"BertConfig.pad_id must lie in [0, vocab_size={self.vocab_size}), got {self.pad_id}")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise ConfigError(f"BertConfig.dropout must lie in [0, 1), got {self.dropout!r}")

    @property
    def ff_size(self) -> int:
        return self.d_ff or 4 * self.n_embd


class Embeddings(nn.Module):
    """``dropout(LayerNorm(wte[idx] + wpe[:T] + wse[segments]))``: ``[B, T]`` ids -> ``[B, T, C]``."""

    def __init__(self, config: BertConfig, rng: np.random.Generator, dropout_rng: np.random.Generator):
        super().__init__()
        C = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, C, rng=rng)       # [V, C], also the MLM decoder
        self.wpe = nn.Embedding(config.block_size, C, rng=rng)       # [block_size, C]
        self.wse = nn.Embedding(config.n_segments, C, rng=rng) if config.n_segments else None
        self.ln = nn.LayerNorm(C)
        self.drop = nn.Dropout(config.dropout, rng=dropout_rng)

    def forward(self, idx: np.ndarray, segments: np.ndarray | None) -> tt.Tensor:
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(np.arange(T))                    # [B, T, C] + [T, C]
        if self.wse is not None:
            x = x + self.wse(segments if segments is not None else np.zeros_like(idx))   # [B, T, C]
        return self.drop(self.ln(x))                                  # [B, T, C]


class MLMHead(nn.Module):
    """BERT's ``cls/predictions``: ``LayerNorm(gelu(dense(h))) @ wte.T + bias``, ``[..., C] -> [..., V]``."""

    def __init__(self, config: BertConfig, wte: nn.Embedding, rng: np.random.Generator):
        super().__init__()
        self.dense = nn.Linear(config.n_embd, config.n_embd, rng=rng)   # [C, C]
        self.ln = nn.LayerNorm(config.n_embd)
        self.bias = nn.Parameter(np.zeros(config.vocab_size, dtype=wte.weight.dtype))   # [V]
        object.__setattr__(self, "_wte", wte)     # tied: not registered twice (named wte once, in embeddings)

    def forward(self, h: tt.Tensor) -> tt.Tensor:
        h = self.ln(F.gelu(self.dense(h)))                            # [..., C]
        return F.linear(h, self._wte.weight, self.bias)               # [..., C] @ [V, C].T -> [..., V]


class Bert(nn.Module):
    """The encoder with its masked-LM head and ``[CLS]`` pooler (see the module docstring).

    Args:
        config: the sizes.
        seed: seeds the init (``N(0, 0.02)`` for embeddings and the heads' dense layers, BERT's
            ``initializer_range``; the encoder layers keep their PyTorch-style init) and the dropout stream.
    """

    def __init__(self, config: BertConfig, seed: int = 0):
        super().__init__()
        self.config = config
        rng = np.random.default_rng([seed, 17])
        self.dropout_rng = np.random.default_rng([seed, 18])
        self.embeddings = Embeddings(config, rng, self.dropout_rng)
        self.encoder = nn.ModuleList(
            EncoderLayer(config.n_embd, config.n_head, config.ff_size, config.dropout, config.norm_first,
                         activation="gelu", rng=rng, dropout_rng=self.dropout_rng)
            for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd) if config.norm_first else None
        self.mlm = MLMHead(config, self.embeddings.wte, rng)
        self.pooler = nn.Linear(config.n_embd, config.n_embd, rng=rng)            # [C, C]
        for emb in (self.embeddings.wte, self.embeddings.wpe, self.embeddings.wse):
            if emb is not None:
                emb.weight.data[...] = rng.normal(0.0, 0.02, emb.weight.shape)
        for lin in (self.mlm.dense, self.pooler):
            lin.weight.data[...] = rng.normal(0.0, 0.02, lin.weight.shape)
            lin.bias.data[...] = 0

    def to_dtype(self, dtype) -> "Bert":
        """Cast every parameter to ``dtype`` in place (float64 for gradient checks); returns ``self``."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
        return self

    def check_ids(self, idx, segments=None) -> tuple[np.ndarray, np.ndarray | None]:
        """``idx`` as int64 ``[B, T]`` with ``1 <= T <= block_size`` and ids in ``[0, V)`` (and ``segments``)."""
        idx = idx.data if isinstance(idx, tt.Tensor) else np.asarray(idx)
        if idx.ndim != 2 or not 1 <= idx.shape[1] <= self.config.block_size:
            raise ShapeError(f"idx must be [B, T] with 1 <= T <= block_size={self.config.block_size}, got shape "
                             f"{idx.shape}")
        if idx.dtype.kind not in "iu":
            raise DTypeError(f"idx must hold integer token ids, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.config.vocab_size):
            raise ShapeError(f"token ids must lie in [0, vocab_size={self.config.vocab_size}), got min {idx.min()} "
                             f"max {idx.max()}")
        if segments is not None:
            segments = np.asarray(segments)
            if segments.shape != idx.shape or not self.config.n_segments or segments.dtype.kind not in "iu" \
                    or segments.min() < 0 or segments.max() >= self.config.n_segments:
                raise ShapeError(f"segments must be {idx.shape} ids in [0, n_segments={self.config.n_segments}), "
                                 f"got shape {segments.shape} dtype {segments.dtype}")
        return idx.astype(np.int64, copy=False), segments

    def hidden_states(self, idx, segments=None) -> tt.Tensor:
        """The encoder's output ``[B, T, C]``; ``[PAD]`` positions are hidden from every query."""
        idx, segments = self.check_ids(idx, segments)
        pad = idx == self.config.pad_id                               # [B, T] True = ignore that key
        x = self.embeddings(idx, segments)                            # [B, T, C]
        for layer in self.encoder:
            x = layer(x, padding_mask=pad if pad.any() else None)     # [B, T, C]
        return self.ln_f(x) if self.ln_f is not None else x           # [B, T, C]

    def forward(self, idx, targets=None, segments=None) -> tuple[tt.Tensor, tt.Tensor | None]:
        """Masked-LM logits and loss.

        Args:
            idx: ``[B, T]`` token ids (some replaced by ``[MASK]`` or a random token, see masking).
            targets: ``[B, T]`` the original ids at chosen positions, ``IGNORE_INDEX`` elsewhere; or None.

        Returns:
            Without targets: logits at every position ``[B, T, V]`` and None. With targets: the logits
            of the M chosen positions only ``[M, V]`` (row-major order; the head runs on those alone,
            about 15 % of the work) and their mean cross-entropy.
        """
        h = self.hidden_states(idx, segments)                         # [B, T, C]
        if targets is None:
            return self.mlm(h), None                                  # [B, T, V]
        targets = np.asarray(targets)
        if targets.shape != h.shape[:2]:
            raise ShapeError(f"targets must have idx's shape {h.shape[:2]}, got {targets.shape}")
        b, t = np.nonzero(targets != IGNORE_INDEX)                    # [M], [M]
        if b.size == 0:
            raise ShapeError("targets choose no position (every entry is IGNORE_INDEX): nothing to predict")
        logits = self.mlm(h[b, t])                                    # [M, C] -> [M, V]
        return logits, F.cross_entropy(logits, targets[b, t])

    def pooled(self, idx, segments=None) -> tt.Tensor:
        """BERT's pooler: ``tanh(dense(h[:, 0]))``, the ``[CLS]`` position's state, ``[B, C]``."""
        h = self.hidden_states(idx, segments)                         # [B, T, C]
        return self.pooler(h[:, 0]).tanh()                            # [B, C]


class BertClassifier(nn.Module):
    """``head(dropout(bert.pooled(idx)))``: class logits ``[B, K]`` read from ``[CLS]`` (position 0).

    ``forward(idx, lengths, targets)`` has :class:`gpt.finetune.classify.GPTClassifier`'s signature, so
    that module's ``evaluate`` serves both; ``lengths`` is accepted and unused (padding is found from
    ``[PAD]`` ids, and ``[CLS]`` sees every real token whatever the row's length).
    """

    def __init__(self, bert: Bert, num_classes: int, seed: int = 0):
        super().__init__()
        if not isinstance(bert, Bert):
            raise TypeError(f"BertClassifier needs a Bert body, got {type(bert).__name__}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"num_classes must be an int >= 2, got {num_classes!r}")
        self.bert = bert
        self.num_classes = num_classes
        self.drop = nn.Dropout(bert.config.dropout, rng=bert.dropout_rng)
        g = np.random.default_rng([seed, 19])
        self.head = nn.Linear(bert.config.n_embd, num_classes, rng=g)               # [K, C]
        self.head.weight.data[...] = g.normal(0.0, 0.02, self.head.weight.shape)
        self.head.bias.data[...] = 0

    @property
    def config(self) -> BertConfig:
        return self.bert.config

    def forward(self, idx, lengths=None, targets=None, segments=None) -> tuple[tt.Tensor, tt.Tensor | None]:
        logits = self.head(self.drop(self.bert.pooled(idx, segments)))            # [B, C] -> [B, K]
        loss = F.cross_entropy(logits, np.asarray(targets)) if targets is not None else None
        return logits, loss


def num_parameters_text(model: nn.Module) -> str:
    """``"1.23M"``-style parameter count for log lines."""
    n = model.num_parameters()
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n:,}"


__all__ = ["Bert", "BertConfig", "BertClassifier", "Embeddings", "MLMHead", "IGNORE_INDEX", "num_parameters_text"]
