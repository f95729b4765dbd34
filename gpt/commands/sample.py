"""``tinygpt sample``: print a prompt and its sampled continuation, streaming, from a run or a GPT-2 folder."""
from __future__ import annotations

import argparse
import sys

from tinytensor.errors import UsageError
from tinytensor.fileio import read_text
from tokenizer.base import UnknownTokenError

from ..checkpoint import load_model
from ..sample import encode_prompt, sample_pretrained, write_samples


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="print a prompt and its sampled continuation, streaming")
    p.add_argument("--out_dir", metavar="DIR", help="the training run to sample from (its latest checkpoint)")
    prompt = p.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", default="\n", help="text to continue, or - to read it from standard input "
                        "(default: a newline)")
    prompt.add_argument("--prompt_file", metavar="PATH", help="read the prompt from this UTF-8 file")
    add_sampling_args(p)
    p.add_argument("--num_samples", type=int, default=1, help="how many samples, separated by a dashed line")
    p.add_argument("--pretrained", metavar="NAME|DIR", help="sample from GPT-2 by name (gpt2, gpt2-medium, "
                   "gpt2-large, gpt2-xl: downloaded once) or a GPT-2 folder (config.json + model.safetensors) "
                   "instead of a training run's --out_dir")
    p.add_argument("--tokenizer", metavar="PATH", help="with --pretrained: a folder with GPT-2's encoder.json + "
                   "vocab.bpe, a saved tokenizer JSON, or gpt2 (default: the model folder's own files)")
    p.set_defaults(func=run)


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    """The sampling knobs of ``sample`` (and ``chat``): length, temperature, top-k, top-p, seed."""
    p.add_argument("--max_new_tokens", type=int, default=500, help="tokens to sample per sample (default 500)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default 0.8)")
    p.add_argument("--top_k", type=int, default=None, help="sample only from the k most likely tokens (default: all)")
    p.add_argument("--top_p", type=float, default=None, help="sample only from the most likely tokens whose "
                   "probabilities add up to p, nucleus sampling (default: all)")
    p.add_argument("--seed", type=int, default=None, help="same seed, same text (default: random)")


def prompt_of(args: argparse.Namespace) -> str:
    """The prompt: ``--prompt_file``'s text, standard input for ``--prompt -``, else ``--prompt``."""
    if args.prompt_file is not None:
        return read_text(args.prompt_file)
    if args.prompt == "-":
        return sys.stdin.read()
    return args.prompt


def run(args: argparse.Namespace) -> int:
    if args.max_new_tokens < 0 or args.num_samples < 1:
        raise UsageError(f"--max_new_tokens must be >= 0 and --num_samples >= 1; got {args.max_new_tokens}, "
                         f"{args.num_samples}")
    if (args.out_dir is None) == (args.pretrained is None):
        raise UsageError("sample needs --out_dir (a training run) or --pretrained (a GPT-2 folder), one of them")
    prompt = prompt_of(args)
    knobs = (prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed, args.num_samples)
    if args.pretrained:
        sample_pretrained(args.pretrained, *knobs, tokenizer=args.tokenizer)
        return 0
    if args.tokenizer:
        raise UsageError("--tokenizer goes with --pretrained (a training run has its own tokenizer)")
    model, tok, _ = load_model(args.out_dir)
    try:
        encode_prompt(tok, prompt)           # before anything is printed: a prompt the run cannot encode
    except UnknownTokenError as e:
        code = f"U+{ord(e.token):04X}, " if len(e.token) == 1 else ""
        raise UsageError(f"the prompt's {e.token!r} ({code}at index {e.index}) is not among the {e.vocab_size} "
                         f"tokens of the run's tokenizer (a char tokenizer knows only the characters of the "
                         f"training text); leave it out of the prompt") from None
    write_samples(model, tok, *knobs)
    return 0
