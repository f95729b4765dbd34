"""``tinygpt plot``: the loss curves of a run's ``log.jsonl`` as a PNG (needs matplotlib, the plot extra)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..figures import pyplot, save_png
from ..train import LOG_FILE, read_log


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="plot the loss curves of log.jsonl to a PNG (needs matplotlib)",
                       description="Plot the training-step loss and the eval losses (train and val) of a run.")
    p.add_argument("--out_dir", required=True, metavar="DIR", help="the training run (its log.jsonl)")
    p.add_argument("--output", metavar="PNG", help="image path (default OUT_DIR/loss.png)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    plt = pyplot()
    records = read_log(args.out_dir)
    steps = read_log(args.out_dir, kind="train")       # one batch's loss every log_interval: noisier
    if not records and not steps:
        raise FileNotFoundError(f"no records in {Path(args.out_dir) / LOG_FILE}; train first")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if steps:
        ax.plot([r["iter"] for r in steps], [r["loss"] for r in steps], lw=0.8, alpha=0.5, color="tab:gray",
                label="training step")
    its = [r["iter"] for r in records]
    ax.plot(its, [r["train_loss"] for r in records], marker="o", label="train (eval)")
    ax.plot(its, [r["val_loss"] for r in records], marker="o", label="val (eval)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.set_title(str(args.out_dir))
    ax.grid(alpha=0.3)
    ax.legend()
    out = save_png(fig, Path(args.output) if args.output else Path(args.out_dir) / "loss.png")
    print(f"wrote {out}")
    health = read_log(args.out_dir, kind="health")
    if health:
        out = draw_health(health, out.with_name("health.png"), title=str(args.out_dir))
        print(f"wrote {out}")
    return 0


def _layer(name: str) -> str:
    """``transformer.h.3.attn.c_attn.weight`` -> ``h.3``; embeddings and ln_f keep their own names."""
    parts = name.split(".")
    return f"h.{parts[2]}" if len(parts) > 2 and parts[1] == "h" else parts[1] if len(parts) > 1 else name


def draw_health(records: list[dict], path: Path, title: str = "") -> Path:
    """The health curves: update/weight ratio (log10) of every matrix against the 1e-3 guide, the
    gradient norm of every matrix, and per block the activation std and saturated fraction."""
    plt = pyplot()
    its = [r["iter"] for r in records]
    matrices = [n for n, v in records[0]["params"].items() if len(v["shape"]) == 2]
    layers = sorted({_layer(n) for n in matrices})
    colors = {name: plt.cm.viridis(i / max(1, len(layers) - 1)) for i, name in enumerate(layers)}
    styles = {"c_attn": "-", "c_proj": "--", "c_fc": ":", "wte": "-.", "wpe": "-."}
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax_u, ax_g, ax_s, ax_sat = axes.flat
    for n in matrices:
        kind = n.split(".")[-2]
        style = dict(color=colors[_layer(n)], ls=styles.get(kind, "-"), lw=1)
        ratio = [r["params"][n]["update_ratio_log10"] for r in records]
        ax_u.plot(its, [float("nan") if v is None else v for v in ratio], **style, label=n.replace("transformer.", ""))
        ax_g.plot(its, [r["params"][n]["grad_norm"] for r in records], **style)
    ax_u.axhline(-3.0, color="k", lw=1.5, ls="--")
    ax_u.text(its[0], -3.0, " 1e-3: the usual guide", va="bottom", fontsize=8)
    ax_u.set_title("update / weight ratio (log10, std of the applied update over std of the weight)")
    ax_g.set_title("gradient norm per matrix")
    ax_g.set_yscale("log")
    blocks = list(records[0]["activations"])
    for b in blocks:
        c = plt.cm.plasma(blocks.index(b) / max(1, len(blocks) - 1))
        for key, ls in (("gelu_input", "-"), ("residual", "--")):
            ax_s.plot(its, [r["activations"][b][key]["std"] for r in records], color=c, ls=ls,
                      label=f"{b.replace('transformer.', '')} {key}")
            ax_sat.plot(its, [r["activations"][b][key]["saturated"] for r in records], color=c, ls=ls)
    ax_s.set_title("activation std per block (solid: GELU input, dashed: residual stream)")
    ax_sat.set_title("fraction saturated, |x| > 3 (solid: GELU input, dashed: residual stream)")
    for ax in axes.flat:
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    ax_u.legend(fontsize=6, ncol=2, loc="upper right")
    ax_s.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_png(fig, path)
