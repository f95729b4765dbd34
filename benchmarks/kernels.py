"""Kernel benchmark: Numba kernels vs the NumPy reference, BLAS and PyTorch, at the models' shapes.

    python -m benchmarks.kernels [--quick | --rows] [--json PATH] [--write-auto] [--threads N]

For every kernel, at the shapes of the baby GPT (4 layers, 4 heads, 128 wide, block 64, batch 12,
vocab 65) and of the shakespeare-char GPT (6/6/384, block 256, batch 64), plus square GEMMs
128-2048, it prints the median time (warm-up excluded), GFLOP/s (GEMM, attention) or GB/s (the
memory-bound kernels: bytes of the inputs read plus the outputs written), the speed-up over the NumPy
reference, over PyTorch's op (when torch is installed; same thread count), and the percentage of
this machine's peak measured in the same run: an sgemm peak (``np.matmul``, 2048^2 float32) and a
STREAM-triad bandwidth (Numba, ``a = b + s * c`` over arrays far larger than the caches). It also
measures the Numba first-call compile time (fresh cache directory) and the warm cache load, and
prints which implementation ``auto`` should pick per kernel. ``--quick`` keeps the baby shapes and the
GEMMs up to 1024 (under 2 minutes); ``--json`` writes everything atomically.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import tinytensor  # noqa: F401  (first: its thread policy must be set before NumPy loads OpenBLAS)

import numpy as np  # noqa: E402

from benchmarks._util import (cpu_busy_fraction, format_table, machine_info, machine_line, time_fn,
                              wait_for_idle, write_json_atomic)

BABY = dict(name="baby", n_layer=4, n_head=4, n_embd=128, block=64, batch=12, vocab=65)
SHAKES = dict(name="shakespeare", n_layer=6, n_head=6, n_embd=384, block=256, batch=64, vocab=65)


# ------------------------------------------------------------------------------ machine probes
def sgemm_peak(n: int = 2048, reps: int = 5) -> float:
    """Best GFLOP/s of ``np.matmul`` on ``n x n`` float32 (OpenBLAS, all its threads)."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    np.matmul(a, a)
    best = min(_wall(lambda: np.matmul(a, a)) for _ in range(reps))
    return 2 * n**3 / best / 1e9


