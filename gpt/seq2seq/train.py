"""Training an encoder–decoder on a task, and measuring it: teacher forcing, the paper's schedule,
exact match on held-out pairs.

    from gpt.seq2seq import TrainSettings, train
    result = train(TrainSettings(task="reverse", out_dir="out-reverse", steps=2000))
    result["exact_match"]            # on 1,000 test pairs, lengths 10-30

Every batch is fresh pairs from the task's train split (seeded by the run seed and the step), of mixed
lengths (batches of one length each, drawn per batch, learnt much more slowly per step and per second). The
learning rate is the paper's (``noam_lr``), times :func:`lr_cooldown` when ``cooldown`` > 0: a linear fall to 0
over the run's last fraction, measured in steps or in ``max_minutes``, whichever ends the run first. Every
``eval_every`` steps the model decodes validation pairs; the best one so far is the checkpoint (chosen on
validation, never on the test split), and a perfect validation score ``patience`` times in a row ends the
run early. At the end the checkpoint is reloaded and scored on the test split, also on longer sequences
for copy / reverse (length generalisation). ``log.jsonl`` gets one line per log / eval step and the result.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinytensor.errors import ConfigError
from tinytensor.fileio import append_jsonl, atomic_write_text
from tinytensor.ops.checks import check_int_fields
from tinytensor.optim import clip_grad_norm_, noam_lr

from ..transformer import Transformer, TransformerConfig
from .checkpoint import load_seq2seq, save_seq2seq
from .decode import beam_search, greedy
from .tasks import CharVocab, Task, get_task

__all__ = ["TrainSettings", "collate", "exact_match", "lr_cooldown", "run_fraction", "train", "translate"]


@dataclass
class TrainSettings:
    """A training run. ``model`` overrides :class:`~gpt.transformer.TransformerConfig` fields."""
    task: str
    out_dir: str
    steps: int = 2000
    batch_size: int = 64
    model: dict[str, Any] = field(default_factory=dict)
    lr_factor: float = 1.0                  # noam_lr's factor
    warmup: int = 400
    grad_clip: float = 1.0
    seed: int = 0
    eval_every: int = 250
    eval_size: int = 300                    # validation pairs per evaluation
    patience: int = 2                       # perfect validation evaluations in a row that end the run
    test_size: int = 1000
    test_lengths: tuple[int, int] | None = (10, 30)     # copy / reverse: the held-out lengths
    long_lengths: tuple[int, int] | None = (31, 40)     # copy / reverse: longer than any training pair
    train_lengths: tuple[int, int] | None = None        # default: the task's
    beam: int = 1                           # 1 = greedy for the evaluations
    max_minutes: float | None = None        # stop training after this long (then evaluate)
    cooldown: float = 0.0                   # the run's last fraction, lr falling linearly to 0 (see lr_cooldown)
    log_every: int = 50
    quiet: bool = False

    def __post_init__(self):
        check_int_fields(self, ("steps", "batch_size", "warmup", "eval_every", "eval_size", "test_size",
                                "log_every", "beam"))
        if not isinstance(self.cooldown, (int, float)) or isinstance(self.cooldown, bool) \
                or not 0.0 <= self.cooldown <= 1.0:
            raise ConfigError(f"TrainSettings.cooldown must be a fraction in [0, 1], got {self.cooldown!r}")


def collate(pairs: list[tuple[str, str]], vocab: CharVocab) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad a batch: ``src [B, S]``, ``tgt_in [B, T]`` = BOS + target, ``targets [B, T]`` = target + EOS.

    Right-padded with ``pad_id`` (the loss ignores it; see :mod:`gpt.transformer` on the masks).
    """
    srcs = [vocab.encode(s) for s, _ in pairs]
    tgts = [vocab.encode(t) for _, t in pairs]
    B, S, T = len(pairs), max(map(len, srcs)), max(map(len, tgts)) + 1
    src = np.full((B, S), vocab.pad_id, dtype=np.int64)
    tgt_in = np.full((B, T), vocab.pad_id, dtype=np.int64)
    targets = np.full((B, T), vocab.pad_id, dtype=np.int64)
    for b, (s, t) in enumerate(zip(srcs, tgts)):
        src[b, :len(s)] = s
        tgt_in[b, 0], tgt_in[b, 1:len(t) + 1] = vocab.bos_id, t
        targets[b, :len(t)], targets[b, len(t)] = t, vocab.eos_id
    return src, tgt_in, targets


def run_fraction(step: int, steps: int, elapsed_s: float, max_minutes: float | None) -> float:
    """How much of the run is behind us after ``step - 1`` steps and ``elapsed_s`` seconds: the larger of
    ``(step - 1) / steps`` and ``elapsed_s / (60 max_minutes)``, since the run ends at whichever comes first."""
    done = (step - 1) / steps
    return done if max_minutes is None else max(done, elapsed_s / (60.0 * max_minutes))


def lr_cooldown(fraction: float, cooldown: float) -> float:
    """The learning-rate multiplier at ``fraction`` of the run: 1 until ``1 - cooldown``, then falling
    linearly to 0 at the end (``cooldown=0``: always 1)::

        lr_cooldown(0.5, 0.25) == 1.0,  lr_cooldown(0.875, 0.25) == 0.5,  lr_cooldown(1.0, 0.25) == 0.0
    """
    if cooldown <= 0.0 or fraction <= 1.0 - cooldown:
        return 1.0
    return max(0.0, (1.0 - fraction) / cooldown)


