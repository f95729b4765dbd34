"""The training loop: AdamW, warmup + cosine LR, clipping, accumulation, evals, checkpoints, resume.

The loop, nanoGPT's in outline::

    for it in range(start, max_iters):
        every eval_interval: estimate train/val loss, append to log.jsonl, write a checkpoint
        lr = cosine_lr(it); for each micro-step: x, y = batch(); loss = model(x, y) / accum; backward
        clip the global grad norm; AdamW step; zero grads; every log_interval: the loss to log.jsonl
    final eval + checkpoint at max_iters

Exactness: the training batches, each eval split's batches, and dropout each draw from their own seeded
``np.random.Generator``; all three states, AdamW's moments and steps, and the counters are checkpointed,
so N steps straight equal N/2 steps, stop, ``--resume``, N/2 steps bit for bit (at a fixed thread count:
set ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS`` the same for both runs).

Data parallel: under ``mpiexec -n N`` (see :mod:`gpt.distributed`) every rank draws the same global batch
and trains on its ``batch_size / N`` rows; the gradients are averaged by one allreduce after the last
micro-step, so clipping and the non-finite rule see the global gradient and the weights stay identical on
every rank (checked at each eval). Eval losses are averaged over the ranks; rank 0 alone writes the log and
the checkpoints and prints. A checkpoint resumes on any N that divides ``batch_size``.

Robustness: Ctrl-C finishes the current step, writes a checkpoint and returns. A step whose loss or
gradient norm is not finite is skipped without touching the weights or AdamW's state, counted and
reported; ``max_bad_steps`` such steps in a row stop the run (:class:`TrainingStopped`) with the last
good checkpoint left as it was. An eval whose loss is not finite, or a model with a non-finite weight, is
never checkpointed: the last good checkpoint stays, and messages name its iteration. A run starts by
deleting the temporary files a killed write left in ``out_dir``; a torn last line of ``log.jsonl`` is
skipped and reported.
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

from tinytensor.errors import ConfigError, FileFormatError, OutputError
from tinytensor.fileio import append_jsonl, atomic_write_text, read_text, remove_stale_temps

from . import health
from .checkpoint import holds_run, load_checkpoint, load_model, save_checkpoint
from .config import TrainConfig, field_types, make_config
from .distributed import RankMismatch, World, init as init_world
from .data import build_tokenizer, make_samplers, prepare_tokens, resolve_text, training_text
from .hf import load_pretrained_into
from .model import GPT
from .model_config import check_memory
from .windows import make_window_samplers, perplexity

__all__ = ["LOG_FILE", "TrainResult", "TrainingStopped", "estimate_loss", "evaluate", "get_lr", "read_log",
           "resume_config", "run_samplers", "train"]

LOG_FILE = "log.jsonl"
ETA_AFTER = 5          # print the ETA line after this many timed steps of a run

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
    run_s: float = 0.0     # seconds of this run alone (elapsed_s adds the earlier runs of a resumed one)


def get_lr(it: int, cfg: TrainConfig) -> float:
    """Warmup then cosine decay to ``min_lr`` at ``lr_decay_iters`` (or constant with ``decay_lr=False``)."""
    if not cfg.decay_lr:
        return cfg.learning_rate
    return optim.cosine_lr(it, cfg.learning_rate, cfg.min_lr, cfg.warmup_iters, cfg.lr_decay_iters)


def estimate_loss(model: GPT, samplers: dict, eval_iters: int, world: World | None = None) -> dict[str, float]:
    """Mean loss over ``eval_iters`` batches of each split, in eval mode, from the eval streams only.

    With a data-parallel ``world`` each rank scores its rows of every batch and the means are averaged.
    """
    world = world or World()
    model.eval()
    out = {}
    with tt.no_grad():
        for split in ("train", "val"):
            sampler = samplers[f"eval_{split}"]
            losses = [model(*world.shard(*sampler()))[1].item() for _ in range(eval_iters)]
            out[split] = world.mean(float(np.mean(losses)))
    model.train()
    return out


def evaluate(out_dir: str | os.PathLike, data: str | None = None, eval_iters: int | None = None,
             seed: int = 0) -> dict[str, float]:
    """Mean train and val loss of the latest checkpoint over ``eval_iters`` batches per split.

    The batches come from streams seeded with ``seed`` (not the training run's), so repeated calls give
    the same figures.
    """
    if eval_iters is not None and (isinstance(eval_iters, bool) or not isinstance(eval_iters, int) or eval_iters < 1):
        raise ConfigError(f"eval_iters must be an int >= 1 (or None for the run's), got {eval_iters!r}")
    model, tok, ckpt = load_model(out_dir)
    cfg = ckpt.state["train_config"]
    text_path = training_text(ckpt.state, data)
    train_ids, val_ids, _ = prepare_tokens(text_path, tok, os.path.join(out_dir, "data"))
    samplers = run_samplers(train_ids, val_ids, cfg["block_size"], cfg["batch_size"], cfg.get("stride", 0), seed)
    return estimate_loss(model, samplers, eval_iters or cfg["eval_iters"])


def run_samplers(train_ids: np.ndarray, val_ids: np.ndarray, block_size: int, batch_size: int, stride: int,
                 seed: int) -> dict:
    """A run's samplers: random windows (:func:`gpt.data.make_samplers`) when ``stride`` is 0, else the
    book's sliding windows ``stride`` apart in seeded epochs (:func:`gpt.windows.make_window_samplers`)."""
    if stride:
        return make_window_samplers(train_ids, val_ids, block_size, batch_size, stride, seed)
    return make_samplers(train_ids, val_ids, block_size, batch_size, seed)


def resume_config(out_dir: str | os.PathLike, overrides: dict | None = None) -> TrainConfig:
    """The checkpoint's TrainConfig with ``overrides`` applied (e.g. a longer ``max_iters``).

    Raises:
        ConfigError: an override of a key that fixes the model, tokenizer or batches.
    """
    state = load_checkpoint(out_dir, verify=False).state
    if not isinstance(state.get("train_config"), dict):
        raise FileFormatError(f"{out_dir}: the checkpoint's state.json has no train_config to resume with")
    saved = dict(state["train_config"])
    types = field_types()
    wrong = {k: v for k, v in saved.items() if k in types and not _has_type(v, types[k])}
    if wrong:
        raise FileFormatError(f"{out_dir}: the checkpoint's train_config has values of the wrong type: "
                              f"{str(wrong)[:160]}")
    overrides = dict(overrides or {})
    if "dataset" not in overrides:  # the recorded file, even when $TINYGPT_DATA is not set this time
        saved["dataset"] = str(training_text(state))
    changed = [k for k in _FIXED_ON_RESUME if k in overrides and overrides[k] != saved.get(k)]
    if changed:
        raise ConfigError(f"cannot change {changed} when resuming (the checkpoint has "
                          f"{ {k: saved.get(k) for k in changed} }); start a new run in another out_dir")
    saved.update(overrides)
    saved["out_dir"] = str(out_dir)
    return make_config(None, saved)


def _has_type(value, typ: type) -> bool:
    """Whether a value read from JSON is of a TrainConfig field's type (an int is a float; a bool is neither)."""
    if typ is bool or isinstance(value, bool):
        return typ is bool and isinstance(value, bool)
    return isinstance(value, (int, float) if typ is float else typ)


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


def _parse_log(p: Path) -> tuple[list[dict], str | None]:
    """``(records, torn last line or None)``; FileFormatError naming the file for a bad line elsewhere."""
    if not p.is_file():
        return [], None
    text = p.read_bytes().decode("utf-8", errors="replace")
    lines = text.split("\n")
    records, torn = [], None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or isinstance(rec.get("iter"), bool) or not isinstance(rec.get("iter"), int):
                raise ValueError("a record is a JSON object with an int 'iter'")
        except ValueError as e:
            if n == len(lines):        # the last line, without its newline: a write cut short by a crash
                torn = line
                break
            raise FileFormatError(f"{p}, line {n}: not a log record ({e})") from None
        records.append(rec)
    return records, torn


def read_log(out_dir: str | os.PathLike, kind: str | None = "eval") -> list[dict]:
    """The records of ``out_dir/log.jsonl`` of one ``kind`` (empty if there is no log); a torn last line
    is skipped.

    Two kinds of record, told apart by their ``"kind"``: ``"eval"`` (iter, train_loss, val_loss, train_ppl,
    val_ppl, lr, elapsed_s, tokens_per_s, skipped_steps; a log written before kinds existed has no kind and
    no perplexities) and
    ``"train"`` (iter, loss, lr, elapsed_s: one training step's loss every ``log_interval`` iterations);
    with ``health_interval`` set, also ``"health"`` (see :mod:`gpt.health`).

    Args:
        kind: ``"eval"`` (the default), ``"train"``, ``"health"``, or None for every record in file order.
    """
    records = _parse_log(Path(out_dir) / LOG_FILE)[0]
    return [r for r in records if kind is None or r.get("kind", "eval") == kind]


# ------------------------------------------------------------------------------------------ set-up
@dataclass
class _Run:
    """What the loop needs: the run's objects and its counters (what a checkpoint saves)."""
    cfg: TrainConfig
    out_dir: Path
    text_path: Path
    meta: dict
    tok: object
    model: GPT
    optimizer: optim.AdamW
    samplers: dict
    params: list
    counters: dict
    it: int
    last_saved_iter: int
    elapsed0: float
    world: World = dataclasses.field(default_factory=World)
    t0: float = dataclasses.field(default_factory=time.perf_counter)

    @property
    def log_path(self) -> Path:
        return self.out_dir / LOG_FILE

    def elapsed(self) -> float:
        """Seconds of training so far, earlier runs of a resumed one included."""
        return self.elapsed0 + time.perf_counter() - self.t0


def _setup(cfg: TrainConfig, resume: bool, overwrite: bool) -> _Run:
    """Find the data and the tokenizer, build (or restore) the model, optimizer and samplers, start the log."""
    started = time.time()
    out_dir = Path(cfg.out_dir)
    world = init_world()
    world.check_batch(cfg.batch_size)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"cannot write {out_dir}: it is a file, not a folder; give another out_dir")
    text_path = resolve_text(cfg.dataset)
    for folder in (out_dir, out_dir / "data"):   # temp files of writes a kill cut short (older than this run)
        for p in remove_stale_temps(folder, older_than=started):
            print(f"removed {p}, left by an interrupted write", file=sys.stderr)
    ckpt = None
    if resume:
        ckpt = load_checkpoint(out_dir)
        bad = [k for k, v in ckpt.model_state.items() if not np.isfinite(v).all()]
        if bad:
            raise FileFormatError(f"{ckpt.path / 'model.safetensors'} has non-finite weights ({', '.join(bad[:3])}"
                                  f"{', ...' if len(bad) > 3 else ''}); it cannot be resumed, start a new run")
        tok = ckpt.tokenizer
    else:
        if holds_run(out_dir) and not overwrite:
            raise ConfigError(f"{out_dir} already holds a checkpoint; continue it (--resume), start afresh in "
                              f"another out_dir, or replace it (--overwrite deletes its checkpoint.json and "
                              f"ckpt-* folders; from Python: resume=True or overwrite=True)")
        tok = build_tokenizer(cfg.tokenizer, read_text(text_path) if cfg.tokenizer == "char" else None)
    if not world.is_main:
        world.barrier()                  # rank 0 writes the token cache first; the others then read it
    train_ids, val_ids, meta = prepare_tokens(text_path, tok, out_dir / "data")
    if world.is_main:
        world.barrier()
    if ckpt is not None and ckpt.state.get("data", {}).get("text_sha256") not in (None, meta["text_sha256"]):
        raise ConfigError(f"{text_path} is not the text this run was trained on (sha256 differs); "
                          f"give the original file")

    check_memory(cfg.model_config(tok.vocab_size), copies=4)    # weights, grads, AdamW's two moments
    model = GPT(cfg.model_config(tok.vocab_size), seed=cfg.seed)
    if ckpt is None and cfg.init_from:
        load_pretrained_into(model, cfg.init_from)
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2))
    samplers = run_samplers(train_ids, val_ids, cfg.block_size, cfg.batch_size, cfg.stride, cfg.seed)
    # the val windows' last batch may be smaller (the book keeps it); each rank must still get equal rows
    tail = len(samplers["eval_val"].dataset) % cfg.batch_size if cfg.stride else 0
    if tail % world.size:
        raise ConfigError(f"the val split's last batch of {tail} windows does not divide over {world.size} "
                          f"ranks; pick a stride or batch_size that leaves a multiple of {world.size} windows over")
    counters = {"iter_num": 0, "elapsed_s": 0.0, "skipped_steps": 0, "last_eval_iter": -1,
                "train_loss": None, "val_loss": None, "train_tokens": 0, "train_seconds": 0.0}
    log_path = out_dir / LOG_FILE
    if ckpt is not None:
        ckpt.load_weights(model)
        ckpt.load_optimizer(optimizer)
        model.dropout_rng.bit_generator.state = ckpt.state["rng"]["dropout"]
        for name, sampler in samplers.items():
            sampler.set_state(ckpt.state["rng"][name])
        counters.update(ckpt.state["counters"])
        if world.is_main:
            # keep the log in step with the checkpoint: drop records written after it (the eval at the
            # checkpoint's iteration came before it, the training step of that iteration after it), and a
            # torn last line
            records, torn = _parse_log(log_path)
            if torn is not None:
                print(f"{log_path}: ignored a torn last line (a crash while writing it): {torn[:60]!r}",
                      file=sys.stderr)
            kept = [r for r in records if r["iter"] < ckpt.iter_num
                    or (r["iter"] == ckpt.iter_num and r.get("kind", "eval") == "eval")]
            atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in kept))
    elif world.is_main:
        atomic_write_text(log_path, "")
    it = int(counters["iter_num"])
    if world.rank > 0:  # each rank its own dropout masks (rank 0 keeps the one-process stream)
        model.dropout_rng.bit_generator.state = np.random.default_rng(
            [cfg.seed, 0xD809, world.rank, it]).bit_generator.state
    if not world.is_main:
        return _Run(cfg, out_dir, text_path, meta, tok, model, optimizer, samplers, list(model.parameters()),
                    counters, it, last_saved_iter=it if ckpt is not None else -1,
                    elapsed0=float(counters["elapsed_s"]), world=world)
    if world.size > 1:
        print(f"data parallel: {world.size} ranks x {cfg.batch_size // world.size} of the {cfg.batch_size} "
              f"sequences of each batch", flush=True)
    print(f"model: {model.num_params():,} parameters (without position embeddings); "
          f"vocab {tok.vocab_size}; {meta['n_train']:,} train / {meta['n_val']:,} val tokens; "
          f"{cfg.tokens_per_iter:,} tokens per iteration", flush=True)
    if resume:
        print(f"resuming from {ckpt.path} at iter {it}", flush=True)
    print(_schedule_line(cfg), flush=True)
    return _Run(cfg, out_dir, text_path, meta, tok, model, optimizer, samplers, list(model.parameters()),
                counters, it, last_saved_iter=it if ckpt is not None else -1,
                elapsed0=float(counters["elapsed_s"]), world=world)


