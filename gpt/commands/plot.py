"""``tinygpt plot``: the loss curves of a run's ``log.jsonl`` as a PNG (needs matplotlib, the plot extra)."""
from __future__ import annotations

import argparse
import io
from pathlib import Path

from tinytensor.errors import UsageError
from tinytensor.fileio import atomic_write_bytes

from ..train import LOG_FILE, read_log


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="plot the loss curves of log.jsonl to a PNG (needs matplotlib)",
                       description="Plot the training-step loss and the eval losses (train and val) of a run.")
    p.add_argument("--out_dir", required=True, metavar="DIR", help="the training run (its log.jsonl)")
    p.add_argument("--output", metavar="PNG", help="image path (default OUT_DIR/loss.png)")
    p.set_defaults(func=run)


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (matplotlib is an optional dependency: imported here)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("plot needs matplotlib: pip install 'tinygpt[plot]'") from None
    return plt


def run(args: argparse.Namespace) -> int:
    plt = _pyplot()
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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    out = Path(args.output) if args.output else Path(args.out_dir) / "loss.png"
    atomic_write_bytes(out, buf.getvalue())
    print(f"wrote {out}")
    return 0