def translate(model: Transformer, vocab: CharVocab, texts: list[str], beam: int = 1,
              batch_size: int = 500) -> list[str]:
    """Decode each text (greedy with ``beam=1``, else beam search) in batches of similar lengths."""
    out: list[str] = [""] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for lo in range(0, len(order), batch_size):
        idx = order[lo:lo + batch_size]
        src, _, _ = collate([(texts[i], "") for i in idx], vocab)
        hyps = greedy(model, src) if beam == 1 else beam_search(model, src, beam=beam)
        for i, h in zip(idx, hyps):
            out[i] = vocab.decode(h.tokens)
    return out


def exact_match(model: Transformer, vocab: CharVocab, pairs: list[tuple[str, str]], beam: int = 1) -> float:
    """The fraction of pairs whose decoded source equals the target exactly."""
    got = translate(model, vocab, [s for s, _ in pairs], beam)
    return float(np.mean([g == t for g, (_, t) in zip(got, pairs)]))


def _say(settings: TrainSettings, msg: str) -> None:
    if not settings.quiet:
        print(msg, flush=True)


def _lengths(task: Task, lengths):
    return lengths if task.name in ("copy", "reverse") else None


def train(settings: TrainSettings) -> dict[str, Any]:
    """Train, keep the best-on-validation checkpoint in ``out_dir``, score it on the test split.

    Returns the result (also ``out_dir/result.json`` and the last line of ``log.jsonl``):
    ``exact_match`` on ``test_size`` test pairs, ``exact_match_long`` for copy / reverse, timings.
    """
    s = settings
    task = get_task(s.task)
    vocab = task.vocab()
    config = TransformerConfig(**{"vocab_size": len(vocab), **s.model})
    longest = max(task.longest(s.train_lengths), task.longest(_lengths(task, s.test_lengths)))
    if longest + 1 > config.max_len:       # + 1: the BOS before, or the EOS after, the target
        raise ConfigError(f"max_len {config.max_len} is too short for {s.task}: its sequences have up to {longest} "
                          f"characters, and the decoder adds a BOS (max_len >= {longest + 1})")
    model = Transformer(config, seed=s.seed)
    opt = model.configure_optimizer()
    out = Path(s.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.jsonl"
    val = task.sample("val", s.eval_size, seed=s.seed, lengths=_lengths(task, s.test_lengths))
    _say(s, f"seq2seq {s.task}: {model.num_parameters():,} parameters, {s.steps} steps of {s.batch_size}")
    best, perfect, t0, tokens, step = -1.0, 0, time.perf_counter(), 0, 0
    for step in range(1, s.steps + 1):
        model.train()
        pairs = task.sample("train", s.batch_size, seed=s.seed * 1_000_003 + step, lengths=s.train_lengths)
        src, tgt_in, targets = collate(pairs, vocab)
        lr = noam_lr(step, config.d_model, s.warmup, s.lr_factor)
        if s.cooldown:
            lr *= lr_cooldown(run_fraction(step, s.steps, time.perf_counter() - t0, s.max_minutes), s.cooldown)
        for g in opt.param_groups:
            g["lr"] = lr
        _, loss = model(src, tgt_in, targets)
        opt.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), s.grad_clip)
        opt.step()
        tokens += src.size + tgt_in.size
        elapsed = time.perf_counter() - t0
        if step % s.log_every == 0:
            rec = {"step": step, "loss": round(loss.item(), 5), "lr": lr, "tokens_per_s": round(tokens / elapsed),
                   "elapsed_s": round(elapsed, 1)}
            append_jsonl(log, rec)
            _say(s, f"step {step:5d}  loss {rec['loss']:.4f}  lr {lr:.2e}  {rec['tokens_per_s']} tok/s  {elapsed:.0f}s")
        out_of_time = s.max_minutes is not None and elapsed > 60 * s.max_minutes
        if step % s.eval_every == 0 or step == s.steps or out_of_time:
            em = exact_match(model, vocab, val, s.beam)
            append_jsonl(log, {"step": step, "val_exact_match": em})
            _say(s, f"step {step:5d}  validation exact match {100 * em:.1f}%")
            if em > best:
                best = em
                save_seq2seq(out, model, vocab, s.task, {"step": step, "val_exact_match": em,
                                                          "settings": dataclasses.asdict(s)})
            perfect = perfect + 1 if em == 1.0 else 0
            if perfect >= s.patience or out_of_time:
                break
    train_s = time.perf_counter() - t0
    model, vocab, meta = load_seq2seq(out)
    test = task.sample("test", s.test_size, seed=s.seed, lengths=_lengths(task, s.test_lengths))
    result = {"task": s.task, "steps": step, "checkpoint_step": meta["step"], "train_seconds": round(train_s, 1),
              "val_exact_match": meta["val_exact_match"], "exact_match": exact_match(model, vocab, test, s.beam),
              "test_size": s.test_size, "beam": s.beam, "model_config": meta["model_config"]}
    if _lengths(task, s.long_lengths) and s.long_lengths[1] + 1 <= config.max_len:
        long = task.sample("test", s.test_size, seed=s.seed, lengths=s.long_lengths)
        result["exact_match_long"] = exact_match(model, vocab, long, s.beam)
        result["long_lengths"] = list(s.long_lengths)
    result["total_seconds"] = round(time.perf_counter() - t0, 1)
    append_jsonl(log, {"result": result})
    atomic_write_text(out / "result.json", json.dumps(result, indent=1) + "\n")
    if "exact_match_long" in result:
        _say(s, f"lengths {s.long_lengths[0]}-{s.long_lengths[1]} (longer than training): exact match "
                f"{100 * result['exact_match_long']:.1f}%")
    print(f"exact match: {100 * result['exact_match']:.1f}%", flush=True)      # even when quiet: the answer
    return result
