"""``tinygpt attention``: a trained model's attention weights for a prompt, as a heat-map PNG (the plot extra)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..attention_maps import attention_weights, draw_attention
from ..checkpoint import load_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attention", help="draw one layer's attention weights for a prompt (needs matplotlib)")
    p.add_argument("--out_dir", required=True, metavar="DIR", help="the training run (its latest checkpoint)")
    p.add_argument("--prompt", required=True, help="the text whose tokens label both axes")
    p.add_argument("--layer", type=int, default=0, help="which block, 0 .. n_layer-1 (default 0)")
    p.add_argument("--head", type=int, default=None, help="one head (default: a grid of every head)")
    p.add_argument("--output", metavar="PNG", help="image path (default OUT_DIR/attention-L<layer>.png)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model, tok, ckpt = load_model(args.out_dir)
    weights, labels = attention_weights(model, tok, args.prompt, args.layer)
    out = Path(args.output) if args.output else Path(args.out_dir) / f"attention-L{args.layer}.png"
    title = f"{args.out_dir} (iter {ckpt.iter_num}), layer {args.layer}"
    draw_attention(weights, labels, out, args.head, title)
    print(f"wrote {out}")
    return 0
