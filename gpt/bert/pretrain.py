"""Masked-LM pretraining of :class:`gpt.bert.Bert`, its evaluation, and ``fill``.

    cfg = PretrainConfig(data="input.txt", out_dir="out-bert", max_iters=2000)
    result = pretrain(cfg)                   # log.jsonl, bert.json + bert.safetensors + tokenizer.json
    result.accuracy, result.baseline         # masked-token accuracy on the val split, and the unigram's
    fill("out-bert", "To be or not to [MASK]", top_k=5)    # [[(token, probability), ...]] per [MASK]

The data: the text file's tokens, the first 90 % for training and the last 10 % for validation (as
``tinygpt train``). Each training row is a random window of ``block_size - 2`` training tokens framed
as ``[CLS] window [SEP]``; ``lines`` adds short documents (one per line, e.g. SMS texts), each framed
and ``[PAD]``-ded, drawn for a share ``lines_frac`` of the rows. Each row is masked afresh at every
step (:func:`gpt.bert.masking.mask_tokens`).

Validation uses the non-overlapping windows of the val tokens, masked ONCE with a fixed seed, so two
evaluations see the same questions. **Masked-token accuracy** = the share of chosen val positions
where the argmax of the model's logits (over the whole vocabulary) is the original token. The
**unigram baseline** predicts, at every chosen position, the single most frequent ordinary token of
the TRAINING split (the argmax of the unigram distribution): its accuracy is that token's share of
the chosen val positions.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

import tinytensor as tt
from tinytensor import optim
from tinytensor.errors import ConfigError, UsageError
from tinytensor.fileio import append_jsonl, atomic_write_bytes, read_text
from tinytensor.ops.checks import check_int_fields

from ..data import encode, load_tokenizer
from . import masking
from .io import load_bert, read_meta, save_bert
from .masking import SpecialIds, frame, mask_tokens, special_ids
from .model import IGNORE_INDEX, Bert, BertConfig, num_parameters_text

LOG_FILE = "log.jsonl"
VAL_FRAC = 0.1


@dataclass
class PretrainConfig:
    """One pretraining run (``tinygpt bert pretrain`` sets these from its flags).

    Attributes:
        data: the text file (its last 10 % of tokens is the val split).
        out_dir: where ``log.jsonl`` and the model go.
        lines: more training texts, one document per list item (they never reach the val split).
        lines_frac: the share of training rows drawn from ``lines`` (None: their share of the tokens).
        tokenizer: a saved tokenizer with the four specials (None: learn a BPE of ``vocab_size`` ids from
            the training texts).
        vocab_size, n_layer, n_head, n_embd, block_size, d_ff, dropout, norm_first: the model (see
            BertConfig; norm_first False is BERT's post-LN).
        max_iters, batch_size, lr, min_lr, warmup_iters, weight_decay, grad_clip: AdamW with linear
            warmup and cosine decay to ``min_lr``.
        eval_interval, eval_windows: evaluate (and checkpoint) every so many steps, on at most this many
            val windows (0: all).
        seed: data sampling, masking and init.
    """
    data: str
    out_dir: str
    lines: list = field(default_factory=list)
    lines_frac: float | None = None
    tokenizer: str | None = None
    vocab_size: int = 2048
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    d_ff: int = 0
    dropout: float = 0.1
    norm_first: bool = False
    max_iters: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    eval_interval: int = 500
    eval_windows: int = 0
    seed: int = 1337

    def __post_init__(self):
        check_int_fields(self, ("max_iters", "batch_size", "eval_interval"))
        if self.block_size < 4:
            raise ConfigError(f"block_size must be >= 4 ([CLS], two tokens, [SEP]), got {self.block_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        if self.lines_frac is not None and not 0 <= self.lines_frac <= 1:
            raise ConfigError(f"lines_frac must lie in [0, 1], got {self.lines_frac}")


@dataclass
class PretrainResult:
    out_dir: Path
    accuracy: float
    baseline: float
    val_loss: float
    n_masked: int
    train_seconds: float
    log: list


# ========================================================================================= data
@dataclass
class Corpus:
    """The tokenized training and val data of a run."""
    train: np.ndarray                  # the text's first 90 % of tokens
    val: np.ndarray                    # the rest
    lines: list                        # framed extra documents (int64 rows, [CLS] ... [SEP])
    specials: SpecialIds


def build_corpus(text: str, lines: list, tok, block_size: int) -> Corpus:
    """Tokenize ``text`` (split 90 / 10) and frame each of ``lines`` to ``block_size``.

    Raises:
        ConfigError: the text is too short for one val window.
    """
    sp = special_ids(tok)
    ids = np.asarray(encode(tok, text), dtype=np.int64)
    n_val = int(len(ids) * VAL_FRAC)
    L = block_size - 2
    if n_val < L or len(ids) - n_val <= L:
        raise ConfigError(f"the text has {len(ids)} tokens: too few for windows of block_size - 2 = {L} in both the "
                          f"train (90 %) and val (10 %) splits; give a longer text or a smaller block_size")
    framed = [frame(encode(tok, s), sp, block_size) for s in lines if s.strip()]
    return Corpus(ids[:-n_val], ids[-n_val:], framed, sp)


def pad_rows(rows: list, pad_id: int) -> np.ndarray:
    """Right-pad int rows to the longest with ``pad_id``: ``[B, T]``."""
    T = max(len(r) for r in rows)
    out = np.full((len(rows), T), pad_id, dtype=np.int64)
    for b, r in enumerate(rows):
        out[b, :len(r)] = r
    return out


def sample_batch(c: Corpus, batch_size: int, block_size: int, lines_frac: float, rng: np.random.Generator):
    """``[B, T]`` unmasked rows: random framed windows of the train tokens, or (share ``lines_frac``) lines."""
    L = block_size - 2
    rows = []
    for _ in range(batch_size):
        if c.lines and rng.random() < lines_frac:
            rows.append(c.lines[rng.integers(len(c.lines))])
        else:
            s = int(rng.integers(len(c.train) - L + 1))
            rows.append(frame(c.train[s:s + L], c.specials, block_size))
    return pad_rows(rows, c.specials.pad)


def val_questions(c: Corpus, block_size: int, vocab_size: int, seed: int, limit: int = 0):
    """The val split's non-overlapping framed windows, masked once: ``(inputs, targets)`` ``[N, T]``."""
    L = block_size - 2
    starts = range(0, len(c.val) - L + 1, L)
    rows = np.stack([frame(c.val[s:s + L], c.specials, block_size) for s in starts])
    if limit:
        rows = rows[:limit]
    return mask_tokens(rows, c.specials, vocab_size, np.random.default_rng([seed, 99]))


def unigram_argmax(train: np.ndarray, specials: SpecialIds, vocab_size: int) -> int:
    """The most frequent ordinary token of the training split (the baseline's one answer)."""
    counts = np.bincount(train, minlength=vocab_size)
    counts[list(specials.all)] = -1
    return int(np.argmax(counts))


def evaluate_mlm(model: Bert, inputs: np.ndarray, targets: np.ndarray, batch_size: int = 64) -> dict:
    """Mean loss and masked-token accuracy over the chosen positions of ``(inputs, targets)``, eval mode."""
    was = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    with tt.no_grad():
        for s in range(0, len(inputs), batch_size):
            x, y = inputs[s:s + batch_size], targets[s:s + batch_size]
            logits, loss = model(x, y)                                # [M, V], mean over M
            want = y[y != IGNORE_INDEX]                               # [M], the same row-major order
            loss_sum += loss.item() * want.size
            correct += int((np.argmax(logits.data, axis=-1) == want).sum())
            n += want.size
    model.train(was)
    return {"loss": loss_sum / n, "accuracy": correct / n, "n": n}


# ===================================================================================== training
def pretrain(cfg: PretrainConfig, progress: bool = True, quiet: bool = False) -> PretrainResult:
    """Train a masked LM on ``cfg.data`` (+ ``cfg.lines``); print and return the val accuracy and baseline."""
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    out_dir = Path(cfg.out_dir)
    text = read_text(cfg.data)
    if cfg.tokenizer is not None:
        tok = load_tokenizer(cfg.tokenizer)
    else:   # learned from the training texts only: the text's first 90 % (by characters) and the lines
        tok = masking.train_tokenizer(text[:int(len(text) * (1 - VAL_FRAC))] + "\n" + "\n".join(cfg.lines),
                                      cfg.vocab_size)
    corpus = build_corpus(text, cfg.lines, tok, cfg.block_size)
    sp = corpus.specials
    config = BertConfig(vocab_size=tok.vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer,
                        n_head=cfg.n_head, n_embd=cfg.n_embd, d_ff=cfg.d_ff, dropout=cfg.dropout, pad_id=sp.pad,
                        norm_first=cfg.norm_first)
    model = Bert(config, seed=cfg.seed)
    n_line_tok = sum(len(r) for r in corpus.lines)
    lines_frac = cfg.lines_frac if cfg.lines_frac is not None else n_line_tok / (n_line_tok + len(corpus.train))
    val_x, val_y = val_questions(corpus, cfg.block_size, config.vocab_size, cfg.seed, cfg.eval_windows)
    top = unigram_argmax(corpus.train, sp, config.vocab_size)
    baseline = float(np.mean(val_y[val_y != IGNORE_INDEX] == top))
    say(f"data: {len(corpus.train):,} train + {len(corpus.val):,} val tokens, {len(corpus.lines):,} extra lines "
        f"(share of rows {lines_frac:.2f}); vocab {config.vocab_size}; model {num_parameters_text(model)} parameters")

    params = list(model.parameters())
    opt = optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                       {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
                      lr=cfg.lr, betas=(0.9, 0.999))
    rng = np.random.default_rng([cfg.seed, 1])
    state = {"pretrain_config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "lines"},
             "n_lines": len(cfg.lines), "unigram_token": top}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / LOG_FILE, b"")
    bar = tqdm(total=cfg.max_iters, unit="it", disable=not progress, file=sys.stderr, dynamic_ncols=True,
               mininterval=0.5 if sys.stderr.isatty() else 10.0)
    log, train_s, losses = [], 0.0, []
    val = {"loss": math.nan, "accuracy": math.nan, "n": 0}
    try:
        for it in range(1, cfg.max_iters + 1):
            t0 = time.perf_counter()
            x, y = mask_tokens(sample_batch(corpus, cfg.batch_size, cfg.block_size, lines_frac, rng), sp,
                               config.vocab_size, rng)
            lr = optim.cosine_lr(it - 1, cfg.lr, cfg.min_lr, cfg.warmup_iters, cfg.max_iters)
            for g in opt.param_groups:
                g["lr"] = lr
            _, loss = model(x, y)
            loss.backward()
            optim.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
            opt.step()
            model.zero_grad()
            losses.append(loss.item())
            train_s += time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix_str(f"loss {losses[-1]:.3f}", refresh=False)
            if it % cfg.eval_interval == 0 or it == cfg.max_iters:
                val = evaluate_mlm(model, val_x, val_y)
                rec = {"iter": it, "train_loss": float(np.mean(losses)), "val_loss": val["loss"],
                       "val_accuracy": val["accuracy"], "lr": lr, "train_seconds": round(train_s, 3)}
                append_jsonl(out_dir / LOG_FILE, rec)
                log.append(rec)
                losses = []
                bar.write(f"iter {it}: train loss {rec['train_loss']:.4f}, val loss {val['loss']:.4f}, "
                          f"masked-token accuracy {100 * val['accuracy']:.1f} %", file=sys.stderr if quiet else sys.stdout)
                save_bert(out_dir, model, tok, {**state, "iter_num": it, "val": val, "baseline": baseline})
    finally:
        bar.close()
    say(f"masked-token accuracy: {100 * val['accuracy']:.1f}% (unigram baseline {100 * baseline:.1f}%) on "
        f"{val['n']:,} masked val positions")
    return PretrainResult(out_dir, val["accuracy"], baseline, val["loss"], val["n"], train_s, log)


