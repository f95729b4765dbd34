"""``tinygpt tokenizer train|encode|decode``: train a BPE tokenizer, or encode/decode with a saved one.

Examples::

    tinygpt tokenizer train --input shakespeare.txt --vocab_size 4096 --out shakespeare.tok.json
    tinygpt tokenizer encode --tokenizer shakespeare.tok.json --text "To be, or not to be"
    echo "hello world" | tinygpt tokenizer encode --gpt2
    tinygpt tokenizer decode --gpt2 31373 995
"""
from __future__ import annotations

import argparse
import sys
import time

from tinytensor.errors import UsageError
from tinytensor.fileio import read_text

from .base import DisallowedSpecialError, Tokenizer, UnknownTokenError, load
from .bpe import PATTERNS, BPETokenizer
from .gpt2 import load_gpt2

__all__ = ["USER_ERRORS", "add_dash_aliases", "add_parser", "run_command"]

# What the command line prints as one line (exit code 2): a user mistake, or a path the user gave that
# cannot be read. Every other exception is a bug and keeps its traceback.
USER_ERRORS = (UsageError, FileNotFoundError, IsADirectoryError, PermissionError)


def run_command(args: argparse.Namespace, prog: str = "tinygpt") -> int:
    """Run the parsed command ``args.func(args)``; a user error becomes ``prog: error: ...`` and exit code 2.

    An unknown character's message is reworded: the library's advice (``unk_token=``) is no flag of the
    command line.
    """
    try:
        return int(args.func(args) or 0)
    except UnknownTokenError as e:
        print(f"{prog}: error: {e.token!r} at index {e.index} of the text is not in the tokenizer's vocabulary "
              f"of {e.vocab_size} (a char tokenizer knows only the characters of the text it was built from); "
              f"leave it out, or use a byte-level BPE tokenizer such as gpt2, which encodes any text",
              file=sys.stderr)
        return 2
    except USER_ERRORS as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2


def texts_or_stdin(texts: list[str] | None) -> list[str]:
    """The texts given as arguments, else the non-blank lines of stdin (one text each).

    Raises:
        UsageError: neither gives a text.
    """
    texts = texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise UsageError("no texts: pass them as arguments or on stdin, one per line")
    return texts


def add_dash_aliases(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Accept ``--out-dir`` for ``--out_dir`` (every option with ``_``) in ``parser`` and its sub-commands.

    Options are spelled with underscores, as the config keys (``--max_iters=...``) and nanoGPT spell them;
    the dashed spelling is a hidden alias. It is put in the parser's lookup table only, not in the option's
    own list of spellings, which is why ``--help`` and error messages show the one canonical spelling.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                add_dash_aliases(sub)
        for opt in action.option_strings:
            if opt.startswith("--") and "_" in opt:
                parser._option_string_actions.setdefault(opt.replace("_", "-"), action)
    return parser


def _tokenizer_from_args(args: argparse.Namespace) -> Tokenizer:
    if args.gpt2:
        return load_gpt2()
    if not args.tokenizer:
        raise UsageError("pass --tokenizer FILE (saved by 'tinygpt tokenizer train') or --gpt2")
    return load(args.tokenizer)


def _cmd_train(args: argparse.Namespace) -> int:
    text = read_text(args.input)
    tok = BPETokenizer(pattern=args.pattern)
    start = time.perf_counter()
    tok.train(text, args.vocab_size, special_tokens=args.special_token or None)
    seconds = time.perf_counter() - start
    tok.save(args.out)
    print(
        f"trained {len(tok.merges)} merges on {len(text.encode('utf-8')):,} bytes in {seconds:.2f} s; "
        f"vocab_size {tok.vocab_size}, special tokens {tok.special_tokens}; saved to {args.out}",
        file=sys.stderr,
    )
    return 0


def _cmd_encode(args: argparse.Namespace) -> int:
    tok = _tokenizer_from_args(args)
    if args.text is not None:
        text = args.text
    elif args.input is not None:
        text = read_text(args.input)
    else:
        text = sys.stdin.read()
    try:
        ids = tok.encode(text, allowed_special="all" if args.allow_special else frozenset())
    except DisallowedSpecialError as e:   # the library's advice names encode()'s arguments, not the flag
        raise UsageError(f"the text contains the special token {e.token!r} (at index {e.index}); pass "
                         f"--allow_special to encode special tokens as their ids") from None
    print(" ".join(map(str, ids)))
    return 0


def _parse_ids(words: list[str]) -> list[int]:
    ids = []
    for w in words:
        for part in w.replace(",", " ").replace("[", " ").replace("]", " ").split():
            try:
                ids.append(int(part))
            except ValueError:
                raise UsageError(f"token ids must be integers, got {part!r}") from None
    return ids


def _cmd_decode(args: argparse.Namespace) -> int:
    tok = _tokenizer_from_args(args)
    ids = _parse_ids(args.ids if args.ids else [sys.stdin.read()])
    text = tok.decode(ids)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _add_source(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--tokenizer", metavar="FILE", help="a tokenizer saved by 'tinygpt tokenizer train' (or save())")
    src.add_argument(
        "--gpt2", action="store_true", help="GPT-2's tokenizer from $TINYGPT_DATA/gpt2 (downloaded if absent)"
    )


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``tokenizer`` with sub-commands ``train``, ``encode``, ``decode`` to ``subparsers``."""
    parser = subparsers.add_parser("tokenizer", help="train a BPE tokenizer; encode and decode text")

    def _usage(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    parser.set_defaults(func=_usage)
    sub = parser.add_subparsers(dest="tokenizer_command", metavar="ACTION")

    p = sub.add_parser("train", help="train a byte-level BPE tokenizer on a text file")
    p.add_argument("--input", required=True, metavar="FILE", help="UTF-8 text to train on")
    p.add_argument("--vocab_size", required=True, type=int, metavar="N", help="ids in total, >= 256")
    p.add_argument(
        "--pattern",
        default="gpt4",
        metavar="NAME|REGEX",
        help=f"pre-split regex: one of {sorted(PATTERNS)} or a regex (default gpt4)",
    )
    p.add_argument(
        "--special_token",
        action="append",
        metavar="STR",
        help="add a special token (repeatable), e.g. --special_token '<|endoftext|>'",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="where to save the tokenizer (JSON)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("encode", help="print the ids of a text")
    _add_source(p)
    text = p.add_mutually_exclusive_group()
    text.add_argument("--text", help="the text to encode (default: read standard input)")
    text.add_argument("--input", metavar="FILE", help="a UTF-8 file to encode")
    p.add_argument(
        "--allow_special",
        action="store_true",
        help="encode special-token strings (e.g. <|endoftext|>) as their ids instead of failing",
    )
    p.set_defaults(func=_cmd_encode)

    p = sub.add_parser("decode", help="print the text of some ids")
    _add_source(p)
    p.add_argument("ids", nargs="*", help="token ids (default: read them from standard input)")
    p.set_defaults(func=_cmd_decode)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``tokenizer ...`` on its own (``python -m tokenizer.cli train ...``)."""
    top = argparse.ArgumentParser(prog="tinygpt")
    add_parser(top.add_subparsers(dest="command"))
    add_dash_aliases(top)
    args = top.parse_args(["tokenizer", *(sys.argv[1:] if argv is None else argv)])
    return run_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
