"""The OpenMP wait policy of tinytensor/runtime.py: a short spin by default, what the user set wins."""
import os
import subprocess
import sys

from tinytensor import runtime


def _policy(env: dict) -> list[str]:
    code = ("import os, tinytensor, tinytensor.runtime as r; "
            "print(os.environ.get('OMP_WAIT_POLICY', '-'), os.environ.get('GOMP_SPINCOUNT', '-'), r.omp_passive())")
    full = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True,
                          check=True).stdout.split()


def test_default_is_a_short_spin():
    assert _policy({}) == ["-", runtime.OMP_SPIN, "True"]


def test_the_users_policy_wins():
    assert _policy({"OMP_WAIT_POLICY": "ACTIVE"}) == ["ACTIVE", "-", "False"]
    assert _policy({"OMP_WAIT_POLICY": "passive"}) == ["passive", "-", "True"]
    assert _policy({"GOMP_SPINCOUNT": "300000"}) == ["-", "300000", "False"]
