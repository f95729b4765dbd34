"""nn modules, state dicts, optimizers against their formulas, clipping, the LR schedule, an MLP that learns."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tinytensor as tt
import tinytensor.functional as F
from tinytensor import nn, optim


class TwoLayer(nn.Module):
    def __init__(self, rng):
        super().__init__()
        self.fc = nn.Linear(3, 5, rng=rng)
        self.ln = nn.LayerNorm(5)
        self.blocks = nn.ModuleList([nn.Linear(5, 5, bias=False, rng=rng) for _ in range(2)])
        self.head = nn.Linear(5, 2, rng=rng)

    def forward(self, x):
        h = self.ln(self.fc(x)).relu()
        for b in self.blocks:
            h = h + b(h)
        return self.head(h)


def test_parameters_are_registered_in_order(rng):
    m = TwoLayer(rng)
    names = [n for n, _ in m.named_parameters()]
    assert names == ["fc.weight", "fc.bias", "ln.weight", "ln.bias", "blocks.0.weight", "blocks.1.weight",
                     "head.weight", "head.bias"]
    assert m.num_parameters() == 15 + 5 + 10 + 50 + 10 + 2
    assert m.fc.weight.shape == (5, 3)   # PyTorch layout [out, in]
    m.eval()
    assert all(not mod.training for mod in m.modules())


def test_shared_parameter_listed_once(rng):
    m = nn.Module()
    m.a = nn.Embedding(4, 3, rng=rng)
    m.b = nn.Linear(3, 4, bias=False, rng=rng)
    m.b.weight = m.a.weight
    assert [n for n, _ in m.named_parameters()] == ["a.weight"]


def test_state_dict_round_trip_and_checks(rng):
    a, b = TwoLayer(rng), TwoLayer(np.random.default_rng(99))
    b.load_state_dict(a.state_dict())
    x = tt.tensor(rng.standard_normal((4, 3)).astype(np.float32))
    np.testing.assert_array_equal(a(x).data, b(x).data)
    sd = dict(a.state_dict())
    sd.pop("head.bias")
    sd["extra"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"missing keys \['head.bias'\], unexpected keys \['extra'\]"):
        b.load_state_dict(sd)
    bad = dict(a.state_dict())
    bad["fc.weight"] = np.zeros((3, 5))
    with pytest.raises(ValueError, match=r"fc.weight has shape \(3, 5\) in the state dict but \(5, 3\)"):
        b.load_state_dict(bad)


def test_dropout_module(rng):
    d = nn.Dropout(0.5, rng=rng)
    x = tt.ones(1000)
    y = d(x)
    kept = y.data != 0
    assert 400 < kept.sum() < 600 and np.all(y.data[kept] == 2.0)
    d.eval()
    assert d(x) is x
    with pytest.raises(ValueError, match="p must be in"):
        nn.Dropout(1.0)


def test_sgd_momentum_matches_formula():
    p = nn.Parameter(np.array([1.0, -2.0]))
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
    buf = None
    ref = p.data.copy()
    for step in range(3):
        g = np.array([0.5, 0.25]) * (step + 1)
        p.grad = g.copy()
        opt.step()
        d = g + 0.01 * ref
        buf = d if buf is None else 0.9 * buf + d
        ref = ref - 0.1 * buf
    np.testing.assert_allclose(p.data, ref)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_adamw_matches_formula(backend):
    p = nn.Parameter(np.array([1.0, -2.0, 3.0]))
    opt = optim.AdamW([p], lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    ref, m, v = p.data.copy(), np.zeros(3), np.zeros(3)
    with tt.set_backend(backend):
        for t in range(1, 6):
            g = np.array([0.3, -0.1, 0.05]) * t
            p.grad = g.copy()
            opt.step()
            ref = ref * (1 - 0.01 * 0.1)
            m = 0.9 * m + 0.1 * g
            v = 0.99 * v + 0.01 * g * g
            ref = ref - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.99 ** t)) + 1e-8)
    np.testing.assert_allclose(p.data, ref, rtol=1e-12)


def test_adamw_param_groups_and_state_dict_round_trip():
    a, b = nn.Parameter(np.ones(3)), nn.Parameter(np.ones(2))
    opt = optim.AdamW([{"params": [a], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}], lr=0.1)
    for _ in range(2):
        a.grad, b.grad = np.ones(3), np.ones(2)
        opt.step()
    assert a.data[0] != b.data[0]   # only a decays
    sd = opt.state_dict()
    a2, b2 = nn.Parameter(a.data.copy()), nn.Parameter(b.data.copy())
    opt2 = optim.AdamW([{"params": [a2], "weight_decay": 0.1}, {"params": [b2], "weight_decay": 0.0}], lr=0.1)
    opt2.load_state_dict(sd)
    for o, (x, y) in ((opt, (a, b)), (opt2, (a2, b2))):
        x.grad, y.grad = np.full(3, 0.5), np.full(2, 0.5)
        o.step()
    np.testing.assert_array_equal(a.data, a2.data)
    np.testing.assert_array_equal(b.data, b2.data)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.AdamW([])


def test_clip_grad_norm():
    a, b = nn.Parameter(np.zeros(2)), nn.Parameter(np.zeros(1))
    a.grad, b.grad = np.array([3.0, 0.0]), np.array([4.0])
    norm = optim.clip_grad_norm_([a, b], 1.0)
    assert norm == 5.0
    np.testing.assert_allclose(np.sqrt((a.grad ** 2).sum() + (b.grad ** 2).sum()), 1.0, rtol=1e-5)
    a.grad = np.array([np.inf, 1.0])
    before = a.grad.copy()
    assert not math.isfinite(optim.clip_grad_norm_([a, b], 1.0))
    np.testing.assert_array_equal(a.grad, before)   # reported, not applied


def test_clip_grad_norm_accumulates_in_float64():
    p = nn.Parameter(np.zeros(4, np.float32))
    p.grad = np.full(4, 3e19, np.float32)            # squares overflow float32
    assert optim.clip_grad_norm_([p], 1.0) == pytest.approx(6e19, rel=1e-6)


def test_cosine_lr_schedule():
    kw = dict(learning_rate=1e-3, min_lr=1e-4, warmup_iters=10, lr_decay_iters=100)
    assert optim.cosine_lr(0, **kw) == pytest.approx(1e-3 / 11)
    assert optim.cosine_lr(10, **kw) == pytest.approx(1e-3)
    assert optim.cosine_lr(55, **kw) == pytest.approx(5.5e-4)
    assert optim.cosine_lr(100, **kw) == pytest.approx(1e-4)
    assert optim.cosine_lr(500, **kw) == 1e-4


def test_mlp_learns_xor_like_problem():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (256, 2)).astype(np.float32)
    y = ((x[:, 0] * x[:, 1]) > 0).astype(np.int64)
    model = nn.Sequential(nn.Linear(2, 32, rng=rng), nn.GELU(), nn.Linear(32, 32, rng=rng), nn.ReLU(),
                          nn.Linear(32, 2, rng=rng))
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    first = None
    for _ in range(300):
        loss = F.cross_entropy(model(tt.tensor(x)), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 0.6
    assert loss.item() < 0.1
    with tt.no_grad():
        acc = (model(tt.tensor(x)).data.argmax(-1) == y).mean()
    assert acc > 0.97


def test_profile_table():
    rng = np.random.default_rng(0)
    lin = nn.Linear(8, 4, rng=rng)
    with tt.profile() as prof:
        loss = F.cross_entropy(lin(tt.tensor(rng.standard_normal((16, 8)).astype(np.float32))), np.zeros(16, int))
        loss.backward()
    st = prof.stats
    assert st["linear"].calls == 1 and st["linear"].flops == 2 * 16 * 8 * 4
    assert st["linear"].backward_s > 0 and st["cross_entropy"].calls == 1
    assert "linear" in prof.table() and "saved MB" in prof.table()


def test_profile_counts_saved_arrays_that_are_views_of_new_buffers_not_inputs_or_outputs():
    """add_layer_norm keeps the sum and the row statistics (reshaped views of fresh buffers: counted); ReLU keeps
    its output and layer norm a reshape of its input (views of activations: not counted)."""
    rng = np.random.default_rng(0)
    x, r = (tt.tensor(rng.standard_normal((6, 5, 8)), requires_grad=True) for _ in range(2))
    w, b = tt.tensor(np.ones(8), requires_grad=True), tt.tensor(np.zeros(8), requires_grad=True)
    with tt.profile() as prof:
        y = F.relu(F.layer_norm(F.layer_norm(x, w, b, residual=r), w, b))
    st = prof.stats
    assert st["add_layer_norm"].saved_bytes == 8 * (6 * 5 * 8 + 2 * 6 * 5)    # s, mean, rstd (float64)
    assert st["layer_norm"].saved_bytes == 8 * 2 * 6 * 5                        # mean, rstd; x is the input
    assert st["relu"].saved_bytes == 0 and y.shape == (6, 5, 8)


@pytest.mark.parametrize("make", [
    lambda ps, s: optim.AdamW(ps, lr=s(1e-2), betas=(s(0.9), s(0.99)), eps=s(1e-8), weight_decay=s(0.1)),
    lambda ps, s: optim.SGD(ps, lr=s(0.1), momentum=s(0.9), weight_decay=s(0.01)),
])
def test_optimizers_take_numpy_scalar_hyperparameters(make):
    # NumPy scalars (a config read with NumPy, a schedule computed in NumPy) behave as Python floats
    grads = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    results = []
    for scalar in (float, np.float32, np.float64):
        p = nn.Parameter(np.ones(4, np.float32))
        opt = make([p], scalar)
        for g in grads:
            p.grad = g.copy()
            opt.step()
        assert p.data.dtype == np.float32
        results.append(p.data.copy())
    # float32 scalars round the hyperparameters to float32 first: equal to that rounding, not bitwise
    np.testing.assert_array_equal(results[0], results[2])
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6)


def test_modules_take_numpy_scalars():
    d = nn.Dropout(np.float32(0.25))
    assert isinstance(d.p, float) and d.p == 0.25
    assert nn.Dropout(np.float64(0.0))(tt.ones(3)).shape == (3,)


# ---------------------------------------------------------------------------- uninitialised layers, loading
def test_init_false_draws_nothing_and_init_true_draws_as_before():
    rng = np.random.default_rng(0)
    lin, emb = nn.Linear(6, 4, rng=rng, init=False), nn.Embedding(5, 3, rng=rng, init=False)
    assert lin.weight.shape == (4, 6) and lin.bias.shape == (4,) and emb.weight.shape == (5, 3)
    assert lin.weight.dtype == emb.weight.dtype == np.float32
    assert rng.bit_generator.state == np.random.default_rng(0).bit_generator.state    # no draws
    ref = np.random.default_rng(1)
    bound = 1 / math.sqrt(6)
    lin = nn.Linear(6, 4, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(lin.weight.data, ref.uniform(-bound, bound, (4, 6)).astype(np.float32))
    np.testing.assert_array_equal(lin.bias.data, ref.uniform(-bound, bound, 4).astype(np.float32))


@pytest.mark.parametrize("shape", [(130, 70), (65, 200), (64, 300), (3, 5)])
@pytest.mark.parametrize("src_dtype", [np.float32, np.float64, np.float16])
def test_load_state_dict_copies_transposed_sources_exactly(shape, src_dtype):
    rng = np.random.default_rng(0)
    lin = nn.Linear(shape[1], shape[0], bias=False, init=False)
    src = rng.standard_normal(shape[::-1]).astype(src_dtype).T       # a transposed view, as a Conv1D weight
    lin.load_state_dict({"weight": src})
    np.testing.assert_array_equal(lin.weight.data, src.astype(np.float32))
    assert lin.weight.data.flags.c_contiguous and not np.shares_memory(lin.weight.data, src)
