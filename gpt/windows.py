"""The book's data loader: every sliding window of a token stream, batched in (shuffled) epochs.

Beside :class:`gpt.data.BatchSampler` (random windows, nanoGPT's way), this is the loader of
*Build a Large Language Model (From Scratch)*, ch. 2 (``GPTDatasetV1`` + ``DataLoader``)::

    windows = SlidingWindows(ids, max_length=4, stride=4)      # x[i] = ids[s : s+4], y[i] = ids[s+1 : s+5]
    loader = EpochLoader(windows, batch_size=8, shuffle=True, seed=123, drop_last=True)
    for x, y in loader:                                        # one epoch: [8, 4] int64 each
        ...

Window ``i`` starts at ``s = i * stride`` for every ``s`` in ``range(0, len(ids) - max_length, stride)``:
all the windows whose next-token targets still fit in the stream. ``stride == max_length`` tiles the
stream without overlap (the book's ch. 5 training); a smaller stride overlaps windows.

Perplexity, ``exp(mean cross-entropy in nats per token)``, and a zero-shot score of any text over its
sliding windows live here too: they are what a loss over windows is reported as.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np

import tinytensor as tt
from tinytensor import functional as F
from tinytensor.errors import ConfigError, UsageError

from .data import STREAM_EVAL_TRAIN, STREAM_TRAIN


def perplexity(loss: float) -> float:
    """``exp(loss)``: the perplexity of a mean cross-entropy ``loss`` in nats per token.

    ``inf`` when the exponential overflows (a loss above ~709), NaN for a NaN loss.
    """
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


class SlidingWindows:
    """Inputs and next-token targets of every ``max_length`` window of ``ids``, ``stride`` apart.

    ``x[i] = ids[i*stride : i*stride + max_length]`` and ``y[i] = ids[i*stride + 1 : i*stride + max_length + 1]``.

    Args:
        ids: the token stream ``[N]`` (any integer array).
        max_length: tokens per window (the context length).
        stride: distance between window starts (>= 1).
        name: what the stream is, for error messages (a file name, a split).

    Raises:
        ConfigError: ``max_length`` or ``stride`` below 1.
        UsageError: a stream too short for one window (it needs ``max_length + 1`` tokens).
    """

    def __init__(self, ids, max_length: int, stride: int, name: str = "the token stream"):
        for key, value in (("max_length", max_length), ("stride", stride)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"SlidingWindows: {key} must be an int >= 1, got {value!r}")
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise UsageError(f"SlidingWindows: {name} must be a 1-D integer array, got {ids.dtype} {ids.shape}")
        if len(ids) <= max_length:
            raise UsageError(f"{name} has {len(ids)} tokens; a window of max_length={max_length} needs "
                             f"{max_length + 1} (a longer text or a smaller max_length)")
        self.ids, self.max_length, self.stride = ids, int(max_length), int(stride)
        self.starts = np.arange(0, len(ids) - max_length, stride)               # [n] window starts

    def __len__(self) -> int:
        return len(self.starts)

    def __repr__(self) -> str:
        return (f"SlidingWindows({len(self)} windows of max_length={self.max_length}, stride={self.stride} "
                f"over {len(self.ids)} tokens)")

    def batch(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Windows ``indices`` as ``(x, y)``, each ``[len(indices), max_length]`` int64."""
        offsets = self.starts[np.asarray(indices, dtype=np.int64)][:, None] + np.arange(self.max_length)
        return self.ids[offsets].astype(np.int64), self.ids[offsets + 1].astype(np.int64)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.batch([i])
        return x[0], y[0]


