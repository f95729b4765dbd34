"""``tinygpt finetune instruct`` and ``tinygpt chat``.

    tinygpt finetune instruct --data instruction-data.json --init_from gpt2-medium --out_dir out-instruct
    tinygpt chat --out_dir out-instruct                  # type an instruction, get the answer streamed
    tinygpt chat --out_dir out-instruct --prompt "Name the capital of France." --temperature 0

Registration (:mod:`gpt.finetune.cli`, through :data:`gpt.finetune.KINDS`): :func:`add_kind` adds
``instruct`` to the ``tinygpt finetune`` parent's sub-parsers and :func:`add_toplevel` (:func:`add_chat`)
adds ``chat`` to the top level.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

import numpy as np

from ..checkpoint import load_model
from ..commands.sample import add_sampling_args
from .instruct import InstructConfig, finetune_instruct, stream_response

_HELP = {
    "init_from": "GPT-2 by name (gpt2-medium, ...), a GPT-2 folder (config.json + model.safetensors) or a "
                 "tinygpt run's out_dir",
    "data": "the instruction JSON: a list of {instruction, input, output}",
    "out_dir": "where the checkpoint, log.jsonl, test-responses.json and instruct.json go",
    "tokenizer": "with a GPT-2 folder: its tokenizer (folder, saved JSON, or gpt2)",
    "epochs": "passes over the train split",
    "max_steps": "stop after N optimizer steps (0: all epochs)",
    "batch_size": "entries per batch",
    "learning_rate": "AdamW learning rate (constant, the book's)",
    "weight_decay": "AdamW weight decay",
    "beta1": "AdamW beta1",
    "beta2": "AdamW beta2",
    "dropout": "dropout probability while training",
    "seed": "seed of the shuffling and of sampled test answers",
    "eval_interval": "steps between train/val loss estimates in log.jsonl",
    "eval_batches": "batches per train/val loss estimate",
    "max_new_tokens": "longest test answer in tokens",
    "mask_prompt": "ignore the instruction/input targets while training (the book's exercise 7.2)",
    "truncate": "cut entries longer than the context instead of failing",
    "temperature": "sampling temperature of the test answers (0: greedy)",
    "test_limit": "answer only the first N test entries (0: all)",
    "judge": "a command that reads {instruction, input, reference, response} as JSON on stdin and prints 0-100",
}


def add_kind(kinds: argparse._SubParsersAction) -> None:
    """Add ``instruct`` to the sub-parsers of ``tinygpt finetune``."""
    p = kinds.add_parser("instruct", help="instruction fine-tuning (Alpaca prompts), then answer the test split",
                         description=__doc__.split("\n\n")[0])
    hints = typing.get_type_hints(InstructConfig)
    for f in dataclasses.fields(InstructConfig):
        typ = hints[f.name]
        typ = next((a for a in typing.get_args(typ) if a is not type(None)), typ)
        required = f.default is dataclasses.MISSING
        if typ is bool:
            p.add_argument(f"--{f.name}", action="store_true", help=_HELP[f.name])
        else:
            p.add_argument(f"--{f.name}", type=typ, required=required, default=None if required else f.default,
                           metavar=f.name.upper() if required else None,
                           help=_HELP[f.name] + ("" if required or f.default is None else f" (default {f.default})"))
    p.set_defaults(func=run_finetune_instruct)


def add_chat(sub: argparse._SubParsersAction) -> None:
    """Add ``chat`` to the top-level sub-parsers."""
    p = sub.add_parser("chat", help="answer instructions typed at a prompt with an instruction-tuned run",
                       description="Answer each instruction typed at the prompt (an empty line or Ctrl-D ends), "
                                   "streaming, until end-of-text. With --prompt, answer that one and exit.")
    p.add_argument("--out_dir", required=True, metavar="DIR", help="a `tinygpt finetune instruct` run")
    p.add_argument("--prompt", default="", help="answer this one instruction and exit (default: ask at a prompt)")
    p.add_argument("--input", default="", help="with --prompt: the entry's input text")
    add_sampling_args(p)
    p.set_defaults(func=run_chat)


add_toplevel = add_chat    # gpt.finetune.cli registers a kind's top-level commands through this name


def run_finetune_instruct(args: argparse.Namespace) -> int:
    names = [f.name for f in dataclasses.fields(InstructConfig)]
    cfg = InstructConfig(**{k: getattr(args, k) for k in names})
    finetune_instruct(cfg, progress=lambda s: print(s, flush=True))
    return 0


def run_chat(args: argparse.Namespace) -> int:
    model, tok, _ = load_model(args.out_dir)
    rng = np.random.default_rng(args.seed)                # one stream for the whole conversation
    kw = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
              top_p=args.top_p, seed=rng)

    def answer(instruction: str, text_input: str = "") -> None:
        for piece in stream_response(model, tok, {"instruction": instruction, "input": text_input, "output": ""},
                                     **kw):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()

    if args.prompt.strip():
        answer(args.prompt.strip(), args.input)
        return 0
    while True:
        try:
            line = input("instruction> ")
        except EOFError:
            break
        if not line.strip():
            break
        answer(line.strip())
    return 0


__all__ = ["add_kind", "add_chat", "add_toplevel", "run_finetune_instruct", "run_chat"]
