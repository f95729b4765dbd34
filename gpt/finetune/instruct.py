"""Instruction fine-tuning (the book's ch. 7): train on Alpaca-formatted entries, then answer the test set.

    summary = finetune_instruct(InstructConfig(init_from="gpt2-medium", data="instruction-data.json",
                                               out_dir="out-instruct"))

The run, in order:

1. load the starting model and its tokenizer (a GPT-2 folder or a tinygpt checkpoint);
2. split the entries 85/10/5 % into train / test / val (:func:`split_entries`);
3. score the test split's *response tokens* (the answer and its end-of-text; prompt and response header
   ignored): token-weighted mean cross-entropy and perplexity, before training;
4. train ``epochs`` epochs of shuffled, collated batches with AdamW (the book's ``train_model_simple``:
   no schedule, no clipping), logging train/val loss every ``eval_interval`` steps to ``log.jsonl``;
5. score the test responses again, write a checkpoint (``tinygpt chat`` / ``sample`` read it), and
   write ``test-responses.json``: each test entry with the generated response (greedy by default,
   stopped at end-of-text) beside the reference, and a judge's score when ``judge`` names a command.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import tinytensor as tt
from tinytensor import functional as F
from tinytensor.errors import ConfigError, FileFormatError, UsageError
from tinytensor.fileio import append_jsonl, atomic_write_text

from ..checkpoint import save_checkpoint
from ..model import GPT
from ..sample import stream_text
from ..windows import EpochLoader, perplexity
from .classify import load_base
from .instruct_data import (IGNORE_INDEX, InstructionDataset, collate, eos_id, format_entry,
                            load_instruction_data, split_entries)

LOG_FILE = "log.jsonl"
RESPONSES_FILE = "test-responses.json"
SUMMARY_FILE = "instruct.json"


@dataclass
class InstructConfig:
    """One instruction fine-tuning run. Defaults are the book's ch. 7 settings."""
    init_from: str                      # GPT-2 by name or folder (config.json + model.safetensors), or a tinygpt run
    data: str                           # the instruction JSON file
    out_dir: str = "out-instruct"
    tokenizer: str | None = None        # with a GPT-2 folder: where its tokenizer is (default: the folder)
    epochs: int = 2
    max_steps: int = 0                  # stop after this many steps (0: all epochs)
    batch_size: int = 8
    learning_rate: float = 5e-5
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.999
    dropout: float = 0.0
    seed: int = 123
    eval_interval: int = 5              # steps between train/val loss estimates
    eval_batches: int = 5               # batches per estimate
    mask_prompt: bool = False           # ignore the instruction/input targets while training
    truncate: bool = False              # cut entries longer than the context instead of failing
    max_new_tokens: int = 256
    temperature: float = 0.0            # test-set answers: 0 is greedy (the book's)
    test_limit: int = 0                 # answer only the first N test entries (0: all)
    judge: str | None = None            # a command: JSON {instruction, input, reference, response} -> 0..100

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_interval", "eval_batches", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"InstructConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "learning_rate", "weight_decay", "temperature", "test_limit", "seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"InstructConfig.{name} must be >= 0, got {getattr(self, name)}")


# ------------------------------------------------------------------------------------------- model
def load_start(init_from: str, tokenizer: str | None = None, dropout: float = 0.0) -> tuple[GPT, object]:
    """The model to fine-tune and its tokenizer: GPT-2 by name or folder, or a tinygpt run's latest
    checkpoint (see :func:`gpt.finetune.classify.load_base`)."""
    base = load_base(init_from, tokenizer, dropout)
    return base.gpt, base.tokenizer


# -------------------------------------------------------------------------------------------- loss
def batch_loss(model: GPT, inputs: np.ndarray, targets: np.ndarray) -> tt.Tensor:
    """Mean cross-entropy over the targets that are not ``IGNORE_INDEX`` (the book's ``calc_loss_batch``).

    A batch with no counted target (possible with ``mask_prompt`` and truncation) gives a loss of exactly
    0 with zero gradients: the sum over no rows. (tinytensor's ``cross_entropy`` mean is NaN there, as
    PyTorch's, which the trainer would take for a diverged step.)
    """
    logits, _ = model(inputs, return_all=True)                                  # [B, T, V]
    if not (targets != IGNORE_INDEX).any():
        return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)


