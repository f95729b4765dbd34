"""The training loop: AdamW, warmup + cosine LR, clipping, accumulation, evals, checkpoints, resume.

The loop, nanoGPT's in outline::

    for it in range(start, max_iters):
        every eval_interval: estimate train/val loss, append to log.jsonl, write a checkpoint
        lr = cosine_lr(it); for each micro-step: x, y = batch(); loss = model(x, y) / accum; backward
        clip the global grad norm; AdamW step; zero grads
    final eval + checkpoint at max_iters

Exactness: the training batches, each eval split's batches, and dropout each draw from their own seeded
``np.random.Generator``; all three states, AdamW's moments and steps, and the counters are checkpointed,
so N steps straight equal N/2 steps, stop, ``--resume``, N/2 steps bit for bit (at a fixed thread count:
set ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS`` the same for both runs).

Robustness: Ctrl-C finishes the current step, writes a checkpoint and returns. A step whose loss or
gradient norm is not finite is skipped without touching the weights or AdamW's state, counted and
reported; ``max_bad_steps`` such steps in a row stop the run (:class:`TrainingStopped`) with the last
good checkpoint left as it was.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

import tinytensor as tt
from tinytensor import optim

from .checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig, make_config
from .data import (atomic_write_bytes, build_tokenizer, make_samplers, prepare_tokens, read_text,
                   resolve_text, training_text)
from .model import GPT
from .windows import make_window_samplers, perplexity

LOG_FILE = "log.jsonl"

# keys that fix the model, the tokenizer or the data: a resumed run cannot change them
_FIXED_ON_RESUME = ("n_layer", "n_head", "n_embd", "block_size", "bias", "tokenizer", "batch_size",
                    "gradient_accumulation_steps", "seed", "stride")


class TrainingStopped(RuntimeError):
    """The run stopped on repeated non-finite losses or gradient norms; the message says what to do."""


@dataclass
class TrainResult:
    out_dir: Path
    iter_num: int
    train_loss: float | None
    val_loss: float | None
    elapsed_s: float
    tokens_per_s: float
    skipped_steps: int
    interrupted: bool


def get_lr(it: int, cfg: TrainConfig) -> float:
    """Warmup then cosine decay to ``min_lr`` at ``lr_decay_iters`` (or constant with ``decay_lr=False``)."""
    if not cfg.decay_lr:
        return cfg.learning_rate
    return optim.cosine_lr(it, cfg.learning_rate, cfg.min_lr, cfg.warmup_iters, cfg.lr_decay_iters)


def estimate_loss(model: GPT, samplers: dict, eval_iters: int) -> dict[str, float]:
    """Mean loss over ``eval_iters`` batches of each split, in eval mode, from the eval streams only."""
    model.eval()
    out = {}
    with tt.no_grad():
        for split in ("train", "val"):
            sampler = samplers[f"eval_{split}"]
            losses = [model(*sampler())[1].item() for _ in range(eval_iters)]
            out[split] = float(np.mean(losses))
    model.train()
    return out


def resume_config(out_dir: str | os.PathLike, overrides: dict | None = None) -> TrainConfig:
    """The checkpoint's TrainConfig with ``overrides`` applied (e.g. a longer ``max_iters``).

    Raises:
        ValueError: an override of a key that fixes the model, tokenizer or batches.
    """
    state = load_checkpoint(out_dir, verify=False).state
    saved = dict(state["train_config"])
    overrides = dict(overrides or {})
    if "dataset" not in overrides:  # the recorded file, even when $TINYGPT_DATA is not set this time
        saved["dataset"] = str(training_text(state))
    changed = [k for k in _FIXED_ON_RESUME if k in overrides and overrides[k] != saved.get(k)]
    if changed:
        raise ValueError(f"cannot change {changed} when resuming (the checkpoint has "
                         f"{ {k: saved.get(k) for k in changed} }); start a new run in another --out_dir")
    saved.update(overrides)
    saved["out_dir"] = str(out_dir)
    return make_config(None, saved)


class _Interrupt:
    """SIGINT sets ``requested`` (the loop stops at the next step boundary); a second Ctrl-C aborts."""

    def __init__(self):
        self.requested = False
        self._old = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: finishing this step and writing a checkpoint (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def _append_log(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_log(out_dir: str | os.PathLike) -> list[dict]:
    """The eval records of ``out_dir/log.jsonl`` (empty if there is none)."""
    p = Path(out_dir) / LOG_FILE
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False, progress: bool = True) -> TrainResult:
    """Train (or resume) a GPT as ``cfg`` says, writing checkpoints and ``log.jsonl`` to ``cfg.out_dir``.

    Args:
        cfg: the run's configuration (for a resume, see :func:`resume_config`).
        resume: continue from the latest checkpoint in ``cfg.out_dir``.
        overwrite: start afresh even if ``cfg.out_dir`` holds a checkpoint (its log is replaced).
        progress: show a tqdm progress bar on stderr.

    Raises:
        ValueError: a fresh run into a folder with a checkpoint (without ``overwrite``), bad config.
        FileNotFoundError: no data, or no checkpoint to resume.
        TrainingStopped: ``max_bad_steps`` non-finite steps in a row.
    """
    out_dir = Path(cfg.out_dir)
    log_path = out_dir / LOG_FILE
    text_path = resolve_text(cfg.dataset)
    ckpt = None
    if resume:
        ckpt = load_checkpoint(out_dir)
        tok = ckpt.tokenizer
    else:
        if has_checkpoint(out_dir) and not overwrite:
            raise ValueError(f"{out_dir} already holds a checkpoint; pass --resume to continue it, or "
                             f"another --out_dir (or --overwrite) to start afresh")
        tok = build_tokenizer(cfg.tokenizer, read_text(text_path) if cfg.tokenizer == "char" else None)
    train_ids, val_ids, meta = prepare_tokens(text_path, tok, out_dir / "data")
    if ckpt is not None and ckpt.state.get("data", {}).get("text_sha256") not in (None, meta["text_sha256"]):
        raise ValueError(f"{text_path} is not the text this run was trained on (sha256 differs); "
                         f"pass --data with the original file")

    model = GPT(cfg.model_config(tok.vocab_size), seed=cfg.seed)
    if ckpt is None and cfg.init_from:
        from .pretrained import load_pretrained_into
        load_pretrained_into(model, cfg.init_from)
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2))
    samplers = (make_window_samplers(train_ids, val_ids, cfg.block_size, cfg.batch_size, cfg.stride, cfg.seed)
                if cfg.stride else make_samplers(train_ids, val_ids, cfg.block_size, cfg.batch_size, cfg.seed))
    params = list(model.parameters())
    counters = {"iter_num": 0, "elapsed_s": 0.0, "skipped_steps": 0, "last_eval_iter": -1,
                "train_loss": None, "val_loss": None, "train_tokens": 0, "train_seconds": 0.0}
    if ckpt is not None:
        model.load_state_dict(ckpt.model_state, strict=True)
        optimizer.load_state_dict(ckpt.optimizer_state)
        model.dropout_rng.bit_generator.state = ckpt.state["rng"]["dropout"]
        for name, sampler in samplers.items():
            sampler.set_state(ckpt.state["rng"][name])
        counters.update(ckpt.state["counters"])
        # keep the log in step with the checkpoint: drop records written after it
        kept = [r for r in read_log(out_dir) if r["iter"] <= ckpt.iter_num]
        atomic_write_bytes(log_path, "".join(json.dumps(r) + "\n" for r in kept).encode())
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(log_path, b"")
    it = int(counters["iter_num"])
    last_saved_iter = it if ckpt is not None else -1
    print(f"model: {model.num_params():,} parameters (without position embeddings); "
          f"vocab {tok.vocab_size}; {meta['n_train']:,} train / {meta['n_val']:,} val tokens; "
          f"{cfg.tokens_per_iter:,} tokens per iteration", flush=True)
    if resume:
        print(f"resuming from {ckpt.path} at iter {it}", flush=True)

    run_t0 = time.perf_counter()
    elapsed0 = float(counters["elapsed_s"])
    window = {"tokens": 0, "seconds": 0.0}          # training steps since the last eval
    bad_in_row = 0

    def elapsed() -> float:
        return elapsed0 + time.perf_counter() - run_t0

    def checkpoint() -> Path:
        nonlocal last_saved_iter
        counters.update(iter_num=it, elapsed_s=elapsed())
        state = {"train_config": dataclasses.asdict(cfg),
                 "rng": {name: s.get_state() for name, s in samplers.items()},
                 "counters": dict(counters),
                 "data": {"source": str(text_path), "text_sha256": meta["text_sha256"]}}
        path = save_checkpoint(out_dir, it, model, optimizer, tok, state)
        last_saved_iter = it
        return path

    interactive = sys.stderr.isatty()
    bar = tqdm(total=cfg.max_iters, initial=it, unit="it", dynamic_ncols=True, disable=not progress,
               mininterval=0.5 if interactive else 5.0, file=sys.stderr)
    interrupted = False
    last_loss = float("nan")
    try:
        with _Interrupt() as stop:
            while True:
                if stop.requested:
                    interrupted = True
                    break
                if (it % cfg.eval_interval == 0 or it == cfg.max_iters) and counters["last_eval_iter"] != it:
                    losses = estimate_loss(model, samplers, cfg.eval_iters)
                    tps = window["tokens"] / window["seconds"] if window["seconds"] else None
                    record = {"iter": it, "train_loss": losses["train"], "val_loss": losses["val"],
                              "train_ppl": perplexity(losses["train"]), "val_ppl": perplexity(losses["val"]),
                              "lr": get_lr(it, cfg), "elapsed_s": round(elapsed(), 3),
                              "tokens_per_s": round(tps, 1) if tps else None,
                              "skipped_steps": counters["skipped_steps"]}
                    counters.update(last_eval_iter=it, train_loss=losses["train"], val_loss=losses["val"])
                    _append_log(log_path, record)
                    checkpoint()
                    window = {"tokens": 0, "seconds": 0.0}
                    bar.write(f"iter {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f} "
                              f"(perplexity {record['train_ppl']:.2f} / {record['val_ppl']:.2f})"
                              + (f", {tps:,.0f} tokens/s" if tps else ""), file=sys.stdout)
                if it >= cfg.max_iters:
                    break

                # ---- one optimizer step
                t0 = time.perf_counter()
                lr = get_lr(it, cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                accum = cfg.gradient_accumulation_steps
                loss_sum, finite = 0.0, True
                for _ in range(accum):
                    x, y = samplers["train"]()       # drawn even after a bad micro-step: same stream
                    if not finite:
                        continue
                    _, loss = model(x, y)
                    lv = loss.item()
                    if not math.isfinite(lv):
                        finite, loss_sum = False, lv
                        continue
                    loss_sum += lv
                    (loss * (1.0 / accum) if accum > 1 else loss).backward()
                norm = optim.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf) \
                    if finite else float("nan")
                if finite and math.isfinite(norm):
                    optimizer.step()
                    bad_in_row = 0
                    last_loss = loss_sum / accum
                else:
                    counters["skipped_steps"] += 1
                    bad_in_row += 1
                    what = f"loss {loss_sum}" if not finite else f"gradient norm {norm}"
                    bar.write(f"iter {it}: non-finite {what}; step skipped "
                              f"({bad_in_row} in a row, {counters['skipped_steps']} in all)", file=sys.stderr)
                model.zero_grad()
                it += 1
                dt = time.perf_counter() - t0
                window["tokens"] += cfg.tokens_per_iter
                window["seconds"] += dt
                counters["train_tokens"] += cfg.tokens_per_iter
                counters["train_seconds"] += dt
                if bad_in_row >= cfg.max_bad_steps:
                    last = (f"the last good checkpoint is in {out_dir} (iter {last_saved_iter})"
                            if last_saved_iter >= 0 else "no checkpoint was written")
                    raise TrainingStopped(
                        f"stopped at iter {it}: {bad_in_row} steps in a row had a non-finite loss or "
                        f"gradient norm; {last}. Try a lower --learning_rate or check the data, then "
                        f"--resume.")
                bar.update(1)
                tps = window["tokens"] / window["seconds"]
                bar.set_postfix_str(f"loss {last_loss:.4f}, lr {lr:.2e}, {tps:,.0f} tok/s", refresh=False)
    finally:
        bar.close()
    if interrupted and last_saved_iter != it:
        path = checkpoint()
        print(f"interrupted at iter {it}: checkpoint written to {path}; continue with --resume", flush=True)
    elif interrupted:
        print(f"interrupted at iter {it}; the checkpoint in {out_dir} is current; continue with --resume",
              flush=True)
    total_tps = counters["train_tokens"] / counters["train_seconds"] if counters["train_seconds"] else 0.0
    return TrainResult(out_dir, it, counters["train_loss"], counters["val_loss"], elapsed(), total_tps,
                       counters["skipped_steps"], interrupted)
