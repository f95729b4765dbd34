"""Question: does a GPT trained with tinytensor reach the same validation loss as its PyTorch twin?

    python -m benchmarks.loss_parity [--preset baby] [--seeds 1337 2 3] [--data PATH] [--json PATH]

Both frameworks train the preset's model on the same text with the same pipeline: ``gpt.data``'s token
split and seeded batch streams (the same training batches for the same seed), the same warmup + cosine
learning rate, global-norm clipping and AdamW with decay on the >= 2-D weights. Only the weight init
differs (each framework's own RNG, the same distributions). Each run ends with two evals of the final
weights on batches both frameworks share: nanoGPT's (``eval_iters`` = 20 batches) and a longer one
(200 batches) that seed-to-seed noise moves less. The tinytensor side is ``gpt.train.train`` itself;
the PyTorch side (``bench`` extra) is ``benchmarks/_torch_gpt.py`` driven by the same loop.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import tinytensor as tt  # before NumPy: the thread policy (tinytensor/threads.py)
import numpy as np

from gpt.checkpoint import load_model
from gpt.config import make_config
from gpt.data import build_tokenizer, make_samplers, prepare_tokens, resolve_text
from gpt.train import get_lr, train
from tinytensor.fileio import read_text

EVAL_SEED = 20_000          # eval batches come from this seed's streams, the same for every run
LONG_EVAL_ITERS = 200


def _eval_batches(train_ids, val_ids, cfg, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    sampler = make_samplers(train_ids, val_ids, cfg.block_size, cfg.batch_size, EVAL_SEED)["eval_val"]
    return [sampler() for _ in range(n)]


def run_tinytensor(cfg, batches) -> dict:
    with tempfile.TemporaryDirectory() as d:
        cfg.out_dir = d
        t0 = time.perf_counter()
        train(cfg, progress=False)
        seconds = time.perf_counter() - t0
        model = load_model(d)[0]
    model.eval()
    with tt.no_grad():
        losses = [model(x, y)[1].item() for x, y in batches]
    return {"losses": losses, "seconds": seconds}


def run_torch(cfg, train_ids, val_ids, vocab_size, batches) -> dict:
    import torch

    from benchmarks._torch_gpt import build
    mcfg = dict(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, block_size=cfg.block_size,
                vocab_size=vocab_size, dropout=cfg.dropout, bias=cfg.bias)
    model, opt = build(mcfg, cfg.learning_rate, (cfg.beta1, cfg.beta2), cfg.weight_decay, seed=cfg.seed)
    sampler = make_samplers(train_ids, val_ids, cfg.block_size, cfg.batch_size, cfg.seed)["train"]
    t0 = time.perf_counter()
    for it in range(cfg.max_iters):
        for g in opt.param_groups:
            g["lr"] = get_lr(it, cfg)
        for _ in range(cfg.gradient_accumulation_steps):
            x, y = sampler()
            _, loss = model(torch.from_numpy(x), torch.from_numpy(y))
            (loss / cfg.gradient_accumulation_steps).backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        losses = [model(torch.from_numpy(x), torch.from_numpy(y))[1].item() for x, y in batches]
    return {"losses": losses, "seconds": seconds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="baby")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1337, 2, 3])
    ap.add_argument("--data", default=None, help="text file (default: the preset's dataset, tinyshakespeare)")
    ap.add_argument("--max_iters", type=int, default=None, help="override the preset's max_iters (quick runs)")
    ap.add_argument("--json", default=None, help="write the results here (atomically)")
    args = ap.parse_args(argv)
    import torch
    from benchmarks._util import machine_info, write_json_atomic
    from tinytensor.threads import requested_threads
    torch.set_num_threads(requested_threads())

    over = {} if args.max_iters is None else {"max_iters": args.max_iters, "lr_decay_iters": args.max_iters}
    base = make_config(args.preset, {**over, **({"dataset": args.data} if args.data else {})})
    text_path = resolve_text(base.dataset)
    tok = build_tokenizer(base.tokenizer, read_text(text_path))
    with tempfile.TemporaryDirectory() as d:
        train_ids, val_ids, _ = prepare_tokens(text_path, tok, d)
        train_ids, val_ids = np.array(train_ids), np.array(val_ids)
    batches = _eval_batches(train_ids, val_ids, base, LONG_EVAL_ITERS)

    rows = []
    for seed in args.seeds:
        cfg = make_config(args.preset, {**over, "seed": seed, "dataset": str(text_path)})
        for name in ("tinytensor", "torch"):
            r = (run_tinytensor(cfg, batches) if name == "tinytensor"
                 else run_torch(cfg, train_ids, val_ids, tok.vocab_size, batches))
            row = {"framework": name, "seed": seed, "val_loss_20": float(np.mean(r["losses"][:20])),
                   f"val_loss_{LONG_EVAL_ITERS}": float(np.mean(r["losses"])), "train_seconds": r["seconds"]}
            rows.append(row)
            print(f"seed {seed:>5} {name:<10} val(20) {row['val_loss_20']:.4f}  "
                  f"val({LONG_EVAL_ITERS}) {row[f'val_loss_{LONG_EVAL_ITERS}']:.4f}  {r['seconds']:.0f} s", flush=True)

    summary = {}
    print(f"\n{args.preset}, {base.max_iters} iters, seeds {args.seeds}: mean val loss on the same eval batches")
    print(f"{'framework':<12}{'val (20 batches)':>18}{f'val ({LONG_EVAL_ITERS} batches)':>19}{'seed sd':>9}")
    for name in ("tinytensor", "torch"):
        v20 = [r["val_loss_20"] for r in rows if r["framework"] == name]
        vl = [r[f"val_loss_{LONG_EVAL_ITERS}"] for r in rows if r["framework"] == name]
        sd = statistics.stdev(vl) if len(vl) > 1 else float("nan")
        summary[name] = {"val_loss_20": statistics.mean(v20), f"val_loss_{LONG_EVAL_ITERS}": statistics.mean(vl),
                         "seed_sd": sd}
        print(f"{name:<12}{statistics.mean(v20):>18.4f}{statistics.mean(vl):>19.4f}{sd:>9.4f}")
    if args.json:
        write_json_atomic(args.json, {"question": "val loss, tinytensor vs its PyTorch twin, same pipeline",
                                      "preset": args.preset, "max_iters": base.max_iters, "seeds": args.seeds,
                                      "runs": rows, "summary": summary, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