class EpochLoader:
    """Batches of a dataset (:class:`SlidingWindows`, or anything with ``len`` and ``batch(indices)``),
    epoch after epoch, in a seeded order.

    Iterating gives one epoch; calling the loader gives the next batch of an endless run of epochs (the
    trainer's sampler interface, with :meth:`get_state` / :meth:`set_state` for checkpoints). Epoch ``e``
    visits the windows in ``np.random.default_rng([seed, e]).permutation(n)`` order when ``shuffle``,
    else in stream order, so the state is two counters and a resumed run sees the same batches.

    Args:
        dataset: the dataset: ``len(dataset)`` items, ``dataset.batch(indices)`` makes a batch of them.
        batch_size: items per batch.
        shuffle: a new seeded order every epoch.
        seed: the order's seed.
        drop_last: leave out the last, smaller batch of an epoch.

    Raises:
        ConfigError: ``batch_size`` below 1.
        UsageError: ``drop_last`` with fewer items than ``batch_size`` (no batch at all).
    """

    def __init__(self, dataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ConfigError(f"EpochLoader: batch_size must be an int >= 1, got {batch_size!r}")
        if drop_last and len(dataset) < batch_size:
            raise UsageError(f"{len(dataset)} items ({dataset!r}) make no full batch of {batch_size}: use a "
                             f"smaller batch_size (or stride)")
        self.dataset, self.batch_size, self.shuffle = dataset, int(batch_size), bool(shuffle)
        self.seed, self.drop_last = int(seed), bool(drop_last)
        self.epoch, self.position = 0, 0            # where __call__ is: batch `position` of epoch `epoch`

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """The item indices of ``epoch`` in visiting order."""
        n = len(self.dataset)
        return np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)

    def _batch(self, order: np.ndarray, b: int):
        return self.dataset.batch(order[b * self.batch_size:(b + 1) * self.batch_size])

    def epoch_batches(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The batches of ``epoch``."""
        order = self.order(epoch)
        for b in range(len(self)):
            yield self._batch(order, b)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.epoch_batches(0)

    def __call__(self) -> tuple[np.ndarray, np.ndarray]:
        """The next batch, going on to the next epoch after the last one."""
        if self.position >= len(self):
            self.epoch, self.position = self.epoch + 1, 0
        self.position += 1
        return self._batch(self.order(self.epoch), self.position - 1)

    def get_state(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def set_state(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def make_window_samplers(train: np.ndarray, val: np.ndarray, block_size: int, batch_size: int, stride: int,
                         seed: int) -> dict[str, EpochLoader]:
    """The trainer's samplers over sliding windows, as the book's ch. 5 loaders.

    ``"train"``: shuffled every epoch, ``drop_last``; ``"eval_train"``: shuffled on its own stream;
    ``"eval_val"``: in order, keeping the last smaller batch. Each eval sampler goes on where the last
    eval stopped (an eval over all of a split takes ``eval_iters = len(loader)``).
    """
    tw = SlidingWindows(train, block_size, stride, "the train split")
    vw = SlidingWindows(val, block_size, stride, "the val split")
    return {"train": EpochLoader(tw, batch_size, shuffle=True, seed=hash_seed(seed, STREAM_TRAIN), drop_last=True),
            "eval_train": EpochLoader(tw, batch_size, shuffle=True, seed=hash_seed(seed, STREAM_EVAL_TRAIN),
                                       drop_last=True),
            "eval_val": EpochLoader(vw, batch_size, shuffle=False, drop_last=False)}


def hash_seed(seed: int, stream: int) -> int:
    """One 63-bit seed for ``(seed, stream)`` (independent orders for each stream under one run seed)."""
    return int(np.random.default_rng([seed, stream]).integers(2**63))


def score_windows(model, ids, max_length: int, stride: int | None = None, batch_size: int = 8) -> dict:
    """Zero-shot loss and perplexity of ``model`` on a token stream, over its sliding windows.

    Every target of every window counts, once per window it is in: with ``stride == max_length`` (the
    default) each token from the second to the end of the last window is predicted exactly once, from
    the context since its window's start; the tail after the last window is not scored.

    Returns:
        ``{"loss", "perplexity", "tokens", "windows"}``: the token-weighted mean cross-entropy (nats per
        token) over all windows, its ``exp``, and how many targets and windows were scored.
    """
    windows = SlidingWindows(ids, max_length, stride or max_length, "the text")
    loader = EpochLoader(windows, batch_size, shuffle=False, drop_last=False)
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with tt.no_grad():
            for x, y in loader:
                logits, _ = model(x, return_all=True)                    # [B, T, V]
                total += float(F.cross_entropy(logits, y, reduction="sum").item())
                count += y.size
    finally:
        model.train(was_training)
    loss = total / count
    return {"loss": loss, "perplexity": perplexity(loss), "tokens": count, "windows": len(windows)}


__all__ = ["perplexity", "SlidingWindows", "EpochLoader", "make_window_samplers", "score_windows"]
