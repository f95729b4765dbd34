"""The ``tinygpt`` command line: ``tinygpt <command> ...`` (also ``python -m gpt``).

Each sub-command lives in the module that owns it and registers itself through an
``add_parser(subparsers)`` function that sets ``func`` (called with the parsed args, returns an exit code).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# module path -> it has add_parser(subparsers)
_COMMAND_MODULES = [
    "tinytensor.gradcheck_cli",
    "tokenizer.cli",
    "gpt.commands",
    "gpt.finetune.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinygpt", description="train, sample and inspect tiny GPTs on a CPU")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod_name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name == mod_name:  # that part is not written yet
                continue
            raise
        mod.add_parser(sub)
    return parser


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
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"tinygpt: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
