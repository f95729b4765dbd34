"""The reverse-mode engine: ``Function`` (one op = forward + backward), the graph walk, ``no_grad``.

How a graph is built
--------------------
Calling ``SomeOp.apply(x, y, axis=1)`` runs ``SomeOp.forward(ctx, x.data, y.data, axis=1)`` on plain
NumPy arrays. Positional arguments are the tensor inputs; keyword arguments are plain Python values
(axis, shape, permutation) that ``forward`` saves on ``ctx`` if backward needs them. When gradients are
enabled and some input requires one, the output tensor gets a ``Node`` that remembers the op, its ``ctx``
and its inputs.

How backward runs
-----------------
``backward(root)`` sorts the graph topologically with an explicit stack (no recursion, so a
100,000-op chain is fine), then visits nodes from the root down. Each op's ``backward(ctx, grad)``
returns one gradient per tensor input (or ``None``). The engine then, in this one place:

* checks the count of returned gradients,
* undoes broadcasting (``unbroadcast``): an op may return a gradient in the broadcast shape of its
  output; the engine sums it down to the input's shape,
* checks the shape and casts to the input's dtype,
* accumulates: a tensor used twice gets the sum of both gradients. The first gradient is kept as
  the op returned it (no copy); a second one is added into a new array that the engine then owns,
  and any further ones are added into that array in place.
* scatters slices: slicing's backward (``ops.GetItem``) returns a :class:`SliceGrad` instead of a
  zero-filled full-size array. The engine keeps an input's pieces until it reaches that input, then
  writes them into one gradient buffer: a tensor cut into pieces (``q, k, v = split(qkv, 3)``) costs
  one buffer, not one per piece, and pieces that tile it exactly are copied in without a zero fill
  (or not at all, when an op already wrote them side by side in one array of the input's shape).

Leaves (tensors with ``requires_grad=True`` and no node) accumulate into ``.grad``. Unless
``retain_graph=True``, each node drops its saved arrays and inputs once used, so activations are freed
during the backward pass and a graph cannot silently be reused.
"""
from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from . import profiler

if TYPE_CHECKING:  # pragma: no cover
    from .tensor import Tensor

# ----------------------------------------------------------------------------------- grad mode
_grad_enabled = True


def is_grad_enabled() -> bool:
    """True when operations record a graph for backward."""
    return _grad_enabled


class _GradMode:
    _mode: bool

    def __enter__(self):
        global _grad_enabled
        self._prev = _grad_enabled
        _grad_enabled = self._mode
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """Context manager (or decorator) under which no graph is built: outputs never require grad.

    >>> with tt.no_grad():
    ...     logits, _ = model(idx)
    """
    _mode = False


class enable_grad(_GradMode):
    """Context manager (or decorator) that turns graph building back on inside ``no_grad``."""
    _mode = True


