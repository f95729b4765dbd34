"""Data-parallel training over MPI: N processes, one model each, the same result as one process.

Launch with an MPI runner (the ``dist`` extra installs ``mpi4py`` and MPICH's ``mpiexec``)::

    mpiexec -n 2 tinygpt train --preset baby --out_dir out-baby-dp

How a step runs on N ranks (``batch_size`` B stays the GLOBAL batch; B must divide by N)::

    every rank draws the same global batch x, y [B, T] from the one seeded stream
    rank r keeps rows r*B/N : (r+1)*B/N                       (shard)
    forward + backward on its B/N rows (mean loss over them)  -> local gradients
    one Allreduce over ONE flat contiguous buffer holding every gradient, divided by N
                                                              (reduce_gradients: on the last micro-step only)
    clip the global norm, skip non-finite steps, AdamW: every rank computes the same thing on the
    same numbers, so the weights stay identical (checked by weights_agree at every eval)

Because the batch is drawn globally and each rank's rows are a fixed slice of it, N ranks x B/N see exactly
the batches 1 rank x B sees, and a checkpoint resumes on any N that divides B. The mean of the N equal-sized
local means is the global mean, so the averaged gradient is the one-process gradient up to the float32
summation order.

Only rank 0 writes logs and checkpoints and prints. If one rank dies, the others would wait in the next
collective forever; :func:`init` installs an exception hook that calls ``MPI_Abort`` so the whole job ends
(the runner kills the other ranks when one is killed by a signal). Checkpoints are written atomically by
rank 0, so the last one on disk stays intact.

mpi4py is imported only when the process was started by an MPI runner with more than one rank (or when
:func:`init` is called with ``force=True``): the library and the default tests never need it.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
import zlib
from pathlib import Path
from typing import Iterable

import numpy as np

from tinytensor.errors import ConfigError, UsageError

# environment variables by which MPI runners announce the job's size (MPICH/Hydra, Open MPI, Slurm's PMI)
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_SIZE")
# seconds between printing an error and MPI_Abort, so the runner forwards the line first (MPIWorld.abort)
_ABORT_GRACE_S = 0.5


def find_mpiexec() -> str | None:
    """The ``mpiexec`` to launch ranks with: the one beside this Python (the mpich wheel puts it in the
    venv's ``bin``, which need not be on PATH), else the first on PATH, else None."""
    beside = Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def launched_size() -> int:
    """The number of ranks an MPI runner started this process with (1 when not under a runner)."""
    for var in _SIZE_VARS:
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return 1


class RankMismatch(UsageError):
    """The ranks' weights differ (they must stay bit-identical): the run stops."""


class World:
    """One process: rank 0 of 1. Every collective is the identity, so the training loop has one code path."""

    rank = 0
    size = 1

    @property
    def is_main(self) -> bool:
        """True on the rank that prints, logs and writes checkpoints."""
        return self.rank == 0

    def shard(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        """This rank's rows of each global-batch array ``[B, ...]``: rows ``rank*B/N : (rank+1)*B/N``."""
        out = []
        for a in arrays:
            n = a.shape[0]
            if n % self.size:
                raise ConfigError(f"the batch of {n} rows does not divide over {self.size} ranks")
            share = n // self.size
            out.append(a[self.rank * share:(self.rank + 1) * share])
        return tuple(out)

    def check_batch(self, batch_size: int) -> None:
        """Refuse a global batch that does not divide over the ranks."""
        if batch_size % self.size:
            raise ConfigError(f"batch_size {batch_size} does not divide over {self.size} ranks; "
                              f"use a multiple of {self.size}")

    def reduce_gradients(self, params: Iterable) -> None:
        """Average the gradients over the ranks in place (one allreduce); identity for one process."""

    def mean(self, value: float) -> float:
        """The mean of a scalar over the ranks."""
        return float(value)

    def weights_agree(self, params: Iterable) -> bool:
        """True when every rank holds bit-identical weights (a CRC32 of each rank's bytes, compared)."""
        return True

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        return obj

    def barrier(self) -> None:
        """Wait for every rank."""

    def abort(self, code: int) -> None:
        """End every rank of the job with ``code`` (one rank alone must not leave the others waiting)."""


class MPIWorld(World):
    """``MPI.COMM_WORLD`` through mpi4py; see the module docstring for the step it implements."""

    def __init__(self, mpi):
        self.mpi = mpi                            # the mpi4py.MPI module (constants: IN_PLACE, SUM)
        comm = self.comm = mpi.COMM_WORLD
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._flat: np.ndarray | None = None      # the one gradient buffer, allocated on first use

    def reduce_gradients(self, params: Iterable) -> None:
        params = list(params)
        dtype = params[0].data.dtype
        total = sum(p.data.size for p in params)
        if self._flat is None or self._flat.size != total or self._flat.dtype != dtype:
            self._flat = np.empty(total, dtype=dtype)
        flat, start = self._flat, 0
        for p in params:                          # pack: a missing gradient counts as zeros
            n = p.data.size
            if p.grad is None:
                flat[start:start + n] = 0
            else:
                flat[start:start + n] = p.grad.reshape(-1)
            start += n
        self.comm.Allreduce(self.mpi.IN_PLACE, flat, op=self.mpi.SUM)
        flat *= 1.0 / self.size
        start = 0
        for p in params:                          # unpack: the gradients become views of the buffer
            n = p.data.size
            p.grad = flat[start:start + n].reshape(p.data.shape)
            start += n

    def mean(self, value: float) -> float:
        return float(self.comm.allreduce(float(value))) / self.size

    def weights_agree(self, params: Iterable) -> bool:
        crc = 0
        for p in params:
            crc = zlib.crc32(np.ascontiguousarray(p.data).view(np.uint8), crc)
        crcs = self.comm.allgather(crc)
        return all(c == crcs[0] for c in crcs)

    def broadcast(self, obj):
        return self.comm.bcast(obj, root=0)

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        # MPI_Abort tears the job down at once; the runner forwards each rank's output from a pipe on its own
        # clock, so an error line just printed can be lost (seen in CI: exit code 2, empty stderr). A short
        # pause on this error path lets it reach the terminal first.
        time.sleep(_ABORT_GRACE_S)
        self.comm.Abort(code)


_world: World | None = None


def _abort_on_exception(comm):
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        time.sleep(_ABORT_GRACE_S)
        comm.Abort(1)   # the other ranks would otherwise wait in their next collective forever

    sys.excepthook = hook


def init(force: bool = False) -> World:
    """The process's :class:`World`: MPI when started by a runner with >1 rank (or ``force``), else one process.

    Raises:
        UsageError: launched with several ranks but mpi4py is not installed (``pip install ".[dist]"``).
    """
    global _world
    if _world is not None:
        return _world
    if launched_size() <= 1 and not force:
        _world = World()
        return _world
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise UsageError(f"started with {launched_size()} MPI ranks but mpi4py is not installed ({e}); "
                         f"install the dist extra: pip install \".[dist]\"") from None
    comm = MPI.COMM_WORLD
    _world = MPIWorld(MPI) if comm.Get_size() > 1 else World()
    if _world.size > 1:
        _abort_on_exception(comm)
    return _world


def world() -> World:
    """The current :class:`World` (initialised on first use)."""
    return init()


def abort_if_parallel(code: int) -> None:
    """After a failed command (exit ``code``) in a data-parallel job: end every rank, so none waits forever."""
    if _world is not None and _world.size > 1:
        _world.abort(code)


__all__ = ["World", "MPIWorld", "RankMismatch", "abort_if_parallel", "find_mpiexec", "init", "world",
           "launched_size"]
