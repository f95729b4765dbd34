"""The "compiling kernels" notice: shown while Numba compiles, not when kernels load from the cache, silenced
by TINYTENSOR_QUIET=1 / runtime.set_quiet (tinytensor.kernels.numba._compile_notice)."""
import io
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

pytest.importorskip("numba")
from numba.core import event  # noqa: E402

from tinytensor import runtime  # noqa: E402
from tinytensor.kernels.numba import _compile_notice  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHRASE = "compiling kernels (first run only, cached in"


class Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def dispatcher(module: str):
    fn = lambda: None  # noqa: E731
    fn.__module__ = module
    return types.SimpleNamespace(py_func=fn)


def compile_events(notice, module="tinytensor.kernels.numba.rows", nested=1):
    """One outermost compile of a function of ``module`` with ``nested`` compiles inside it."""
    def ev(status, mod):
        notice.notify(event.Event("numba:compile", status, data={"dispatcher": dispatcher(mod)}))
    ev(event.EventStatus.START, module)
    for _ in range(nested):
        ev(event.EventStatus.START, "numba.np.arraymath")
        ev(event.EventStatus.END, "numba.np.arraymath")
    ev(event.EventStatus.END, module)


@pytest.fixture
def loud(monkeypatch):
    monkeypatch.setattr(runtime, "quiet", False)


def test_plain_stream_gets_one_line_per_process(loud):
    out = Stream(tty=False)
    notice = _compile_notice.CompileNotice(out)
    compile_events(notice)
    compile_events(notice, nested=3)
    assert out.getvalue().count("\n") == 1
    assert out.getvalue().startswith("tinytensor: " + PHRASE)
    assert notice.compiles == 2  # the outermost compiles only, not the nested ones


def test_other_peoples_compiles_are_silent(loud):
    out = Stream(tty=False)
    notice = _compile_notice.CompileNotice(out)
    compile_events(notice, module="my_project.fast")
    assert out.getvalue() == "" and notice.compiles == 0


def test_terminal_line_is_drawn_then_erased(loud):
    out = Stream(tty=True)
    notice = _compile_notice.CompileNotice(out)
    compile_events(notice)
    text = out.getvalue()
    assert text.startswith("\rtinytensor: ") and PHRASE in text
    assert text.endswith("\r\x1b[K")  # nothing left on screen after the compile


def test_set_quiet_silences(monkeypatch):
    monkeypatch.setattr(runtime, "quiet", False)
    runtime.set_quiet()
    assert runtime.quiet is True
    for tty in (False, True):
        out = Stream(tty)
        notice = _compile_notice.CompileNotice(out)
        compile_events(notice)
        assert out.getvalue() == "" and notice.compiles == 1
    runtime.set_quiet(False)
    assert runtime.quiet is False


# One small kernel (GELU, float32, 4 elements: the serial path) in a fresh process with its own Numba cache;
# it prints how many signatures its serial body and its parallel driver were compiled (or loaded) for.
SCRIPT = ("import numpy as np, tinytensor; from tinytensor.kernels.numba import gelu, pointwise as p; "
          "gelu(np.zeros(4, np.float32)); print(len(p._gelu_span.signatures), len(p._gelu_1d.signatures))")


def run(cache: Path, **env) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "TINYTENSOR_QUIET"}
    full.update(PYTHONPATH=str(ROOT), NUMBA_CACHE_DIR=str(cache), **env)
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=full, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    # lazy: only what the call used, the float32 body; no float64 variant, no parallel=True driver
    assert res.stdout.split() == ["1", "0"]
    return res


def test_notice_on_cold_cache_only(tmp_path):
    cold = run(tmp_path)
    assert cold.stderr.count(PHRASE) == 1 and tmp_path.name in cold.stderr  # (the path may be shown as ~/...)
    warm = run(tmp_path)  # the kernel now loads from tmp_path
    assert PHRASE not in warm.stderr


def test_quiet_env_on_cold_cache(tmp_path):
    res = run(tmp_path, TINYTENSOR_QUIET="1")
    assert PHRASE not in res.stderr
    assert any(tmp_path.rglob("*.nbi"))  # it did compile (and cache): the silence is the switch's doing
