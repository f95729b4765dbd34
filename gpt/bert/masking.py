"""BERT's tokens and its masking rule: what the masked-LM is asked to fill in.

    tok = train_tokenizer(text, vocab_size=2048)          # byte-level BPE + [PAD] [CLS] [SEP] [MASK]
    ids = frame(tok, encode(tok, "To be or not"), 16)     # [CLS] To be or not [SEP] [PAD] ...
    inputs, targets = mask_tokens(batch, tok_ids(tok), vocab_size, rng)

The rule, as google-research/bert's ``create_pretraining_data.py`` (``create_masked_lm_predictions``):
of the positions holding an ordinary token (never ``[PAD]``, ``[CLS]``, ``[SEP]``), each row chooses
``max(1, round(0.15 n))`` at random (n: the row's ordinary tokens); of the chosen,

* 80 % become ``[MASK]``,
* 10 % become a random ordinary token (uniform over the non-special ids),
* 10 % keep their token,

and the model is scored on the chosen positions only: ``targets`` holds the original id there and
``IGNORE_INDEX`` everywhere else. The random and kept cases keep the model from learning that only
``[MASK]`` positions matter (the fine-tuned model never sees ``[MASK]``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinytensor.errors import ConfigError, ShapeError
from tokenizer import BPETokenizer

from .model import IGNORE_INDEX

PAD, CLS, SEP, MASK = "[PAD]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, CLS, SEP, MASK)
MASK_PROB, MASK_TOKEN_FRAC, RANDOM_TOKEN_FRAC = 0.15, 0.8, 0.1


@dataclass(frozen=True)
class SpecialIds:
    """The four special tokens' ids in a tokenizer."""
    pad: int
    cls: int
    sep: int
    mask: int

    @property
    def all(self) -> tuple[int, int, int, int]:
        return (self.pad, self.cls, self.sep, self.mask)


def train_tokenizer(text: str, vocab_size: int = 2048, pattern: str = "gpt4") -> BPETokenizer:
    """The project's byte-level BPE learned from ``text``, the four specials taking the last ids."""
    return BPETokenizer(pattern).train(text, vocab_size, special_tokens=list(SPECIAL_TOKENS), progress=False)


def special_ids(tok) -> SpecialIds:
    """The ``[PAD] [CLS] [SEP] [MASK]`` ids of ``tok``.

    Raises:
        ConfigError: ``tok`` lacks one of them (a tokenizer not made by :func:`train_tokenizer`).
    """
    have = getattr(tok, "special_tokens", {}) or {}
    missing = [s for s in SPECIAL_TOKENS if s not in have]
    if missing:
        raise ConfigError(f"the tokenizer has no {', '.join(missing)} special token(s) (it has "
                          f"{sorted(have) or 'none'}); BERT needs {', '.join(SPECIAL_TOKENS)}")
    return SpecialIds(*(int(have[s]) for s in SPECIAL_TOKENS))


def frame(ids, specials: SpecialIds, max_len: int) -> np.ndarray:
    """``[CLS] ids[:max_len - 2] [SEP]`` as int64 (a text cut to fit ``max_len``).

    Example: ``frame([7, 8, 9], SpecialIds(0, 1, 2, 3), 4)`` is ``[1, 7, 8, 2]``.
    """
    if max_len < 3:
        raise ConfigError(f"max_len must be >= 3 ([CLS], a token, [SEP]), got {max_len}")
    body = np.asarray(ids, dtype=np.int64)[:max_len - 2]
    return np.concatenate([[specials.cls], body, [specials.sep]]).astype(np.int64)


def mask_tokens(idx: np.ndarray, specials: SpecialIds, vocab_size: int, rng: np.random.Generator,
                mask_prob: float = MASK_PROB) -> tuple[np.ndarray, np.ndarray]:
    """BERT's 80 / 10 / 10 masking of a batch (see the module docstring).

    Args:
        idx: ``[B, T]`` token ids, ``[PAD]``-padded rows that may hold ``[CLS]`` / ``[SEP]``.
        specials: the special ids (never chosen, never drawn as the random token).
        vocab_size: V; random tokens are drawn from ``[0, V)`` minus the specials.
        rng: the only source of randomness (same seed, same masks).
        mask_prob: the chosen share of each row's ordinary tokens.

    Returns:
        ``(inputs, targets)``, both ``[B, T]`` int64: the corrupted ids, and the original ids at the
        chosen positions with ``IGNORE_INDEX`` elsewhere.
    """
    idx = np.asarray(idx)
    if idx.ndim != 2 or idx.dtype.kind not in "iu":
        raise ShapeError(f"idx must be [B, T] integer ids, got shape {idx.shape} dtype {idx.dtype}")
    if not 0 < mask_prob < 1:
        raise ConfigError(f"mask_prob must lie in (0, 1), got {mask_prob}")
    special = np.isin(idx, specials.all)
    ordinary = np.setdiff1d(np.arange(vocab_size), specials.all)      # the random token's choices
    inputs, targets = idx.astype(np.int64), np.full(idx.shape, IGNORE_INDEX, dtype=np.int64)
    for b in range(idx.shape[0]):
        cand = np.flatnonzero(~special[b])                            # positions of ordinary tokens
        if cand.size == 0:
            continue
        n = max(1, int(round(mask_prob * cand.size)))
        chosen = rng.choice(cand, size=n, replace=False)
        targets[b, chosen] = idx[b, chosen]
        fate = rng.random(n)                                          # < 0.8 mask, < 0.9 random, else keep
        to_mask = chosen[fate < MASK_TOKEN_FRAC]
        to_rand = chosen[(fate >= MASK_TOKEN_FRAC) & (fate < MASK_TOKEN_FRAC + RANDOM_TOKEN_FRAC)]
        inputs[b, to_mask] = specials.mask
        inputs[b, to_rand] = rng.choice(ordinary, size=to_rand.size)
    return inputs, targets


__all__ = ["PAD", "CLS", "SEP", "MASK", "SPECIAL_TOKENS", "SpecialIds", "train_tokenizer", "special_ids", "frame",
           "mask_tokens"]
