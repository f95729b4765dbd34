"""``tinygpt sample``: print a prompt and its sampled continuation, streaming, from a run or a GPT-2 folder."""
from __future__ import annotations

import argparse

from tinytensor.errors import UsageError

from ..checkpoint import load_model
from ..sample import sample_pretrained, write_samples


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="print a prompt and its sampled continuation, streaming")
    p.add_argument("--out_dir", metavar="DIR")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--max_new_tokens", type=int, default=500)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default 0.8)")
    p.add_argument("--top_k", type=int, default=None)
    p.add_argument("--top_p", type=float, default=None)
    p.add_argument("--seed", type=int, default=None, help="same seed, same text (default: random)")
    p.add_argument("--num_samples", type=int, default=1)
    p.add_argument("--pretrained", metavar="NAME|DIR", help="sample from GPT-2 by name (gpt2, gpt2-medium, "
                   "gpt2-large, gpt2-xl: downloaded once) or a GPT-2 folder (config.json + model.safetensors) "
                   "instead of a training run's --out_dir")
    p.add_argument("--tokenizer", metavar="PATH", help="with --pretrained: a folder with GPT-2's encoder.json + "
                   "vocab.bpe, a saved tokenizer JSON, or gpt2 (default: the model folder's own files)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.max_new_tokens < 0 or args.num_samples < 1:
        raise UsageError(f"--max_new_tokens must be >= 0 and --num_samples >= 1; got {args.max_new_tokens}, "
                         f"{args.num_samples}")
    if (args.out_dir is None) == (args.pretrained is None):
        raise UsageError("sample needs --out_dir (a training run) or --pretrained (a GPT-2 folder), one of them")
    knobs = (args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed,
             args.num_samples)
    if args.pretrained:
        sample_pretrained(args.pretrained, *knobs, tokenizer=args.tokenizer)
        return 0
    if args.tokenizer:
        raise UsageError("--tokenizer goes with --pretrained (a training run has its own tokenizer)")
    model, tok, _ = load_model(args.out_dir)
    write_samples(model, tok, *knobs)
    return 0
