"""Data-parallel training (gpt.distributed): one process and two MPI ranks give the same run.

The 2-rank tests need the ``dist`` extra (mpi4py and an MPI runner: ``pip install ".[dist]"``); they skip
with that reason when it is missing. CI installs it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpt.distributed import World, launched_size
from tinytensor.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).with_name("dist_worker.py")


def _mpiexec() -> str | None:
    beside = Path(sys.executable).with_name("mpiexec")   # the mpich wheel puts it next to python
    return str(beside) if beside.exists() else shutil.which("mpiexec")


needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or _mpiexec() is None,
    reason='needs the dist extra (mpi4py + mpiexec): pip install ".[dist]"')


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_SIZE"):
        env.pop(var, None)
    return env


def _run(tmp_path: Path, ranks: int) -> dict:
    out = tmp_path / f"run{ranks}.json"
    cmd = [sys.executable, str(WORKER), str(out)]
    if ranks > 1:
        cmd = [_mpiexec(), "-n", str(ranks)] + cmd
    subprocess.run(cmd, check=True, env=_env(), timeout=600, cwd=tmp_path)
    return json.loads(out.read_text())


def test_one_process_world_is_the_identity():
    w = World()
    x = np.arange(12).reshape(4, 3)
    (xs,) = w.shard(x)
    assert xs is x or np.array_equal(xs, x)
    assert w.mean(2.5) == 2.5 and w.is_main and w.weights_agree([])
    assert launched_size() >= 1


def test_shard_takes_this_ranks_rows_and_refuses_an_uneven_batch():
    w = World()
    w.rank, w.size = 1, 2                 # rank 1 of 2, without MPI: shard is pure slicing
    x = np.arange(8).reshape(4, 2)
    (xs,) = w.shard(x)
    np.testing.assert_array_equal(xs, x[2:])
    with pytest.raises(ConfigError, match="batch_size 5 does not divide over 2 ranks"):
        w.check_batch(5)
    with pytest.raises(ConfigError, match="3 rows"):
        w.shard(np.zeros((3, 2)))


@needs_mpi
def test_two_ranks_match_one_process_and_keep_identical_weights(tmp_path):
    one = _run(tmp_path, 1)
    two = _run(tmp_path, 2)
    assert two["size"] == 2 and one["size"] == 1
    assert two["finite"] and one["finite"]
    # every rank holds bit-identical weights
    assert two["agree"] and len(set(two["crcs"])) == 1
    # the same global batches: losses equal up to float32 summation order (measured max 3.3e-8 relative)
    a, b = np.array(one["losses"]), np.array(two["losses"])
    assert len(a) == len(b) == 20
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=0)
    assert a[-1] < a[0]                   # and it trains
