"""Question: does tinygpt's instruction fine-tuning pipeline (collate, masking, loss, AdamW) equal its PyTorch twin?

    python -m benchmarks.instruct_parity [--data instruction-data.json] [--steps 30] [--json PATH]

Both sides start from the same weights (a small GPT, float64, dropout 0) and take the same entries in
the same order (tinygpt's seeded ``EpochLoader``): tinygpt collates them with ``gpt.finetune.collate``,
the twin with the book's ``custom_collate_fn`` (``benchmarks/_torch_instruct.py``), each side checks the
batches agree, and each trains ``--steps`` AdamW steps. The per-step losses are compared (relative
difference), with and without the prompt mask. The tokenizer is a character tokenizer of the entries
plus ``<|endoftext|>``, so the model stays small (the pipeline does not depend on the vocabulary).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import tinytensor as tt  # before NumPy: the thread policy (tinytensor/threads.py)
import numpy as np

from gpt.finetune.instruct import batch_loss
from gpt.finetune.instruct_data import (IGNORE_INDEX, InstructionDataset, format_entry, load_instruction_data,
                                        split_entries)
from gpt.model import GPT, GPTConfig
from gpt.windows import EpochLoader
from tokenizer import CharTokenizer

LR, BETAS, WEIGHT_DECAY = 5e-4, (0.9, 0.999), 0.1


def run_parity(entries: list[dict], steps: int = 30, mask_prompt: bool = False, batch_size: int = 4,
               block_size: int = 1024, seed: int = 123) -> dict:
    """Train both sides ``steps`` steps on ``entries`` in float64; returns their losses and the largest
    relative difference. Raises AssertionError if a collated batch differs."""
    import torch

    from benchmarks import _torch_instruct as twin_lib
    text = "".join("".join(format_entry(e)) for e in entries)
    tok = CharTokenizer.from_text(text, special_tokens=["<|endoftext|>"])
    ds = InstructionDataset(entries, tok, block_size, mask_prompt=mask_prompt, truncate=True)
    model = GPT(GPTConfig(block_size=block_size, vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32,
                          dropout=0.0, bias=True), seed=seed)
    model.to_dtype(np.float64)
    twin = twin_lib.twin_of(model, torch.float64).train()
    opt_tt = model.configure_optimizers(WEIGHT_DECAY, LR, BETAS)
    opt_torch = twin_lib.adamw(twin, LR, BETAS, WEIGHT_DECAY)
    loader = EpochLoader(ds, batch_size, shuffle=True, seed=seed, drop_last=True)
    ours, theirs = [], []
    epoch = 0
    while len(ours) < steps:
        order = loader.order(epoch)
        for b in range(len(loader)):
            if len(ours) == steps:
                break
            idx = order[b * batch_size:(b + 1) * batch_size]
            x, y = ds.batch(idx)
            tx, ty = twin_lib.collate([ds[i].ids.tolist() for i in idx], ds.eos_id,
                                      [ds[i].n_prompt for i in idx] if mask_prompt else None,
                                      allowed_max_length=block_size)
            assert np.array_equal(x, tx.numpy()), "collated inputs differ"
            assert np.array_equal(np.where(y == IGNORE_INDEX, -100, y), ty.numpy()), "collated targets differ"
            loss = batch_loss(model, x, y)
            loss.backward()
            opt_tt.step()
            model.zero_grad()
            ours.append(loss.item())
            theirs.append(twin_lib.train_step(twin, opt_torch, tx, ty))
        epoch += 1
    rel = [abs(a - b) / abs(b) for a, b in zip(ours, theirs)]
    return {"mask_prompt": mask_prompt, "steps": steps, "tinytensor": ours, "torch": theirs,
            "max_rel_diff": max(rel), "first_loss": ours[0], "last_loss": ours[-1]}


def parity_entries(path: str | os.PathLike, n: int = 64) -> list[dict]:
    """The first ``n`` train entries of the instruction file."""
    return split_entries(load_instruction_data(path))[0][:n]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(Path(os.environ.get("TINYGPT_DATA", ".")) / "instruction-data.json"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--json", default=None, help="write the results here (atomically)")
    args = ap.parse_args(argv)
    import torch
    from benchmarks._util import machine_info, machine_line, write_json_atomic
    from tinytensor.threads import requested_threads
    torch.set_num_threads(requested_threads())
    entries = parity_entries(args.data)
    rows = [run_parity(entries, args.steps, mask_prompt=m) for m in (False, True)]
    for r in rows:
        print(f"mask_prompt={r['mask_prompt']!s:<5} {r['steps']} steps: loss {r['first_loss']:.6f} -> "
              f"{r['last_loss']:.6f}, max relative difference {r['max_rel_diff']:.2e}")
    print(machine_line())
    if args.json:
        write_json_atomic(args.json, {"question": "instruction fine-tuning per-step losses, tinytensor vs PyTorch "
                                                  "twin, float64, same weights and batches",
                                      "runs": rows, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