def _schedule_line(cfg: TrainConfig) -> str:
    """The run's length and LR schedule in one line (``schedule: 50 iterations; lr 1.00e-03 after 5 ...``)."""
    if not cfg.decay_lr:
        return f"schedule: {cfg.max_iters} iterations; constant lr {cfg.learning_rate:.2e}"
    return (f"schedule: {cfg.max_iters} iterations; lr {cfg.learning_rate:.2e} after {cfg.warmup_iters} warm-up "
            f"iterations, cosine decay to {cfg.min_lr:.2e} at iter {cfg.lr_decay_iters}")


def _eta_line(s_per_iter: float, iters_left: int, evals_left: int, s_per_eval: float | None) -> str:
    """How long the rest of the run should take, from the timed iterations (and eval, if one was timed)."""
    total = s_per_iter * iters_left + (s_per_eval or 0.0) * evals_left
    evals = (f" + {evals_left} evals at {s_per_eval:.1f} s" if s_per_eval is not None
             else f" + {evals_left} evals (not timed yet)") if evals_left else ""
    return (f"eta: about {_duration(total)} to go: {iters_left} iterations at {s_per_iter:.3f} s{evals}")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _non_finite_weights(model: GPT) -> list[str]:
    return [name for name, p in model.named_parameters() if not np.isfinite(p.data).all()]


