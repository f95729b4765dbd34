"""Numba fused attention for larger heads: 4-query-row tiles per (batch, head), ``prange`` over heads."""
from __future__ import annotations

import numpy as np

from . import _common as c
from ._common import _FLOATS, _PAR, _as, _chunked, _float_pair, _jit, _nchunks, _parallel, _quiet, _rows
from .. import numpy_ref
from ._common import _exp, _row_max
from .dropout import _u24

# ===================================================================================== attention
# Tiled by 4 query rows: each sweep over the keys (or over D) updates 4 rows at once, so one vector
# load of K^T (or V) feeds 4 FMAs and the loop overhead is paid once per tile instead of once per row.
# (One row at a time, the baby GPT's 64 x 64 x 32 heads spent most of their time in loop set-up and
# scalar remainders: 14 GFLOP/s.) Each head is first copied into contiguous scratch, so q, k, v and
# the gradients can be strided views (the [B, H, T, D] transposes of a [B, T, C] activation).
_QT = 4


@_jit(inline="always")
def _head_row(a, s, b, h, j, D):
    """Row ``A[b, h, j, :]`` of a strided 4-D array ``A``, given as its flat memory ``a`` and the element
    strides ``s`` of its first three axes (see ``_flat``): a unit-stride slice, so copies use vector loads."""
    start = b * s[0] + h * s[1] + j * s[2]
    return a[start:start + D]


@_jit(inline="always")
def _head_rows(a, s, b, h, out):
    """``out[j, d] = A[b, h, j, d]``: one head of a strided 4-D array as contiguous rows."""
    D = out.shape[1]
    for j in range(out.shape[0]):
        src = _head_row(a, s, b, h, j, D)
        dst = out[j]
        for d in range(D):
            dst[d] = src[d]


@_jit(inline="always")
def _head_store(src, a, s, b, h):
    """``A[b, h, j, d] = src[j, d]``: a head's contiguous result rows into a strided 4-D array."""
    D = src.shape[1]
    for j in range(src.shape[0]):
        dst = _head_row(a, s, b, h, j, D)
        row = src[j]
        for d in range(D):
            dst[d] = row[d]


@_jit(inline="always")
def _head_cols(a, s, b, h, out):
    """``out[d, j] = A[b, h, j, d]``: one head transposed to ``[D, S]`` (keys contiguous)."""
    D = out.shape[0]
    for j in range(out.shape[1]):
        src = _head_row(a, s, b, h, j, D)
        for d in range(D):
            out[d, j] = src[d]


@_jit
def _tile_dots(x, i0, mt, out, lim, scale):
    """``out[r, j] = scale * (x[i0 + r] . M[j])`` for ``r < 4``, ``j < lim``, with ``mt = M^T`` ``[D, S]``.

    Loop nest: 2 rows of ``mt`` per sweep over the keys; each sweep loads 2 key vectors and updates
    4 output rows (8 FMAs per 8 keys). Rows of ``x`` past its end repeat the last one (ignored by
    the caller).
    """
    D = mt.shape[0]
    n = x.shape[0] - 1
    x0 = x[min(i0, n)]
    x1 = x[min(i0 + 1, n)]
    x2 = x[min(i0 + 2, n)]
    x3 = x[min(i0 + 3, n)]
    o0 = out[0]
    o1 = out[1]
    o2 = out[2]
    o3 = out[3]
    for j in range(lim):
        o0[j] = 0
        o1[j] = 0
        o2[j] = 0
        o3[j] = 0
    d = 0
    while d + 2 <= D:
        m0 = mt[d]
        m1 = mt[d + 1]
        a0, b0 = x0[d] * scale, x0[d + 1] * scale
        a1, b1 = x1[d] * scale, x1[d + 1] * scale
        a2, b2 = x2[d] * scale, x2[d + 1] * scale
        a3, b3 = x3[d] * scale, x3[d + 1] * scale
        for j in range(lim):
            u = m0[j]
            w = m1[j]
            o0[j] += a0 * u + b0 * w
            o1[j] += a1 * u + b1 * w
            o2[j] += a2 * u + b2 * w
            o3[j] += a3 * u + b3 * w
        d += 2
    if d < D:
        m0 = mt[d]
        a0, a1, a2, a3 = x0[d] * scale, x1[d] * scale, x2[d] * scale, x3[d] * scale
        for j in range(lim):
            u = m0[j]
            o0[j] += a0 * u
            o1[j] += a1 * u
            o2[j] += a2 * u
            o3[j] += a3 * u


