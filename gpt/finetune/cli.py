"""``tinygpt finetune <kind>``: one parent sub-command whose kinds come from :data:`gpt.finetune.KINDS`.

Each module in that list has ``add_kind(kinds)`` registering its kind on the ``finetune`` parser, and
may have ``add_toplevel(sub)`` for top-level commands that go with it (``tinygpt classify``), registered
here too. A kind module that is not written yet is skipped.
"""
from __future__ import annotations

import argparse
import importlib

from . import KINDS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune a GPT for a task: " + ", ".join(k.rsplit("_", 1)[-1] for k in KINDS),
                       description="Fine-tune a GPT (a GPT-2 folder, a tinygpt run, or from scratch) for a task.")
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    for mod_name in KINDS:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name == mod_name:
                continue
            raise
        mod.add_kind(kinds)
        if hasattr(mod, "add_toplevel"):
            mod.add_toplevel(sub)
