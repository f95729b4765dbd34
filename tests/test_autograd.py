"""The engine: graph walk, accumulation, no_grad, graph release, dtypes, errors, gradcheck itself."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import tinytensor as tt
import tinytensor.functional as F
from tinytensor.autograd import Function, unbroadcast


def test_simple_chain_rule():
    x = tt.tensor([[1.0, 2.0]], requires_grad=True)
    y = (x * x * 3.0 + x).sum()   # dy/dx = 6x + 1
    y.backward()
    np.testing.assert_allclose(x.grad, [[7.0, 13.0]])


def test_gradient_accumulates_across_uses_and_calls():
    x = tt.tensor([2.0], dtype=np.float64, requires_grad=True)
    y = x * x + x * 5.0           # uses x three times: 2x + 5
    y.backward(np.ones(1))
    np.testing.assert_allclose(x.grad, [9.0])
    (x * 4.0).sum().backward()    # .grad accumulates across backward calls, as in PyTorch
    np.testing.assert_allclose(x.grad, [13.0])


def test_long_chain_has_no_recursion_error():
    x = tt.tensor([1.0], dtype=np.float64, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 1e-6
    y.backward(np.ones(1))
    assert x.grad[0] == 1.0
    np.testing.assert_allclose(y.data, [1.1])


def test_diamond_graph_sums_both_paths():
    x = tt.tensor(3.0, dtype=np.float64, requires_grad=True)
    a = x.exp()
    b = a * x
    c = a + b                      # d/dx (e^x + x e^x) = e^x (2 + x)
    c.backward()
    np.testing.assert_allclose(x.grad, np.exp(3.0) * 5.0)


def test_no_grad_builds_no_graph():
    x = tt.tensor([1.0, 2.0], requires_grad=True)
    with tt.no_grad():
        y = (x * 2).sum()
    assert not y.requires_grad and y._node is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()

    @tt.no_grad()
    def f(t):
        return t * 3

    assert not f(x).requires_grad
    with tt.no_grad():
        with tt.enable_grad():
            assert (x * 2).requires_grad


def test_graph_is_released_and_second_backward_raises():
    x = tt.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()
    x.grad = None
    z = (x.exp() * x).sum()
    z.backward(retain_graph=True)
    g1 = x.grad.copy()
    z.backward()
    np.testing.assert_allclose(x.grad, 2 * g1)


def test_activations_are_freed_after_backward():
    """Memory does not grow across training steps: intermediates die once backward has run."""
    w = tt.tensor(np.ones((64, 64)), dtype=np.float32, requires_grad=True)
    refs = []
    for _ in range(5):
        h = (tt.tensor(np.ones((8, 64), np.float32)) @ w).tanh()
        refs.append(weakref.ref(h))
        loss = (h * h).mean()
        loss.backward()
        del h
        # loss is still alive here (a user often keeps it): its released node must not pin h
    gc.collect()
    assert all(r() is None for r in refs)


def test_training_steps_do_not_grow_memory():
    import tracemalloc
    rng = np.random.default_rng(0)
    model = tt.nn.Sequential(tt.nn.Linear(32, 64, rng=rng), tt.nn.GELU(), tt.nn.Linear(64, 4, rng=rng))
    opt = tt.optim.AdamW(model.parameters(), lr=1e-3)
    x = rng.standard_normal((16, 32)).astype(np.float32)
    y = rng.integers(0, 4, 16)

    def step():
        loss = F.cross_entropy(model(tt.tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    for _ in range(3):
        step()
    tracemalloc.start()
    step()
    base, _ = tracemalloc.get_traced_memory()
    for _ in range(30):
        step()
    now, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert now - base < 64 * 1024, f"memory grew by {now - base} bytes over 30 steps"


def test_unbroadcast():
    g = np.ones((2, 3, 4))
    np.testing.assert_array_equal(unbroadcast(g, (3, 1)), np.full((3, 1), 8.0))
    np.testing.assert_array_equal(unbroadcast(g, ()), 24.0)
    with pytest.raises(ValueError, match="cannot be reduced"):
        unbroadcast(g, (5,))


def test_engine_checks_gradient_count_and_shape():
    class BadCount(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, g):
            return g, g

    class BadShape(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, g):
            return (np.ones(7),)

    x = tt.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="returned 2 gradients for 1 inputs"):
        BadCount.apply(x).sum().backward()
    with pytest.raises(RuntimeError, match=r"cannot be reduced to input shape \(2,\)"):
        BadShape.apply(x).sum().backward()


def test_dtype_promotion_follows_numpy():
    f32 = tt.tensor([1.0, 2.0])
    f64 = tt.tensor([1.0, 2.0], dtype=np.float64)
    assert f32.dtype == np.float32
    assert (f32 * 2.0).dtype == np.float32          # Python scalars take the tensor's dtype
    assert (f32 + 1).dtype == np.float32
    assert (f32 + f64).dtype == np.float64          # arrays promote
    assert (tt.tensor([1, 2]) * 0.5).dtype == np.float64
    assert tt.tensor([1, 2]).dtype == np.int64
    x = tt.tensor([1.0, 2.0], requires_grad=True)
    y = tt.tensor([1.0, 2.0], dtype=np.float64, requires_grad=True)
    (x * y).sum().backward()
    assert x.grad.dtype == np.float32 and y.grad.dtype == np.float64


def test_ndarray_on_the_left_defers_to_tensor():
    x = tt.tensor([1.0, 2.0], requires_grad=True)
    y = np.array([3.0, 4.0], np.float32) * x
    assert isinstance(y, tt.Tensor)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, 4.0])


def test_composed_helpers():
    a = tt.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    s = tt.stack([a, a * 2], axis=1)
    assert s.shape == (2, 2, 3)
    parts = tt.split(a, [1, 2], axis=1)
    assert [p.shape for p in parts] == [(2, 1), (2, 1), (2, 1)]
    assert a.squeeze().shape == (2, 3) and a.expand_dims((0, -1)).shape == (1, 2, 3, 1)
    assert a.swapaxes(0, 1).shape == (3, 2)
    m = a.masked_fill(np.array([True, False, True]), -1.0)
    np.testing.assert_array_equal(m.data, [[-1, 1, -1], [-1, 4, -1]])
    (s.sum() + sum(p.sum() * (i + 1) for i, p in enumerate(parts)) + m.sum()).backward()
    # stack gives 1 + 2, split gives column j + 1, masked columns get nothing from masked_fill
    np.testing.assert_allclose(a.grad, [[3 + 1 + 0, 3 + 2 + 1, 3 + 3 + 0]] * 2)


def test_repr_and_item():
    x = tt.tensor([[1.0]], requires_grad=True)
    assert "requires_grad=True" in repr(x)
    assert "grad_fn=mul" in repr(x * 2)
    assert x.item() == 1.0
    with pytest.raises(ValueError, match="one-element"):
        tt.tensor([1.0, 2.0]).item()


# ----------------------------------------------------------------------------- bad input
def test_errors_name_the_op_and_shapes():
    a, b = tt.tensor(np.ones((2, 3))), tt.tensor(np.ones((4, 5)))
    with pytest.raises(tt.ShapeError, match=r"add: shapes \(2, 3\) and \(4, 5\) do not broadcast"):
        a + b
    with pytest.raises(tt.ShapeError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) do not align"):
        a @ b
    with pytest.raises(tt.ShapeError, match=r"reshape: cannot reshape array of shape \(2, 3\)"):
        a.reshape(4, 2)
    with pytest.raises(tt.ShapeError, match="sum: axis 5 is out of range"):
        a.sum(axis=5)
    with pytest.raises(tt.ShapeError, match=r"layer_norm: x \(2, 3\) needs weight and bias of shape \(3,\), got \(4,\)"):
        F.layer_norm(a, tt.tensor(np.ones(4)))
    with pytest.raises(tt.ShapeError, match=r"where: shapes \(3,\) and \(2, 3\) and \(4, 5\)"):
        tt.where(np.ones(3, bool), a, b)
    with pytest.raises(tt.ShapeError, match=r"linear: x \(2, 3\) needs weight \[out, 3\].*got weight \(4, 5\)"):
        F.linear(a, b)
    with pytest.raises(tt.ShapeError, match=r"attention: q \(2, 3\)"):
        tt.ops.Attention.apply(a, a, a, scale=1.0)


def test_cross_entropy_targets_are_checked_at_the_boundary():
    logits = tt.tensor(np.ones((2, 3)))
    with pytest.raises(tt.UsageError, match=r"cross_entropy: targets must be in \[0, 3\).*got 7"):
        F.cross_entropy(logits, np.array([0, 7]))
    with pytest.raises(tt.UsageError, match=r"got -1"):          # negative ids are not wrapped around
        F.cross_entropy(logits, np.array([-1, 0]))
    with pytest.raises(tt.UsageError, match=r"got -100"):        # -100 counts only as an ignore_index
        F.cross_entropy(logits, np.array([-100, 0]), ignore_index=5)
    F.cross_entropy(logits, np.array([-100, 0]))                 # ... which is the default one
    with pytest.raises(tt.ShapeError, match=r"logits \(2, 3\) need targets of shape \(2,\), got targets of shape \(3,\)"):
        F.cross_entropy(logits, np.array([0, 1, 2]))
    with pytest.raises(tt.DTypeError, match="targets must be integers, got dtype float64"):
        F.cross_entropy(logits, np.array([0.0, 1.0]))
    with pytest.raises(TypeError):                               # DTypeError is a TypeError too
        F.cross_entropy(logits, np.array([0.0, 1.0]))
    with pytest.raises(tt.UsageError, match="reduction must be"):
        F.cross_entropy(logits, np.array([0, 1]), reduction="avg")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_embedding_ids_are_checked_at_the_boundary(backend):
    w = tt.tensor(np.ones((2, 3)), requires_grad=True)
    with tt.set_backend(backend):
        with pytest.raises(tt.UsageError, match=r"embedding: ids must be in \[0, 2\); got 2"):
            F.embedding(np.array([0, 2]), w)
        with pytest.raises(tt.UsageError, match=r"got -1"):
            F.embedding(np.array([[0, -1]]), w)
        with pytest.raises(tt.DTypeError, match="ids must be integers, got dtype float32"):
            F.embedding(np.array([0.0, 1.0], np.float32), w)
        with pytest.raises(tt.ShapeError, match=r"weight must be 2-D \[num, dim\], got shape \(3,\)"):
            F.embedding(np.array([0]), tt.tensor(np.ones(3)))
        F.embedding(np.array([], np.int64), w)                    # no ids: nothing to check


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, float("nan"), float("inf"), np.float32(1.0)])
def test_dropout_probability_is_checked_at_the_boundary(p):
    x = tt.tensor(np.ones(8))
    with pytest.raises(tt.UsageError, match=r"p must be in \[0, 1\)"):
        F.dropout(x, p)
    with pytest.raises(tt.UsageError, match=r"Dropout: p must be in \[0, 1\)"):
        tt.nn.Dropout(p)
    with pytest.raises(tt.UsageError, match=r"dropout_p must be in \[0, 1\)"):
        q = tt.tensor(np.ones((1, 1, 2, 2)))
        F.scaled_dot_product_attention(q, q, q, dropout_p=p)
    with pytest.raises(tt.DTypeError, match="p must be a real number, got str"):
        F.dropout(x, "0.5")


def test_error_messages_name_no_command_line_flags():
    x = tt.tensor(np.ones((2, 3)))
    calls = [lambda: F.cross_entropy(x, np.array([0, 9])), lambda: F.embedding(np.array([5]), x),
             lambda: F.dropout(x, 2.0), lambda: x + tt.tensor(np.ones(4)), lambda: tt.optim.AdamW([], lr=-1)]
    for call in calls:
        with pytest.raises(ValueError) as e:
            call()
        assert "--" not in str(e.value), str(e.value)


def test_backward_errors():
    x = tt.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"one-element tensor; got shape \(2,\)"):
        (x * 2).backward()
    with pytest.raises(tt.ShapeError, match=r"grad has shape \(3,\) but the tensor has shape \(2,\)"):
        (x * 2).backward(np.ones(3))
    with pytest.raises(tt.DTypeError, match="only floating tensors can require grad"):
        tt.tensor([1, 2], requires_grad=True)


def test_cross_entropy_ignore_index_and_reductions():
    logits = tt.tensor(np.log(np.array([[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]])), dtype=np.float64,
                       requires_grad=True)
    t = np.array([0, 1, -100])
    loss = F.cross_entropy(logits, t, ignore_index=-100)
    np.testing.assert_allclose(loss.item(), -(np.log(0.5) + np.log(0.75)) / 2)
    loss.backward()
    np.testing.assert_array_equal(logits.grad[2], [0.0, 0.0])
    assert np.isnan(F.cross_entropy(logits, np.array([-100, -100, -100]), ignore_index=-100).item())
    np.testing.assert_allclose(F.cross_entropy(logits, t, ignore_index=-100, reduction="sum").item(),
                               -(np.log(0.5) + np.log(0.75)))


# ------------------------------------------------------------------------------ gradcheck
def test_gradcheck_catches_a_wrong_backward_and_names_it():
    class WrongSquare(Function):
        @staticmethod
        def forward(ctx, a):
            ctx.a = a
            return a * a

        @staticmethod
        def backward(ctx, g):
            return (g * ctx.a * 2.01,)   # 0.5 % too large

    x = tt.tensor(np.linspace(1, 2, 6).reshape(2, 3), requires_grad=True)
    with pytest.raises(tt.GradcheckError) as e:
        tt.gradcheck(WrongSquare.apply, [x], name="wrong_square")
    msg = str(e.value)
    assert "wrong_square" in msg and "input 0" in msg and "analytic" in msg and "numeric" in msg
    res = tt.gradcheck(WrongSquare.apply, [x], raise_exception=False)
    assert not res.passed and res.max_rel_err > 1e-3
    # a large input goes through random projections, which catch it too
    big = tt.tensor(np.linspace(1, 2, 30_000), requires_grad=True)
    res = tt.gradcheck(WrongSquare.apply, [big], raise_exception=False)
    assert res.mode == "projection" and not res.passed


def test_gradcheck_catches_nondeterminism_and_nonzero_for_zero_upstream():
    calls = [0]

    class Flaky(Function):
        @staticmethod
        def forward(ctx, a):
            return a * 1.0

        @staticmethod
        def backward(ctx, g):
            calls[0] += 1
            return (g + (1e-3 if calls[0] % 2 else 0.0),)

    x = tt.tensor(np.ones(3), requires_grad=True)
    res = tt.gradcheck(Flaky.apply, [x], raise_exception=False)
    assert any("second backward" in f for f in res.failures)
    assert any("zero upstream" in f for f in res.failures)


def test_gradcheck_requires_float64():
    with pytest.raises(TypeError, match="float64"):
        tt.gradcheck(lambda a: a * 2, [tt.tensor([1.0], requires_grad=True)])


def test_gradcheck_large_input_uses_projections_and_passes():
    rng = np.random.default_rng(0)
    x = tt.tensor(rng.standard_normal((64, 300)), requires_grad=True)
    res = tt.gradcheck(lambda a: F.log_softmax(a).tanh(), [x])
    assert res.passed and res.mode == "projection"


# ------------------------------------------------------------ in-place accumulation, slice gradients
def test_accumulation_never_writes_into_shared_gradients():
    # add's backward hands the same upstream array to both inputs; a third and fourth use of `a`
    # make the engine accumulate in place, which must not leak into b's gradient
    a = tt.tensor(np.arange(4.0), requires_grad=True)
    b = tt.tensor(np.ones(4), requires_grad=True)
    y = a + b                      # grad of y flows unchanged to a and b
    z = (y + a * 2.0 + a * 3.0).sum()
    z.backward()
    np.testing.assert_array_equal(a.grad, np.full(4, 6.0))
    np.testing.assert_array_equal(b.grad, np.ones(4))
    assert not np.shares_memory(a.grad, b.grad)


def test_split_pieces_scatter_into_one_gradient():
    x = tt.tensor(np.arange(12.0).reshape(2, 6), requires_grad=True)
    p, q, r = tt.split(x, 3, axis=1)
    ((p * 1.0).sum() + (q * 2.0).sum() * 1.0 + (q * 3.0).sum()).backward()  # r unused, q twice
    want = np.array([[1, 1, 5, 5, 0, 0]] * 2, dtype=float)
    np.testing.assert_array_equal(x.grad, want)


def test_pieces_that_tile_an_input_are_gathered_exactly():
    # split of an op's output into pieces that are all used: the engine copies them into an
    # uninitialised buffer, so every element must come from exactly one piece
    rng = np.random.default_rng(0)
    w = tt.tensor(rng.standard_normal((3, 8)), requires_grad=True)
    h = w * 1.0                                        # an intermediate: its gradient is engine-built
    a, b = h[:, :5], h[:, 5:]
    c = h[2:3, 0:0]                                    # an empty piece tiles nothing and hurts nothing
    ((a * 2.0).sum() + (b * 3.0).sum() + c.sum()).backward()
    want = np.concatenate([np.full((3, 5), 2.0), np.full((3, 3), 3.0)], axis=1)
    np.testing.assert_array_equal(w.grad, want)


def test_pieces_declared_in_place_in_one_buffer_are_used_without_a_copy():
    # an op (attention) may return a PackedGrad: its input gradients written side by side in one buffer
    # laid out like the tensor the inputs were cut from; the engine then uses that buffer as is, and
    # copies when a piece comes back elsewhere than its declared place
    from tinytensor.autograd import PackedPart, SliceGrad, _gather_slices
    packed = np.arange(24.0).reshape(2, 12)
    index = [(slice(None), slice(0, 4)), (slice(None), slice(4, 12))]
    pieces = [SliceGrad(i, packed[i], packed=PackedPart(packed, i)) for i in index]
    got, engine_made = _gather_slices(packed.shape, packed.dtype, None, pieces)
    assert got is packed and not engine_made
    # the same views without the declaration are ordinary pieces: copied
    got, engine_made = _gather_slices(packed.shape, packed.dtype, None, [SliceGrad(i, packed[i]) for i in index])
    assert engine_made and got is not packed
    np.testing.assert_array_equal(got, packed)
    # misplaced: each piece's part is declared where it really is, but it is sent to the other index
    swapped = [SliceGrad(index[0], packed[:, 8:12], packed=PackedPart(packed, (slice(None), slice(8, 12)))),
               SliceGrad(index[1], packed[:, 0:8], packed=PackedPart(packed, (slice(None), slice(0, 8))))]
    got, engine_made = _gather_slices(packed.shape, packed.dtype, None, swapped)
    assert engine_made and got is not packed
    np.testing.assert_array_equal(got, np.concatenate([packed[:, 8:12], packed[:, 0:8]], axis=1))


class _PackedPair(Function):
    """Test op ``(a, b) -> a * 2 + b * 3`` on [B, H, T, D] heads whose backward returns a PackedGrad:
    da, db as the two halves of one [B, T, 2 * H * D] buffer, the layout of ``concat([a, b])`` before
    the heads were split off (as attention's kernel does for q, k, v)."""

    buffers: list = []

    @staticmethod
    def forward(ctx, a, b):
        return a * 2.0 + b * 3.0

    @staticmethod
    def backward(ctx, g):
        from tinytensor.autograd import PackedGrad
        B, H, T, D = g.shape
        buffer = np.empty((B, T, 2 * H * D), g.dtype)
        parts = buffer.reshape(B, T, 2, H, D)
        da, db = (parts[:, :, i].transpose(0, 2, 1, 3) for i in range(2))
        da[...] = g * 2.0
        db[...] = g * 3.0
        _PackedPair.buffers.append(buffer)
        C = H * D
        return PackedGrad(buffer, (da, db), ((slice(None), slice(None), slice(0, C)),
                                             (slice(None), slice(None), slice(C, 2 * C))))


class _Spy(Function):
    """Identity that records the gradient array its backward receives."""
    seen: list = []

    @staticmethod
    def forward(ctx, a):
        return a

    @staticmethod
    def backward(ctx, g):
        _Spy.seen.append(g)
        return (g,)


@pytest.mark.parametrize("order", ["in_place", "swapped", "permuted"])
def test_packed_gradient_reaches_the_split_tensor_as_is_or_is_copied(order):
    rng = np.random.default_rng(0)
    B, T, H, D = 2, 3, 2, 2
    x = tt.tensor(rng.standard_normal((B, T, 2 * H * D)), requires_grad=True)
    _PackedPair.buffers.clear()
    _Spy.seen.clear()
    h = _Spy.apply(x)                                          # [B, T, 2C]: receives the split tensor's gradient
    a, b = tt.split(h, 2, axis=2)
    heads = [p.reshape(B, T, H, D).transpose(0, 2, 1, 3) for p in (a, b)]   # [B, H, T, D]
    if order == "swapped":
        heads = heads[::-1]
    if order == "permuted":                                    # same memory, other element order (T <-> H)
        heads[0] = a.reshape(B, H, T, D)
    y = _PackedPair.apply(*heads)
    up = rng.standard_normal(y.shape)
    y.backward(up)
    (got,) = _Spy.seen
    up_t = up.transpose(0, 2, 1, 3).reshape(B, T, H * D)       # upstream in [B, T, C] layout
    if order == "in_place":
        assert got is _PackedPair.buffers[0]                   # no copy
        want = np.concatenate([up_t * 2.0, up_t * 3.0], axis=2)
    elif order == "swapped":
        assert got is not _PackedPair.buffers[0]
        want = np.concatenate([up_t * 3.0, up_t * 2.0], axis=2)
    else:
        assert got is not _PackedPair.buffers[0]
        want = np.concatenate([(up * 2.0).reshape(B, T, H * D), up_t * 3.0], axis=2)
    np.testing.assert_allclose(x.grad, want)


def test_attention_packed_gradients_match_the_reference_backend():
    # the Numba kernel returns dq, dk, dv packed like qkv; the model's split/reshape/transpose path then
    # takes that buffer as qkv's gradient. The result must equal the NumPy reference's (three arrays).
    rng = np.random.default_rng(1)
    B, T, H, D = 2, 5, 3, 4
    grads = {}
    qkv0 = rng.standard_normal((B, T, 3 * H * D))             # the same input under both backends
    for backend in ["numpy", "numba"]:
        qkv = tt.tensor(qkv0, requires_grad=True)
        h = _Spy.apply(qkv * 1.0)
        q, k, v = (p.reshape(B, T, H, D).transpose(0, 2, 1, 3) for p in tt.split(h, 3, axis=2))
        with tt.set_backend(backend):
            y = F.scaled_dot_product_attention(q, k, v, causal=True, impl="fused")
            y.backward(np.ones(y.shape))
        grads[backend] = qkv.grad
    np.testing.assert_allclose(grads["numba"], grads["numpy"], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("first, second", [(slice(0, 3), slice(1, 4)),   # volumes add up, but overlap
                                           (slice(0, 3), slice(3, 5))])  # disjoint, not covering
def test_pieces_that_overlap_or_leave_gaps_are_added_into_zeros(first, second):
    x = tt.tensor(np.arange(6.0), requires_grad=True)
    h = x * 1.0
    (h[first].sum() * 2.0 + h[second].sum() * 5.0).backward()
    want = np.zeros(6)
    want[first] += 2.0
    want[second] += 5.0
    np.testing.assert_array_equal(x.grad, want)


def test_slice_gradient_adds_to_a_dense_one_and_advanced_indices_repeat():
    x = tt.tensor(np.arange(5.0), requires_grad=True)
    ((x * 2.0).sum() + x[1:3].sum() + x[np.array([0, 0, 4])].sum()).backward()
    np.testing.assert_array_equal(x.grad, [4.0, 3.0, 3.0, 2.0, 3.0])
    g = x.grad.copy()
    x[:2].sum().backward()         # accumulates into the existing leaf gradient
    np.testing.assert_array_equal(x.grad, g + [1, 1, 0, 0, 0])


def test_leaf_gradients_are_separate_arrays():
    w = tt.tensor(np.ones(3), requires_grad=True)
    v = tt.tensor(np.ones(3), requires_grad=True)
    (w[0:3] * v).sum().backward()
    w.grad[0] = 100.0
    assert v.grad[0] == 1.0 and not np.shares_memory(w.grad, v.grad)