def _checkpoint(run: _Run) -> Path | None:
    """Save the run at its current iteration (model, AdamW, tokenizer, RNG states, counters).

    A model with a non-finite weight is not saved (None): it would replace the last good checkpoint.
    """
    if _non_finite_weights(run.model):
        return None
    run.counters.update(iter_num=run.it, elapsed_s=run.elapsed())
    state = {"train_config": dataclasses.asdict(run.cfg),
             "rng": {name: s.get_state() for name, s in run.samplers.items()},
             "counters": dict(run.counters),
             "data": {"source": str(run.text_path), "text_sha256": run.meta["text_sha256"]}}
    path = save_checkpoint(run.out_dir, run.it, run.model, run.optimizer, run.tok, state) \
        if run.world.is_main else run.out_dir
    run.last_saved_iter = run.it
    return path


# -------------------------------------------------------------------------------------------- step
@dataclass
class _Step:
    loss: float        # mean over the micro-steps, or the first non-finite one
    norm: float        # global gradient norm before clipping (nan if a loss was not finite)
    ok: bool           # the optimizer stepped


def _train_step(run: _Run, lr: float) -> _Step:
    """One optimizer step: ``gradient_accumulation_steps`` micro-batches, clipping, AdamW; skipped
    (weights and AdamW untouched) if a loss or the gradient norm is not finite. Data parallel: each rank
    takes its rows of every micro-batch; one allreduce after the last micro-step averages the gradients."""
    cfg, model, world = run.cfg, run.model, run.world
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    accum = cfg.gradient_accumulation_steps
    loss_sum, finite = 0.0, True
    for _ in range(accum):
        x, y = world.shard(*run.samplers["train"]())  # drawn even after a bad micro-step: same stream
        if not finite:
            continue
        _, loss = model(x, y)
        lv = loss.item()
        if not math.isfinite(lv):
            finite, loss_sum = False, lv
            continue
        loss_sum += lv
        (loss * (1.0 / accum) if accum > 1 else loss).backward()
    if world.size > 1:  # every rank must agree to step: one bad rank skips the step everywhere
        finite = world.mean(1.0 if finite else 0.0) == 1.0
        loss_sum = world.mean(loss_sum) if finite else float("nan")
        if finite:
            world.reduce_gradients(run.params)
    norm = optim.clip_grad_norm_(run.params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf) \
        if finite else float("nan")
    ok = finite and math.isfinite(norm)
    if ok:
        run.optimizer.step()
    model.zero_grad()
    return _Step(loss_sum / accum if finite else loss_sum, norm, ok)


