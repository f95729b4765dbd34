"""The "compiling kernels" notice on stderr while Numba compiles a kernel, and never when it loads one.

Numba compiles a kernel the first time it is called with new argument types, unless its machine code
is in the disk cache (``cache=True``; the directory is :func:`tinytensor.runtime.numba_cache_dir`).
How we know which of the two is about to happen: the dispatcher looks in the cache first and
broadcasts the event ``numba:compile`` (``numba.core.event``) only when it found nothing and compiles;
a cache load broadcasts nothing. So a listener on that event needs no guessing from timings.
Compiles nest (a kernel compiles the jitted functions it calls, and Numba its own helpers): only the
outermost compile is shown, and only when it is one of tinytensor's functions (a user's own
``@njit`` code compiles silently, as it would without tinytensor).

What is written:

* stderr is a terminal: ``tinytensor: | 2.1 s compiling kernels (first run only, cached in DIR)``, a
  turning spinner and the seconds spent compiling so far, redrawn in place while a compile runs and
  erased when it ends, so nothing is left on screen once the run is going;
* otherwise (a log file, a pipe, pytest's capture): that line once per process, without the spinner.

Silence it with ``TINYTENSOR_QUIET=1`` or ``tinytensor.runtime.set_quiet()`` (read at each compile).
"""
from __future__ import annotations

import os
import shutil
import sys
import threading
import time

import numba
from numba.core import event

from ... import runtime

_FRAMES = "|/-\\"
_TICK = 0.1  # seconds between spinner frames


def message() -> str:
    """``compiling kernels (first run only, cached in DIR)``, DIR with ``~`` for the home directory."""
    cache = numba.config.CACHE_DIR or runtime.numba_cache_dir()
    home = os.path.expanduser("~")
    if cache == home or cache.startswith(home + os.sep):
        cache = "~" + cache[len(home):]
    return f"compiling kernels (first run only, cached in {cache})"


def _is_ours(dispatcher) -> bool:
    py_func = getattr(dispatcher, "py_func", None)
    return (getattr(py_func, "__module__", None) or "").startswith("tinytensor.")


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


class CompileNotice(event.Listener):
    """Listener on ``numba:compile`` that writes the notice (see the module docstring).

    Attributes ``compiles`` and ``seconds`` count the outermost tinytensor compiles of this process and
    their wall time (quiet or not). Numba broadcasts compile events under its global compiler lock, so
    the events of different threads (the attention's helper threads) never interleave.
    """

    def __init__(self, stream=None):
        self.stream = stream  # None: whatever sys.stderr is when writing (pytest swaps it per test)
        self.compiles = 0
        self.seconds = 0.0
        self._depth = 0
        self._start: float | None = None  # start of the outermost tinytensor compile under way
        self._said = False  # the plain line was written (not a terminal)
        self._drawing = False  # the spinner line is on screen
        self._frame = 0
        self._out = None
        self._lock = threading.Lock()  # the spinner thread and the compiling thread both write the line
        self._wake = threading.Event()
        self._spinner: threading.Thread | None = None

    # ------------------------------------------------------------------------- numba's callbacks
    def on_start(self, ev) -> None:
        self._depth += 1
        if self._depth == 1 and _is_ours(ev.data.get("dispatcher")):
            self._start = time.perf_counter()
            if not runtime.quiet:
                self._show()

    def on_end(self, ev) -> None:
        self._depth -= 1
        if self._depth == 0 and self._start is not None:
            self.compiles += 1
            self.seconds += time.perf_counter() - self._start
            self._start = None
            with self._lock:
                if self._drawing:
                    self._drawing = False
                    self._write("\r\x1b[K")

    # ------------------------------------------------------------------------------- the output
    def _show(self) -> None:
        out = self.stream if self.stream is not None else sys.stderr
        if out is None:
            return
        if not _isatty(out):
            if not self._said:
                self._said = True
                self._out = out
                self._write(f"tinytensor: {message()}\n")
            return
        with self._lock:
            self._out = out
            self._drawing = True
            self._frame = 0
            self._draw()
            self._wake.set()
        if self._spinner is None or not self._spinner.is_alive():  # (a forked child has no thread)
            self._spinner = threading.Thread(target=self._spin, name="tinytensor-compile-notice", daemon=True)
            self._spinner.start()

    def _draw(self) -> None:
        """Redraw the spinner line (the caller holds ``_lock``)."""
        start = self._start
        secs = self.seconds + (time.perf_counter() - start if start is not None else 0.0)
        # spinner and seconds first: on a narrow terminal the cut falls in the directory name
        line = f"tinytensor: {_FRAMES[self._frame % len(_FRAMES)]} {secs:.1f} s {message()}"
        width = shutil.get_terminal_size().columns - 1  # a wrapped line could not be redrawn in place
        self._write("\r" + line[:max(width, 20)] + "\x1b[K")

    def _spin(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(_TICK)
            with self._lock:
                if self._drawing:
                    self._frame += 1
                    self._draw()
                else:
                    self._wake.clear()

    def _write(self, text: str) -> None:
        try:
            self._out.write(text)
            self._out.flush()
        except (AttributeError, ValueError, OSError):  # a closed or broken stream: the notice is optional
            pass


NOTICE = CompileNotice()
"""The process's listener (registered by :func:`install`)."""
_installed = False


def install() -> None:
    """Register :data:`NOTICE` on Numba's compile events (once; called when the kernels are imported)."""
    global _installed
    if not _installed:
        event.register("numba:compile", NOTICE)
        _installed = True
