"""Shared helpers for the benchmark modules: timing, machine description, JSON output, tables."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

from tinytensor.fileio import atomic_write_text


def time_fn(fn: Callable[[], object], *, min_time: float = 0.3, min_reps: int = 3, max_reps: int = 200,
            warmup: int = 1) -> dict:
    """Median wall time of ``fn()`` over repeated calls, warm-up calls excluded.

    Runs ``warmup`` untimed calls (the first call of a Numba kernel compiles or loads its cache), then
    at least ``min_reps`` timed calls and more until ``min_time`` seconds have been spent or
    ``max_reps`` calls made. Returns ``{"median": s, "min": s, "reps": n}``.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < min_time and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times), "min": min(times), "reps": len(times)}


def _cpu_times() -> tuple[int, int] | None:
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return idle, sum(fields)


def cpu_busy_fraction(interval: float = 0.25) -> float | None:
    """Fraction of all cores busy during ``interval`` seconds while this process sleeps, i.e. the load
    other processes put on the machine (Linux ``/proc/stat``; None elsewhere)."""
    a = _cpu_times()
    time.sleep(interval)
    b = _cpu_times()
    if a is None or b is None or b[1] == a[1]:
        return None
    return 1.0 - (b[0] - a[0]) / (b[1] - a[1])


def wait_for_idle(threshold: float = 0.15, max_wait: float = 10.0) -> float | None:
    """Sleep until other processes use less than ``threshold`` of the machine (or ``max_wait``
    seconds pass); returns the last busy fraction seen, for the report."""
    deadline = time.perf_counter() + max_wait
    busy = cpu_busy_fraction()
    while busy is not None and busy > threshold and time.perf_counter() < deadline:
        busy = cpu_busy_fraction(0.5)
    return busy


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """CPU, core count, load average and library versions, for the header of a benchmark report."""
    import numpy as np
    info = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    try:
        import numba
        info["numba"] = numba.__version__
        info["numba_threads"] = numba.get_num_threads()
    except ImportError:
        pass
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info["blas"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy has no mode="dicts"
        pass
    return info


def machine_line(info: dict | None = None) -> str:
    """One line such as ``AMD EPYC, 2 cores, numpy 2.4.6 (scipy-openblas 0.3.31), numba 0.68.1``."""
    info = info or machine_info()
    parts = [info.get("cpu", "?"), f"{info.get('cores')} cores", f"numpy {info.get('numpy')}"
             + (f" ({info['blas']})" if info.get("blas") else "")]
    if info.get("numba"):
        parts.append(f"numba {info['numba']} ({info.get('numba_threads')} threads)")
    if info.get("torch"):
        parts.append(f"torch {info['torch']}")
    if info.get("load_avg_1m") is not None:
        parts.append(f"load avg {info['load_avg_1m']}")
    return ", ".join(parts)


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON, atomically (``tinytensor.fileio``: readers see the old file or the new)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def format_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """A plain-text (also valid Markdown) table of ``rows``; ``columns`` is ``[(key, header), ...]``.

    Floats are printed with 3 significant digits (2 decimals under 10); None is printed as ``-``.
    """
    def fmt(v) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            if v != v:
                return "nan"
            return f"{v:.2f}" if abs(v) < 10 else f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}"
        return str(v)

    cells = [[fmt(r.get(k)) for k, _ in columns] for r in rows]
    heads = [h for _, h in columns]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(heads)]
    numeric = [all(_is_num(c[i]) for c in cells) for i in range(len(heads))]

    def line(vals):
        return "| " + " | ".join(v.rjust(w) if num else v.ljust(w)
                                 for v, w, num in zip(vals, widths, numeric)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line(heads), sep] + [line(c) for c in cells])


def _is_num(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return s in ("-", "nan")
