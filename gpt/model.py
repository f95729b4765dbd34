"""A GPT language model on tinytensor, in the shape of karpathy/nanoGPT's ``model.py``.

Read top to bottom: the config, the model with its init, forward, optimizer setup and generation, then
the next-token sampler. The blocks it stacks (attention, MLP, pre-LN block) are in :mod:`gpt.blocks`. Parameter names are GPT-2's as nanoGPT spells them
(``transformer.wte.weight``, ``transformer.h.0.attn.c_attn.weight`` [3C, C], ...), weights in PyTorch's
``Linear`` layout ``[out, in]``, so GPT-2 state dicts map one to one. ``lm_head.weight`` is the same
Parameter as ``transformer.wte.weight`` (weight tying) and is listed once, under the ``wte`` name; with
``GPTConfig(tie_weights=False)`` (the book's ``GPTModel``) it is a Parameter of its own.

Shapes: B batch, T time (sequence), C channels (n_embd), H heads, D = C / H head size, V vocab,
S keys seen by attention (T, or more with a KV cache).
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np

import tinytensor as tt
from tinytensor import functional as F
from tinytensor import nn, optim
from tinytensor.errors import ConfigError, DTypeError, ShapeError, UsageError

from . import hf, hub
from .blocks import Block, KVCache
from .model_config import GPTConfig

__all__ = ["GPT", "GPTConfig", "KVCache", "NonFiniteLogitsError", "load_pretrained", "sample_next"]


class GPT(nn.Module):
    """The GPT-2 architecture: embeddings, ``n_layer`` pre-LN blocks, final LayerNorm, LM head (tied to ``wte`` unless ``config.tie_weights`` is False).

    Args:
        config: the model's shape.
        seed: seeds the weight init and (through a separate stream) dropout. With ``None`` the init
            draws from tinytensor's default generator (``tt.manual_seed``).
        init: ``False`` skips the random init (``np.empty`` weights) for weights that are loaded next
            (:meth:`from_pretrained`); such a model refuses to run until :meth:`load_state_dict` has
            filled every parameter.
    """

    def __init__(self, config: GPTConfig, seed: int | None = None, *, init: bool = True):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise DTypeError(f"GPT needs a GPTConfig, got {type(config).__name__}")
        self.config = config
        if seed is None:
            seed = int(tt.default_rng().integers(2**63))
        init_seq, dropout_seq = np.random.SeedSequence(seed).spawn(2)
        rng = np.random.default_rng(init_seq)
        # dropout masks come from their own stream: its state is saved with checkpoints
        self.dropout_rng = np.random.default_rng(dropout_seq)

        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(config.vocab_size, config.n_embd, rng=rng, init=init)   # [V, C]
        self.transformer.wpe = nn.Embedding(config.block_size, config.n_embd, rng=rng, init=init)   # [block_size, C]
        self.transformer.drop = nn.Dropout(config.dropout, rng=self.dropout_rng)
        self.transformer.h = nn.ModuleList(Block(config, rng, self.dropout_rng, init) for _ in range(config.n_layer))
        self.transformer.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False, rng=rng, init=init)  # [V, C]
        if config.tie_weights:  # weight tying: one Parameter, listed once as transformer.wte.weight
            self.lm_head.weight = self.transformer.wte.weight

        # weights that are about to be loaded need no random draws (most of a load's time otherwise)
        self._weights_unset = not init
        if init and config.weight_init == "gpt2":
            self._init_weights(rng)
        # weight_init="torch": keep the draws the modules made (Embedding N(0, 1), Linear ±1/√fan_in)

    def _init_weights(self, rng: np.random.Generator) -> None:
        """GPT-2 init: weights N(0, 0.02), biases 0, LayerNorm (1, 0); residual projections N(0, 0.02/√(2·n_layer))."""
        resid_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # the two projections that write into the residual stream
                p.data[...] = rng.normal(0.0, resid_std, size=p.shape)
            elif name.endswith(".bias"):
                p.data[...] = 0.0
            elif "ln_" in name:                 # LayerNorm weights (ln_1, ln_2, ln_f)
                p.data[...] = 1.0
            else:                               # Linear weights and embeddings (wte is also a tied lm_head)
                p.data[...] = rng.normal(0.0, 0.02, size=p.shape)

    def load_state_dict(self, state, strict: bool = True) -> None:
        """:meth:`tinytensor.nn.Module.load_state_dict`; a model built with ``init=False`` becomes usable
        once every parameter has been loaded."""
        super().load_state_dict(state, strict)
        if all(name in state for name, _ in self.named_parameters()):
            self._weights_unset = False

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without the position embeddings (nanoGPT's convention).

        The token embeddings count, because they are also the output layer's weights.
        """
        n = self.num_parameters()
        return n - self.transformer.wpe.weight.size if non_embedding else n

    def forward(self, idx, targets=None, cache: KVCache | None = None,
                return_all: bool = False) -> tuple[tt.Tensor, tt.Tensor | None]:
        """Logits for the next token at each position, and the mean cross-entropy if ``targets`` is given.

        Args:
            idx: token ids ``[B, T]`` (NumPy int array, nested list or integer Tensor), ``T <= block_size``.
            targets: the ids to predict ``[B, T]`` (-1 is ignored), or None.
            cache: a :class:`KVCache` (inference): ``idx`` continues the cached positions.
            return_all: without targets, return every position's logits ``[B, T, V]`` instead of only
                the last one (perplexity, evaluation, fine-tuning).

        Returns:
            ``(logits, loss)``: with targets (or ``return_all``), logits ``[B, T, V]``; without, logits
            of the last position only ``[B, 1, V]`` (nanoGPT's generation shortcut). ``loss`` is the scalar
            mean cross-entropy with targets, else ``None``.
        """
        x = self.hidden_states(idx, cache)                              # [B, T, C]
        if targets is not None:
            targets = _as_ids(targets, "targets")
            if targets.shape != x.shape[:2]:
                raise ShapeError(f"GPT.forward: targets shape {targets.shape} != idx shape {x.shape[:2]}")
            logits = self.lm_head(x)                                    # [B, T, V]
            loss = F.cross_entropy(logits, targets, ignore_index=-1)    # scalar
        elif return_all:
            logits = self.lm_head(x)                                    # [B, T, V]
            loss = None
        else:
            logits = self.lm_head(x[:, -1:, :])                         # [B, 1, V] last position only
            loss = None
        return logits, loss

    def hidden_states(self, idx, cache: KVCache | None = None) -> tt.Tensor:
        """The final hidden states ``[B, T, C]``: the blocks' output after ``ln_f``, before the LM head.

        A classification head reads these (e.g. at the last real token); ``forward`` applies ``lm_head``.
        Arguments as :meth:`forward`.
        """
        if self._weights_unset:
            raise UsageError("this GPT was built with init=False (uninitialised weights) and its weights were "
                             "never loaded: call load_state_dict with every parameter, or build it with init=True")
        idx = _as_ids(idx, "idx")
        if idx.ndim != 2:
            raise ShapeError(f"GPT.forward: idx must be [B, T], got shape {idx.shape}")
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        if T == 0 or start + T > self.config.block_size:
            raise ShapeError(f"GPT.forward: cannot run {T} tokens after {start} cached ones with "
                             f"block_size {self.config.block_size}")
        pos = np.arange(start, start + T)                               # [T]

        tok_emb = self.transformer.wte(idx)                             # [B, T, C]
        pos_emb = self.transformer.wpe(pos)                             # [T, C]
        x = self.transformer.drop(tok_emb + pos_emb)                    # [B, T, C]
        for i, block in enumerate(self.transformer.h):
            x = block(x, cache, i)                                      # [B, T, C]
        x = self.transformer.ln_f(x)                                    # [B, T, C]
        if cache is not None:
            cache.length += T
        return x

    @classmethod
    def from_pretrained(cls, name_or_dir, dropout: float = 0.0) -> "GPT":
        """A GPT with GPT-2's weights, in eval mode: a name (``gpt2``, ``gpt2-medium``, ``gpt2-large``,
        ``gpt2-xl``; downloaded once, see :mod:`gpt.hub`) or a folder in transformers' layout (``config.json``
        + ``model.safetensors``; see :mod:`gpt.hf`).

        Args:
            name_or_dir: the model's name or folder.
            dropout: the dropout probability for further training (inference and nanoGPT's fine-tuning: 0).

        Raises:
            FileNotFoundError: no such folder, config or weights.
            gpt.hf.PretrainedFormatError: a config or weights this GPT cannot take (names the fields/tensors).
            gpt.hub.HubError: a name that could not be downloaded (offline, no network, a bad checksum).
        """
        folder = hub.resolve_model(name_or_dir)
        config_dict = hf.read_config(folder)
        config = hf.config_from_hf(config_dict, dropout, str(folder / hf.CONFIG_NAME))
        hf.check_config_fits_weights(config, folder, str(folder / hf.CONFIG_NAME))   # before allocating it
        model = cls(config, seed=0, init=False)   # every weight is loaded next
        hf.load_pretrained_into(model, folder, hf=config_dict)
        model.eval()
        return model

    def save_pretrained(self, model_dir, tokenizer=None):
        """Write a folder that transformers' ``GPT2LMHeadModel.from_pretrained`` (and :meth:`from_pretrained`)
        loads, with the tokenizer's files so it is self-contained; see :func:`gpt.hf.save_pretrained`."""
        return hf.save_pretrained(self, model_dir, tokenizer)

    def configure_optimizers(self, weight_decay: float, learning_rate: float,
                             betas: tuple[float, float]) -> optim.AdamW:
        """AdamW with weight decay on every ≥2-D weight (matmuls, embeddings), none on biases and norms."""
        params = list(self.parameters())
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return optim.AdamW(groups, lr=learning_rate, betas=betas)

    # ------------------------------------------------------------------------------------ generation
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | np.random.Generator | None = None,
                 use_cache: bool = True) -> np.ndarray:
        """Continue ``idx`` by ``max_new_tokens`` sampled tokens; returns ``idx`` with them appended.

        Args:
            idx: ids ``[B, T]`` or ``[T]`` (the result has the same number of dims).
            max_new_tokens: how many tokens to add.
            temperature: divides the logits; ``0`` means greedy (argmax).
            top_k: sample only among the ``k`` most likely tokens.
            top_p: sample only among the smallest set of tokens whose probabilities sum to ≥ ``p``.
            seed: an int or ``np.random.Generator`` for the sampling draws (same seed, same text).
            use_cache: keep keys/values of past positions (a KV cache) instead of recomputing them.
        """
        idx = _as_ids(idx, "idx")
        new = list(self.generate_stream(idx, max_new_tokens, temperature, top_k, top_p, seed, use_cache))
        if idx.ndim == 1:
            return np.concatenate([idx, np.array(new, dtype=idx.dtype)])
        if not new:
            return idx.copy()
        return np.concatenate([idx, np.stack(new, axis=1).astype(idx.dtype)], axis=1)

    def generate_stream(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                        top_p: float | None = None, seed: int | np.random.Generator | None = None,
                        use_cache: bool = True, return_logits: bool = False) -> Iterator:
        """Like :meth:`generate`, but yield each new token as it is chosen.

        Yields an int per step for a 1-D ``idx``, an int array ``[B]`` for ``[B, T]``; with
        ``return_logits`` a pair ``(token(s), logits [B, V])`` of the float logits it sampled from.

        The context is cropped to the last ``block_size`` tokens. With the cache, each step runs one
        position; once the cache holds ``block_size`` positions, every position would shift by one, so
        the step recomputes over the last ``block_size`` tokens (as without the cache).
        """
        idx = _as_ids(idx, "idx")
        single = idx.ndim == 1
        ctx = idx[None, :] if single else idx
        if ctx.ndim != 2 or ctx.shape[1] == 0:
            raise ShapeError(f"generate: idx must be a non-empty [T] or [B, T] array, got shape {idx.shape}")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
            raise ConfigError(f"generate: max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        _check_sampling(temperature, top_k, top_p)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        block = self.config.block_size
        was_training = self.training
        self.eval()
        try:
            with tt.no_grad():
                ctx = ctx[:, -block:].astype(np.int64)
                cache = KVCache(self.config, ctx.shape[0], self.transformer.wte.weight.dtype) if use_cache else None
                feed = ctx                                             # tokens not yet seen by the model
                for _ in range(max_new_tokens):
                    if cache is not None and cache.length + feed.shape[1] > block:
                        cache.length, feed = 0, ctx                    # positions shift: recompute
                    logits, _ = self(feed if cache is not None else ctx, cache=cache)
                    logits = logits.data[:, -1, :]                     # [B, V]
                    nxt = sample_next(logits, temperature, top_k, top_p, rng)   # [B]
                    ctx = np.concatenate([ctx, nxt[:, None]], axis=1)[:, -block:]
                    feed = nxt[:, None]
                    out = int(nxt[0]) if single else nxt
                    yield (out, logits) if return_logits else out
        finally:
            self.train(was_training)


# ---------------------------------------------------------------------------------------- helpers
def _as_ids(x, what: str) -> np.ndarray:
    """Token ids as an integer ndarray (from an array, a list or a Tensor)."""
    arr = x.data if isinstance(x, tt.Tensor) else np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise DTypeError(f"{what} must hold integer token ids, got dtype {arr.dtype}")
    return arr


class NonFiniteLogitsError(UsageError):
    """Logits with a NaN or +inf (or a row of only -inf): nothing can be sampled from them."""


_REAL = (int, float, np.integer, np.floating)      # a NumPy scalar is as good as a Python number


def _check_sampling(temperature, top_k, top_p) -> None:
    if isinstance(temperature, bool) or not (isinstance(temperature, _REAL) and math.isfinite(temperature)
                                             and temperature >= 0):
        raise ConfigError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ConfigError(f"top_k must be None or an int >= 1, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not (isinstance(top_p, _REAL) and 0.0 < top_p <= 1.0)):
        raise ConfigError(f"top_p must be None or in (0, 1], got {top_p!r}")


def sample_next(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """Choose one id per row of ``logits [B, V]``; returns ``[B]`` int64.

    ``temperature == 0`` is greedy. Otherwise ``p = softmax(logits / temperature)``, restricted to the
    ``top_k`` largest and then to the smallest prefix (by decreasing p) whose mass reaches ``top_p``,
    renormalised, and sampled by inverting the CDF with one uniform draw per row.
    """
    _check_sampling(temperature, top_k, top_p)
    logits = np.asarray(logits, dtype=np.float64)
    bad = np.isnan(logits) | (logits == np.inf)
    if bad.any() or not np.isfinite(logits.max(axis=-1)).all():
        row = int(np.argmax(bad.any(axis=-1) | ~np.isfinite(logits.max(axis=-1))))
        raise NonFiniteLogitsError(
            f"the logits of row {row} are not finite ({np.count_nonzero(np.isnan(logits[row]))} NaN, "
            f"{np.count_nonzero(np.isinf(logits[row]))} inf of {logits.shape[-1]}): the model's weights are "
            f"probably damaged (NaN/inf); sample from a good checkpoint")
    if temperature == 0:
        return np.argmax(logits, axis=-1).astype(np.int64)
    rng = rng if rng is not None else np.random.default_rng()
    if top_k is not None and top_k < logits.shape[-1]:
        kth = np.partition(logits, -top_k, axis=-1)[:, -top_k][:, None]    # [B, 1] k-th largest
        logits = np.where(logits < kth, -np.inf, logits)
    # subtle: shift before dividing, so a tiny temperature sends the others to -inf (greedy), never
    # max/T to inf and inf - inf to NaN
    with np.errstate(over="ignore"):
        z = (logits - logits.max(axis=-1, keepdims=True)) / temperature   # [B, V], max 0
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)                                 # [B, V]
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, axis=-1, kind="stable")                 # [B, V] most likely first
        sorted_p = np.take_along_axis(p, order, axis=-1)
        # keep a token if the mass before it is < top_p (so the most likely one is always kept)
        keep_sorted = (np.cumsum(sorted_p, axis=-1) - sorted_p) < top_p
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        p = np.where(keep, p, 0.0)
    cdf = np.cumsum(p, axis=-1)                                        # [B, V]
    u = rng.random(cdf.shape[0]) * cdf[:, -1]                          # [B]
    ids = np.array([np.searchsorted(c, x, side="right") for c, x in zip(cdf, u)], dtype=np.int64)
    # subtle: searchsorted can land on a trailing zero-probability id when u hits cdf[-1] exactly
    last_nonzero = p.shape[-1] - 1 - np.argmax(p[:, ::-1] > 0, axis=-1)
    return np.minimum(ids, last_nonzero)


def load_pretrained(name_or_dir, dropout: float = 0.0) -> GPT:
    """:meth:`GPT.from_pretrained` as a function (``gpt.load_pretrained("gpt2")``)."""
    return GPT.from_pretrained(name_or_dir, dropout)
