"""GEMM benchmark: the Numba GEMM against OpenBLAS (``np.matmul``) in the same process, interleaved.

    python -m benchmarks.gemm [--rounds 31] [--json PATH] [--dtype float32] [--clock wall|cpu]
    TINYTENSOR_NUM_THREADS=1 python -m benchmarks.gemm ...   # one thread for both sides

Shapes: square 256, 512, 1024 and the baby GPT's products (batch 12 x block 64 = 768 rows, width 128,
vocab 65) in the layouts its training step passes (``benchmarks.gemm_in_step``): the attention and MLP
projections ``x @ W.T`` (768x128 @ 128x384, 768x128 @ 128x512, 768x512 @ 512x128, ``W.T`` a transposed
view), the head (768x128 @ 128x65) and a weight gradient ``dy.T @ x`` (128x768 @ 768x384, ``dy.T`` a
transposed view).

Each round times both implementations back to back (alternating which goes first), each over enough
calls to last ~20 ms; the figures are medians over the rounds, the ratio the median of the per-round
ratios, so load from other processes hits both sides alike; the "best" columns are the fastest of 101
alternating single calls each, close to what an idle machine shows. ``--clock cpu`` times with the process's
CPU time instead of the wall clock: on a machine busy with other work it measures the cycles each side
spends rather than its share of the cores (meaningful with one thread; with several, wall time is the
figure that counts). Peak: the micro-kernel on data in L1, one
copy per thread (what the FMA units deliver), measured in the same run. The machine's busy fraction
(other processes) is recorded before and after, and before each shape (after waiting up to 15 s for
it to drop below 25%).
"""
from __future__ import annotations

import argparse
import statistics
import time

import tinytensor  # noqa: F401  (first: its thread policy must be set before NumPy loads OpenBLAS)

import numba  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks._util import (cpu_busy_fraction, format_table, machine_info, machine_line, wait_for_idle,  # noqa: E402
                              write_json_atomic)
from tinytensor.kernels.numba import gemm  # noqa: E402

SHAPES = [  # (name, M, K, N, A a transposed view?, B a transposed view?)
    ("square 256", 256, 256, 256, False, False),
    ("square 512", 512, 512, 512, False, False),
    ("square 1024", 1024, 1024, 1024, False, False),
    ("qkv x@W.T", 768, 128, 384, False, True),
    ("mlp fc x@W.T", 768, 128, 512, False, True),
    ("mlp proj x@W.T", 768, 512, 128, False, True),
    ("head x@W.T", 768, 128, 65, False, True),
    ("dW dy.T@x", 128, 768, 384, True, False),
]


def peak(dtype=np.float32, kc: int = 256, reps: int = 2000) -> dict:
    """GFLOP/s of the GEMM's micro-kernel on packed panels that stay in L1, on one thread and on all
    (the best of 51 runs of ~1 ms, so that it reads the hardware, not the load)."""
    dt = np.dtype(dtype)
    mr, nr = gemm._GEOMETRY[dt][0], gemm._NR[dt]
    uk = gemm._ukernel

    @numba.njit(parallel=True, cache=False)
    def run(a, b, c, nthreads, reps):
        for t in numba.prange(nthreads):
            for r in range(reps):
                uk(a[t], 0, 1, mr, b[t], 0, kc, c[t], 0, nr, r == 0)

    out = {}
    for name, n in (("one_thread", 1), ("all_threads", numba.get_num_threads())):
        a = np.ones((n, kc * mr), dt)
        b = np.ones((n, kc * nr), dt)
        c = np.zeros((n, mr * nr), dt)
        run(a, b, c, n, 10)
        best = min(_per_call(lambda: run(a, b, c, n, reps), 1) for _ in range(51))
        if _clock is time.process_time:
            best /= n  # CPU time adds up over the threads
        out[name] = 2 * mr * nr * kc * reps * n / best / 1e9
    return out


_clock = time.perf_counter


def _per_call(fn, n: int) -> float:
    t0 = _clock()
    for _ in range(n):
        fn()
    return (_clock() - t0) / n


