"""The ``tinygpt`` command line: ``tinygpt <command> ...`` (also ``python -m gpt``).

Each sub-command is one module with ``add_parser(subparsers)`` (which sets ``func=run``) and
``run(args) -> exit code``; :data:`COMMANDS` lists them in ``--help`` order. To add one, write the
module and add it to the list. Options are spelled with underscores (``--out_dir``, as the config keys);
the dashed spelling is accepted too (:func:`tokenizer.cli.add_dash_aliases`).

A user mistake (``tinytensor.errors.UsageError``, or a path that is missing or unreadable) is printed as
one line ``tinygpt: error: ...`` with exit code 2; any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse

from tinytensor import gradcheck_cli
from tokenizer import cli as tokenizer_cli

from . import __version__
from .bert import cli as bert_cli
from .commands import attention, demo, evaluate, graph, plot, sample, seq2seq, train
from .distributed import abort_if_parallel
from .finetune import cli as finetune_cli

COMMANDS = [gradcheck_cli, tokenizer_cli, train, sample, evaluate, plot, attention, graph, finetune_cli, bert_cli,
            seq2seq, demo]


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; every ``--an_option`` also answers to ``--an-option`` (a hidden alias)."""
    parser = argparse.ArgumentParser(prog="tinygpt", description="train, sample and inspect tiny GPTs on a CPU")
    parser.add_argument("--version", action="version", version=f"tinygpt {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return tokenizer_cli.add_dash_aliases(parser)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # only sub-commands that set accepts_overrides take --key=value extras (train's config keys)
        if not getattr(args, "accepts_overrides", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = extra
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    code = tokenizer_cli.run_command(args)
    if code == 2:   # a user error, maybe on one rank only (a full disk at rank 0): end the whole MPI job
        abort_if_parallel(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