# ========================================================================================= fill
def fill(out_dir_or_model, prompt: str, top_k: int = 5, tokenizer=None) -> list[list[tuple[str, float]]]:
    """The ``top_k`` fillers of each ``[MASK]`` in ``prompt``, with their probabilities.

    Args:
        out_dir_or_model: a ``tinygpt bert pretrain`` run folder, or a :class:`Bert` (then pass ``tokenizer``).
        prompt: text holding one or more ``[MASK]``.
        top_k: fillers per mask (special tokens are never offered).

    Returns:
        One list per ``[MASK]``, left to right, of ``(token text, probability)`` best first.

    Raises:
        UsageError: no ``[MASK]`` in the prompt, a prompt longer than the model's block_size, or top_k < 1.
    """
    if isinstance(out_dir_or_model, Bert):
        model, tok = out_dir_or_model, tokenizer
    else:
        if read_meta(out_dir_or_model).get("task") != "mlm":
            raise UsageError(f"{out_dir_or_model} is a fine-tuned classifier; fill needs a pretraining run")
        model, tok, _ = load_bert(out_dir_or_model)
    if masking.MASK not in prompt:
        raise UsageError(f"the prompt {prompt!r} has no {masking.MASK}: write {masking.MASK} where a token should "
                         f"be filled in, e.g. \"To be or not to {masking.MASK}\"")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise UsageError(f"top_k must be an int >= 1, got {top_k!r}")
    sp = special_ids(tok)
    ids = tok.encode(prompt, allowed_special={masking.MASK}, disallowed_special=())
    if len(ids) + 2 > model.config.block_size:
        raise UsageError(f"the prompt is {len(ids)} tokens; with [CLS] and [SEP] it must fit block_size="
                         f"{model.config.block_size}")
    idx = frame(ids, sp, model.config.block_size)[None, :]            # [1, T]
    with tt.no_grad():
        logits, _ = model(idx)                                        # [1, T, V]
    out = []
    for t in np.flatnonzero(idx[0] == sp.mask):
        z = logits.data[0, t].astype(np.float64)
        z[list(sp.all)] = -np.inf
        p = np.exp(z - z.max())
        p /= p.sum()
        best = np.argsort(-p, kind="stable")[:top_k]
        out.append([(tok.decode([int(i)]), float(p[i])) for i in best])
    return out


__all__ = ["PretrainConfig", "PretrainResult", "Corpus", "pretrain", "build_corpus", "sample_batch", "val_questions",
           "unigram_argmax", "evaluate_mlm", "fill", "pad_rows", "LOG_FILE"]
