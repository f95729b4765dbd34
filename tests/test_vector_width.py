"""The kernels' vector width (tinytensor/runtime.py): 512-bit loops on an AVX-512 CPU by default, LLVM's own
choice with TINYTENSOR_VECTOR_BITS=256, and a NUMBA_CPU_FEATURES or NUMBA_CPU_NAME the user set always wins."""
import os
import subprocess
import sys

import pytest

from tinytensor import runtime

_OURS = ("NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME", "TINYTENSOR_VECTOR_BITS")


def _features(env: dict, numba_first: bool = False) -> str:
    """NUMBA_CPU_FEATURES and numba.config.CPU_FEATURES after ``import tinytensor`` in a fresh process."""
    code = ("import numba\n" if numba_first else "") + (
        "import os, tinytensor, numba\n"
        "print(repr(os.environ.get('NUMBA_CPU_FEATURES')), repr(numba.config.CPU_FEATURES))")
    full = {k: v for k, v in os.environ.items() if k not in _OURS}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(not runtime.cpu_has("avx512f"), reason="needs a CPU with AVX-512F")
@pytest.mark.parametrize("numba_first", [False, True])
def test_avx512_host_compiles_for_512_bits_whatever_the_import_order(numba_first):
    env_value, config_value = _features({}, numba_first).split(" ", 1)
    assert env_value == config_value and env_value.endswith(",-prefer-256-bit'")
    assert "+avx512f" in env_value


def test_256_bits_leaves_numbas_choice_and_the_users_setting_wins():
    assert _features({"TINYTENSOR_VECTOR_BITS": "256"}) == "None None"
    assert _features({"NUMBA_CPU_FEATURES": "+sse2"}) == "'+sse2' '+sse2'"
    assert "prefer-256-bit" not in _features({"NUMBA_CPU_NAME": "generic"})
    # numba imported first with NUMBA_CPU_NAME=generic keeps numba's own rule for it (features "", not the host's)
    assert _features({"NUMBA_CPU_NAME": "generic"}, numba_first=True) == "None ''"


def test_bad_vector_bits_is_a_value_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("TINYTENSOR_VECTOR_BITS", "1024")
    with pytest.raises(ValueError, match="TINYTENSOR_VECTOR_BITS must be 256 or 512, got '1024'"):
        runtime.requested_vector_bits()
    monkeypatch.setenv("TINYTENSOR_VECTOR_BITS", "256")
    assert runtime.requested_vector_bits() == 256 and runtime.numba_cpu_features() is None


def test_auto_keeps_the_numba_gemm_only_on_an_avx512_cpu(monkeypatch):
    # one probe (runtime.cpu_has) decides both the vector width and whether auto may pick the Numba GEMM
    from tinytensor import backend
    if backend.auto_choice().get("matmul") != "numba":
        pytest.skip("this checkout's auto.json does not pick the Numba GEMM")
    monkeypatch.setattr(runtime, "cpu_has", lambda flag: flag != "avx512f")
    assert backend.auto_choice()["matmul"] == "numpy"
    monkeypatch.setattr(runtime, "cpu_has", lambda flag: True)
    assert backend.auto_choice()["matmul"] == "numba"
