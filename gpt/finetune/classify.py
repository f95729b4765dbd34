"""Classification fine-tuning (the book's chapter 6): a GPT body, a small head, the last real token.

    cfg = ClassifyConfig(data="SMSSpamCollection.tsv", init_from="out-sms", out_dir="out-spam")
    result = finetune_classifier(cfg)              # log.jsonl, best-val checkpoint, metrics.json
    clf = Classifier.load("out-spam")
    clf.predict(["WINNER!! Claim your prize now", "see you at 6?"])   # [Prediction(label='spam', ...), ...]

The model (:class:`GPTClassifier`) is the GPT without its LM head: ``hidden_states`` gives ``[B, T, C]``
after ``ln_f``, and a new ``head`` Linear ``[C] -> [num_classes]`` reads the hidden state of each
sequence's LAST REAL token. Batches are right-padded, and attention is causal, so no real position ever
sees a pad: the chosen hidden state is the one the unpadded text would give (the pad id is immaterial).
The loss is the cross-entropy of those logits; the prediction their argmax.

What trains (``trainable``): ``all``; or ``N`` (``last`` = 1) final blocks plus ``ln_f`` and the head,
everything before frozen (``requires_grad`` False: no gradient buffers, not in the optimizer, and the
frozen blocks record no graph at all, so their activations are freed as soon as they are used); or,
with ``lora_rank``, LoRA adapters (:mod:`gpt.lora`) on the targeted Linear layers plus the head.

A run's folder::

    log.jsonl                one record per epoch: train loss / accuracy (means over the epoch's
                             batches, in training mode), val loss / accuracy, lr, seconds
    checkpoint.json, ckpt-*  the best-val model (tinygpt checkpoint format; LoRA runs store the merged
                             weights), its tokenizer, and state.json with the run's config
    lora/                    LoRA runs: the adapters alone (adapter_model.safetensors + adapter_config.json)
    metrics.json             the best model's test (and val) loss, accuracy, confusion matrix, precision,
                             recall and F1 per class
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import tinytensor as tt
from tinytensor import functional as F
from tinytensor import nn, optim
from tinytensor.errors import ConfigError, FileFormatError, ShapeError
from tinytensor.fileio import append_jsonl, atomic_write_bytes
from tinytensor.ops.checks import check_int_fields

from .. import lora
from ..checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from ..data import build_tokenizer, encode, load_tokenizer
from ..hf import CONFIG_NAME, GPT2_EOT_ID
from ..hub import MODELS, resolve_model
from ..model import GPT, GPTConfig
from . import ensemble, spam
from .report import Prediction, confusion_report, format_report, softmax_rows, to_predictions

LOG_FILE = "log.jsonl"
METRICS_FILE = "metrics.json"
LORA_DIR = "lora"
TASK = "classify"
LR_SCHEDULES = ("constant", "cosine")
KEEP = ("best", "last")
LORA_NORMS = ("none", "weight", "all")
END_TOKEN = "<|endoftext|>"


# ============================================================================================ model
class GPTClassifier(nn.Module):
    """``head(hidden_states(idx)[b, lengths[b] - 1])``: a GPT body read at each sequence's last real token.

    Parameter names: the GPT's under ``gpt.`` (``gpt.transformer.h.0.attn.c_attn.weight``, ...), and
    ``head.weight [num_classes, C]``, ``head.bias [num_classes]``. ``clf.gpt`` is a plain GPT (its tied
    LM head unused here), so the fine-tuned body can be saved with ``clf.gpt.save_pretrained(dir)``.

    Args:
        gpt: the body.
        num_classes: K, the head's outputs.
        seed: seeds the head's init (PyTorch's Linear init, ``U(±1/√C)``).
    """

    def __init__(self, gpt: GPT, num_classes: int, seed: int = 0):
        super().__init__()
        if not isinstance(gpt, GPT):
            raise TypeError(f"GPTClassifier needs a GPT body, got {type(gpt).__name__}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"num_classes must be an int >= 2, got {num_classes!r}")
        self.gpt = gpt
        self.num_classes = num_classes
        self.head = nn.Linear(gpt.config.n_embd, num_classes, rng=np.random.default_rng([seed, 6]))  # [K, C]

    # save_checkpoint reads these two from the model it saves
    @property
    def config(self) -> GPTConfig:
        return self.gpt.config

    @property
    def dropout_rng(self) -> np.random.Generator:
        return self.gpt.dropout_rng

    def forward(self, idx, lengths=None, targets=None) -> tuple[tt.Tensor, tt.Tensor | None]:
        """Class logits ``[B, K]`` and, with ``targets [B]``, their mean cross-entropy.

        Args:
            idx: token ids ``[B, T]``, each row right-padded after its ``lengths[b]`` real tokens.
            lengths: ``[B]`` real tokens per row, in ``[1, T]`` (default: every row is ``T`` long).
            targets: class ids ``[B]``, or None.
        """
        h = self.gpt.hidden_states(idx)                                 # [B, T, C]
        B, T, _ = h.shape
        last = last_real_positions(lengths, B, T)                       # [B]
        logits = self.head(h[np.arange(B), last])                       # [B, C] -> [B, K]
        loss = F.cross_entropy(logits, np.asarray(targets)) if targets is not None else None
        return logits, loss


def last_real_positions(lengths, B: int, T: int) -> np.ndarray:
    """``lengths - 1`` as int64 ``[B]`` (all ``T - 1`` when ``lengths`` is None), checked to lie in ``[0, T)``."""
    if lengths is None:
        return np.full(B, T - 1, dtype=np.int64)
    lengths = np.asarray(lengths)
    if lengths.shape != (B,) or not np.issubdtype(lengths.dtype, np.integer):
        raise ShapeError(f"lengths must be [B] = [{B}] integers, got shape {lengths.shape} {lengths.dtype}")
    if lengths.min() < 1 or lengths.max() > T:
        raise ShapeError(f"lengths must lie in [1, T={T}], got min {lengths.min()} max {lengths.max()}")
    return lengths.astype(np.int64) - 1


def set_trainable(model: GPTClassifier, trainable: str | int = "last") -> tuple[int, int]:
    """Freeze all but what ``trainable`` names; returns ``(trainable, total)`` parameter counts.

    ``"all"``: everything. ``"last"`` (= 1) or ``N``: the last N blocks, ``ln_f`` and the head (N = 0:
    ``ln_f`` and the head). Frozen parameters lose any gradient buffer.

    Raises:
        ConfigError: anything else, or N beyond the model's ``n_layer``.
    """
    n = parse_trainable(trainable, model.config.n_layer)
    if n is None:
        keep = list(model.parameters())
    else:
        blocks = list(model.gpt.transformer.h)[model.config.n_layer - n:] if n else []
        keep = [p for b in blocks for p in b.parameters()]
        keep += list(model.gpt.transformer.ln_f.parameters()) + list(model.head.parameters())
    keep_ids = {id(p) for p in keep}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep_ids)
        if id(p) not in keep_ids:
            p.grad = None
    return lora.count_trainable(model)


def parse_trainable(trainable: str | int, n_layer: int) -> int | None:
    """``"all"`` -> None; ``"last"`` -> 1; ``"N"`` / N -> N, checked against ``n_layer``."""
    if trainable == "all":
        return None
    if trainable == "last":
        return 1
    try:
        n = int(trainable)
    except (TypeError, ValueError):
        n = -1
    if isinstance(trainable, bool) or not 0 <= n <= n_layer or str(trainable).strip() != str(n):
        raise ConfigError(f"trainable must be all, last or a block count in [0, n_layer={n_layer}], "
                          f"got {trainable!r}")
    return n


# ====================================================================================== the model's start
@dataclass
class Base:
    """Where a run starts: the body, its tokenizer, the pad id and a description for state.json."""
    gpt: GPT
    tokenizer: Any
    pad_id: int
    source: dict


def load_base(init_from: str, tokenizer: str | None = None, dropout: float = 0.0,
              sizes: dict | None = None, seed: int = 0) -> Base:
    """The GPT body and tokenizer named by ``init_from``.

    * a GPT-2 folder (``config.json`` + ``model.safetensors``): its weights; GPT-2's BPE from the
      folder's ``encoder.json`` + ``vocab.bpe``, else ``tokenizer`` (default ``gpt2``, see
      :func:`gpt.data.load_tokenizer`); pads with ``<|endoftext|>`` (50256), as the book.
    * a ``tinygpt train`` run folder (or one checkpoint folder): its weights and its own tokenizer.
    * ``scratch``: a fresh GPT of ``sizes`` (``n_layer``, ``n_head``, ``n_embd``, ``block_size``) with
      ``tokenizer`` (``gpt2`` by default, or a saved tokenizer's path).

    The checkpoint and scratch cases pad with the tokenizer's ``<|endoftext|>`` if it has one, else 0.
    """
    sizes = dict(sizes or {})
    if init_from == "scratch":
        tok = build_tokenizer(tokenizer or "gpt2")
        shape = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 256, **sizes}
        config = GPTConfig(vocab_size=tok.vocab_size, dropout=dropout, **shape)
        return Base(GPT(config, seed=seed), tok, _pad_id(tok), {"kind": "scratch", **shape})
    if sizes:
        raise ConfigError(f"size overrides {sorted(sizes)} go with --init_from scratch; {init_from} fixes the shape")
    path = resolve_model(init_from) if str(init_from) in MODELS else Path(init_from)   # gpt2, ... by name
    if (path / CONFIG_NAME).is_file():
        gpt = GPT.from_pretrained(path, dropout=dropout)
        try:
            tok = load_tokenizer(tokenizer if tokenizer is not None else path, gpt.config.vocab_size)
        except FileNotFoundError:
            if tokenizer is not None:
                raise
            tok = load_tokenizer("gpt2", gpt.config.vocab_size)   # a folder without tokenizer files
        pad = GPT2_EOT_ID if GPT2_EOT_ID < gpt.config.vocab_size else _pad_id(tok)
        return Base(gpt, tok, pad, {"kind": "gpt2", "path": str(path)})
    if tokenizer is not None:
        raise ConfigError(f"--tokenizer goes with a GPT-2 folder or scratch; the checkpoint {init_from} has its own")
    ckpt = load_checkpoint(path)
    if ckpt.state.get("task") == TASK:
        raise ConfigError(f"{init_from} is a classifier run; start from the GPT it was fine-tuned from")
    config = dataclasses.replace(ckpt.model_config, dropout=dropout)
    gpt = GPT(config, seed=0, init=False)                     # every weight is loaded next
    gpt.load_state_dict(ckpt.model_state, strict=True)
    return Base(gpt, ckpt.tokenizer, _pad_id(ckpt.tokenizer),
                {"kind": "checkpoint", "path": str(ckpt.path), "iter_num": ckpt.iter_num})


def end_token_id(tok, end_token: bool | str = True) -> int:
    """The id ``end_token`` appends: ``True`` = the special token ``<|endoftext|>``; a string = that special
    token, or a text that encodes to exactly one token (``"\n"``, the separator an LM saw between texts).

    Raises:
        ConfigError: no such special token, or the text is not one token (train a tokenizer with it:
            ``BPETokenizer().train(text, vocab_size, special_tokens=["<|endoftext|>"])``).
    """
    name = END_TOKEN if end_token is True else end_token
    specials = getattr(tok, "special_tokens", None) or {}
    if name in specials:
        return int(specials[name])
    ids = encode(tok, name) if isinstance(name, str) and end_token is not True else []
    if len(ids) != 1:
        raise ConfigError(f"end_token {name!r} is neither a special token of this tokenizer "
                          f"({sorted(specials) or 'none'}) nor a text of one token")
    return int(ids[0])


def _pad_id(tok) -> int:
    return int(tok.special_tokens.get("<|endoftext|>", 0)) if getattr(tok, "special_tokens", None) else 0


# ==================================================================================== evaluation
def evaluate(model: GPTClassifier, data: spam.Encoded, pad_id: int, batch_size: int = 32) -> dict:
    """Loss, accuracy, confusion matrix and per-class precision / recall / F1 over ``data``, in eval mode.

    Returns ``{"loss", "accuracy", "n", "confusion" [K][K] (rows: true class, columns: predicted),
    "precision", "recall", "f1" (per class), "predictions"}``.
    """
    was_training = model.training
    model.eval()
    losses, preds = [], []
    with tt.no_grad():
        for idx, lengths, labels in spam.iter_batches(data, batch_size, pad_id):
            logits, loss = model(idx, lengths, labels)
            losses.append(loss.item() * len(labels))
            preds.append(np.argmax(logits.data, axis=-1))
    model.train(was_training)
    pred = np.concatenate(preds)
    out = confusion_report(data.labels, pred, model.num_classes)
    out["loss"] = float(np.sum(losses) / len(data))
    out["predictions"] = pred.tolist()
    return out


# ====================================================================================== training
@dataclass
class ClassifyConfig:
    """One classification fine-tuning run (``tinygpt finetune classify`` sets these from its flags).

    Attributes:
        data: the SMS spam TSV (None: ``$TINYGPT_DATA``, the cache, or the download).
        init_from: a GPT-2 folder, a ``tinygpt train`` run folder, or ``scratch``.
        out_dir: where the log, the best checkpoint and the metrics go.
        epochs, batch_size: passes over the training split; texts per step.
        lr: AdamW's learning rate (None: 5e-5 as the book, 1e-3 from scratch); ``weight_decay`` on ≥2-D weights.
        lr_schedule: ``constant`` (the book's) or ``cosine``: linear warmup over ``warmup_steps``, then
            cosine decay to ``lr / 10`` at the last step (:func:`tinytensor.optim.cosine_lr`).
        trainable: ``all``, ``last`` or a block count (None: ``last``; with LoRA only the adapters and head).
        max_len: cut texts to this many tokens (None: the model's block_size; never more).
        pad_to_max: pad every batch to ``max_len`` instead of its own longest text.
        lora_rank, lora_alpha, lora_targets: LoRA instead of ``trainable`` (rank None: no LoRA).
        lora_norms: with LoRA, also train every LayerNorm's ``weight`` (gain) or ``all`` (gain and bias),
            BitFit-style; ``none``: only the adapters and the head.
        sizes: ``n_layer`` / ``n_head`` / ``n_embd`` / ``block_size`` for ``init_from="scratch"``.
        tokenizer: for a GPT-2 folder without tokenizer files, or scratch (``gpt2`` or a saved tokenizer).
        end_token: append one token to every text, so the token classified from is always the same one
            (True: ``<|endoftext|>``; or a one-token text such as ``"\n"``; see :func:`end_token_id`).
            Pads are still told apart by length: the pad id may be the same id.
        keep: ``best`` (the best-val epoch's model, the book's) or ``last`` (the final epoch's).
        init_seed: the init, LoRA init, dropout and shuffling seed (None: ``seed``, which then also splits);
            the members of a seed ensemble (:mod:`gpt.finetune.ensemble`) differ only here.
    """
    init_from: str
    out_dir: str
    data: str | None = None
    epochs: int = 5
    batch_size: int = 8
    lr: float | None = None
    weight_decay: float = 0.1
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    grad_clip: float = 1.0
    dropout: float = 0.0
    trainable: str | None = None
    max_len: int | None = None
    pad_to_max: bool = False
    seed: int = 123
    eval_batch_size: int = 32
    lora_rank: int | None = None
    lora_alpha: float = 16.0
    lora_targets: str = ",".join(lora.DEFAULT_TARGETS)
    lora_norms: str = "none"
    sizes: dict = field(default_factory=dict)
    tokenizer: str | None = None
    end_token: bool | str = False
    keep: str = "best"
    init_seed: int | None = None

    def __post_init__(self):
        check_int_fields(self, ("epochs", "batch_size", "eval_batch_size"))
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        check_int_fields(self, ("warmup_steps",), 0)
        if self.keep not in KEEP:
            raise ConfigError(f"keep must be one of {', '.join(KEEP)}, got {self.keep!r}")
        if self.max_len is not None and self.max_len < 1:
            raise ConfigError(f"max_len must be >= 1, got {self.max_len!r}")
        if self.lora_rank is not None and self.trainable is not None:
            raise ConfigError(f"choose LoRA (lora_rank={self.lora_rank}) or trainable={self.trainable!r}, not "
                              f"both: with LoRA the adapters and the head train, everything else is frozen")
        if self.lora_rank is not None and self.lora_rank < 1:
            raise ConfigError(f"lora_rank must be >= 1 (it is the adapters' inner size), got {self.lora_rank}")
        if self.lora_norms not in LORA_NORMS or (self.lora_norms != "none" and self.lora_rank is None):
            raise ConfigError(f"lora_norms must be one of {', '.join(LORA_NORMS)}, and needs lora_rank; got "
                              f"{self.lora_norms!r} with lora_rank={self.lora_rank}")


@dataclass
class ClassifyResult:
    out_dir: Path
    best_epoch: int
    val: dict
    test: dict
    trainable: int
    total: int
    train_seconds: float
    log: list = field(default_factory=list)


def step_lr_at(step: int, lr: float, total_steps: int, schedule: str = "constant", warmup_steps: int = 0) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``total_steps``: ``lr`` when ``constant``;
    for ``cosine``, a linear warmup over ``warmup_steps``, then a cosine from ``lr`` down to ``lr / 10``
    reached at the last step (a decaying rate settles the small-data fine-tune the constant one keeps
    knocking about)."""
    if schedule == "constant":
        return lr
    return optim.cosine_lr(step, lr, lr / 10, warmup_steps, max(warmup_steps + 1, total_steps - 1))


def build_classifier(cfg: ClassifyConfig) -> tuple[GPTClassifier, Base, dict]:
    """The model ``cfg`` describes, with what trains set; returns it, its base and a ``trainable`` summary."""
    seed = cfg.seed if cfg.init_seed is None else cfg.init_seed
    base = load_base(cfg.init_from, cfg.tokenizer, cfg.dropout, cfg.sizes, seed)
    if cfg.init_seed is not None and base.source["kind"] != "scratch":   # a loaded body's dropout stream: seed 0
        base.gpt.dropout_rng.bit_generator.state = np.random.default_rng([seed, 4]).bit_generator.state
    model = GPTClassifier(base.gpt, len(spam.LABELS), seed=seed)
    if cfg.lora_rank is not None:
        names = lora.apply_lora(model.gpt, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets, seed=seed)
        for p in model.head.parameters():
            p.requires_grad_(True)
        for m in model.gpt.modules() if cfg.lora_norms != "none" else ():
            if isinstance(m, nn.LayerNorm):
                for p in (m.weight, m.bias if cfg.lora_norms == "all" else None):
                    if p is not None:
                        p.requires_grad_(True)
        n, total = lora.count_trainable(model)
        what = {"mode": "lora", "layers": len(names), "rank": cfg.lora_rank, "alpha": cfg.lora_alpha,
                "targets": lora.parse_targets(cfg.lora_targets), "norms": cfg.lora_norms}
    else:
        n, total = set_trainable(model, cfg.trainable or "last")
        what = {"mode": cfg.trainable or "last"}
    return model, base, {**what, "trainable": n, "total": total}


def finetune_classifier(cfg: ClassifyConfig, progress: bool = True, quiet: bool = False,
                        rows: list | None = None, overwrite: bool = False,
                        splits: dict | None = None) -> ClassifyResult:
    """Fine-tune a classifier on the book's spam split; keep the best-val model; report on the test split.

    Args:
        cfg: the run.
        progress: a tqdm bar on stderr.
        quiet: no prints on stdout.
        rows: ``spam.Example`` rows to split instead of reading ``cfg.data`` (tests use small slices).
        overwrite: replace a checkpoint already in ``cfg.out_dir`` (else that is a ConfigError).
        splits: ``{"train", "val"[, "test"]}`` rows to use instead of the book's split of ``rows`` (a
            cross-validation fold: with no ``"test"``, no test figure is computed and ``result.test`` is None).
    """
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    out_dir = Path(cfg.out_dir)
    if has_checkpoint(out_dir) and not overwrite:
        raise ConfigError(f"{out_dir} already holds a checkpoint; pass another --out_dir, or --overwrite to replace it")
    splits = spam.resolve_splits(splits, rows, cfg.data, cfg.seed)
    model, base, summary = build_classifier(cfg)
    block = model.config.block_size
    max_len = min(cfg.max_len or block, block)
    end_id = end_token_id(base.tokenizer, cfg.end_token) if cfg.end_token else None
    data = {k: spam.encode_split(v, base.tokenizer, max_len, end_id) for k, v in splits.items()}
    for k, d in data.items():
        if d.truncated:
            say(f"{k}: {d.truncated} of {len(d)} texts are longer than {max_len} tokens and were cut to their "
                f"first {max_len}")
    say(f"data: {', '.join(f'{len(d)} {k}' for k, d in data.items())} texts; max_len {max_len}, pad id {base.pad_id}")
    say(f"trainable parameters: {summary['trainable']:,} of {summary['total']:,} "
        f"({100 * summary['trainable'] / summary['total']:.2f} %), mode {summary['mode']}")

    lr = cfg.lr if cfg.lr is not None else (1e-3 if cfg.init_from == "scratch" else 5e-5)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    opt = optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=(0.9, 0.999))
    shuffle = np.random.default_rng([cfg.seed if cfg.init_seed is None else cfg.init_seed, 1])
    state = {"task": TASK, "labels": list(spam.LABELS), "pad_id": base.pad_id, "max_len": max_len, "end_id": end_id,
             "classify_config": dataclasses.asdict(cfg), "base": base.source, "trainable": summary}

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / LOG_FILE, b"")
    steps_per_epoch = len(data["train"]) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"the training split has {len(data['train'])} texts, fewer than batch_size={cfg.batch_size}")
    total_steps = cfg.epochs * steps_per_epoch
    bar = tqdm(total=total_steps, unit="step", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 5.0)
    best = {"epoch": 0, "accuracy": -1.0, "loss": math.inf}
    log, skipped, train_s, step = [], 0, 0.0, 0
    try:
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            loss_sum, correct, seen = 0.0, 0, 0
            for idx, lengths, labels in spam.iter_batches(data["train"], cfg.batch_size, base.pad_id, shuffle,
                                                          drop_last=True, fixed_length=cfg.pad_to_max):
                logits, loss = model(idx, lengths, labels)
                lv = loss.item()
                loss.backward()
                norm = optim.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
                step_lr = step_lr_at(step, lr, total_steps, cfg.lr_schedule, cfg.warmup_steps)
                for group in opt.param_groups:
                    group["lr"] = step_lr
                step += 1
                if math.isfinite(lv) and math.isfinite(norm):
                    opt.step()
                else:
                    skipped += 1
                model.zero_grad()
                loss_sum += lv * len(labels)
                correct += int((np.argmax(logits.data, axis=-1) == labels).sum())
                seen += len(labels)
                bar.update(1)
                bar.set_postfix_str(f"epoch {epoch}, loss {lv:.4f}", refresh=False)
            train_s += time.perf_counter() - t0
            val = evaluate(model, data["val"], base.pad_id, cfg.eval_batch_size)
            record = {"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                      "val_loss": val["loss"], "val_accuracy": val["accuracy"], "lr": step_lr,
                      "train_seconds": round(train_s, 3), "skipped_steps": skipped}
            append_jsonl(out_dir / LOG_FILE, record)
            log.append(record)
            improved = cfg.keep == "last" or (val["accuracy"], -val["loss"]) > (best["accuracy"], -best["loss"])
            bar.write(f"epoch {epoch}: train loss {record['train_loss']:.4f} acc {100 * record['train_accuracy']:.2f} %,"
                      f" val loss {val['loss']:.4f} acc {100 * val['accuracy']:.2f} %" + (" (best)" if improved and cfg.keep == "best" else ""),
                      file=sys.stderr if quiet else sys.stdout)
            if improved:
                best = {"epoch": epoch, "accuracy": val["accuracy"], "loss": val["loss"]}
                _save(out_dir, epoch * steps_per_epoch, model, base.tokenizer, {**state, "best": best})
    finally:
        bar.close()

    best_model, tok, ckpt = load_classifier(out_dir)
    reports = {k: evaluate(best_model, data[k], base.pad_id, cfg.eval_batch_size) for k in ("val", "test") if k in data}
    metrics = {"labels": list(spam.LABELS), "best_epoch": best["epoch"], "checkpoint": str(ckpt.path),
               "trainable": summary, "train_seconds": round(train_s, 3), "max_len": max_len,
               "truncated": {k: d.truncated for k, d in data.items()},
               **{k: {kk: vv for kk, vv in r.items() if kk != "predictions"} for k, r in reports.items()}}
    atomic_write_bytes(out_dir / METRICS_FILE, (json.dumps(metrics, indent=1) + "\n").encode())
    if "test" in reports:
        say(format_report(reports["test"], title=f"test (kept: epoch {best['epoch']})"))
    return ClassifyResult(out_dir, best["epoch"], reports["val"], reports.get("test"), summary["trainable"],
                          summary["total"], train_s, log)


class _Weights:
    """What :func:`gpt.checkpoint.save_checkpoint` reads from a model: ``state_dict()``, ``config``,
    ``dropout_rng``. Lets a LoRA run save its merged weights without merging the live model."""

    def __init__(self, state: dict, config: GPTConfig, dropout_rng: np.random.Generator):
        self._state, self.config, self.dropout_rng = state, config, dropout_rng

    def state_dict(self) -> dict:
        return self._state


def _save(out_dir: Path, step: int, model: GPTClassifier, tok, state: dict) -> None:
    weights = _Weights(lora.merged_state_dict(model), model.config, model.dropout_rng)
    save_checkpoint(out_dir, step, weights, None, tok, state)
    if lora.lora_layers(model):
        lora.save_adapters(model, out_dir / LORA_DIR,
                           extra={"base": state["base"], "base_config": dataclasses.asdict(model.config),
                                  "num_classes": model.num_classes, "labels": state["labels"]})


# ===================================================================================== inference
def load_classifier(out_dir: str | os.PathLike):
    """The best checkpoint of a classification run: ``(model in eval mode, tokenizer, checkpoint)``.

    Raises:
        FileFormatError: the folder holds a checkpoint that is not a classifier's.
    """
    ckpt = load_checkpoint(out_dir)
    if ckpt.state.get("task") != TASK:
        raise FileFormatError(f"{ckpt.path} is not a classifier checkpoint (no task={TASK!r} in state.json); "
                              f"train one with `tinygpt finetune classify --out_dir {out_dir}`")
    model = GPTClassifier(GPT(ckpt.model_config, seed=0), len(ckpt.state["labels"]), seed=0)
    model.load_state_dict(ckpt.model_state, strict=True)
    model.eval()
    return model, ckpt.tokenizer, ckpt


class Classifier:
    """A fine-tuned classifier ready for texts: ``Classifier.load(out_dir).predict(["text", ...])``."""

    def __init__(self, model: GPTClassifier, tokenizer, labels, pad_id: int, max_len: int,
                 end_id: int | None = None):
        self.model, self.tokenizer, self.labels = model, tokenizer, list(labels)
        self.pad_id, self.max_len, self.end_id = int(pad_id), int(max_len), end_id

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> "Classifier | ensemble.EnsembleClassifier":
        """The run in ``out_dir``; a seed ensemble's folder (``ensemble.json``) gives an
        :class:`gpt.finetune.ensemble.EnsembleClassifier` that averages its members' probabilities."""
        if ensemble.is_ensemble(out_dir):
            return ensemble.load_ensemble(out_dir, cls.load)
        model, tok, ckpt = load_classifier(out_dir)
        st = ckpt.state
        return cls(model, tok, st["labels"], st["pad_id"], st["max_len"], st.get("end_id"))

    def probabilities(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Class probabilities ``[N, K]`` (float64 softmax of the logits) of ``texts``, cut to ``max_len`` tokens."""
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts; for one text call the classifier: clf(text)")
        ids, _ = spam.encode_texts(list(texts), self.tokenizer, self.max_len, self.end_id)
        rows = [np.zeros((0, len(self.labels)))]
        with tt.no_grad():
            for start in range(0, len(ids), batch_size):
                idx, lengths = spam.pad_batch(ids[start:start + batch_size], self.pad_id)
                rows.append(softmax_rows(self.model(idx, lengths)[0].data))
        return np.concatenate(rows)

    def predict(self, texts: list[str], batch_size: int = 32) -> list[Prediction]:
        """One :class:`Prediction` per text (texts longer than ``max_len`` tokens are cut, as in training)."""
        return to_predictions(self.probabilities(texts, batch_size), self.labels)

    def __call__(self, text: str) -> Prediction:
        return self.predict([text])[0]


__all__ = ["GPTClassifier", "ClassifyConfig", "ClassifyResult", "Classifier", "Prediction", "Base",
           "finetune_classifier", "build_classifier", "load_base", "load_classifier", "set_trainable",
           "parse_trainable", "last_real_positions", "end_token_id", "evaluate", "confusion_report", "format_report"]
