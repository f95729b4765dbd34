"""Twenty data-parallel steps of a tiny GPT: run alone (one process) or under ``mpiexec -n N``.

    python tests/dist_worker.py OUT.json               # one process, the global batch
    mpiexec -n 2 python tests/dist_worker.py OUT.json  # two ranks, half the batch each

Every rank draws the same global batches from one seeded generator and trains on its slice; the gradients
are averaged by ``World.reduce_gradients``. Rank 0 writes the per-step losses (averaged over the ranks) and
every rank's weight CRC32 to OUT.json. tests/test_distributed.py compares the two runs.
"""
from __future__ import annotations

import json
import math
import sys
import zlib

import numpy as np

import tinytensor as tt
from tinytensor import optim
from gpt import GPT, GPTConfig
from gpt.distributed import init

STEPS, BATCH, T, VOCAB = 20, 8, 16, 37


def run(out_path: str) -> None:
    world = init()
    world.check_batch(BATCH)
    cfg = GPTConfig(block_size=T, vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    model = GPT(cfg, seed=7)
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=3e-3, betas=(0.9, 0.95))
    params = list(model.parameters())
    data = np.random.default_rng(0).integers(0, VOCAB, size=4096)
    batches = np.random.default_rng(1)
    losses = []
    for _ in range(STEPS):
        ix = batches.integers(0, len(data) - T, size=BATCH)          # the global batch, same on every rank
        x = data[ix[:, None] + np.arange(T)]
        y = data[ix[:, None] + np.arange(T) + 1]
        x, y = world.shard(x, y)
        _, loss = model(x, y)
        loss.backward()
        world.reduce_gradients(params)
        optim.clip_grad_norm_(params, 1.0)
        opt.step()
        model.zero_grad()
        losses.append(world.mean(loss.item()))
    crc = 0
    for p in params:
        crc = zlib.crc32(np.ascontiguousarray(p.data).view(np.uint8), crc)
    all_crcs = [crc] if world.size == 1 else world.comm.allgather(crc)
    if world.is_main:
        with open(out_path, "w", encoding="utf-8") as f:
            json.dump({"size": world.size, "losses": losses, "crcs": all_crcs,
                       "agree": world.weights_agree(params), "finite": all(map(math.isfinite, losses))}, f)
    else:
        world.weights_agree(params)   # a collective: every rank takes part


if __name__ == "__main__":
    tt.set_backend("auto")
    run(sys.argv[1])
