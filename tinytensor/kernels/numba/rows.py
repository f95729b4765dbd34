"""Numba row kernels: softmax, log-softmax, cross-entropy and layer norm (forward and backward)."""
from __future__ import annotations

import numpy as np

from ._common import _PAR, _as, _chunked, _float_pair, _jit, _launch, _nchunks, _quiet, _rows
from .. import numpy_ref
from ._common import _exp, _row_max, _row_max_raw


@_jit
def _softmax_rows(x, y, T, off, causal, lo, hi):
    """Rows ``lo..hi`` of softmax. Loop nest per row (3 passes over one row held in L1)::

        m = max(x[r, :lim])                         # scalar compare loop
        y[r, j] = exp(x[r, j] - m); s += y[r, j]    # 8-lane exp (float32), float64 sum
        y[r, j] *= 1 / s;  y[r, lim:] = 0           # scale, write the causal-masked tail

    ``lim`` is the number of visible keys: ``S``, or ``i + off + 1`` for query ``i = r % T`` when
    ``causal``.
    """
    S = x.shape[1]
    i = lo % T  # query index of row r (kept incrementally: no integer division per row)
    for r in range(lo, hi):
        lim = S
        if causal:
            lim = min(S, max(0, i + off + 1))
        i += 1
        if i == T:
            i = 0
        m = _row_max(x, r, lim)
        for j in range(lim):  # exp and the float64 sum in separate loops: each vectorises alone,
            y[r, j] = _exp(x[r, j] - m)  # fused they run ~3x slower (float32 -> float64 in the loop)
        s = np.float64(0.0)
        for j in range(lim):
            s += y[r, j]
        inv = x.dtype.type(0.0 if s == 0.0 else 1.0 / s)
        for j in range(lim):
            y[r, j] = y[r, j] * inv
        for j in range(lim, S):
            y[r, j] = 0


@_jit(**_PAR)
def _softmax_2d(x, y, T, off, causal, nchunks):
    _chunked(_softmax_rows, x.shape[0], nchunks, (x, y, T, off, causal))


def softmax(x: np.ndarray, causal: bool = False) -> np.ndarray:
    """Numerically stable softmax over the last axis, optionally with the causal mask fused in.

    Same semantics as :func:`numpy_ref.softmax`: with ``causal=True``, ``x`` is ``[..., T, S]``
    attention scores and query ``i`` sees keys ``0 .. i + S - T``; masked entries come out 0; a row
    with nothing to normalise (all ``-inf``, or fully masked) comes out all zeros; NaN propagates.
    """
    if not _float_pair(x) or x.size == 0:
        return numpy_ref.softmax(x, causal)
    if causal and x.ndim < 2:
        raise ValueError(f"causal softmax needs [..., T, S] scores, got shape {x.shape}")
    T, S = (x.shape[-2], x.shape[-1]) if causal else (1, x.shape[-1])
    x2 = _rows(x)
    y = np.empty_like(x2)
    _launch(_softmax_rows, _softmax_2d, x2.shape[0], _nchunks(x2.size), x2, y, T, S - T, causal)
    return y.reshape(x.shape)


@_jit
def _softmax_bwd_rows(y, dy, dx, lo, hi):
    """``dx = y * (dy - sum(dy * y))`` per row: one float64 dot, one fused multiply pass."""
    S = y.shape[1]
    for r in range(lo, hi):
        dot = np.float64(0.0)
        for j in range(S):
            dot += dy[r, j] * y[r, j]
        d = y.dtype.type(dot)  # the write pass runs in y's dtype: 8 float32 lanes, no conversions
        for j in range(S):
            dx[r, j] = y[r, j] * (dy[r, j] - d)


@_jit(**_PAR)
def _softmax_bwd_2d(y, dy, dx, nchunks):
    _chunked(_softmax_bwd_rows, y.shape[0], nchunks, (y, dy, dx))


