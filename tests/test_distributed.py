"""Data-parallel training (gpt.distributed): one process and two MPI ranks give the same run.

The 2-rank tests need the ``dist`` extra (mpi4py and an MPI runner: ``pip install ".[dist]"``); they skip
with that reason when it is missing. CI installs it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpt import train as train_mod
from gpt.config import make_config
from gpt.data import build_tokenizer, prepare_tokens
from gpt.distributed import World, find_mpiexec, launched_size
from gpt.train import read_log
from tinytensor.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).with_name("dist_worker.py")


needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or find_mpiexec() is None,
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
        cmd = [find_mpiexec(), "-n", str(ranks)] + cmd
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


# ------------------------------------------------------------------------------ tinygpt train under mpiexec
def _text(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away", "home"]
    path = tmp_path / "text.txt"
    path.write_text(" ".join(rng.choice(words, size=6000)) + "\n")
    return path


def _train(tmp_path: Path, out: str, ranks: int, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "gpt", "train", "--preset", "tiny", "--data", str(_text(tmp_path)),
           "--no_progress", "--out_dir", str(tmp_path / out), "--eval_interval=10", "--eval_iters=2",
           "--lr_decay_iters=20", "--warmup_iters=2", *extra]   # one schedule, whatever max_iters
    if ranks > 1:
        cmd = [find_mpiexec(), "-n", str(ranks)] + cmd
    return subprocess.run(cmd, env=_env(), timeout=600, cwd=tmp_path, capture_output=True, text=True)


def _losses(tmp_path: Path, out: str) -> np.ndarray:
    return np.array([[r["train_loss"], r["val_loss"]] for r in read_log(tmp_path / out)])   # the eval records


@needs_mpi
def test_train_on_two_ranks_logs_the_one_process_losses_and_resumes_on_another_n(tmp_path):
    one = _train(tmp_path, "one", 1, "--max_iters=20")
    two = _train(tmp_path, "two", 2, "--max_iters=20")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert "data parallel: 2 ranks x" in two.stdout
    assert two.stdout.count("done: iter 20") == 1          # rank 0 alone prints
    a, b = _losses(tmp_path, "one"), _losses(tmp_path, "two")
    assert a.shape == b.shape == (3, 2)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=0)
    # 10 iterations on 2 ranks, then resumed on 1 process: the same run
    half = _train(tmp_path, "half", 2, "--max_iters=10")
    assert half.returncode == 0, half.stderr
    rest = subprocess.run([sys.executable, "-m", "gpt", "train", "--resume", "--out_dir", str(tmp_path / "half"),
                           "--no_progress", "--max_iters=20"], env=_env(), timeout=600, cwd=tmp_path,
                          capture_output=True, text=True)
    assert rest.returncode == 0, rest.stderr
    np.testing.assert_allclose(_losses(tmp_path, "half"), a, rtol=1e-5, atol=0)


def _val_stride(tmp_path: Path, tail_parity: int, max_batches: int = 64) -> int:
    """A stride whose val windows (tiny preset: block 16, batch 8) fill at most ``max_batches`` batches and
    leave a last batch of a size with that parity (0: even and not empty, 1: odd)."""
    text = _text(tmp_path)
    _, val, _ = prepare_tokens(text, build_tokenizer("char", text.read_text()), tmp_path / "probe")
    for stride in range(1, 400):
        n = len(range(0, len(val) - 16, stride))
        if n <= 8 * max_batches and n % 8 and n % 8 % 2 == tail_parity:
            return stride
    raise AssertionError("no such stride")


@needs_mpi
def test_sliding_windows_on_two_ranks_log_the_one_process_losses(tmp_path):
    # --stride: the book's epoch loader; each rank still takes its rows of every global batch, the val
    # split's shorter last batch too (6 val batches are read in 3 evals of 2)
    stride = f"--stride={_val_stride(tmp_path, 0, max_batches=6)}"
    one = _train(tmp_path, "w1", 1, "--max_iters=20", stride)
    two = _train(tmp_path, "w2", 2, "--max_iters=20", stride)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    a, b = _losses(tmp_path, "w1"), _losses(tmp_path, "w2")
    assert a.shape == b.shape == (3, 2)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=0)
    assert a[-1, 0] < a[0, 0]                                  # and it trains


def test_a_val_tail_batch_that_does_not_divide_over_the_ranks_is_refused_before_training(tmp_path, monkeypatch):
    text, stride = _text(tmp_path), _val_stride(tmp_path, 1)
    two = World()
    two.size = 2                                           # rank 0 of 2, without MPI
    monkeypatch.setattr(train_mod, "init_world", lambda: two)
    cfg = make_config("tiny", {"dataset": str(text), "out_dir": str(tmp_path / "out"), "stride": stride})
    with pytest.raises(ConfigError, match=r"val split's last batch of \d+ windows does not divide over 2 ranks"):
        train_mod.train(cfg, progress=False)
    assert not (tmp_path / "out" / "checkpoint.json").exists()


@needs_mpi
def test_a_batch_that_does_not_divide_over_the_ranks_is_one_clear_line(tmp_path):
    r = _train(tmp_path, "odd", 2, "--max_iters=2", "--batch_size=3")
    assert r.returncode != 0
    # the line must reach the terminal before MPI_Abort ends the job (it was once lost in CI: exit 2, no output)
    assert "batch_size 3 does not divide over 2 ranks" in r.stderr, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr


def _rank_pids(marker: str) -> list[int]:
    """The python processes whose command line runs ``gpt train`` into ``marker`` (the ranks, not mpiexec)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in argv]
        if "gpt" in words and "train" in words and marker in words and "python" in Path(words[0]).name:
            pids.append(int(d.name))
    return pids


@needs_mpi
def test_a_killed_rank_ends_the_job_and_leaves_the_checkpoint_intact(tmp_path):
    import signal
    import time
    from gpt.checkpoint import load_checkpoint
    text = _text(tmp_path)
    cmd = [find_mpiexec(), "-n", "2", sys.executable, "-m", "gpt", "train", "--preset", "tiny", "--data", str(text),
           "--no_progress", "--out_dir", str(tmp_path / "k"), "--eval_interval=5", "--eval_iters=1",
           "--max_iters=100000"]
    proc = subprocess.Popen(cmd, env=_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "k" / "checkpoint.json").exists():   # wait for a first checkpoint
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[1]
            time.sleep(0.2)
        time.sleep(1.0)
        victims = _rank_pids(str(tmp_path / "k"))
        assert len(victims) == 2
        os.kill(max(victims), signal.SIGKILL)                      # one rank dies
        proc.wait(timeout=60)                                      # ... and the job ends, no hang
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    ckpt = load_checkpoint(tmp_path / "k")                         # verifies every file's sha256
    assert ckpt.iter_num % 5 == 0
