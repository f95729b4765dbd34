"""``tinygpt graph``: the backward graph of one block of a real GPT (a preset's shapes), as DOT, SVG or PNG."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import tinytensor as tt
from tinytensor.errors import ConfigError
from tinytensor.fileio import atomic_write_text

from ..config import PRESETS, make_config
from ..model import GPT


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("graph", help="draw the backward graph of one GPT block (DOT; SVG/PNG need Graphviz)")
    p.add_argument("--preset", default="baby", choices=sorted(PRESETS), help="the model's shape (default baby)")
    p.add_argument("--block", type=int, default=0, help="which block, 0 .. n_layer-1 (default 0)")
    p.add_argument("--highlight", metavar="PARAM", default=None,
                   help="colour the path from this parameter to the output, e.g. transformer.h.0.attn.c_attn.weight")
    p.add_argument("--format", choices=("dot", "svg", "png"), default=None,
                   help="output format (default: from --out's suffix, else dot)")
    p.add_argument("--out", metavar="PATH", default=None, help="output file (default block<N>.<format>)")
    p.set_defaults(func=run)


def block_graph(preset: str, block: int, batch: int = 2) -> tuple[tt.Graph, GPT]:
    """The graph of ``mean(block(x))`` for one block of ``preset``'s GPT, after a backward (gradient shapes)."""
    cfg = make_config(preset)
    model = GPT(cfg.model_config(65), seed=0)       # 65: Tiny Shakespeare's characters
    if not 0 <= block < cfg.n_layer:
        raise ConfigError(f"block must be in [0, {cfg.n_layer}) for the {preset} preset, got {block}")
    x = tt.tensor(np.random.default_rng(0).normal(size=(batch, cfg.block_size, cfg.n_embd)).astype(np.float32))
    out = model.transformer.h[block](x).mean()      # [B, T, C] -> scalar: the block's own graph only
    out.backward(retain_graph=True)                 # fills .grad: edges show gradient shapes
    return tt.graph(out, model), model


def run(args: argparse.Namespace) -> int:
    fmt = args.format or (Path(args.out).suffix.lstrip(".") if args.out else "dot")
    if fmt not in ("dot", "svg", "png"):
        raise ConfigError(f"unknown graph format {fmt!r}; use dot, svg or png")
    out = Path(args.out) if args.out else Path(f"block{args.block}.{fmt}")
    g, _ = block_graph(args.preset, args.block)
    if fmt == "dot":
        atomic_write_text(out, g.to_dot(args.highlight))
    else:
        g.render(out, args.highlight)
    print(g.summary().splitlines()[0])
    print(f"wrote {out}")
    return 0