def mean_batch_loss(model: GPT, loader: EpochLoader, num_batches: int) -> float:
    """Mean of the first ``num_batches`` batch losses of ``loader``'s epoch 0, in eval mode (the book's
    ``calc_loss_loader``)."""
    losses = []
    with tt.no_grad():
        for b, (x, y) in enumerate(loader):
            if b == num_batches:
                break
            losses.append(batch_loss(model, x, y).item())
    return float(np.mean(losses))


def response_loss(model: GPT, dataset: InstructionDataset, batch_size: int = 8) -> dict:
    """Token-weighted cross-entropy of the response tokens (answer + end-of-text) of every entry.

    Returns:
        ``{"loss", "perplexity", "tokens"}``.
    """
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with tt.no_grad():
            for start in range(0, len(dataset), batch_size):
                x, y = collate(dataset.encoded[start:start + batch_size], dataset.eos_id, mask="query",
                               max_length=dataset.block_size)
                logits, _ = model(x, return_all=True)                           # [B, T, V]
                total += float(F.cross_entropy(logits, y, ignore_index=IGNORE_INDEX, reduction="sum").item())
                count += int((y != IGNORE_INDEX).sum())
    finally:
        model.train(was_training)
    loss = total / count if count else math.nan
    return {"loss": loss, "perplexity": perplexity(loss), "tokens": count}


def train_steps(model: GPT, optimizer, loader: EpochLoader, epochs: int, max_steps: int = 0,
                on_step=None) -> list[float]:
    """The book's ``train_model_simple`` loop: for each epoch, each batch: loss, backward, AdamW step.

    ``on_step(step, epoch, loss)`` runs after each step (evaluation, logging). Returns the step losses.
    """
    model.train()
    losses = []
    for epoch in range(epochs):
        for x, y in loader.epoch_batches(epoch):
            loss = batch_loss(model, x, y)
            loss.backward()
            optimizer.step()
            model.zero_grad()
            losses.append(loss.item())
            if on_step is not None:
                on_step(len(losses), epoch, losses[-1])
            if max_steps and len(losses) >= max_steps:
                return losses
    return losses


# -------------------------------------------------------------------------------------- generation
def query_text(entry: dict) -> str:
    """What the model is asked with: the prompt and the response header."""
    prompt, header, _ = format_entry(entry)
    return prompt + header


def stream_response(model: GPT, tok, entry: dict, max_new_tokens: int = 256, temperature: float = 0.0,
                    top_k: int | None = None, top_p: float | None = None, seed=None):
    """Yield the model's answer to ``entry`` piece by piece, stopping at end-of-text."""
    return stream_text(model, tok, query_text(entry), max_new_tokens, temperature, top_k, top_p, seed,
                       stop_id=eos_id(tok))


def generate_response(model: GPT, tok, entry: dict, **kwargs) -> str:
    """The model's answer to ``entry`` as one stripped string (see :func:`stream_response`)."""
    return "".join(stream_response(model, tok, entry, **kwargs)).strip()


