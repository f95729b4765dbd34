"""Decoding an encoder–decoder: batched greedy search and beam search, with or without a cache.

Both encode the source once and grow each output one token at a time from BOS until EOS (or the
model's ``max_len``). With ``use_cache=True`` (the default) a step costs one position: the encoder
output's cross-attention keys/values are projected once and each decoder layer appends its new
self-attention key/value (:meth:`gpt.transformer.Transformer.decode_step`); ``use_cache=False`` re-runs
the decoder over the whole prefix each step — the readable reference the cached path must equal.

Beam search keeps ``beam`` hypotheses per source and ranks finished ones with GNMT's length penalty
(Wu et al., 2016), the setting of the Transformer paper (beam 4, ``alpha`` 0.6)::

    score = log p(y | x) / lp(|y|),   lp(n) = ((5 + n) / 6) ** alpha      (|y| counts the EOS)
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

import tinytensor as tt
from tinytensor.errors import ConfigError

from ..transformer import Transformer

__all__ = ["Hypothesis", "beam_search", "greedy", "length_penalty"]


@dataclass
class Hypothesis:
    """One decoded output: its tokens (no BOS, no EOS), ``log p`` summed over them and the EOS, and the
    ranking score (``logprob / length_penalty``; equal to ``logprob`` for greedy)."""
    tokens: list[int]
    logprob: float
    score: float


def length_penalty(n: int, alpha: float) -> float:
    """GNMT's ``((5 + n) / 6) ** alpha``."""
    return ((5.0 + n) / 6.0) ** alpha


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log softmax`` over the last axis, in float64."""
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class _Stepper:
    """Next-token log-probabilities ``[N, V]`` for N prefixes ``[N, t]`` against one encoded batch."""

    def __init__(self, model: Transformer, memory: tt.Tensor, mask: np.ndarray | None, use_cache: bool):
        self.model, self.memory, self.mask = model, memory, mask
        self.cache = model.start_cache(memory) if use_cache else None

    def logprobs(self, prefix: np.ndarray) -> np.ndarray:
        if self.cache is None:
            logits = self.model.decode(prefix, self.memory, self.mask)                        # [N, t, V]
        else:
            logits = self.model.decode_step(prefix[:, -1:], prefix.shape[1] - 1, self.cache, self.mask)  # [N, 1, V]
        return _log_softmax(logits.data[:, -1])                                               # [N, V]

    def select(self, rows: np.ndarray) -> None:
        """Keep prefix rows ``rows`` (in that order) for the next step."""
        self.memory = tt.Tensor(self.memory.data[rows])                                       # [N', S, C]
        self.mask = None if self.mask is None else self.mask[rows]                            # [N', S]
        if self.cache is not None:
            self.cache = [c.select(rows) for c in self.cache]


@contextmanager
def _inference(model: Transformer):
    """Eval mode (no dropout) and no gradients while decoding; the model's mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with tt.no_grad():
            yield
    finally:
        model.train(was_training)


def _start(model: Transformer, src, max_new: int | None):
    if max_new is None:
        max_new = model.config.max_len
    if not 1 <= max_new <= model.config.max_len:
        raise ConfigError(f"decode: max_new must be in [1, max_len {model.config.max_len}], got {max_new}")
    memory, mask = model.encode(src)                                                          # [B, S, C]
    return memory, mask, max_new


def greedy(model: Transformer, src, max_new: int | None = None, use_cache: bool = True) -> list[Hypothesis]:
    """The most likely next token each step, for a batch ``src [B, S]`` (pad-padded) -> B hypotheses.

    A row stops at its EOS; the batch stops when every row has, or after ``max_new`` tokens
    (default ``max_len``).
    """
    c = model.config
    with _inference(model):
        memory, mask, max_new = _start(model, src, max_new)
        B = memory.shape[0]
        stepper = _Stepper(model, memory, mask, use_cache)
        prefix = np.full((B, 1), c.bos_id, dtype=np.int64)                                   # [B, 1]
        logprob = np.zeros(B)
        done = np.zeros(B, dtype=bool)
        for _ in range(max_new):
            lp = stepper.logprobs(prefix)                                                     # [B, V]
            tok = lp.argmax(axis=-1)                                                          # [B]
            logprob += np.where(done, 0.0, lp[np.arange(B), tok])
            tok = np.where(done, c.pad_id, tok)
            done |= tok == c.eos_id
            prefix = np.concatenate([prefix, tok[:, None]], axis=1)                           # [B, t + 1]
            if done.all():
                break
    out = []
    for b in range(B):
        row = prefix[b, 1:].tolist()
        row = row[:row.index(c.eos_id)] if c.eos_id in row else row
        out.append(Hypothesis(row, float(logprob[b]), float(logprob[b])))
    return out