def _eval(run: _Run, window: dict, bar: tqdm) -> None:
    """Estimate both losses, log them, write a checkpoint, and print a line."""
    cfg, it, world = run.cfg, run.it, run.world
    losses = estimate_loss(run.model, run.samplers, cfg.eval_iters, world)
    if not world.weights_agree(run.params):
        raise RankMismatch(f"iter {it}: the ranks' weights differ (they must stay bit-identical); the last "
                           f"checkpoint in {run.out_dir} (iter {run.last_saved_iter}) is intact")
    tps = window["tokens"] / window["seconds"] if window["seconds"] else None
    record = {"kind": "eval", "iter": it, "train_loss": losses["train"], "val_loss": losses["val"],
              "train_ppl": perplexity(losses["train"]), "val_ppl": perplexity(losses["val"]),
              "lr": get_lr(it, cfg), "elapsed_s": round(run.elapsed(), 3),
              "tokens_per_s": round(tps, 1) if tps else None,
              "skipped_steps": run.counters["skipped_steps"]}
    run.counters.update(last_eval_iter=it, train_loss=losses["train"], val_loss=losses["val"])
    if world.is_main:
        append_jsonl(run.log_path, record)
    finite = math.isfinite(losses["train"]) and math.isfinite(losses["val"])
    saved = _checkpoint(run) if finite else None
    if world.is_main:
        bar.write(f"iter {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f} "
                  f"(perplexity {record['train_ppl']:.2f} / {record['val_ppl']:.2f})"
                  + (f", {tps:,.0f} tokens/s" if tps else ""), file=sys.stdout)
        if saved is None:
            keep = (f"the last good checkpoint (iter {run.last_saved_iter}) is kept" if run.last_saved_iter >= 0
                    else "no checkpoint was written")
            bar.write(f"iter {it}: {'a non-finite loss' if not finite else 'non-finite weights'}: not "
                      f"checkpointed; {keep}", file=sys.stderr)