@_jit
def _tile_weighted(w, m, lim, acc):
    """``acc[r, :] = sum_{j < lim} w[r, j] * m[j, :]`` for ``r < 4`` (``m`` is ``[S, D]``, contiguous).

    2 rows of ``m`` per sweep over D: 2 vector loads feed 8 FMAs into the 4 accumulator rows.
    """
    D = m.shape[1]
    a0 = acc[0]
    a1 = acc[1]
    a2 = acc[2]
    a3 = acc[3]
    for d in range(D):
        a0[d] = 0
        a1[d] = 0
        a2[d] = 0
        a3[d] = 0
    j = 0
    while j + 2 <= lim:
        r0 = m[j]
        r1 = m[j + 1]
        p0, q0 = w[0, j], w[0, j + 1]
        p1, q1 = w[1, j], w[1, j + 1]
        p2, q2 = w[2, j], w[2, j + 1]
        p3, q3 = w[3, j], w[3, j + 1]
        for d in range(D):
            u = r0[d]
            v = r1[d]
            a0[d] += p0 * u + q0 * v
            a1[d] += p1 * u + q1 * v
            a2[d] += p2 * u + q2 * v
            a3[d] += p3 * u + q3 * v
        j += 2
    if j < lim:
        r0 = m[j]
        p0, p1, p2, p3 = w[0, j], w[1, j], w[2, j], w[3, j]
        for d in range(D):
            u = r0[d]
            a0[d] += p0 * u
            a1[d] += p1 * u
            a2[d] += p2 * u
            a3[d] += p3 * u


@_jit
def _cols_weighted(w, j0, m, lo, hi, acc):
    """``acc[c, :] = sum_{lo <= i < hi} w[i, j0 + c] * m[i, :]`` for ``c < 4``: 4 columns of ``w``
    against the rows of ``m``, 2 rows per sweep over D. Columns past ``w``'s end repeat the last one."""
    D = m.shape[1]
    n = w.shape[1] - 1
    c0, c1, c2, c3 = min(j0, n), min(j0 + 1, n), min(j0 + 2, n), min(j0 + 3, n)
    a0 = acc[0]
    a1 = acc[1]
    a2 = acc[2]
    a3 = acc[3]
    for d in range(D):
        a0[d] = 0
        a1[d] = 0
        a2[d] = 0
        a3[d] = 0
    i = lo
    while i + 2 <= hi:
        r0 = m[i]
        r1 = m[i + 1]
        p0, q0 = w[i, c0], w[i + 1, c0]
        p1, q1 = w[i, c1], w[i + 1, c1]
        p2, q2 = w[i, c2], w[i + 1, c2]
        p3, q3 = w[i, c3], w[i + 1, c3]
        for d in range(D):
            u = r0[d]
            v = r1[d]
            a0[d] += p0 * u + q0 * v
            a1[d] += p1 * u + q1 * v
            a2[d] += p2 * u + q2 * v
            a3[d] += p3 * u + q3 * v
        i += 2
    if i < hi:
        r0 = m[i]
        p0, p1, p2, p3 = w[i, c0], w[i, c1], w[i, c2], w[i, c3]
        for d in range(D):
            u = r0[d]
            a0[d] += p0 * u
            a1[d] += p1 * u
            a2[d] += p2 * u
            a3[d] += p3 * u


@_jit(inline="always")
def _visible(i, S, off, causal):
    """Keys visible to query ``i``: ``S``, or ``i + off + 1`` (clamped to ``0..S``) when causal."""
    return min(S, max(0, i + off + 1)) if causal else S


@_jit
def _attn_head(qh, kt, vh, oh, lse, bh, scale, causal, seed, thresh, zscale):
    """One (batch, head) ``bh`` from contiguous scratch (``qh [T, D]``, ``kt = K^T [D, S]``, ``vh [S, D]``)
    into ``oh [T, D]``, 4 query rows per tile; for each row i of the tile, with ``lim`` visible keys::

        s[j] = (q[i] . k[j]) * scale      j < lim        (_tile_dots over K^T)
        m = max s;  s[j] = exp(s[j] - m);  l = sum s      (8-lane exp, float64 sum)
        out[i] = sum_j s[j] v[j] / l                      (_tile_weighted over V)
        lse[i] = m + log l

    Masked keys are not computed beyond the tile's last row (whose ``lim`` is the largest), so
    causal attention does about half the work of the dense one, and the T x S matrix is never stored
    (one 4 x S tile per head).
    """
    T, D = qh.shape
    S = kt.shape[1]
    off = S - T
    dt = oh.dtype
    sc = np.zeros((_QT, S), dtype=dt)
    acc = np.empty((_QT, D), dtype=dt)
    inv = np.zeros(_QT, dtype=dt)
    for i0 in range(0, T, _QT):
        nr = min(_QT, T - i0)
        lt = _visible(i0 + nr - 1, S, off, causal)  # the tile's widest row
        _tile_dots(qh, i0, kt, sc, lt, scale)
        for r in range(_QT):
            row = sc[r]
            lim = _visible(i0 + r, S, off, causal) if r < nr else 0
            if lim == 0:  # past T, or no visible key (T > S): no distribution, NaN as in the reference
                for j in range(lt):
                    row[j] = 0
                if r < nr:
                    lse[bh, i0 + r] = np.nan
                inv[r] = np.nan
                continue
            m = _row_max(sc, r, lim)
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
        _tile_weighted(sc, vh, lt, acc)
        for r in range(nr):
            f = inv[r]
            for d in range(D):
                oh[i0 + r, d] = acc[r, d] * f


