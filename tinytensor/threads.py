"""Helper threads: :func:`run_parts` runs independent parts of a kernel on Python threads at once.

(The thread *policy*, both pools' thread counts and wait behaviour, is :func:`tinytensor.runtime.configure`.)
It is for chains of calls that are each too small for OpenBLAS's threads (the attention of small heads:
two GEMMs and a compiled row pass per group of heads, ``kernels.numba.attention_blas._head_groups``);
NumPy's matmul and the ``nogil`` Numba kernels release the GIL, so the parts run at the same time.
"""
from __future__ import annotations

import os
import queue
import threading


# ------------------------------------------------------------------------------ helper threads
# A few kernels (the attention of small heads) are a chain of small BLAS calls and compiled row passes
# per (batch, head). Each call is too small for OpenBLAS's own threads, so the chain is run for
# different heads on different threads at once: NumPy's matmul and the ``nogil`` Numba kernels release
# the GIL, so the parts do run in parallel. The helper threads are created on first use and then wait
# on a queue (a hand-off costs ~20-30 us on the 2-core EPYC).
_helpers: list["_Helper"] = []
_helpers_busy = threading.Lock()


class _Helper(threading.Thread):
    def __init__(self):
        super().__init__(name=f"tinytensor-helper-{len(_helpers)}", daemon=True)
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.start()

    def run(self) -> None:
        while True:
            fn, part, done = self.tasks.get()
            try:
                fn(part)
            except BaseException as e:  # handed to the caller, which re-raises it
                done.put(e)
            else:
                done.put(None)


def run_parts(fn, parts: list) -> None:
    """Call ``fn(part)`` for every part, the first on this thread and the others on helper threads at
    the same time; return when all are done, re-raising the first exception.

    The parts must be independent (they write disjoint memory). Runs them one after the other when
    there is one part, or when another thread is using the helpers already (no nesting, no deadlock).
    """
    if len(parts) <= 1 or not _helpers_busy.acquire(blocking=False):
        for part in parts:
            fn(part)
        return
    try:
        while len(_helpers) < len(parts) - 1:
            _helpers.append(_Helper())
        done: queue.SimpleQueue = queue.SimpleQueue()
        for helper, part in zip(_helpers, parts[1:]):
            helper.tasks.put((fn, part, done))
        error = None
        try:
            fn(parts[0])
        except BaseException as e:
            error = e
        for _ in parts[1:]:  # wait for every helper even after an error: they use the caller's arrays
            e = done.get()
            error = error or e
        if error is not None:
            raise error
    finally:
        _helpers_busy.release()


def _forget_helpers() -> None:
    """In a forked child the helper threads do not exist: start afresh."""
    global _helpers_busy
    _helpers.clear()
    _helpers_busy = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)
