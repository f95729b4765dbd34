"""Seeded batches: random windows of a token array, drawn from a generator whose state is checkpointed,
so a resumed run draws exactly the batches a straight run would have."""
from __future__ import annotations

import numpy as np

from tinytensor.errors import ConfigError

__all__ = ["BatchSampler", "STREAM_EVAL_TRAIN", "STREAM_EVAL_VAL", "STREAM_TRAIN", "make_samplers"]


class BatchSampler:
    """Random ``block_size`` windows of a token array, ``batch_size`` at a time.

    ``x[b] = data[i_b : i_b + T]`` and ``y[b] = data[i_b + 1 : i_b + 1 + T]`` (the next tokens) with
    starts ``i_b`` uniform in ``[0, len(data) - T)``, drawn from this sampler's own generator.
    """

    def __init__(self, data: np.ndarray, block_size: int, batch_size: int, rng: np.random.Generator,
                 name: str = "data"):
        if len(data) <= block_size:
            raise ConfigError(f"the {name} split has {len(data)} tokens; it needs more than "
                              f"block_size={block_size} (use a longer text or a smaller block_size)")
        self.data, self.block_size, self.batch_size, self.rng = data, block_size, batch_size, rng

    def __call__(self) -> tuple[np.ndarray, np.ndarray]:
        T = self.block_size
        ix = self.rng.integers(0, len(self.data) - T, size=self.batch_size)   # [B] window starts
        offsets = ix[:, None] + np.arange(T)                                    # [B, T]
        x = self.data[offsets].astype(np.int64)                                 # [B, T]
        y = self.data[offsets + 1].astype(np.int64)                             # [B, T]
        return x, y

    # JSON-able generator state for checkpoints
    def get_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


# Stream ids under one seed: training batches, and one eval stream per split. Separate streams mean
# evaluating (or not) never changes the training batches.
STREAM_TRAIN, STREAM_EVAL_TRAIN, STREAM_EVAL_VAL = 1, 2, 3


def make_samplers(train: np.ndarray, val: np.ndarray, block_size: int, batch_size: int, seed: int
                  ) -> dict[str, BatchSampler]:
    """``{"train": ..., "eval_train": ..., "eval_val": ...}`` samplers, each on its own seeded stream."""
    def rng(stream: int) -> np.random.Generator:
        return np.random.default_rng([seed, stream])
    return {"train": BatchSampler(train, block_size, batch_size, rng(STREAM_TRAIN), "train"),
            "eval_train": BatchSampler(train, block_size, batch_size, rng(STREAM_EVAL_TRAIN), "train"),
            "eval_val": BatchSampler(val, block_size, batch_size, rng(STREAM_EVAL_VAL), "val")}
