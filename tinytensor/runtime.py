"""Process-wide policy: threads, malloc, the Numba cache, debug checks, the compile notice. The only module
that reads os.environ.

:func:`configure` applies it, once, from ``tinytensor/__init__``; every other module asks the functions here.
Every variable is only a default: what you set in the environment yourself wins.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import sys

from . import memory

_numpy_was_loaded = "numpy" in sys.modules
_configured = False
debug = False
"""``TINYTENSOR_DEBUG=1``: every compiled kernel checks the preconditions of ``kernels.spec`` first."""
one_pool = False
"""Set by :func:`configure`: do the products run on the Numba GEMM, so that OpenMP's pool is the only
busy one and its workers may spin as long as libgomp's default (see :func:`configure`, "Threads")?"""
quiet = False
"""``TINYTENSOR_QUIET=1`` or :func:`set_quiet`: no "compiling kernels" notice on stderr."""


def _env_int(name: str, default: int, lo: int, hi: int) -> int:
    env = os.environ.get(name, "").strip()
    if not env:
        return default
    try:
        n = int(env)
    except ValueError:
        raise ValueError(f"{name}={env!r} is not an integer") from None
    if not lo <= n <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {n}")
    return n


def local_ranks() -> int:
    """How many MPI ranks an MPI runner started on this machine (1 outside a runner): MPICH's
    ``MPI_LOCALNRANKS``, Open MPI's ``OMPI_COMM_WORLD_LOCAL_SIZE``."""
    for var in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def requested_threads() -> int:
    """``TINYTENSOR_NUM_THREADS`` as an int (default: all cores, shared out among the MPI ranks of this
    machine, so ``mpiexec -n 2`` on 2 cores gives each rank 1 thread)."""
    return _env_int("TINYTENSOR_NUM_THREADS", max(1, (os.cpu_count() or 1) // local_ranks()), 1, 1 << 16)


def requested_malloc_mb() -> int:
    """``TINYTENSOR_MALLOC_THRESHOLD_MB`` as an int (default 256; 0 disables the policy)."""
    return _env_int("TINYTENSOR_MALLOC_THRESHOLD_MB", 256, 0, 2048)


def kernel_threads() -> int:
    """Threads for the Numba kernels (``TINYTENSOR_NUM_THREADS``, validated on every call)."""
    return requested_threads()


def requested_backend() -> str:
    """``TINYTENSOR_BACKEND`` (default ``"auto"``), lower-cased."""
    return os.environ.get("TINYTENSOR_BACKEND", "auto").strip().lower() or "auto"


OMP_SPIN = "10000"
"""``GOMP_SPINCOUNT`` set here when you set neither it nor ``OMP_WAIT_POLICY``: after a parallel loop the
OpenMP workers spin this many pause instructions (a fraction of a millisecond) before they sleep, so the
next loop of a burst (a decode step's 49 GEMVs, a training step's kernels) finds them awake, while a worker
left idle longer sleeps and gives its core back to OpenBLAS or another process."""


def omp_passive() -> bool:
    """Do OpenMP workers sleep as soon as a loop ends, or after a short spin (``GOMP_SPINCOUNT`` of at most
    :data:`OMP_SPIN`, the default set here)? False only when you asked for a longer spin or an active wait."""
    policy = os.environ.get("OMP_WAIT_POLICY", "").strip().upper()
    if policy in ("PASSIVE", "ACTIVE"):
        return policy == "PASSIVE"
    try:
        return int(os.environ.get("GOMP_SPINCOUNT", "300000")) <= int(OMP_SPIN)
    except ValueError:
        return False


def requested_vector_bits() -> int:
    """``TINYTENSOR_VECTOR_BITS``: 512 or 256 (default 512 on a CPU with AVX-512F, else 256); see
    :func:`numba_cpu_features`."""
    env = os.environ.get("TINYTENSOR_VECTOR_BITS", "").strip()
    if env:
        if env not in ("256", "512"):
            raise ValueError(f"TINYTENSOR_VECTOR_BITS must be 256 or 512, got {env!r}")
        return int(env)
    return 512 if cpu_has("avx512f") else 256


@functools.lru_cache(maxsize=None)
def cpu_has(flag: str) -> bool:
    """Is ``flag`` among the CPU flags of ``/proc/cpuinfo`` (False where the file does not exist)? The first
    CPU's line is read, not the file's one line per CPU, and once per flag: this runs at every import. The one
    CPU probe of the package: the vector width, :func:`gemm_on_numba` and ``backend.auto_choice`` ask it."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return flag in line.split()


AUTO_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels", "auto.json")
"""Written by ``python -m benchmarks.kernels --write-auto``: per kernel, the faster twin on that machine."""


def auto_file_choice():
    """The ``choice`` table of :data:`AUTO_FILE` as written, or None when the file is missing or unreadable.
    Read here, without NumPy, because :func:`configure` needs it before NumPy loads; ``backend.auto_choice``
    validates it."""
    try:
        with open(AUTO_FILE) as f:
            return json.load(f)["choice"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def gemm_on_numba() -> bool:
    """Will the requested backend run the products on the Numba GEMM: ``numba``, or ``auto`` whose table picks
    it for matmul, on a CPU with AVX-512F (the GEMM's micro-kernel; ``backend.auto_choice`` applies the same
    rule)?"""
    backend = requested_backend()
    if backend == "auto":
        choice = auto_file_choice()
        picks = isinstance(choice, dict) and choice.get("matmul") == "numba"
    else:
        picks = backend == "numba"
    return picks and cpu_has("avx512f")


def numba_cpu_features() -> str | None:
    """The feature string Numba should compile the kernels for, or None to leave Numba's own choice.

    LLVM tunes most AVX-512 cores with ``prefer-256-bit``: its auto-vectoriser then fills 256-bit
    registers, half of what the CPU has, in every plain loop (the row kernels, GELU, AdamW). With 512 vector
    bits this is the host's features (as Numba reads them) with that tuning turned off; the explicit
    512-bit GEMM micro-kernel (``kernels.numba.simd``) is the same either way."""
    if requested_vector_bits() != 512:
        return None
    try:
        import llvmlite.binding as llvm   # Numba's code generator (Numba imports it anyway)
        return llvm.get_host_cpu_features().flatten() + ",-prefer-256-bit"
    except Exception:  # no llvmlite, or a platform without the query: Numba's own choice
        return None


def kernel_source_hash() -> str:
    """A short sha256 of every Numba kernel source file (``tinytensor/kernels/numba/*.py``).

    subtle: Numba's cache checks only the source file of the function it compiled, not the helpers it
    inlined from other files (``_common.py``, ``simd.py``). Keying the default cache folder by all the
    kernel sources means an edit or an upgrade of any of them starts a fresh cache instead of loading
    stale machine code.
    """
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels", "numba")
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            h.update(name.encode())
            with open(os.path.join(folder, name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()[:12]


def numba_cache_dir() -> str:
    """``NUMBA_CACHE_DIR`` when you set it, else ``~/.cache/tinytensor/numba/<kernel_source_hash()>``."""
    return os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "tinytensor", "numba", kernel_source_hash())


def set_quiet(flag: bool = True) -> None:
    """Silence (or, with ``False``, restore) the "compiling kernels (first run only, ...)" notice that
    tinytensor writes on stderr while Numba compiles a kernel (``kernels.numba._compile_notice``);
    the same as ``TINYTENSOR_QUIET=1``."""
    global quiet
    quiet = bool(flag)


def _openblas():
    """The OpenBLAS NumPy loaded (found in this process's memory map), or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = {p for p in (line.split()[-1] for line in f)
                     if "openblas" in os.path.basename(p).lower() and ".so" in p}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def _restart_openblas(n: int) -> bool:
    """NumPy was imported before tinytensor, so OpenBLAS started its workers with the default spin
    timeout: re-read the environment and restart the workers with ours (exported OpenBLAS functions:
    ``openblas_read_env``, ``blas_thread_shutdown_``; the next threaded GEMM starts the new pool)."""
    lib = _openblas()
    if lib is None:
        return False
    try:
        read_env, shutdown = lib.openblas_read_env, lib.blas_thread_shutdown_
        set_threads = next(getattr(lib, s) for s in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                                                     "openblas_set_num_threads") if hasattr(lib, s))
    except (AttributeError, StopIteration):
        return False
    read_env()
    shutdown()
    set_threads.argtypes = (ctypes.c_int,)
    set_threads(n)
    return True


def configure() -> None:
    """Apply the process-wide policy once (called by ``tinytensor/__init__``; later calls do nothing).

    * **Threads.** ``TINYTENSOR_NUM_THREADS`` (default: all cores, divided by the MPI ranks started on this
      machine) for both pools, OpenBLAS (matmul) and
      Numba's OpenMP (the fused kernels). Both pools spin after work; on 2 cores a spinning BLAS worker
      takes the core the next Numba loop needs. OpenBLAS workers sleep right after a GEMM
      (``OPENBLAS_THREAD_TIMEOUT=4``, 2^4 cycles), with ``OPENBLAS_NUM_THREADS`` threads. OpenBLAS reads
      these when NumPy loads it; if NumPy was imported first, its worker pool is restarted under them, so
      the thread counts and the speed do not depend on the import order. The OpenMP spin depends on who
      does the products (:data:`one_pool`): where they run on the Numba GEMM (:func:`gemm_on_numba`), OpenBLAS's pool stays idle, and OpenMP's workers keep
      libgomp's own spin (``GOMP_SPINCOUNT`` unset: 300,000), so that a kernel launched after a GEMM finds
      them awake (waking sleeping workers cost 100-270 us per launch on the Intel Xeon of CI). Elsewhere
      OpenBLAS does the products and the OpenMP workers spin only briefly (``GOMP_SPINCOUNT``:
      :data:`OMP_SPIN`).
    * **malloc.** ``TINYTENSOR_MALLOC_THRESHOLD_MB`` (default 256, 0 off): see :mod:`tinytensor.memory`.
    * **Numba cache.** One location: ``NUMBA_CACHE_DIR`` when you set it, else
      ``~/.cache/tinytensor/numba/<hash of the kernel sources>`` (see :func:`kernel_source_hash`)
      (never inside the package, whichever directory you run from).
    * **Vector width.** On a CPU with AVX-512, the kernels' loops are compiled for 512-bit registers
      (``NUMBA_CPU_FEATURES``: the host's features without LLVM's ``prefer-256-bit`` tuning);
      ``TINYTENSOR_VECTOR_BITS=256`` keeps LLVM's choice, and a ``NUMBA_CPU_FEATURES`` or ``NUMBA_CPU_NAME``
      you set wins. Numba's cache keys its entries on the features, so the two widths never mix.
    * **Debug.** ``TINYTENSOR_DEBUG=1`` makes the backend check each kernel's preconditions
      (``tinytensor.kernels.spec``) before calling a compiled kernel.
    * **Quiet.** ``TINYTENSOR_QUIET=1`` (or :func:`set_quiet`) silences the notice on stderr while a
      kernel compiles (``tinytensor.kernels.numba._compile_notice``).
    """
    global _configured, debug, quiet, one_pool
    if _configured:
        return
    _configured = True
    n = str(requested_threads())
    on_numba = gemm_on_numba()
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ and not on_numba:
        os.environ["GOMP_SPINCOUNT"] = OMP_SPIN
    # a passive or short spin you set yourself keeps the products on OpenBLAS (the Numba GEMM needs awake workers)
    one_pool = on_numba and not omp_passive()
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", n)
    os.environ.setdefault("NUMBA_CACHE_DIR", numba_cache_dir())
    features = None
    if "NUMBA_CPU_FEATURES" not in os.environ and "NUMBA_CPU_NAME" not in os.environ:
        features = numba_cpu_features()
        if features:
            os.environ["NUMBA_CPU_FEATURES"] = features
    if "numba" in sys.modules:  # numba read its config before us (it compiles nothing at import)
        sys.modules["numba"].config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
        if features:  # only ours: what numba derived from the user's own settings stays
            sys.modules["numba"].config.CPU_FEATURES = features
    if _numpy_was_loaded:
        _restart_openblas(int(os.environ["OPENBLAS_NUM_THREADS"]))
    debug = os.environ.get("TINYTENSOR_DEBUG", "").strip() == "1"
    quiet = os.environ.get("TINYTENSOR_QUIET", "").strip() == "1"
    mb = requested_malloc_mb()
    if not ("MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ):
        memory.configure_malloc(mb)