@_jit
def _attn_fwd_one(q, qs, k, ks, v, vs, out, os_, lse, bh, H, T, S, D, scale, causal, seed, thresh, zscale):
    """Head ``bh``: copy it in from the strided 4-D arrays, :func:`_attn_head`, copy the result out."""
    b = bh // H
    h = bh % H
    dt = out.dtype
    qh = np.empty((T, D), dtype=dt)
    kt = np.empty((D, S), dtype=dt)
    vh = np.empty((S, D), dtype=dt)
    oh = np.empty((T, D), dtype=dt)
    _head_rows(q, qs, b, h, qh)
    _head_cols(k, ks, b, h, kt)
    _head_rows(v, vs, b, h, vh)
    _attn_head(qh, kt, vh, oh, lse, bh, scale, causal, seed, thresh, zscale)
    _head_store(oh, out, os_, b, h)


@_jit
def _attn_fwd_heads(q, qs, k, ks, v, vs, out, os_, lse, H, T, S, D, scale, causal, seed, thresh, zscale, bh0, bh1):
    for bh in range(bh0, bh1):
        _attn_fwd_one(q, qs, k, ks, v, vs, out, os_, lse, bh, H, T, S, D, scale, causal, seed, thresh, zscale)


@_jit(**_PAR)
def _attn_fwd(q, qs, k, ks, v, vs, out, os_, lse, H, T, S, D, scale, causal, seed, thresh, zscale, nheads):
    """Every one of the ``nheads = B * H`` (batch, head) pairs as its own ``prange`` task."""
    _chunked(_attn_fwd_heads, nheads, nheads,
             (q, qs, k, ks, v, vs, out, os_, lse, H, T, S, D, scale, causal, seed, thresh, zscale))


