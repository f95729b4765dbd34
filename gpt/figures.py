"""Pictures of a run, with matplotlib (the ``plot`` extra): one place that imports pyplot and writes PNGs.

    fig, ax = pyplot().subplots()
    ...
    save_png(fig, "out/loss.png")      # atomic, like every output of the project
"""
from __future__ import annotations

import io
import os
from pathlib import Path

from tinytensor.errors import UsageError
from tinytensor.fileio import atomic_write_bytes

__all__ = ["pyplot", "save_png"]


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend; a one-line error when matplotlib is missing."""
    try:
        import matplotlib       # optional dependency: imported when a picture is asked for, not before
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("pictures need matplotlib: pip install 'tinygpt[plot]'") from None
    return plt


def save_png(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` as PNG (atomically) and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