def beam_search(model: Transformer, src, beam: int = 4, alpha: float = 0.6, max_new: int | None = None,
                use_cache: bool = True) -> list[Hypothesis]:
    """Beam search for a batch ``src [B, S]`` -> the best-scoring hypothesis per row.

    Each step extends the ``beam`` live hypotheses of a row by every token and keeps the best ``2 beam``
    candidates: an EOS among the first ``beam`` of them finishes a hypothesis, the rest continue (up to
    ``beam``). A row is done when it has ``beam`` finished hypotheses, or when no live one can still beat
    its best finished one (a live score only falls, its penalty is at most ``lp(max_new)``).
    """
    if not isinstance(beam, int) or beam < 1:
        raise ConfigError(f"beam_search: beam must be an integer >= 1, got {beam!r}")
    c = model.config
    K = beam
    with _inference(model):
        memory, mask, max_new = _start(model, src, max_new)
        B = memory.shape[0]
        rows = np.repeat(np.arange(B), K)                                                 # [B K]
        stepper = _Stepper(model, tt.Tensor(memory.data[rows]), None if mask is None else mask[rows], use_cache)
        prefix = np.full((B * K, 1), c.bos_id, dtype=np.int64)                           # [B K, 1]
        scores = np.full((B, K), -np.inf)
        scores[:, 0] = 0.0                      # one live hypothesis at first, not K copies of it
        finished: list[list[Hypothesis]] = [[] for _ in range(B)]
        done = np.zeros(B, dtype=bool)
        bound = length_penalty(max_new, alpha)
        for step in range(max_new):
            lp = stepper.logprobs(prefix)                                                 # [B K, V]
            V = lp.shape[1]
            cand = (scores[:, :, None] + lp.reshape(B, K, V)).reshape(B, K * V)          # [B, K V]
            top = np.argsort(-cand, axis=1, kind="stable")[:, :2 * K]                    # [B, 2K]
            keep_rows = np.repeat(np.arange(B) * K, K)                                    # filler: row b's first
            keep_tok = np.full(B * K, c.pad_id, dtype=np.int64)
            new_scores = np.full((B, K), -np.inf)
            for b in np.flatnonzero(~done):
                alive = 0
                for rank, j in enumerate(top[b]):
                    s = cand[b, j]
                    if s == -np.inf or alive == K:
                        break
                    k, tok = divmod(int(j), V)
                    if tok == c.eos_id:
                        if rank < K:
                            toks = prefix[b * K + k, 1:].tolist()
                            finished[b].append(Hypothesis(toks, float(s), float(s / length_penalty(step + 1, alpha))))
                        continue
                    keep_rows[b * K + alive], keep_tok[b * K + alive] = b * K + k, tok
                    new_scores[b, alive] = s
                    alive += 1
                best = max((h.score for h in finished[b]), default=-np.inf)
                if len(finished[b]) >= K or alive == 0 or new_scores[b, 0] / bound < best:
                    done[b] = True
            if done.all():
                break
            prefix = np.concatenate([prefix[keep_rows], keep_tok[:, None]], axis=1)      # [B K, t + 1]
            stepper.select(keep_rows)
            scores = new_scores
    out = []
    for b in range(B):
        hyps = finished[b]
        if not hyps:    # max_new reached with no EOS: the live hypotheses, unfinished
            hyps = [Hypothesis(prefix[b * K + k, 1:].tolist(), float(scores[b, k]),
                               float(scores[b, k] / length_penalty(prefix.shape[1] - 1, alpha)))
                    for k in range(K) if scores[b, k] > -np.inf]
        out.append(max(hyps, key=lambda h: h.score))
    return out