@_jit
def _attn_bwd_head(qh, kh, kt, vt, doh, lse, dqh, dkh, dvh, bh, scale, causal, seed, thresh, zscale):
    """Backward for one (batch, head) ``bh`` from contiguous scratch (``qh``, ``doh`` ``[T, D]``; ``kh``
    ``[S, D]``; ``kt``, ``vt`` = K^T, V^T ``[D, S]``) into ``dqh``, ``dkh``, ``dvh``, recomputing P from
    ``lse``. Pass 1, 4 query rows per tile::

        p[j] = exp(q[i] . k[j] * scale - lse[i])     j < lim       (_tile_dots over K^T)
        g[j] = do[i] . v[j]                                         (_tile_dots over V^T)
        delta = sum_j p[j] g[j]   (= do[i] . out[i])               (float64 dot)
        ds[j] = scale * p[j] * (g[j] - delta)
        dq[i] = sum_j ds[j] k[j]                                    (_tile_weighted over K)

    keeping P and dS in two zeroed ``[T + 3, S]`` scratch matrices (one head: L2-sized). Pass 2, 4 keys
    at a time: ``dk[j] = sum_i ds[i, j] q[i]`` and ``dv[j] = sum_i p[i, j] do[i]`` over the queries that
    see key j (_cols_weighted). With dropout, ``z[j]`` (0 or 1/(1-p), the forward's hash) multiplies
    ``p[j]`` in P (for dv) and ``g[j]`` in dS. Each head writes only its own rows, so one head per
    thread is race-free.
    """
    T, D = qh.shape
    S = kh.shape[0]
    off = S - T
    dt = dqh.dtype
    P = np.zeros((T + _QT - 1, S), dtype=dt)    # p * z (p itself without dropout); masked entries 0
    DS = np.zeros((T + _QT - 1, S), dtype=dt)   # dS; masked entries 0
    G = np.empty((_QT, S), dtype=dt)
    z = np.empty(S, dtype=dt)                    # one row's dropout scales (0 or 1/(1-p)), hashed once
    acc = np.empty((_QT, D), dtype=dt)
    dropping = thresh > 0
    one = dt.type(1.0)
    for i0 in range(0, T, _QT):
        nr = min(_QT, T - i0)
        lt = _visible(i0 + nr - 1, S, off, causal)
        pt = P[i0:i0 + _QT]
        st = DS[i0:i0 + _QT]
        _tile_dots(qh, i0, kt, pt, lt, scale)
        _tile_dots(doh, i0, vt, G, lt, one)
        for r in range(_QT):
            prow = pt[r]
            srow = st[r]
            g = G[r]
            lim = _visible(i0 + r, S, off, causal) if r < nr else 0
            li = dt.type(lse[bh, i0 + r]) if lim > 0 else dt.type(0)
            for j in range(lim):
                prow[j] = _exp(prow[j] - li)
            if dropping:
                base = np.uint64((bh * T + i0 + r) * S)
                for j in range(lim):
                    z[j] = zscale if _u24(seed, base + np.uint64(j)) >= thresh else 0
                for j in range(lim):
                    g[j] = g[j] * z[j]
            delta = np.float64(0.0)
            for j in range(lim):
                delta += prow[j] * g[j]
            dl = dt.type(delta)
            for j in range(lim):
                srow[j] = prow[j] * (g[j] - dl) * scale
            if dropping:
                for j in range(lim):
                    prow[j] = prow[j] * z[j]
            for j in range(lim, lt):
                prow[j] = 0
                srow[j] = 0
        _tile_weighted(st, kh, lt, acc)
        for r in range(nr):
            for d in range(D):
                dqh[i0 + r, d] = acc[r, d]
    acc2 = np.empty((_QT, D), dtype=dt)
    for j0 in range(0, S, _QT):
        nk = min(_QT, S - j0)
        lo = min(T, max(0, j0 - off)) if causal else 0   # the first query that sees key j0
        _cols_weighted(DS, j0, qh, lo, T, acc)
        _cols_weighted(P, j0, doh, lo, T, acc2)
        for c in range(nk):
            for d in range(D):
                dkh[j0 + c, d] = acc[c, d]
                dvh[j0 + c, d] = acc2[c, d]


@_jit
def _attn_bwd_one(q, qs, k, ks, v, vs, lse, do, dos, dq, dqs, dk, dks, dv, dvs, bh, H, T, S, D, scale, causal, seed,
                  thresh, zscale):
    """Head ``bh``: copy it in from the strided 4-D arrays, :func:`_attn_bwd_head`, copy the gradients out."""
    b = bh // H
    h = bh % H
    dt = dq.dtype
    qh = np.empty((T, D), dtype=dt)
    kh = np.empty((S, D), dtype=dt)
    kt = np.empty((D, S), dtype=dt)
    vt = np.empty((D, S), dtype=dt)
    doh = np.empty((T, D), dtype=dt)
    _head_rows(q, qs, b, h, qh)
    _head_rows(k, ks, b, h, kh)
    _head_cols(k, ks, b, h, kt)
    _head_cols(v, vs, b, h, vt)
    _head_rows(do, dos, b, h, doh)
    dqh = np.empty((T, D), dtype=dt)
    dkh = np.empty((S, D), dtype=dt)
    dvh = np.empty((S, D), dtype=dt)
    _attn_bwd_head(qh, kh, kt, vt, doh, lse, dqh, dkh, dvh, bh, scale, causal, seed, thresh, zscale)
    _head_store(dqh, dq, dqs, b, h)
    _head_store(dkh, dk, dks, b, h)
    _head_store(dvh, dv, dvs, b, h)


@_jit
def _attn_bwd_heads(q, qs, k, ks, v, vs, lse, do, dos, dq, dqs, dk, dks, dv, dvs, H, T, S, D, scale, causal, seed,
                    thresh, zscale, bh0, bh1):
    for bh in range(bh0, bh1):
        _attn_bwd_one(q, qs, k, ks, v, vs, lse, do, dos, dq, dqs, dk, dks, dv, dvs, bh, H, T, S, D, scale, causal,
                      seed, thresh, zscale)


@_jit(**_PAR)
def _attn_bwd(q, qs, k, ks, v, vs, lse, do, dos, dq, dqs, dk, dks, dv, dvs, H, T, S, D, scale, causal, seed,
              thresh, zscale, nheads):
    """Every one of the ``nheads = B * H`` (batch, head) pairs as its own ``prange`` task."""
    _chunked(_attn_bwd_heads, nheads, nheads,
             (q, qs, k, ks, v, vs, lse, do, dos, dq, dqs, dk, dks, dv, dvs, H, T, S, D, scale, causal, seed, thresh,
              zscale))