# ------------------------------------------------------------------------------- unbroadcasting
def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` down to ``shape``, undoing NumPy broadcasting.

    Broadcasting prepends axes and stretches size-1 axes; the gradient of a stretched input is the sum
    over the stretched axes. Example: x of shape (3, 1) + y of shape (4,) gives (3, 4); the gradient for
    x is ``grad.sum(axis=1, keepdims=True)`` and for y ``grad.sum(axis=0)``.

    Raises ``ValueError`` when ``shape`` does not broadcast to ``grad.shape``.
    """
    if grad.shape == shape:
        return grad
    nlead = grad.ndim - len(shape)
    if nlead < 0:
        raise ValueError(f"gradient of shape {grad.shape} cannot be reduced to input shape {shape}")
    axes = list(range(nlead))
    for i, n in enumerate(shape):
        g = grad.shape[nlead + i]
        if n == 1 and g != 1:
            axes.append(nlead + i)
        elif n != g:
            raise ValueError(f"gradient of shape {grad.shape} cannot be reduced to input shape {shape}")
    out = grad.sum(axis=tuple(axes), keepdims=True) if axes else grad
    return out.reshape(shape)


class SliceGrad:
    """The gradient of ``a[index]`` (basic indexing): ``grad`` belongs at ``a_grad[index]``, zeros elsewhere.

    Ops may return one from ``backward``; the engine adds it into the input's gradient buffer
    (``np.add.at`` when ``advanced``, i.e. integer-array indices that may repeat).
    """
    __slots__ = ("index", "grad", "advanced")

    def __init__(self, index, grad: np.ndarray, advanced: bool = False):
        self.index, self.grad, self.advanced = index, grad, advanced

    def add_into(self, buf: np.ndarray) -> None:
        if self.advanced:
            np.add.at(buf, self.index, self.grad)
        else:
            buf[self.index] += self.grad

    def box(self, shape: tuple[int, ...]) -> tuple[tuple[int, int], ...] | None:
        """The ``(start, stop)`` per axis that a plain slice index (unit steps, no ints, ``None`` or
        ``...``) covers in an array of ``shape``; ``None`` for any other index."""
        index = self.index if isinstance(self.index, tuple) else (self.index,)
        if self.advanced or len(index) > len(shape):
            return None
        box = []
        for i, n in enumerate(shape):
            sl = index[i] if i < len(index) else slice(None)
            if not isinstance(sl, slice) or sl.step not in (None, 1):
                return None
            start, stop, _ = sl.indices(n)
            box.append((start, max(start, stop)))
        return tuple(box)


def _gather_slices(shape: tuple[int, ...], dtype, grad: np.ndarray | None,
                   pieces: list[SliceGrad]) -> tuple[np.ndarray, bool]:
    """One gradient buffer from the ``SliceGrad`` pieces sent to an input (plus ``grad``, a whole-array
    gradient, if one came too); returns ``(buffer, owned)``, owned when the engine allocated it.

    Pieces that tile the input exactly (plain slices, pairwise disjoint, volumes adding up to the
    whole: ``q, k, v = split(qkv, 3)``) are copied into an uninitialised buffer: no zero fill, no
    read-modify-write. If they already are views of one array of the input's shape, each at its own
    index (the attention kernel writes dq, dk, dv that way), that array is the gradient: no copy.
    Anything else is added into zeros (``np.add.at`` for integer indices).
    """
    if grad is None:
        boxes = [p.box(shape) for p in pieces]
        if all(b is not None for b in boxes) and _tile_exactly(boxes, shape):
            base = pieces[0].grad.base
            if base is not None and base.shape == shape and base.dtype == dtype and _in_place(pieces, boxes, base):
                return base, False
            buf = np.empty(shape, dtype)
            for p in pieces:
                buf[p.index] = p.grad
            return buf, True
    buf = np.zeros(shape, dtype) if grad is None else np.array(grad, dtype=dtype, copy=True)
    for p in pieces:
        p.add_into(buf)
    return buf, True


def _in_place(pieces: list[SliceGrad], boxes: list, base: np.ndarray) -> bool:
    """True when each piece's gradient is exactly ``base[piece.index]`` (a plain slice covering
    ``box``): a view of ``base`` with its strides, its box's shape, starting at its box's corner."""
    start = base.__array_interface__["data"][0]
    for p, box in zip(pieces, boxes):
        a = p.grad
        if a.base is not base or a.strides != base.strides or a.shape != tuple(hi - lo for lo, hi in box):
            return False
        if a.__array_interface__["data"][0] != start + sum(lo * st for (lo, _), st in zip(box, base.strides)):
            return False
    return True


def _tile_exactly(boxes: list, shape: tuple[int, ...]) -> bool:
    """True when the boxes are pairwise disjoint and their volumes add up to the whole array."""
    volume = sum(math.prod(hi - lo for lo, hi in b) for b in boxes)
    if volume != math.prod(shape):
        return False
    for i, a in enumerate(boxes):
        for b in boxes[:i]:  # disjoint: some axis where the two intervals do not overlap
            if all(lo1 < hi2 and lo2 < hi1 for (lo1, hi1), (lo2, hi2) in zip(a, b)):
                return False
    return True


# ------------------------------------------------------------------------------------ the graph
class Context:
    """Scratch space an op's forward fills for its backward (``ctx.x = x``; ``ctx.axis = axis``).

    ``ctx.needs_input_grad`` is a tuple of bools, one per tensor input, so a backward can skip work.
    """

    def __init__(self, needs_input_grad: tuple[bool, ...]):
        self.needs_input_grad = needs_input_grad


class Node:
    """The record one op leaves on its output: which op, its context, its tensor inputs."""
    __slots__ = ("fn", "ctx", "inputs", "released")

    def __init__(self, fn: type[Function], ctx: Context, inputs: tuple[Tensor, ...]):
        self.fn = fn
        self.ctx = ctx
        self.inputs = inputs
        self.released = False

    def release(self) -> None:
        """Drop the saved arrays and the references to the inputs (frees activations)."""
        self.ctx = None
        self.inputs = ()
        self.released = True


REGISTRY: dict[str, type[Function]] = {}
"""Every differentiable op by name. The test suite fails when one has no gradcheck case."""


class Function:
    """Base class of every differentiable op. Subclass, set ``name``, write two static methods.

    ``forward(ctx, *arrays, **params) -> np.ndarray`` and ``backward(ctx, grad) -> tuple`` returning
    one gradient (np.ndarray or None) per array argument of forward, in order. Gradients may have the
    broadcast shape of the output; the engine reduces them.
    """
    name: str = ""

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.name:
            if cls.name in REGISTRY:
                raise RuntimeError(f"op name {cls.name!r} registered twice")
            REGISTRY[cls.name] = cls

    @staticmethod
    def forward(ctx: Context, *arrays: np.ndarray, **params: Any) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Any, **params: Any) -> Tensor:
        Tensor = _tensor.Tensor
        tensors = tuple(x if isinstance(x, Tensor) else _tensor.as_tensor(x) for x in inputs)
        needs = tuple(t.requires_grad for t in tensors)
        track = _grad_enabled and True in needs
        ctx = Context(needs)
        arrays = [t.data for t in tensors]
        if profiler.active is None:
            out = cls.forward(ctx, *arrays, **params)
        else:
            out = profiler.active.run_forward(cls, ctx, arrays, params)
        result = Tensor._wrap(out, requires_grad=track)
        if track:
            result._node = Node(cls, ctx, tensors)
        return result


def _toposort(root: Tensor) -> list[Tensor]:
    """Tensors reachable from ``root`` through nodes, each after all of its inputs (post-order).

    Iterative depth-first search keyed by ``id()``: no recursion limit, and Tensor's ``__eq__`` is
    never called.
    """
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        t, children_done = stack.pop()
        if children_done:
            order.append(t)
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))
        node = t._node
        if node is not None:
            for inp in node.inputs:
                if inp.requires_grad and id(inp) not in visited:
                    stack.append((inp, False))
    return order


def backward(root: Tensor, grad: Any = None, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

    Args:
        root: the tensor to differentiate (usually a scalar loss).
        grad: upstream gradient of the same shape as ``root``; may be omitted for a one-element root.
        retain_graph: keep the saved arrays so backward can run through this graph again.
    """
    if not root.requires_grad:
        raise RuntimeError("backward() on a tensor that does not require grad (built under no_grad, "
                           "or from inputs that do not require grad)")
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(f"backward() without a gradient needs a one-element tensor; got shape "
                               f"{root.shape}: pass grad= of that shape")
        g_root = np.ones_like(root.data)
    else:
        g_root = np.asarray(grad.data if hasattr(grad, "data") and not isinstance(grad, np.ndarray) else grad)
        if g_root.shape != root.shape:
            raise ValueError(f"backward(): grad has shape {g_root.shape} but the tensor has shape {root.shape}")
        g_root = g_root.astype(root.dtype, copy=False)

    grads: dict[int, np.ndarray] = {id(root): g_root}
    owned: set[int] = set()  # ids whose grads[] array the engine allocated: safe to add into in place
    pieces: dict[int, list[SliceGrad]] = {}  # slice gradients per input, gathered when it is reached
    for t in reversed(_toposort(root)):
        g = grads.pop(id(t), None)
        if id(t) in pieces:
            g, engine_made = _gather_slices(t.shape, t.dtype, g, pieces.pop(id(t)))
            if engine_made:
                owned.add(id(t))
        node = t._node
        if node is None:  # a leaf
            if g is not None:
                if t.grad is None:  # an engine-owned buffer is handed over; anything else is copied
                    t.grad = g if id(t) in owned and g.dtype == t.dtype else np.array(g, dtype=t.dtype, copy=True)
                else:
                    t.grad += g
            continue
        if node.released:
            raise RuntimeError(f"backward through the graph of op {node.fn.name!r} a second time: its saved "
                               f"arrays were freed; use backward(retain_graph=True) the first time")
        if g is None:
            continue
        if profiler.active is None:
            in_grads = node.fn.backward(node.ctx, g)
        else:
            in_grads = profiler.active.run_backward(node.fn, node.ctx, g)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        if len(in_grads) != len(node.inputs):
            raise RuntimeError(f"op {node.fn.name!r}: backward returned {len(in_grads)} gradients for "
                               f"{len(node.inputs)} inputs")
        for inp, ig in zip(node.inputs, in_grads):
            if ig is None or not inp.requires_grad:
                continue
            key = id(inp)
            if isinstance(ig, SliceGrad):  # kept until every piece for this input has arrived
                pieces.setdefault(key, []).append(ig)
                continue
            prev = grads.get(key)
            if ig.shape != inp.shape:
                try:
                    ig = unbroadcast(ig, inp.shape)
                except ValueError as e:
                    raise RuntimeError(f"op {node.fn.name!r}: {e}") from None
            if ig.dtype != inp.dtype:
                ig = ig.astype(inp.dtype)
            # subtle: add in place only into arrays the engine allocated: an op may hand its upstream
            # gradient on unchanged (add's backward returns `g` twice), shared with another input.
            if prev is None:
                grads[key] = ig
            elif key in owned:
                prev += ig
            else:
                grads[key] = prev + ig
                owned.add(key)
        if not retain_graph:
            node.release()


from . import tensor as _tensor  # noqa: E402  (tensor imports this module; bound at the end to close the cycle)