def compare(a: np.ndarray, b: np.ndarray, rounds: int, best_reps: int = 101, target_s: float = 0.02) -> dict:
    """Interleaved medians of ``gemm.matmul`` and ``np.matmul`` on ``a @ b`` and their best single calls,
    with a value check."""
    ours = gemm.matmul(a, b)
    ref = np.matmul(a, b)
    err = float(np.abs(ours.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))
    one = _per_call(lambda: np.matmul(a, b), 3)
    n = max(1, int(target_s / max(one, 1e-7)))
    t_ours, t_blas, ratio = [], [], []
    for r in range(rounds):
        if r % 2:
            tb = _per_call(lambda: np.matmul(a, b), n)
            to = _per_call(lambda: gemm.matmul(a, b), n)
        else:
            to = _per_call(lambda: gemm.matmul(a, b), n)
            tb = _per_call(lambda: np.matmul(a, b), n)
        t_ours.append(to)
        t_blas.append(tb)
        ratio.append(tb / to)
    # best case: the fastest of many alternating single calls (what an idle machine would show)
    best_o, best_b = float("inf"), float("inf")
    for _ in range(best_reps):
        best_o = min(best_o, _per_call(lambda: gemm.matmul(a, b), 1))
        best_b = min(best_b, _per_call(lambda: np.matmul(a, b), 1))
    return {"ours_s": statistics.median(t_ours), "blas_s": statistics.median(t_blas),
            "best_ours_s": best_o, "best_blas_s": best_b, "best_ratio": best_b / best_o,
            "ratio": statistics.median(ratio), "ratio_min": min(ratio), "ratio_max": max(ratio),
            "calls_per_round": n, "rel_err": err}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=31, help="interleaved rounds per shape (default 31)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--only", default=None, help="comma-separated substrings of shape names to run")
    ap.add_argument("--clock", default="wall", choices=("wall", "cpu"),
                    help="wall clock (default) or this process's CPU time (a busy machine, one thread)")
    ap.add_argument("--json", default=None, help="write the results here (atomically)")
    args = ap.parse_args(argv)
    global _clock
    _clock = time.perf_counter if args.clock == "wall" else time.process_time
    dt = np.dtype(args.dtype)
    info = machine_info()
    busy_before = cpu_busy_fraction(0.5)
    pk = peak(dt)
    rng = np.random.default_rng(0)
    rows = []
    for name, M, K, N, trans_a, trans_b in SHAPES:
        if args.only and not any(s in name for s in args.only.split(",")):
            continue
        a = (rng.standard_normal((K, M)).astype(dt).T if trans_a else rng.standard_normal((M, K)).astype(dt))
        b = (rng.standard_normal((N, K)).astype(dt).T if trans_b else rng.standard_normal((K, N)).astype(dt))
        busy = wait_for_idle(0.25, 15.0)
        res = compare(a, b, args.rounds)
        flops = 2 * M * N * K
        rows.append({"shape": name, "M": M, "K": K, "N": N, "a_layout": "T view" if trans_a else "C",
                     "b_layout": "T view" if trans_b else "C",
                     "ours_gflops": flops / res["ours_s"] / 1e9, "blas_gflops": flops / res["blas_s"] / 1e9,
                     "pct_peak": 100 * flops / res["ours_s"] / 1e9 / pk["all_threads"], "busy_before": busy,
                     "best_ours_gflops": flops / res["best_ours_s"] / 1e9,
                     "best_blas_gflops": flops / res["best_blas_s"] / 1e9,
                     "best_pct_peak": 100 * flops / res["best_ours_s"] / 1e9 / pk["all_threads"], **res})
        print(f"{name}: ours {rows[-1]['ours_gflops']:.0f} GF/s, BLAS {rows[-1]['blas_gflops']:.0f} GF/s, "
              f"ratio {res['ratio']:.2f} ({res['ratio_min']:.2f}-{res['ratio_max']:.2f})", flush=True)
    busy_after = cpu_busy_fraction(0.5)
    print(machine_line(info))
    print(f"peak (micro-kernel in L1): {pk['one_thread']:.0f} GF/s one thread, {pk['all_threads']:.0f} GF/s "
          f"{numba.get_num_threads()} threads; other processes' load {busy_before} before, {busy_after} after")
    print(format_table(rows, [("shape", "shape"), ("M", "M"), ("K", "K"), ("N", "N"), ("a_layout", "A"), ("b_layout", "B"),
                              ("ours_gflops", "ours GF/s"), ("blas_gflops", "BLAS GF/s"), ("ratio", "ours/BLAS"),
                              ("ratio_min", "min"), ("ratio_max", "max"), ("pct_peak", "% peak"), ("best_ours_gflops", "best ours"),
                              ("best_blas_gflops", "best BLAS"), ("best_ratio", "best ratio"),
                              ("best_pct_peak", "best % peak"), ("busy_before", "busy")]))
    if args.json:
        write_json_atomic(args.json, {"machine": info, "dtype": dt.name, "threads": numba.get_num_threads(),
                                      "clock": args.clock, "rounds": args.rounds,
                                      "peak_gflops": pk, "busy_before": busy_before, "busy_after": busy_after,
                                      "geometry": {"MR": gemm._GEOMETRY[dt][0], "NR": gemm._NR[dt],
                                                   "KC": gemm._KC[dt], "MC": gemm._MC, "NC": gemm._NC},
                                      "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
