"""Numba fused attention for larger heads: per (batch, head), tiles of query rows through the GEMM's
register-tile micro-kernel (``gemm._ukernel``), ``prange`` over heads.

Each product of a head (``q k^T``, ``P v``; in the backward also ``do v^T``, ``dS k``, ``dS^T q``, ``P^T do``)
is a run of micro-kernel calls on one tile: ``MR`` rows of A (12 query rows, or 12 keys) times one
``NR``-wide panel of B (32 float32 / 16 float64 keys or channels), the ``MR x NR`` tile of accumulators
held in zmm registers across the whole inner dimension. The softmax row passes (max, exp, float64 sum,
dropout) run between the products on the score tile, which never leaves the cache, and the ``[T, S]``
matrix is never stored for the forward (one ``MR x S`` tile per head). The operands are first copied
from the strided 4-D arrays (the ``[B, H, T, D]`` transposes of a ``[B, T, C]`` activation) into the
kernel's layouts: rows of A as they are, B in panels, zero-padded at the edges so the kernel has no
edge cases.

Measured against the 4-query-row tile loops this replaced (which re-read their 4 accumulator rows from
memory for every 2 FMAs), shakespeare-char's heads (64 x 6 x 256 x 64, causal, float32), 2 threads, Intel
Xeon family 6 model 167: forward 1.4-1.6x, backward 1.3-1.8x (docs/performance.md, session 13).
"""
from __future__ import annotations

import numpy as np

from ._common import _PAR, _chunked, _exp, _jit, _row_max
from .dropout import _u24
from .gemm import _ukernel


@_jit(inline="always")
def _head_row(a, s, b, h, j, D):
    """Row ``A[b, h, j, :]`` of a strided 4-D array ``A``, given as its flat memory ``a`` and the element
    strides ``s`` of its first three axes (see ``_flat``): a unit-stride slice, so copies use vector loads."""
    start = b * s[0] + h * s[1] + j * s[2]
    return a[start:start + D]


