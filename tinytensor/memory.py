"""Allocator policy: keep freed activation buffers in the heap instead of handing them back to the OS.

A training step allocates and frees the same few hundred arrays every time (activations, gradients,
temporaries), most of them between 100 KB and a few MB. glibc's malloc serves blocks above its *mmap
threshold* (128 KB at start) with a fresh ``mmap`` and returns them with ``munmap`` on free, and it trims
the top of the heap above its *trim threshold*. Either way the next step's array gets new pages from the
kernel, and each 4 KB page costs a page fault when first written: on the baby GPT that is a fifth of
the step (measured, 2-core EPYC: 118-131 ms/step with glibc's defaults, 94-101 ms with the thresholds
below, alternating runs).

The policy, applied by :func:`tinytensor.runtime.configure` when ``tinytensor`` is imported, on Linux with glibc only: ``mallopt`` raises both
thresholds to ``TINYTENSOR_MALLOC_THRESHOLD_MB`` (default 256 MB), so blocks up to that size are reused
from the heap. The cost is that memory freed at the end of a step stays reserved by the process (peak
RSS is what the benchmarks report). ``TINYTENSOR_MALLOC_THRESHOLD_MB=0`` leaves malloc alone, and so do
glibc's own ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` when set: yours win.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1   # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3

applied_mb: int = 0
"""The threshold set at import, in MB (0: malloc left at its defaults)."""


def configure_malloc(mb: int) -> int:
    """Raise glibc's mmap and trim thresholds to ``mb`` MB (0: leave malloc alone); returns the threshold
    set, in MB (0 if none). Called by :func:`tinytensor.runtime.configure`, which reads the variables."""
    global applied_mb
    if mb == 0 or not sys.platform.startswith("linux"):
        return 0
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return 0
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    nbytes = mb * 1024 * 1024
    if mallopt(M_MMAP_THRESHOLD, nbytes) == 1 and mallopt(M_TRIM_THRESHOLD, nbytes) == 1:
        applied_mb = mb
    return applied_mb