def judge_score(command: str, entry: dict, response: str, timeout: float = 120.0) -> float:
    """Ask the judge ``command`` for a 0-100 score of ``response``.

    The command gets ``{"instruction", "input", "reference", "response"}`` as JSON on stdin and must print
    one number from 0 to 100 on stdout (e.g. a script that asks a larger model, as the book does with
    Llama 3 through ollama).

    Raises:
        UsageError: the command fails, times out, or prints something that is not such a number.
    """
    doc = {"instruction": entry["instruction"], "input": entry.get("input", ""), "reference": entry["output"],
           "response": response}
    try:
        r = subprocess.run(shlex.split(command), input=json.dumps(doc), capture_output=True, text=True,
                           timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UsageError(f"--judge {command!r} could not run: {e}") from None
    if r.returncode != 0:
        raise UsageError(f"--judge {command!r} exited with {r.returncode}: {r.stderr.strip()[:200]}")
    try:
        score = float(r.stdout.strip())
    except ValueError:
        score = math.nan
    if not 0.0 <= score <= 100.0:
        raise UsageError(f"--judge {command!r} must print a number from 0 to 100, printed {r.stdout.strip()[:80]!r}")
    return score


# ---------------------------------------------------------------------------------------------- run
def _write_json(path: Path, doc) -> None:
    atomic_write_text(path, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def finetune_instruct(cfg: InstructConfig, progress=print) -> dict:
    """Run steps 1-5 of the module docstring; returns the summary also written to ``instruct.json``.

    Raises:
        FileFormatError: bad instruction data (file and entry named).
        UsageError: entries longer than the context, a tokenizer without end-of-text, a failing judge.
    """
    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    model, tok = load_start(cfg.init_from, cfg.tokenizer, cfg.dropout)
    entries = load_instruction_data(cfg.data)
    train, test, val = split_entries(entries)
    if len(train) < cfg.batch_size or not test or not val:
        raise FileFormatError(f"{cfg.data}: {len(entries)} entries split into {len(train)} train / {len(test)} test "
                              f"/ {len(val)} val; it needs a full batch of {cfg.batch_size} and one entry each")
    block, src = model.config.block_size, str(cfg.data)
    kw = dict(tok=tok, block_size=block, truncate=cfg.truncate, source=src)
    train_ds = InstructionDataset(train, mask_prompt=cfg.mask_prompt, **kw)
    test_ds = InstructionDataset(test, first_index=len(train), **kw)
    val_ds = InstructionDataset(val, mask_prompt=cfg.mask_prompt, first_index=len(train) + len(test), **kw)
    train_loader = EpochLoader(train_ds, cfg.batch_size, shuffle=True, seed=cfg.seed, drop_last=True)
    eval_loaders = {"train": EpochLoader(train_ds, cfg.batch_size), "val": EpochLoader(val_ds, cfg.batch_size)}
    progress(f"{len(train)} train / {len(test)} test / {len(val)} val entries; {model.num_params():,} parameters; "
             f"{len(train_loader)} batches of {cfg.batch_size} an epoch")

    before = response_loss(model, test_ds, cfg.batch_size)
    progress(f"test response loss before: {before['loss']:.4f} (perplexity {before['perplexity']:.2f})")
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / LOG_FILE
    atomic_write_text(log_path, "")
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2))

    def on_step(step: int, epoch: int, loss: float) -> None:
        if step % cfg.eval_interval:
            return
        model.eval()
        est = {k: mean_batch_loss(model, ld, cfg.eval_batches) for k, ld in eval_loaders.items()}
        model.train()
        rec = {"step": step, "epoch": epoch, "loss": loss, "train_loss": est["train"], "val_loss": est["val"],
               "train_ppl": perplexity(est["train"]), "val_ppl": perplexity(est["val"]),
               "elapsed_s": round(time.perf_counter() - t0, 3)}
        append_jsonl(log_path, rec)
        progress(f"epoch {epoch + 1} step {step}: train loss {est['train']:.4f}, val loss {est['val']:.4f}")

    t_train = time.perf_counter()
    losses = train_steps(model, optimizer, train_loader, cfg.epochs, cfg.max_steps, on_step)
    train_s = time.perf_counter() - t_train
    model.eval()
    after = response_loss(model, test_ds, cfg.batch_size)
    progress(f"test response loss after: {after['loss']:.4f} (perplexity {after['perplexity']:.2f}); "
             f"{len(losses)} steps in {train_s:.0f} s")
    save_checkpoint(out, len(losses), model, None, tok, {"instruct_config": dataclasses.asdict(cfg)})

    answered = test[:cfg.test_limit] if cfg.test_limit else test
    rows = []
    for i, entry in enumerate(answered):
        response = generate_response(model, tok, entry, max_new_tokens=cfg.max_new_tokens,
                                     temperature=cfg.temperature, seed=cfg.seed + i)
        row = {**entry, "model_response": response}
        if cfg.judge:
            row["score"] = judge_score(cfg.judge, entry, response)
        rows.append(row)
    _write_json(out / RESPONSES_FILE, rows)
    summary = {"config": dataclasses.asdict(cfg), "steps": len(losses), "step_losses": losses,
               "test_response_loss_before": before, "test_response_loss_after": after, "train_seconds": train_s,
               "responses_file": str(out / RESPONSES_FILE), "answered": len(rows)}
    if cfg.judge:
        summary["judge_mean_score"] = float(np.mean([r["score"] for r in rows]))
    _write_json(out / SUMMARY_FILE, summary)
    progress(f"wrote {len(rows)} test responses to {out / RESPONSES_FILE}"
             + (f"; judge's mean score {summary['judge_mean_score']:.1f}" if cfg.judge else ""))
    return summary


__all__ = ["InstructConfig", "load_start", "batch_loss", "mean_batch_loss", "response_loss", "train_steps",
           "query_text", "stream_response", "generate_response", "judge_score", "finetune_instruct"]