@_jit(inline="always")
def _round_up(n, m):
    """``n`` rounded up to a multiple of ``m`` (a tile or panel edge; the zero padding past ``n``)."""
    return -(-n // m) * m


@_jit(inline="always")
def _visible(i, S, off, causal):
    """Keys visible to query ``i``: ``S``, or ``i + off + 1`` (clamped to ``0..S``) when causal."""
    return min(S, max(0, i + off + 1)) if causal else S


@_jit(inline="always")
def _scaled_rows(a, s, b, h, n, D, f, out):
    """Rows ``0..n`` of head (b, h) of a strided 4-D array times ``f``, as the micro-kernel's A (rows in
    place): ``out[j * D + d] = f * A[b, h, j, d]`` (``out`` zeroed, so rows past ``n`` stay 0)."""
    for j in range(n):
        src = _head_row(a, s, b, h, j, D)
        for d in range(D):
            out[j * D + d] = src[d] * f


@_jit(inline="always")
def _key_panels(a, s, b, h, n, D, nr, out):
    """Rows ``0..n`` of head (b, h) of a strided 4-D array, transposed into nr-row panels for the
    micro-kernel's B: ``out[(j // nr) * D * nr + d * nr + j % nr] = A[b, h, j, d]`` (``out`` zeroed)."""
    for j in range(n):
        src = _head_row(a, s, b, h, j, D)
        base = (j // nr) * D * nr + j % nr
        for d in range(D):
            out[base + d * nr] = src[d]


@_jit(inline="always")
def _channel_panels(a, s, b, h, n, rows, D, nr, out):
    """Rows ``0..n`` of head (b, h) in nr-channel panels of ``rows`` rows for the micro-kernel's B:
    ``out[(d // nr) * rows * nr + j * nr + d % nr] = A[b, h, j, d]`` (``out`` zeroed)."""
    for j in range(n):
        src = _head_row(a, s, b, h, j, D)
        for d in range(D):
            out[(d // nr) * rows * nr + j * nr + d % nr] = src[d]


@_jit
def _attn_head(qh, kp, vp, out, os_, b, h, lse, bh, T, S, D, causal, seed, thresh, zscale, mr, nr):
    """One (batch, head) ``bh`` through the GEMM's register-tile micro-kernel (``gemm._ukernel``), ``mr``
    query rows per tile, into the strided 4-D ``out``. For each tile, with ``lt`` the widest row's
    visible keys::

        S~[r, j] = q~[i0 + r] . k[j]        j < lt, nr keys per kernel call   (q~ = q * scale)
        row r: m = max, exp(s - m), l = sum (float64), dropout, zeros past its own lim
        O~[r, :] = sum_{j < lt} S~[r, j] v[j]  nr channels per kernel call, then / l

    ``qh [Tp * D]``: the scaled queries, zero rows past T (Tp a multiple of mr); ``kp``: K^T in nr-key
    panels (``kp[(j0 // nr) * D * nr + d * nr + j] = k[j0 + j, d]``, zero past S); ``vp``: V in nr-channel
    panels (``vp[(d0 // nr) * S * nr + j * nr + c] = v[j, d0 + c]``, zero past D). Per kernel step one
    vector load of a panel feeds ``mr`` FMAs from registers.
    """
    Sp = _round_up(S, nr)
    Dp = _round_up(D, nr)
    off = S - T
    dt = out.dtype
    sc = np.zeros(mr * Sp, dtype=dt)
    acc = np.empty(mr * Dp, dtype=dt)
    sc2 = sc.reshape((mr, Sp))
    inv = np.zeros(mr, dtype=dt)
    for i0 in range(0, T, mr):
        nrow = min(mr, T - i0)
        lt = _visible(i0 + nrow - 1, S, off, causal)  # the tile's widest row
        for j0 in range(0, lt, nr):
            _ukernel(qh, i0 * D, D, 1, kp, (j0 // nr) * D * nr, D, sc, j0, Sp, True)
        for r in range(mr):
            row = sc2[r]
            lim = _visible(i0 + r, S, off, causal) if r < nrow else 0
            if lim == 0:  # past T, or no visible key (T > S): no distribution, NaN as in the reference
                for j in range(lt):
                    row[j] = 0
                if r < nrow:
                    lse[bh, i0 + r] = np.nan
                inv[r] = np.nan
                continue
            m = _row_max(sc2, r, lim)
            for j in range(lim):  # exp pass, then the float64 sum pass (see _softmax_rows)
                row[j] = _exp(row[j] - m)
            l = np.float64(0.0)
            for j in range(lim):
                l += row[j]
            lse[bh, i0 + r] = np.log(l) + m
            inv[r] = dt.type(1.0 / l)
            if thresh > 0:  # dropout on the probabilities: the hash of (seed, flat index) decides
                base = np.uint64((bh * T + i0 + r) * S)
                for j in range(lim):
                    if _u24(seed, base + np.uint64(j)) >= thresh:
                        row[j] = row[j] * zscale
                    else:
                        row[j] = 0
            for j in range(lim, lt):
                row[j] = 0
        for d0 in range(0, Dp, nr):
            _ukernel(sc, 0, Sp, 1, vp, (d0 // nr) * S * nr, lt, acc, d0, Dp, True)
        for r in range(nrow):
            f = inv[r]
            dst = _head_row(out, os_, b, h, i0 + r, D)
            src = acc[r * Dp:r * Dp + D]
            for d in range(D):
                dst[d] = src[d] * f


@_jit
def _attn_fwd_one(q, qs, k, ks, v, vs, out, os_, lse, bh, H, T, S, D, scale, causal, seed, thresh, zscale, mr, nr):
    """Head ``bh``: copy it in from the strided 4-D arrays as the micro-kernel's operands (see
    :func:`_attn_head`), then the head."""
    b = bh // H
    h = bh % H
    dt = out.dtype
    Tp = _round_up(T, mr)
    Sp = _round_up(S, nr)
    Dp = _round_up(D, nr)
    qh = np.zeros(Tp * D, dtype=dt)
    kp = np.zeros(Sp * D, dtype=dt)
    vp = np.zeros(Dp * S, dtype=dt)
    _scaled_rows(q, qs, b, h, T, D, scale, qh)
    _key_panels(k, ks, b, h, S, D, nr, kp)
    _channel_panels(v, vs, b, h, S, S, D, nr, vp)
    _attn_head(qh, kp, vp, out, os_, b, h, lse, bh, T, S, D, causal, seed, thresh, zscale, mr, nr)


@_jit
def _attn_fwd_heads(q, qs, k, ks, v, vs, out, os_, lse, H, T, S, D, scale, causal, seed, thresh, zscale, mr, nr,
                    bh0, bh1):
    for bh in range(bh0, bh1):
        _attn_fwd_one(q, qs, k, ks, v, vs, out, os_, lse, bh, H, T, S, D, scale, causal, seed, thresh, zscale,
                      mr, nr)


@_jit(**_PAR)
def _attn_fwd(q, qs, k, ks, v, vs, out, os_, lse, H, T, S, D, scale, causal, seed, thresh, zscale, mr, nr, nheads):
    """Every one of the ``nheads = B * H`` (batch, head) pairs as its own ``prange`` task."""
    _chunked(_attn_fwd_heads, nheads, nheads,
             (q, qs, k, ks, v, vs, out, os_, lse, H, T, S, D, scale, causal, seed, thresh, zscale, mr, nr))


@_jit
def _attn_bwd_one(q, qs, k, ks, v, vs, lse, do, dos, dq, dqs, dk, dks, dv, dvs, bh, H, T, S, D, scale, causal,
                  seed, thresh, zscale, mr, nr):
    """Backward of head ``bh`` through the GEMM's micro-kernel (as :func:`_attn_head`), recomputing P
    from ``lse``. Pass 1, ``mr`` query rows per tile (``lt`` the widest row's visible keys)::

        P[i, j] = exp(q~[i] . k[j] - lse[i]),  G[i, j] = do[i] . v[j]     j < lt   (q~ = q * scale)
        delta = sum_j P G (float64);  dS = scale * P * (G - delta);  dq[i] = sum_j dS[i, j] k[j]

    with dropout's ``z`` (0 or 1/(1-p), the forward's hash) on G and then on P. P and dS are kept for the
    head (``[Tp, W]``, zero where masked). Pass 2, ``mr`` keys per tile: ``dk = dS^T q``, ``dv = P^T do``
    over the queries that see the tile's first key. Each head writes only its own rows (race-free).
    """
    b = bh // H
    h = bh % H
    dt = dq.dtype
    Tp = _round_up(T, mr)
    Sp = _round_up(S, nr)
    Sm = _round_up(S, mr)
    Dp = _round_up(D, nr)
    W = max(Sp, Sm)
    off = S - T
    qsc = np.zeros(Tp * D, dtype=dt)     # q * scale, rows: the A of P
    doh = np.zeros(Tp * D, dtype=dt)     # do, rows: the A of G
    _scaled_rows(q, qs, b, h, T, D, scale, qsc)
    _scaled_rows(do, dos, b, h, T, D, dt.type(1.0), doh)
    kp = np.zeros(Sp * D, dtype=dt)      # K^T panels (B of P)
    vtp = np.zeros(Sp * D, dtype=dt)     # V^T panels (B of G)
    kd = np.zeros(Dp * S, dtype=dt)      # K channel panels (B of dq)
    qd = np.zeros(Dp * Tp, dtype=dt)     # q channel panels (B of dk)
    dod = np.zeros(Dp * Tp, dtype=dt)    # do channel panels (B of dv)
    _key_panels(k, ks, b, h, S, D, nr, kp)
    _key_panels(v, vs, b, h, S, D, nr, vtp)
    _channel_panels(k, ks, b, h, S, S, D, nr, kd)
    _channel_panels(q, qs, b, h, T, Tp, D, nr, qd)
    _channel_panels(do, dos, b, h, T, Tp, D, nr, dod)
    P = np.zeros(Tp * W, dtype=dt)
    DS = np.zeros(Tp * W, dtype=dt)
    G = np.zeros(mr * Sp, dtype=dt)
    z = np.empty(S, dtype=dt)
    acc = np.empty(mr * Dp, dtype=dt)
    dropping = thresh > 0
    for i0 in range(0, T, mr):
        nrow = min(mr, T - i0)
        lt = _visible(i0 + nrow - 1, S, off, causal)
        for j0 in range(0, lt, nr):
            _ukernel(qsc, i0 * D, D, 1, kp, (j0 // nr) * D * nr, D, P, i0 * W + j0, W, True)
            _ukernel(doh, i0 * D, D, 1, vtp, (j0 // nr) * D * nr, D, G, j0, Sp, True)
        wide = min(_round_up(lt, nr), W)  # the kernels wrote columns up to here
        for r in range(mr):
            pr = P[(i0 + r) * W:(i0 + r + 1) * W]
            sr = DS[(i0 + r) * W:(i0 + r + 1) * W]
            g = G[r * Sp:(r + 1) * Sp]
            lim = _visible(i0 + r, S, off, causal) if r < nrow else 0
            li = dt.type(lse[bh, i0 + r]) if lim > 0 else dt.type(0)
            for j in range(lim):
                pr[j] = _exp(pr[j] - li)
            if dropping:
                base = np.uint64((bh * T + i0 + r) * S)
                for j in range(lim):
                    z[j] = zscale if _u24(seed, base + np.uint64(j)) >= thresh else 0
                for j in range(lim):
                    g[j] = g[j] * z[j]
            delta = np.float64(0.0)
            for j in range(lim):
                delta += pr[j] * g[j]
            dl = dt.type(delta)
            for j in range(lim):
                sr[j] = pr[j] * (g[j] - dl) * scale
            if dropping:
                for j in range(lim):
                    pr[j] = pr[j] * z[j]
            for j in range(lim, wide):
                pr[j] = 0
                sr[j] = 0
        for d0 in range(0, Dp, nr):
            _ukernel(DS, i0 * W, W, 1, kd, (d0 // nr) * S * nr, lt, acc, d0, Dp, True)
        for r in range(nrow):
            dst = _head_row(dq, dqs, b, h, i0 + r, D)
            for d in range(D):
                dst[d] = acc[r * Dp + d]
    acc2 = np.empty(mr * Dp, dtype=dt)
    for j0 in range(0, S, mr):
        nk = min(mr, S - j0)
        lo = min(T, max(0, j0 - off)) if causal else 0   # the first query that sees key j0
        for d0 in range(0, Dp, nr):
            _ukernel(DS, lo * W + j0, 1, W, qd, (d0 // nr) * Tp * nr + lo * nr, T - lo, acc, d0, Dp, True)
            _ukernel(P, lo * W + j0, 1, W, dod, (d0 // nr) * Tp * nr + lo * nr, T - lo, acc2, d0, Dp, True)
        for c in range(nk):
            dst = _head_row(dk, dks, b, h, j0 + c, D)
            dst2 = _head_row(dv, dvs, b, h, j0 + c, D)
            for d in range(D):
                dst[d] = acc[c * Dp + d]
                dst2[d] = acc2[c * Dp + d]


@_jit
def _attn_bwd_heads(q, qs, k, ks, v, vs, lse, do, dos, dq, dqs, dk, dks, dv, dvs, H, T, S, D, scale, causal, seed,
                    thresh, zscale, mr, nr, bh0, bh1):
    for bh in range(bh0, bh1):
        _attn_bwd_one(q, qs, k, ks, v, vs, lse, do, dos, dq, dqs, dk, dks, dv, dvs, bh, H, T, S, D, scale, causal,
                      seed, thresh, zscale, mr, nr)


@_jit(**_PAR)
def _attn_bwd(q, qs, k, ks, v, vs, lse, do, dos, dq, dqs, dk, dks, dv, dvs, H, T, S, D, scale, causal, seed,
                 thresh, zscale, mr, nr, nheads):
    """Every one of the ``nheads = B * H`` (batch, head) pairs as its own ``prange`` task."""
    _chunked(_attn_bwd_heads, nheads, nheads,
             (q, qs, k, ks, v, vs, lse, do, dos, dq, dqs, dk, dks, dv, dvs, H, T, S, D, scale, causal, seed, thresh,
              zscale, mr, nr))

