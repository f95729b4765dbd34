"""``F.cross_entropy(..., label_smoothing=eps)``: PyTorch's definition, against a hand-written NumPy
formula and against ``torch.nn.functional.cross_entropy`` when torch is installed."""
from __future__ import annotations

import numpy as np
import pytest

import tinytensor as tt
import tinytensor.functional as F

BACKENDS = ["numpy", "numba"]


def _np_smoothed(x, t, eps, ignore, reduction):
    """Per row: -(1 - eps) log p[t] - eps / V * sum_c log p[c]; ignored rows 0 and not counted."""
    lp = x - x.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    keep = t != ignore
    rows = []
    for i in range(x.shape[0]):
        rows.append(-(1 - eps) * lp[i, t[i]] - eps * lp[i].sum() / x.shape[1] if keep[i] else 0.0)
    rows = np.array(rows)
    return {"none": rows, "sum": rows.sum(), "mean": rows.sum() / keep.sum()}[reduction]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_smoothed_loss_matches_the_formula(backend, dtype, reduction, rng):
    x = rng.standard_normal((7, 5)) * 3
    t = np.array([0, 4, -100, 2, 2, -100, 1])
    with tt.set_backend(backend):
        got = F.cross_entropy(tt.tensor(x, dtype=dtype), t, ignore_index=-100, reduction=reduction,
                              label_smoothing=0.1)
    assert got.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(got.data, _np_smoothed(x, t, 0.1, -100, reduction), rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_smoothing_gradient_is_softmax_minus_the_smoothed_target(backend, rng):
    x = tt.tensor(rng.standard_normal((4, 6)), dtype=np.float64, requires_grad=True)
    t = np.array([1, 5, 0, 3])
    with tt.set_backend(backend):
        F.cross_entropy(x, t, label_smoothing=0.2, reduction="sum").backward()
    p = np.exp(x.data) / np.exp(x.data).sum(-1, keepdims=True)
    target = np.full((4, 6), 0.2 / 6)
    target[np.arange(4), t] += 0.8
    np.testing.assert_allclose(x.grad, p - target, rtol=1e-12, atol=1e-14)
    with tt.set_backend(backend):
        tt.gradcheck(lambda a: F.cross_entropy(a, np.array([1, -1, 0, 3]), ignore_index=-1, label_smoothing=0.1),
                     [x])


def test_zero_smoothing_is_plain_cross_entropy_and_bad_values_are_named(rng):
    x = tt.tensor(rng.standard_normal((3, 4)))
    t = np.array([0, 1, 3])
    assert F.cross_entropy(x, t, label_smoothing=0.0).item() == F.cross_entropy(x, t).item()
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(tt.UsageError, match="label_smoothing must be in"):
            F.cross_entropy(x, t, label_smoothing=bad)
    with pytest.raises(tt.DTypeError, match="label_smoothing"):
        F.cross_entropy(x, t, label_smoothing="0.1")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.1, 0.5])
def test_matches_torch(backend, reduction, eps, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 5, 7))
    t = rng.integers(0, 7, (2, 5))
    t[0, 1] = t[1, 3] = -100
    ours = tt.tensor(x, dtype=np.float64, requires_grad=True)
    with tt.set_backend(backend):
        loss = F.cross_entropy(ours, t, ignore_index=-100, reduction=reduction, label_smoothing=eps)
    up = rng.standard_normal(loss.shape)
    loss.backward(up)
    tx = torch.tensor(x.reshape(-1, 7), requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tx, torch.tensor(t.reshape(-1)), ignore_index=-100,
                                           reduction=reduction, label_smoothing=eps)
    tl.backward(torch.tensor(up.reshape(tl.shape)))
    np.testing.assert_allclose(loss.data.reshape(-1), tl.detach().numpy().reshape(-1), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours.grad.reshape(-1, 7), tx.grad.numpy(), rtol=1e-10, atol=1e-14)