def _wall(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def triad_bandwidth(n: int, reps: int = 5) -> float:
    """STREAM triad ``a = b + 3 c`` over float64 arrays of ``n`` elements with Numba ``prange``: best
    GB/s counting 24 bytes per element (2 reads, 1 write, as STREAM does)."""
    import numba

    @numba.njit(parallel=True, cache=False)
    def triad(a, b, c, s):
        for i in numba.prange(a.shape[0]):
            a[i] = b[i] + s * c[i]

    a, b, c = np.zeros(n), np.ones(n), np.full(n, 2.0)
    triad(a, b, c, 3.0)
    best = min(_wall(lambda: triad(a, b, c, 3.0)) for _ in range(reps))
    return 24 * n / best / 1e9


def compile_times(quick: bool) -> dict:
    """First-call compile time of the Numba kernels in a fresh cache directory (a subprocess), then
    the warm start from that cache. ``quick`` compiles only ``softmax`` float32 (one kernel)."""
    code_full = ("import time; t=time.perf_counter(); from tinytensor.kernels import numba as k; "
                 "k.warmup(); print(time.perf_counter()-t)")
    code_one = ("import time, numpy as np; t=time.perf_counter(); from tinytensor.kernels import numba as k; "
                "k.softmax(np.ones((4, 4), np.float32), True); print(time.perf_counter()-t)")
    code = code_one if quick else code_full
    out = {"what": "softmax float32 only" if quick else "warmup(): every kernel, float32 + float64"}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for key in ("cold_s", "warm_cache_s"):
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
            out[key] = float(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None
            if r.returncode != 0:
                out["error"] = r.stderr[-500:]
                break
    return out


# ----------------------------------------------------------------------------------- the cases
class Case:
    """One benchmark row: a kernel at one shape with its numba / reference / torch callables."""

    def __init__(self, kernel, label, model, nb, ref, torch_fn=None, flops=None, nbytes=None, blas=None):
        self.kernel, self.label, self.model = kernel, label, model
        self.nb, self.ref, self.torch_fn, self.blas = nb, ref, torch_fn, blas
        self.flops, self.nbytes = flops, nbytes


def _nbytes(*arrays) -> int:
    return int(sum(a.nbytes for a in arrays))


def gemm_cases(cfg, nc, nr, tt, rng, dt=np.float32):
    """The GEMMs of one training step of ``cfg``: forward projections, the attention batched
    products and the weight-gradient products (a transposed operand, as the backward passes it)."""
    B, T, C, H, V = cfg["batch"], cfg["block"], cfg["n_embd"], cfg["n_head"], cfg["vocab"]
    N, hd = B * T, C // H
    specs = [
        ("x @ W_qkv", (N, C), (C, 3 * C), False),
        ("x @ W_fc", (N, C), (C, 4 * C), False),
        ("h @ W_proj", (N, 4 * C), (4 * C, C), False),
        ("x @ W_lm", (N, C), (C, V), False),
        ("x^T @ dy (dW_qkv)", (C, N), (N, 3 * C), True),
        ("q @ k^T", (B * H, T, hd), (B * H, hd, T), False),
        ("att @ v", (B * H, T, T), (B * H, T, hd), False),
    ]
    cases = []
    for label, sa, sb, transposed_a in specs:
        if transposed_a:
            a = rng.standard_normal(sa[::-1]).astype(dt).T
        else:
            a = rng.standard_normal(sa).astype(dt)
        b = rng.standard_normal(sb).astype(dt)
        m, k = sa[-2:]
        n = sb[-1]
        batch = sa[0] if len(sa) == 3 else 1
        shape = f"{'%dx' % batch if batch > 1 else ''}{m}x{k} @ {k}x{n}"
        flops = 2 * batch * m * k * n
        t_fn = None
        if tt is not None:
            ta, tb = tt.from_numpy(np.ascontiguousarray(a) if not transposed_a else a), tt.from_numpy(b)
            t_fn = (lambda ta=ta, tb=tb: tt.matmul(ta, tb))
        cases.append(Case("matmul", f"{label} {shape}", cfg["name"], lambda a=a, b=b: nc.matmul(a, b),
                          lambda a=a, b=b: nr.matmul(a, b), t_fn, flops=flops))
    return cases


def square_cases(sizes, nc, nr, tt, rng):
    cases = []
    for n in sizes:
        for dt in ((np.float32, np.float64) if n == 512 else (np.float32,)):
            a = rng.standard_normal((n, n)).astype(dt)
            b = rng.standard_normal((n, n)).astype(dt)
            t_fn = None
            if tt is not None:
                ta, tb = tt.from_numpy(a), tt.from_numpy(b)
                t_fn = (lambda ta=ta, tb=tb: tt.matmul(ta, tb))
            cases.append(Case("matmul", f"square {n} {np.dtype(dt).name}", "square",
                              lambda a=a, b=b: nc.matmul(a, b), lambda a=a, b=b: nr.matmul(a, b), t_fn,
                              flops=2 * n**3))
    return cases


def row_cases(cfg, nc, nr, tt, rng, dt=np.float32):
    """Softmax (causal attention scores, and logits), log-softmax, cross-entropy, layer norm, GELU,
    embedding backward, AdamW and the attention core, forward and backward, at ``cfg``'s shapes."""
    B, T, C, H, V, L = cfg["batch"], cfg["block"], cfg["n_embd"], cfg["n_head"], cfg["vocab"], cfg["n_layer"]
    N, hd = B * T, C // H
    name = cfg["name"]
    cases = []
    torch = tt

    def tnp(x):
        return None if torch is None else torch.from_numpy(np.ascontiguousarray(x))

    # softmax with the causal mask fused (attention scores)
    s = (rng.standard_normal((B, H, T, T)) * 2).astype(dt)
    y = nr.softmax(s, True)
    dy = rng.standard_normal(s.shape).astype(dt)
    ts, ty, tdy = tnp(s), tnp(y), tnp(dy)
    tmask = None if torch is None else torch.ones(T, T, dtype=torch.bool).triu(1)
    cases.append(Case("softmax", f"causal scores {B}x{H}x{T}x{T}", name, lambda: nc.softmax(s, True),
                      lambda: nr.softmax(s, True),
                      None if torch is None else (lambda: torch.softmax(ts.masked_fill(tmask, float("-inf")), -1)),
                      nbytes=_nbytes(s, y)))
    cases.append(Case("softmax_backward", f"scores {B}x{H}x{T}x{T}", name, lambda: nc.softmax_backward(y, dy),
                      lambda: nr.softmax_backward(y, dy),
                      None if torch is None else (lambda: torch._softmax_backward_data(tdy, ty, -1, ty.dtype)),
                      nbytes=_nbytes(y, dy, y)))
    # log-softmax / cross-entropy on the logits
    x = (rng.standard_normal((N, V)) * 3).astype(dt)
    t = rng.integers(0, V, N)
    ly = nr.log_softmax(x)
    dly = rng.standard_normal(x.shape).astype(dt)
    tx, tly, tdly, tt_ = tnp(x), tnp(ly), tnp(dly), (None if torch is None else torch.from_numpy(t))
    cases.append(Case("log_softmax", f"logits {N}x{V}", name, lambda: nc.log_softmax(x), lambda: nr.log_softmax(x),
                      None if torch is None else (lambda: torch.log_softmax(tx, -1)), nbytes=_nbytes(x, x)))
    cases.append(Case("log_softmax_backward", f"logits {N}x{V}", name, lambda: nc.log_softmax_backward(ly, dly),
                      lambda: nr.log_softmax_backward(ly, dly),
                      None if torch is None else (lambda: torch._log_softmax_backward_data(tdly, tly, -1, tly.dtype)),
                      nbytes=_nbytes(ly, dly, x)))
    loss, lse = nr.cross_entropy(x, t, -100)
    dloss = np.full(N, 1.0 / N)
    tdl = None if torch is None else torch.full((N,), 1.0 / N, dtype=torch.float32)

    def torch_xent_bwd():
        logp = torch.log_softmax(tx, -1)  # what autograd saved in the forward; recomputed here
        g = torch.ops.aten.nll_loss_backward(tdl, logp, tt_, None, 0, -100, torch.tensor(1.0))
        return torch._log_softmax_backward_data(g, logp, 1, torch.float32)

    cases.append(Case("cross_entropy", f"logits {N}x{V}", name, lambda: nc.cross_entropy(x, t, -100),
                      lambda: nr.cross_entropy(x, t, -100),
                      None if torch is None else (lambda: torch.nn.functional.cross_entropy(tx, tt_, reduction="none")),
                      nbytes=_nbytes(x, t, loss, lse)))
    cases.append(Case("cross_entropy_backward", f"logits {N}x{V}", name,
                      lambda: nc.cross_entropy_backward(x, t, lse, dloss, -100),
                      lambda: nr.cross_entropy_backward(x, t, lse, dloss, -100),
                      None if torch is None else torch_xent_bwd, nbytes=_nbytes(x, t, lse, dloss, x)))
    # layer norm
    h = (rng.standard_normal((N, C)) + 0.5).astype(dt)
    w = rng.standard_normal(C).astype(dt)
    bb = rng.standard_normal(C).astype(dt)
    hy, mu, rs = nr.layer_norm(h, w, bb, 1e-5)
    dh = rng.standard_normal(h.shape).astype(dt)
    th, tw, tb, tdh = tnp(h), tnp(w), tnp(bb), tnp(dh)
    tmu, trs = tnp(mu.reshape(-1, 1)), tnp(rs.reshape(-1, 1))
    cases.append(Case("layer_norm", f"{N}x{C}", name, lambda: nc.layer_norm(h, w, bb, 1e-5),
                      lambda: nr.layer_norm(h, w, bb, 1e-5),
                      None if torch is None else (lambda: torch.native_layer_norm(th, (C,), tw, tb, 1e-5)),
                      nbytes=_nbytes(h, h)))
    cases.append(Case("layer_norm_backward", f"{N}x{C}", name, lambda: nc.layer_norm_backward(dh, h, w, mu, rs),
                      lambda: nr.layer_norm_backward(dh, h, w, mu, rs),
                      None if torch is None else (lambda: torch.ops.aten.native_layer_norm_backward(
                          tdh, th, (C,), tmu, trs, tw, tb, [True, True, True])),
                      nbytes=_nbytes(dh, h, h)))
    # GELU on the MLP hidden layer
    g = rng.standard_normal((N, 4 * C)).astype(dt)
    dg = rng.standard_normal(g.shape).astype(dt)
    tg, tdg = tnp(g), tnp(dg)
    cases.append(Case("gelu", f"{N}x{4 * C}", name, lambda: nc.gelu(g), lambda: nr.gelu(g),
                      None if torch is None else (lambda: torch.nn.functional.gelu(tg, approximate="tanh")),
                      nbytes=_nbytes(g, g)))
    cases.append(Case("gelu_backward", f"{N}x{4 * C}", name, lambda: nc.gelu_backward(g, dg),
                      lambda: nr.gelu_backward(g, dg),
                      None if torch is None else (lambda: torch.ops.aten.gelu_backward(tdg, tg, approximate="tanh")),
                      nbytes=_nbytes(g, dg, g)))
    # token-embedding backward (scatter-add of N rows into the vocab table)
    ids = rng.integers(0, V, N)
    de = rng.standard_normal((N, C)).astype(dt)
    tids, tde = (None, None) if torch is None else (torch.from_numpy(ids), tnp(de))
    cases.append(Case("embedding_backward", f"{N} ids -> {V}x{C}", name, lambda: nc.embedding_backward(ids, de, V),
                      lambda: nr.embedding_backward(ids, de, V),
                      None if torch is None else (lambda: torch.ops.aten.embedding_dense_backward(tde, tids, V, -1, False)),
                      nbytes=_nbytes(ids, de) + V * C * de.itemsize))
    # AdamW over all parameters (one flat buffer of the model's size)
    n_params = L * 12 * C * C + V * C + T * C
    p, gr, m1 = (rng.standard_normal(n_params).astype(dt) for _ in range(3))
    v2 = (rng.standard_normal(n_params) ** 2).astype(dt)
    topt = None
    if torch is not None:
        tp = torch.from_numpy(p.copy()).requires_grad_()
        tp.grad = torch.from_numpy(gr.copy())
        try:
            topt = torch.optim.AdamW([tp], lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, fused=True)
            topt.step()
        except (RuntimeError, TypeError, ValueError):
            topt = torch.optim.AdamW([tp], lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, foreach=True)
    cases.append(Case("adamw_step", f"{n_params / 1e6:.2f}M params", name,
                      lambda: nc.adamw_step(p, gr, m1, v2, 1e-3, (0.9, 0.95), 1e-8, 0.1, 10),
                      lambda: nr.adamw_step(p, gr, m1, v2, 1e-3, (0.9, 0.95), 1e-8, 0.1, 10),
                      None if topt is None else topt.step, nbytes=7 * p.nbytes))
    # the attention core, fused (numba) vs reference vs torch SDPA; plus the composed path
    q, k, vv = (rng.standard_normal((B, H, T, hd)).astype(dt) for _ in range(3))
    scale = 1.0 / np.sqrt(hd)
    out, alse = nr.attention(q, k, vv, scale, True)
    dout = rng.standard_normal(out.shape).astype(dt)
    flops = 2 * 2 * B * H * T * T * hd // 2  # two T x T x hd products, half of them masked away
    tq = tk = tv = tout = None
    if torch is not None:
        tq, tk, tv = (tnp(a).requires_grad_() for a in (q, k, vv))
        tout = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True, scale=scale)
        tdout = tnp(dout)

    def composed():  # what the ops would run without the fused kernel: BLAS GEMMs + numba softmax
        sc = nr.matmul(q, np.swapaxes(k, -1, -2)) * np.float32(scale)
        return nr.matmul(nc.softmax(sc, True), vv)

    cases.append(Case("attention", f"{B}x{H}x{T}x{hd} causal", name, lambda: nc.attention(q, k, vv, scale, True),
                      lambda: nr.attention(q, k, vv, scale, True),
                      None if torch is None else (lambda: torch.nn.functional.scaled_dot_product_attention(
                          tq.detach(), tk.detach(), tv.detach(), is_causal=True, scale=scale)),
                      flops=flops, blas=composed))
    cases.append(Case("attention_backward", f"{B}x{H}x{T}x{hd} causal", name,
                      lambda: nc.attention_backward(q, k, vv, alse, dout, scale, True),
                      lambda: nr.attention_backward(q, k, vv, alse, dout, scale, True),
                      None if torch is None else (lambda: torch.autograd.grad(tout, (tq, tk, tv), tdout,
                                                                              retain_graph=True)),
                      flops=2 * flops))
    return cases


# ------------------------------------------------------------------------------------------ run
def run(quick: bool, threads: int | None, rows_only: bool = False) -> dict:
    from tinytensor.kernels import numba as nc
    from tinytensor.kernels import numpy_ref as nr

    threads = nc.set_num_threads(threads)
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    info = machine_info()
    if torch is not None:
        info["torch"] = torch.__version__
    print(machine_line(info), flush=True)

    t0 = time.perf_counter()
    compile_info = {"what": "not measured (--rows)"} if rows_only else compile_times(quick)
    print(f"numba compile ({compile_info['what']}): cold {compile_info.get('cold_s')} s, "
          f"warm cache {compile_info.get('warm_cache_s')} s", flush=True)
    nc.warmup()
    peak_gflops = sgemm_peak(2048, reps=3 if quick else 5)
    triad_gbs = triad_bandwidth((1 << 22) if quick else (1 << 24), reps=5)
    print(f"peak: sgemm {peak_gflops:.0f} GFLOP/s (np.matmul 2048^2 float32), "
          f"STREAM triad {triad_gbs:.1f} GB/s", flush=True)

    rng = np.random.default_rng(0)
    cases = [] if rows_only else gemm_cases(BABY, nc, nr, torch, rng)
    if not rows_only:
        cases += square_cases((128, 256, 512, 1024) if quick else (128, 256, 512, 1024, 2048), nc, nr, torch, rng)
    if not quick and not rows_only:
        cases += gemm_cases(SHAKES, nc, nr, torch, rng)
    cases += row_cases(BABY, nc, nr, torch, rng)
    if not quick or rows_only:
        cases += row_cases(SHAKES, nc, nr, torch, rng)

    min_time = 0.05 if quick else 0.3
    rows = []
    for c in cases:
        # Another process on a 2-core machine makes every prange wait for a time slice (8-16 ms), so a
        # row is measured when the machine looks idle, and measured again (up to twice, after waiting
        # up to 30 s for quiet) when other processes were busy just before or just after it.
        for attempt in range(3):
            before = wait_for_idle(max_wait=2.0 if quick or attempt == 0 else 30.0)
            r = measure(c, min_time, quick, peak_gflops, triad_gbs)
            after = cpu_busy_fraction()
            busy = max(b for b in (before, after, 0.0) if b is not None)
            r["busy_pct"] = round(100 * busy)
            if busy <= 0.2 or quick or rows_only:   # --rows: one attempt, busy % recorded
                break
        rows.append(r)
        print(f"  {c.model:11s} {c.kernel:22s} {c.label:34s} {r['numba_us']:10.1f} us  x{r['x_ref']:.2f} ref"
              + (f"  x{r['x_torch']:.2f} torch" if "x_torch" in r else "") + f"  busy {r['busy_pct']}%", flush=True)

    info["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    res = {"quick": quick, "rows_only": rows_only, "threads": threads, "machine": info,
           "peak": {"sgemm_gflops": peak_gflops, "sgemm_2048_gflops": peak_gflops, "triad_gbs": triad_gbs},
           "compile": compile_info, "rows": rows, "auto": auto_choice(rows), "targets": targets(rows),
           "seconds": time.perf_counter() - t0}
    return rescale_peak(res)


def rescale_peak(res: dict) -> dict:
    """Make the sgemm peak the best of the 2048^2 probe and every BLAS GEMM measured in the run
    (OpenBLAS with 2 threads is faster at 512-1024 than at 2048 here), and recompute "% peak"."""
    blas = [r["flops"] / (r["ref_us"] * 1e-6) / 1e9 for r in _clean(res["rows"])
            if r["kernel"] == "matmul" and r.get("flops")]
    peak = max([res["peak"]["sgemm_2048_gflops"]] + blas)
    res["peak"]["sgemm_gflops"] = peak
    for r in res["rows"]:
        if r.get("gflops"):
            r["pct_peak"] = 100 * r["gflops"] / peak
    return res


def measure(c: Case, min_time: float, quick: bool, peak_gflops: float, triad_gbs: float) -> dict:
    """Time one case: Numba kernel, reference, and (when present) the composed path and torch."""
    r = {"kernel": c.kernel, "shape": c.label, "model": c.model}
    tn_all = time_fn(c.nb, min_time=min_time)
    tn = tn_all["median"]
    tr = time_fn(c.ref, min_time=min_time, min_reps=2 if quick else 3)["median"]
    r["numba_us"] = tn * 1e6
    r["numba_min_us"] = tn_all["min"] * 1e6
    r["ref_us"] = tr * 1e6
    if c.flops:
        r["flops"] = c.flops
        r["gflops"] = c.flops / tn / 1e9
        r["pct_peak"] = 100 * r["gflops"] / peak_gflops
    if c.nbytes:
        r["gbs"] = c.nbytes / tn / 1e9
        r["pct_peak"] = 100 * r["gbs"] / triad_gbs
    r["x_ref"] = tr / tn
    if c.kernel == "matmul":
        r["x_blas"] = r["x_ref"]  # the reference matmul *is* np.matmul (OpenBLAS)
    if c.blas is not None:
        tb = time_fn(c.blas, min_time=min_time)["median"]
        r["composed_us"] = tb * 1e6
        r["x_blas"] = tb / tn
    if c.torch_fn is not None:
        tt = time_fn(c.torch_fn, min_time=min_time)["median"]
        r["torch_us"] = tt * 1e6
        r["x_torch"] = tt / tn
    return r


def auto_choice(rows: list[dict]) -> dict:
    """Per kernel: ``numba`` when it beat the reference on every model shape measured, else ``numpy``
    (matmul: BLAS). Square GEMMs are reported but do not vote."""
    verdict: dict[str, list[float]] = {}
    for r in _clean(rows):
        if r["model"] in ("baby", "shakespeare"):
            verdict.setdefault(r["kernel"], []).append(r["x_ref"])
    return {k: ("numba" if min(v) >= 1.0 else "numpy") for k, v in verdict.items()}


def _clean(rows: list[dict]) -> list[dict]:
    """Rows measured while other processes used at most 20% of the machine."""
    return [r for r in rows if (r.get("busy_pct") or 0) <= 20]


def targets(rows: list[dict]) -> list[dict]:
    """The issue's targets, each with the measured figure and met / not met (clean rows only; when no
    row is clean, as on a machine shared with other jobs, every row, and each target says so)."""
    out = []
    clean = _clean(rows)
    busy_note = "" if clean else " [machine busy: all rows]"
    rows = clean or rows

    def add(what, values, goal):
        values = [v for v in values if v is not None]
        if values:
            worst = min(values)
            out.append({"target": what + busy_note, "worst": round(worst, 2), "goal": goal, "met": worst >= goal})

    sq = [r for r in rows if r["model"] == "square" and "float32" in r["shape"]
          and any(f"square {n} " in r["shape"] for n in (256, 512, 1024))]
    add("GEMM >= 0.9x OpenBLAS, square 256-1024 f32", [r.get("x_blas") for r in sq], 0.9)
    mm = [r for r in rows if r["kernel"] == "matmul" and r["model"] != "square"]
    add("GEMM >= 1.0x OpenBLAS, model shapes", [r.get("x_blas") for r in mm], 1.0)
    for k in ("softmax", "layer_norm", "gelu", "cross_entropy"):
        rs = [r for r in rows if r["kernel"] in (k, k + "_backward")]
        add(f"{k} (+backward) >= 3x NumPy reference", [r.get("x_ref") for r in rs], 3.0)
        add(f"{k} (+backward) >= 1.0x PyTorch", [r.get("x_torch") for r in rs], 1.0)
    return out


COLUMNS = [("model", "model"), ("kernel", "kernel"), ("shape", "shape"), ("numba_us", "numba us"),
           ("gflops", "GFLOP/s"), ("gbs", "GB/s"), ("pct_peak", "% peak"), ("x_ref", "x numpy ref"),
           ("x_blas", "x BLAS/composed"), ("x_torch", "x torch"), ("busy_pct", "busy %")]


def report(res: dict) -> str:
    lines = [f"machine: {machine_line(res['machine'])}",
             f"peak: sgemm {res['peak']['sgemm_gflops']:.0f} GFLOP/s (best np.matmul float32 in this run; "
             f"the 2048^2 probe gave {res['peak']['sgemm_2048_gflops']:.0f}), "
             f"STREAM triad {res['peak']['triad_gbs']:.1f} GB/s; threads {res['threads']}",
             f"numba compile ({res['compile']['what']}): cold {res['compile'].get('cold_s')} s, "
             f"warm cache {res['compile'].get('warm_cache_s')} s",
             f"load average (1 min) at start {res['machine'].get('load_avg_1m')}, at end "
             f"{res['machine'].get('load_avg_1m_end')}"
             + ("  -- other processes were running: parallel timings are inflated" if max(
                 res['machine'].get('load_avg_1m') or 0, res['machine'].get('load_avg_1m_end') or 0) > 1.5 else ""),
             "x columns are speed-ups of the Numba kernel (>1: Numba faster); % peak is of the sgemm peak "
             "(GFLOP/s rows) or of the triad bandwidth (GB/s rows); busy % is the CPU other processes used "
             "just before the row was measured (rows above ~20% are not trustworthy).", "",
             format_table(res["rows"], COLUMNS), "", "targets (rows with busy % <= 20 only):"]
    for t in res["targets"]:
        lines.append(f"  {'MET ' if t['met'] else 'NOT '} {t['target']}: worst {t['worst']}x (goal {t['goal']}x)")
    lines.append("auto (faster on every model shape, clean rows): " + ", ".join(f"{k}={v}" for k, v in res["auto"].items()))
    return "\n".join(lines)


def write_auto(choice: dict) -> None:
    """``tinytensor/kernels/auto.json``: the measured choice per kernel, with this CPU's ``lscpu`` model name
    and the date (the backend falls back to its defaults for a kernel missing here)."""
    from tinytensor import backend
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "")
    except OSError:
        cpu = ""
    write_json_atomic(str(backend.AUTO_FILE), {"cpu": cpu, "date": time.strftime("%Y-%m-%d"),
                                               "written_by": "python -m benchmarks.kernels --write-auto",
                                               "choice": choice})
    print(f"wrote {backend.AUTO_FILE}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.kernels", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="baby shapes and GEMMs up to 1024 only (< 2 min)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON (atomically)")
    ap.add_argument("--rows", action="store_true",
                    help="only the row kernels (softmax, log-softmax, cross-entropy, layer norm, GELU and their "
                         "backwards) at both model shapes, one attempt per row, no compile probe")
    ap.add_argument("--write-auto", action="store_true",
                    help="write the auto choices to tinytensor/kernels/auto.json (read by tinytensor.backend)")
    ap.add_argument("--threads", type=int, default=None,
                    help="thread count for Numba, OpenBLAS and torch (default: TINYTENSOR_NUM_THREADS or all "
                         "cores; OpenBLAS then keeps its own default)")
    args = ap.parse_args(argv)
    if args.threads and os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):
        # OpenBLAS reads its thread count when NumPy loads it: restart with the same count for BLAS
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads))
        argv = sys.argv[1:] if argv is None else list(argv)
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.kernels", *argv], env)
    res = run(args.quick, args.threads, args.rows)
    print()
    print(report(res))
    print(f"\n({res['seconds']:.0f} s)")
    if args.write_auto:
        write_auto(res["auto"])
    if args.json:
        write_json_atomic(args.json, res)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
