"""The allocator policy of tinytensor/memory.py."""
import os
import subprocess
import sys

import pytest

from tinytensor import runtime

glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt policy is Linux/glibc only")


def _applied(env: dict) -> str:
    code = "import tinytensor, tinytensor.memory as m; print(m.applied_mb)"
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "TINYTENSOR_MALLOC"))}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True,
                          check=True).stdout.strip()


@glibc
def test_default_threshold_applied_at_import():
    assert _applied({}) == "256"


@glibc
def test_zero_disables_and_glibc_variables_win():
    assert _applied({"TINYTENSOR_MALLOC_THRESHOLD_MB": "0"}) == "0"
    assert _applied({"MALLOC_MMAP_THRESHOLD_": "131072"}) == "0"
    assert _applied({"TINYTENSOR_MALLOC_THRESHOLD_MB": "64"}) == "64"


@pytest.mark.parametrize("value", ["abc", "-1", "4096"])
def test_bad_values_raise(monkeypatch, value):
    monkeypatch.setenv("TINYTENSOR_MALLOC_THRESHOLD_MB", value)
    with pytest.raises(ValueError, match="TINYTENSOR_MALLOC_THRESHOLD_MB"):
        runtime.requested_malloc_mb()
