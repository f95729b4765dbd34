"""The OpenMP wait policy of tinytensor/runtime.py: libgomp's own spin when the products run on the Numba GEMM
(AVX-512, backend auto or numba: ``runtime.one_pool``), a short spin where OpenBLAS does them; what the user set
wins."""
import os
import subprocess
import sys

import pytest

from tinytensor import runtime

_OURS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "TINYTENSOR_BACKEND")


def _policy(env: dict) -> list[str]:
    code = ("import os, tinytensor, tinytensor.runtime as r; "
            "print(os.environ.get('OMP_WAIT_POLICY', '-'), os.environ.get('GOMP_SPINCOUNT', '-'), r.omp_passive(), "
            "r.one_pool)")
    full = {k: v for k, v in os.environ.items() if k not in _OURS}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True,
                          check=True).stdout.split()


def test_a_short_spin_where_openblas_does_the_products():
    assert _policy({"TINYTENSOR_BACKEND": "numpy"}) == ["-", runtime.OMP_SPIN, "True", "False"]


@pytest.mark.skipif(not runtime.cpu_has("avx512f"), reason="needs a CPU with AVX-512F (the Numba GEMM's kernel)")
def test_one_pool_keeps_libgomps_spin_on_avx512():
    assert _policy({}) == ["-", "-", "False", "True"]
    assert _policy({"TINYTENSOR_BACKEND": "numba"}) == ["-", "-", "False", "True"]


@pytest.mark.skipif(runtime.cpu_has("avx512f"), reason="this CPU has AVX-512F: the products run on the Numba GEMM")
def test_a_short_spin_by_default_without_avx512():
    assert _policy({}) == ["-", runtime.OMP_SPIN, "True", "False"]


def test_the_users_policy_wins():
    # a passive or short spin of the user's own turns the one pool off: the products go back to OpenBLAS
    assert _policy({"OMP_WAIT_POLICY": "ACTIVE"})[:3] == ["ACTIVE", "-", "False"]
    assert _policy({"OMP_WAIT_POLICY": "passive"}) == ["passive", "-", "True", "False"]
    assert _policy({"GOMP_SPINCOUNT": "300000"})[:3] == ["-", "300000", "False"]
    assert _policy({"GOMP_SPINCOUNT": "0"}) == ["-", "0", "True", "False"]


@pytest.mark.parametrize("backend, table, avx512, want", [
    ("auto", {"matmul": "numba"}, True, True),
    ("auto", {"matmul": "numpy"}, True, False),     # a table measured elsewhere: OpenBLAS does the products
    ("auto", None, True, False),                    # no table: auto's default is BLAS for matmul
    ("numba", None, True, True),
    ("numba", None, False, False),                  # no AVX-512: the GEMM's micro-kernel is not used for products
    ("numpy", {"matmul": "numba"}, True, False),
])
def test_the_one_pool_follows_who_does_the_products(monkeypatch, backend, table, avx512, want):
    monkeypatch.setenv("TINYTENSOR_BACKEND", backend)
    monkeypatch.setattr(runtime, "auto_file_choice", lambda: table)
    monkeypatch.setattr(runtime, "cpu_has", lambda flag: avx512)
    assert runtime.gemm_on_numba() is want