# -------------------------------------------------------------------------------------------- loop
def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False, progress: bool = True) -> TrainResult:
    """Train (or resume) a GPT as ``cfg`` says, writing checkpoints and ``log.jsonl`` to ``cfg.out_dir``.

    Args:
        cfg: the run's configuration (for a resume, see :func:`resume_config`).
        resume: continue from the latest checkpoint in ``cfg.out_dir``.
        overwrite: start afresh even if ``cfg.out_dir`` holds a checkpoint (its log is replaced).
        progress: show a tqdm progress bar on stderr.

    Raises:
        ConfigError: a fresh run into a folder with a checkpoint (without ``overwrite``), bad config.
        FileNotFoundError: no data, or no checkpoint to resume.
        TrainingStopped: ``max_bad_steps`` non-finite steps in a row.
    """
    run = _setup(cfg, resume, overwrite)
    counters = run.counters
    window = {"tokens": 0, "seconds": 0.0}          # training steps since the last eval
    bad_in_row = 0
    interactive = sys.stderr.isatty()
    main = run.world.is_main
    bar = tqdm(total=cfg.max_iters, initial=run.it, unit="it", dynamic_ncols=True, disable=not (progress and main),
               mininterval=0.5 if interactive else 5.0, file=sys.stderr)
    interrupted = False
    last_loss = float("nan")
    step_times: list[float] = []                    # this run's steps, for the ETA line
    eval_s = None                                   # seconds of this run's last eval
    try:
        with _Interrupt() as stop:
            while True:
                # data parallel: stop when any rank was interrupted, all at the same step
                if stop.requested if run.world.size == 1 else run.world.mean(float(stop.requested)) > 0:
                    interrupted = True
                    break
                if (run.it % cfg.eval_interval == 0 or run.it == cfg.max_iters) \
                        and counters["last_eval_iter"] != run.it:
                    t_eval = time.perf_counter()
                    _eval(run, window, bar)
                    eval_s = time.perf_counter() - t_eval
                    window = {"tokens": 0, "seconds": 0.0}
                if run.it >= cfg.max_iters:
                    break

                t0 = time.perf_counter()
                lr = get_lr(run.it, cfg)
                if cfg.health_interval and run.it % cfg.health_interval == 0:   # opt-in: see gpt.health
                    step, health_record = health.measure(run.model, run.optimizer, lambda: _train_step(run, lr),
                                                         run.it, lr)
                    if main and health_record is not None:
                        append_jsonl(run.log_path, health_record)
                else:
                    step = _train_step(run, lr)
                if step.ok:
                    bad_in_row = 0
                    last_loss = step.loss
                    if main and run.it % cfg.log_interval == 0:
                        append_jsonl(run.log_path, {"kind": "train", "iter": run.it, "loss": step.loss, "lr": lr,
                                                   "elapsed_s": round(run.elapsed(), 3)})
                else:
                    counters["skipped_steps"] += 1
                    bad_in_row += 1
                    what = f"loss {step.loss}" if not math.isfinite(step.loss) else f"gradient norm {step.norm}"
                    if main:
                        bar.write(f"iter {run.it}: non-finite {what}; step skipped "
                                  f"({bad_in_row} in a row, {counters['skipped_steps']} in all)", file=sys.stderr)
                run.it += 1
                dt = time.perf_counter() - t0
                window["tokens"] += cfg.tokens_per_iter
                window["seconds"] += dt
                counters["train_tokens"] += cfg.tokens_per_iter
                counters["train_seconds"] += dt
                step_times.append(dt)
                if main and len(step_times) == ETA_AFTER and run.it < cfg.max_iters:
                    # the first step is left out of the rate: it may compile kernels
                    evals_left = (cfg.max_iters // cfg.eval_interval - run.it // cfg.eval_interval
                                  + (cfg.max_iters % cfg.eval_interval != 0))
                    bar.write(_eta_line(float(np.mean(step_times[1:])), cfg.max_iters - run.it, evals_left,
                                        eval_s), file=sys.stdout)
                if bad_in_row >= cfg.max_bad_steps:
                    last = (f"the last good checkpoint is in {run.out_dir} (iter {run.last_saved_iter})"
                            if run.last_saved_iter >= 0 else "no checkpoint was written")
                    raise TrainingStopped(
                        f"stopped at iter {run.it}: {bad_in_row} steps in a row had a non-finite loss or "
                        f"gradient norm; {last}. Try a lower learning_rate or check the data, then resume.")
                bar.update(1)
                tps = window["tokens"] / window["seconds"]
                bar.set_postfix_str(f"loss {last_loss:.4f}, lr {lr:.2e}, {tps:,.0f} tok/s", refresh=False)
    finally:
        bar.close()
    path = _checkpoint(run) if interrupted and run.last_saved_iter != run.it else None
    if not main:
        pass
    elif path is not None:
        print(f"interrupted at iter {run.it}: checkpoint written to {path}; continue with --resume", flush=True)
    elif interrupted and run.last_saved_iter != run.it:
        print(f"interrupted at iter {run.it}: non-finite weights, not checkpointed; the last good checkpoint "
              f"(iter {run.last_saved_iter}) is in {run.out_dir}", flush=True)
    elif interrupted:
        print(f"interrupted at iter {run.it}; the checkpoint in {run.out_dir} is current; continue with --resume",
              flush=True)
    run.world.barrier()   # data parallel: every rank returns after rank 0 has written its last checkpoint
    total_tps = counters["train_tokens"] / counters["train_seconds"] if counters["train_seconds"] else 0.0
    return TrainResult(run.out_dir, run.it, counters["train_loss"], counters["val_loss"], run.elapsed(), total_tps,
                       counters["skipped_steps"], interrupted, time.perf_counter() - run.t0)