def _row_backward(reference, body, driver, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """The wrapper both row backwards share: ``y`` (the forward's output) and ``dy`` as rows, ``body`` over
    them (serial, or ``driver``'s prange over chunks), ``dx`` in y's shape; the reference for what the
    compiled body does not take (non-float pairs, empty arrays)."""
    if not _float_pair(y, dy) or y.size == 0:
        return reference(y, dy)
    y2 = _rows(y)
    dy2 = _rows(_as(dy, y.shape, y.dtype))
    dx = np.empty_like(y2)
    _launch(body, driver, y2.shape[0], _nchunks(y2.size), y2, dy2, dx)
    return dx.reshape(y.shape)


def softmax_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Backward of softmax over the last axis: ``dx = y * (dy - sum(dy * y))`` (float64 sum)."""
    return _row_backward(numpy_ref.softmax_backward, _softmax_bwd_rows, _softmax_bwd_2d, y, dy)


@_jit
def _log_softmax_rows(x, y, lo, hi):
    """``y = x - (m + log(sum exp(x - m)))`` per row: max pass, 8-lane exp pass (float64 sum), write pass."""
    S = x.shape[1]
    for r in range(lo, hi):
        m = _row_max(x, r, S)
        for j in range(S):  # exp into y (overwritten below), then the float64 sum: see _softmax_rows
            y[r, j] = _exp(x[r, j] - m)
        s = np.float64(0.0)
        for j in range(S):
            s += y[r, j]
        # y = (x - m) - log(s): x - m is exact-ish in x's dtype and log(s) is in [0, log S], so the
        # write pass stays in x's dtype (8 float32 lanes) without losing the float64 lse's accuracy.
        ls = x.dtype.type(np.log(s))
        for j in range(S):
            y[r, j] = (x[r, j] - m) - ls


@_jit(**_PAR)
def _log_softmax_2d(x, y, nchunks):
    _chunked(_log_softmax_rows, x.shape[0], nchunks, (x, y))


def log_softmax(x: np.ndarray) -> np.ndarray:
    """``x - logsumexp(x)`` over the last axis. A row of all ``-inf`` comes out NaN, as in the reference."""
    if not _float_pair(x) or x.size == 0:
        return numpy_ref.log_softmax(x)
    x2 = _rows(x)
    y = np.empty_like(x2)
    _quiet(_launch, _log_softmax_rows, _log_softmax_2d, x2.shape[0], _nchunks(x2.size), x2, y)
    return y.reshape(x.shape)


@_jit
def _log_softmax_bwd_rows(y, dy, dx, lo, hi):
    """``dx = dy - exp(y) * sum(dy)`` per row (float64 sum, 8-lane exp)."""
    S = y.shape[1]
    for r in range(lo, hi):
        s = np.float64(0.0)
        for j in range(S):
            s += dy[r, j]
        sd = y.dtype.type(s)
        for j in range(S):
            dx[r, j] = dy[r, j] - _exp(y[r, j]) * sd


@_jit(**_PAR)
def _log_softmax_bwd_2d(y, dy, dx, nchunks):
    _chunked(_log_softmax_bwd_rows, y.shape[0], nchunks, (y, dy, dx))


def log_softmax_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Backward of log-softmax (``y`` is its output): ``dx = dy - exp(y) * sum(dy)``."""
    return _row_backward(numpy_ref.log_softmax_backward, _log_softmax_bwd_rows, _log_softmax_bwd_2d, y, dy)


# ================================================================================ cross-entropy
@_jit
def _xent_rows(x, t, ignore, loss, lse, lo, hi):
    """Per row: ``m = max``, ``s = sum exp(x - m)`` (float64), ``lse = m + log s``, ``loss = lse - x[t]``.

    Two passes over a row of V logits (max, then 8-lane exp + float64 sum); the log-probabilities are
    never written out.
    """
    V = x.shape[1]
    buf = np.empty(V, dtype=x.dtype)  # the row's exp, so the float64 sum is its own (vectorised) loop
    for r in range(lo, hi):
        m = _row_max_raw(x, r, V)
        if V == 0:
            m = x.dtype.type(0)
        for j in range(V):
            buf[j] = _exp(x[r, j] - m)  # m = -inf (all -inf row) gives NaN, as in the reference
        s = np.float64(0.0)
        for j in range(V):
            s += buf[j]
        lse[r] = np.log(s) + m
        tr = t[r]
        if tr == ignore:
            loss[r] = 0.0
        else:
            loss[r] = lse[r] - x[r, tr]


@_jit(**_PAR)
def _xent_2d(x, t, ignore, loss, lse, nchunks):
    _chunked(_xent_rows, x.shape[0], nchunks, (x, t, ignore, loss, lse))


def _targets(targets: np.ndarray, n: int) -> np.ndarray:
    """The targets as a C-contiguous int64 ``[n]`` array (their range is a precondition: see ``spec``)."""
    return _as(np.asarray(targets).reshape(-1), (n,), np.int64)


def cross_entropy(logits: np.ndarray, targets: np.ndarray, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Fused log-softmax + NLL per row of ``logits [N, V]``; returns ``(loss [N] f64, lse [N] f64)``.

    Ignored rows (``targets == ignore_index``) get loss 0. A row of all ``-inf`` logits has no
    distribution: its lse is NaN (and its loss too unless ignored), as in the reference.
    Targets must be in ``[0, V)`` or ``ignore_index`` (a precondition, not checked here: see ``spec``).
    """
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy expects [N, V] logits, got shape {logits.shape}")
    n, v = logits.shape
    t = _targets(targets, n)
    if not _float_pair(logits):
        return numpy_ref.cross_entropy(logits, t, ignore_index)
    x = np.ascontiguousarray(logits)
    loss = np.empty(n, dtype=np.float64)
    lse = np.empty(n, dtype=np.float64)
    _quiet(_launch, _xent_rows, _xent_2d, n, _nchunks(x.size), x, t, ignore_index, loss, lse)
    return loss, lse


@_jit
def _xent_bwd_rows(x, t, ignore, lse, dloss, dx, lo, hi):
    """``dx[r] = (exp(x[r] - lse[r]) - onehot(t[r])) * dloss[r]``; 0 for ignored rows.

    ``exp(x - lse)`` is computed as ``exp(x - m) * exp(m - lse)`` with ``m`` the row max, so the
    vector loop stays in x's dtype (8-lane exp for float32) while ``lse`` stays float64.
    """
    V = x.shape[1]
    for r in range(lo, hi):
        tr = t[r]
        if tr == ignore:
            for j in range(V):
                dx[r, j] = 0
            continue
        m = _row_max(x, r, V)
        g = dloss[r]
        f = x.dtype.type(np.exp(m - lse[r]) * g)
        for j in range(V):
            dx[r, j] = _exp(x[r, j] - m) * f
        dx[r, tr] = np.exp(x[r, tr] - lse[r]) * g - g


@_jit(**_PAR)
def _xent_bwd_2d(x, t, ignore, lse, dloss, dx, nchunks):
    _chunked(_xent_bwd_rows, x.shape[0], nchunks, (x, t, ignore, lse, dloss, dx))


def cross_entropy_backward(logits: np.ndarray, targets: np.ndarray, lse: np.ndarray,
                           dloss: np.ndarray, ignore_index: int) -> np.ndarray:
    """``dlogits[i] = (softmax(logits[i]) - onehot(t_i)) * dloss[i]``, 0 on ignored rows; logits' dtype."""
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy_backward expects [N, V] logits, got shape {logits.shape}")
    n, v = logits.shape
    t = _targets(targets, n)
    if not _float_pair(logits):
        return numpy_ref.cross_entropy_backward(logits, t, lse, dloss, ignore_index)
    x = np.ascontiguousarray(logits)
    lse64 = _as(np.asarray(lse).reshape(-1), (n,), np.float64)
    dl64 = _as(dloss, (n,), np.float64)
    dx = np.empty_like(x)
    _quiet(_launch, _xent_bwd_rows, _xent_bwd_2d, n, _nchunks(x.size), x, t, ignore_index, lse64, dl64, dx)
    return dx


# =================================================================================== layer norm
@_jit(inline="always")
def _ln_row(x, r, w, b, eps, y, mean, rstd):
    """Row ``r``: float64 mean pass; float64 centred-variance pass that also stores ``x - mean``
    (subtracted in float64, rounded once to y's dtype) into ``y``; then one in-place scale pass
    ``y = y * rstd * w + b`` in y's dtype (8 float32 lanes, not 4 float64 ones).

    Why the centred values are stored by the float64 pass: subtracting a mean rounded to float32
    (``x - float32(mean)``) carries the mean's rounding error, up to half an ulp of the mean
    (3.8e-6 near 100), into every output times ``rstd * w``, however small ``x - mean`` is; rounding
    the float64 difference instead leaves an error relative to ``x - mean`` itself. (Subtracting the
    remainder ``mean - float32(mean)`` in the float32 pass does not survive: ``reassoc`` lets LLVM
    fold ``(x - m) - dm`` back into ``x - float32(m + dm)``.) Three reads of a row that sits in L1."""
    C = x.shape[1]
    dt = y.dtype
    s = np.float64(0.0)
    for j in range(C):
        s += x[r, j]
    mu = s / C
    s2 = np.float64(0.0)
    for j in range(C):
        d = x[r, j] - mu
        s2 += d * d
        y[r, j] = d
    rs = 1.0 / np.sqrt(s2 / C + eps)
    k = dt.type(rs)
    for j in range(C):
        y[r, j] = y[r, j] * k * w[j] + b[j]
    mean[r] = mu
    rstd[r] = rs


@_jit
def _ln_rows(x, w, b, eps, y, mean, rstd, lo, hi):
    for r in range(lo, hi):
        _ln_row(x, r, w, b, eps, y, mean, rstd)


@_jit
def _add_ln_rows(x, res, w, b, eps, s, y, mean, rstd, lo, hi):
    """Per row: ``s = x + res`` in x's dtype (the residual sum, as ``x + res`` rounds it), then the layer
    norm of that row of ``s`` while it is still in L1: one pass over memory fewer than an add and a norm."""
    C = x.shape[1]
    for r in range(lo, hi):
        for j in range(C):
            s[r, j] = x[r, j] + res[r, j]
        _ln_row(s, r, w, b, eps, y, mean, rstd)


@_jit(**_PAR)
def _ln_2d(x, w, b, eps, y, mean, rstd, nchunks):
    _chunked(_ln_rows, x.shape[0], nchunks, (x, w, b, eps, y, mean, rstd))


def _ln_buffers(x2: np.ndarray, w, b):
    """For the rows ``x2 [N, C]``: ``w`` and ``b`` as contiguous ``[C]`` arrays (the row math is float64 anyway),
    and the empty outputs ``y`` (x2's shape), ``mean`` and ``rstd [N]``, all in x2's dtype."""
    C = x2.shape[1]
    pdt = np.result_type(np.asarray(w).dtype, np.asarray(b).dtype, x2.dtype)
    return (_as(w, (C,), pdt), _as(b, (C,), pdt), np.empty_like(x2), np.empty(x2.shape[0], dtype=x2.dtype),
            np.empty(x2.shape[0], dtype=x2.dtype))


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layer norm over the last axis: ``(y, mean, rstd)``; mean/rstd float64-accumulated, x's dtype."""
    if not _float_pair(x) or x.size == 0 or x.ndim == 0:
        return numpy_ref.layer_norm(x, w, b, eps)
    x2 = _rows(x)
    w1, b1, y, mean, rstd = _ln_buffers(x2, w, b)
    _launch(_ln_rows, _ln_2d, x2.shape[0], _nchunks(x2.size), x2, w1, b1, float(eps), y, mean, rstd)
    return y.reshape(x.shape), mean.reshape(x.shape[:-1]), rstd.reshape(x.shape[:-1])


@_jit(**_PAR)
def _add_ln_2d(x, res, w, b, eps, s, y, mean, rstd, nchunks):
    _chunked(_add_ln_rows, x.shape[0], nchunks, (x, res, w, b, eps, s, y, mean, rstd))


def add_layer_norm(x: np.ndarray, r: np.ndarray, w: np.ndarray, b: np.ndarray,
                   eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Layer norm of ``x + r`` over the last axis, in one pass: ``(y, s = x + r, mean, rstd)``."""
    if not _float_pair(x) or x.size == 0 or x.ndim == 0 or r.dtype != x.dtype:
        return numpy_ref.add_layer_norm(x, r, w, b, eps)
    x2, r2 = _rows(x), _rows(r)
    w1, b1, y, mean, rstd = _ln_buffers(x2, w, b)
    s = np.empty_like(x2)
    _launch(_add_ln_rows, _add_ln_2d, x2.shape[0], _nchunks(x2.size), x2, r2, w1, b1, float(eps), s, y, mean, rstd)
    return y.reshape(x.shape), s.reshape(x.shape), mean.reshape(x.shape[:-1]), rstd.reshape(x.shape[:-1])


@_jit
def _ln_bwd_rows(dy, x, w, mean, rstd, dx, dw, db, lo, hi):
    """Rows ``lo..hi`` of the layer-norm backward; ``dw``/``db`` are this chunk's float64 partial sums.

    Per row: one pass for ``mean(g)`` and ``mean(g * xhat)`` (``g = dy * w``) that also accumulates
    ``dw += dy * xhat`` and ``db += dy``, then one write pass for
    ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))`` in x's dtype (the sums stay float64).
    """
    C = x.shape[1]
    dt = dx.dtype
    for r in range(lo, hi):
        mu = np.float64(mean[r])
        rs = np.float64(rstd[r])
        sg = np.float64(0.0)
        sgx = np.float64(0.0)
        for j in range(C):
            xh = (x[r, j] - mu) * rs
            d = np.float64(dy[r, j])
            g = d * w[j]
            sg += g
            sgx += g * xh
            dw[j] += d * xh
            db[j] += d
        m = dt.type(mu)
        k = dt.type(rs)
        mg = dt.type(sg / C)
        mgx = dt.type(sgx / C)
        for j in range(C):
            dx[r, j] = k * (dy[r, j] * w[j] - mg - (x[r, j] - m) * k * mgx)


@_jit
def _ln_bwd_chunks(dy, x, w, mean, rstd, dx, dwp, dbp, c0, c1):
    """Chunks ``c0..c1`` of the rows, chunk ``c`` summing into its own partials ``dwp[c]``, ``dbp[c]``."""
    N = x.shape[0]
    nch = dwp.shape[0]
    for c in range(c0, c1):
        _ln_bwd_rows(dy, x, w, mean, rstd, dx, dwp[c], dbp[c], c * N // nch, (c + 1) * N // nch)


@_jit(**_PAR)
def _ln_bwd_2d(dy, x, w, mean, rstd, dx, dwp, dbp, nchunks):
    _chunked(_ln_bwd_chunks, nchunks, nchunks, (dy, x, w, mean, rstd, dx, dwp, dbp))


def layer_norm_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, mean: np.ndarray,
                        rstd: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward of ``layer_norm``: ``(dx, dw [C], db [C])``. Each parallel chunk sums its own float64
    ``dw``/``db`` rows (no shared writes); the chunks' partials are added at the end."""
    if not _float_pair(x, dy) or x.size == 0 or x.ndim == 0:
        return numpy_ref.layer_norm_backward(dy, x, w, mean, rstd)
    x2 = _rows(x)
    N, C = x2.shape
    dy2 = _rows(_as(dy, x.shape, x.dtype))
    w1 = _as(w, (C,), np.result_type(np.asarray(w).dtype, x.dtype))
    mean1 = _as(np.asarray(mean).reshape(-1), (N,), x.dtype)  # read as float64 inside the kernel
    rstd1 = _as(np.asarray(rstd).reshape(-1), (N,), x.dtype)
    nch = _nchunks(x2.size)
    dx = np.empty_like(x2)
    dwp = np.zeros((nch, C))
    dbp = np.zeros((nch, C))
    _launch(_ln_bwd_chunks, _ln_bwd_2d, nch, nch, dy2, x2, w1, mean1, rstd1, dx, dwp, dbp)
    wdt = np.asarray(w).dtype
    dw, db = (dwp[0], dbp[0]) if nch == 1 else (dwp.sum(axis=0), dbp.sum(axis=0))
    return dx.reshape(x.shape), dw.astype(wdt), db.astype(wdt)


