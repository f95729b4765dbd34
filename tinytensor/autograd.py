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
  one buffer, not one per piece, and pieces that tile it exactly are copied in without a zero fill.
* takes packed gradients as they are: an op's backward may return a :class:`PackedGrad`, several
  input gradients written side by side into one buffer (attention's dq, dk, dv laid out like the
  ``qkv`` they were split from). When those pieces come back to one tensor exactly at the places the
  op declared, that buffer is the tensor's gradient: no copy (see :class:`PackedGrad` for the contract).

Leaves (tensors with ``requires_grad=True`` and no node) accumulate into ``.grad``. Unless
``retain_graph=True``, each node drops its saved arrays and inputs once used, so activations are freed
during the backward pass and a graph cannot silently be reused.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from . import profiler
from .errors import ShapeError

TensorLike = Any  # annotations: the registered tensor class (the engine never imports tensor.py)
# The engine depends on nothing above it: tensor.py registers its Tensor class here when it is
# imported (register_tensor_type), so ``Function.apply`` can wrap outputs without an import cycle.
_Tensor: Any = None


def register_tensor_type(cls: type) -> None:
    """Tell the engine which class wraps arrays (``tinytensor.tensor.Tensor``, registered on import).

    The class needs ``cls(data)`` (a tensor from data), ``cls._wrap(array, requires_grad)`` (an op's
    output, no copy) and the attributes ``data``, ``requires_grad``, ``_node`` and ``grad``.
    """
    global _Tensor
    _Tensor = cls

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

    Raises :class:`~tinytensor.errors.ShapeError` (a ``ValueError``) when ``shape`` does not broadcast
    to ``grad.shape``.
    """
    if grad.shape == shape:
        return grad
    nlead = grad.ndim - len(shape)
    if nlead < 0:
        raise ShapeError(f"gradient of shape {grad.shape} cannot be reduced to input shape {shape}")
    axes = list(range(nlead))
    for i, n in enumerate(shape):
        g = grad.shape[nlead + i]
        if n == 1 and g != 1:
            axes.append(nlead + i)
        elif n != g:
            raise ShapeError(f"gradient of shape {grad.shape} cannot be reduced to input shape {shape}")
    out = grad.sum(axis=tuple(axes), keepdims=True) if axes else grad
    return out.reshape(shape)


class PackedPart:
    """Where one input's gradient lives inside a :class:`PackedGrad` buffer: ``buffer[index]``.

    The engine carries it along with that gradient through ops whose backward only re-views the
    gradient (``Function.backward_is_view``: reshape, transpose) and onto the :class:`SliceGrad` a
    slicing op makes of it, so that at the sliced tensor it can see which piece came from where.
    """
    __slots__ = ("buffer", "index")

    def __init__(self, buffer: np.ndarray, index: tuple):
        self.buffer, self.index = buffer, index


class PackedGrad:
    """Several input gradients that an op's backward wrote side by side into one fresh buffer.

    The contract, for an op whose ``backward`` returns ``PackedGrad(buffer, grads, index)`` instead
    of the tuple ``grads``:

    * ``buffer`` is a new array the op allocated for these gradients (nothing else refers to it);
    * ``grads[i]`` is the gradient of the op's i-th input, in that input's shape, and a view holding
      exactly the elements of ``buffer[index[i]]`` (``index[i]`` a tuple of unit-step slices), or
      ``None`` for no gradient.

    An op does this when its inputs are usually cut from one tensor: attention's q, k, v come from
    ``split(qkv, 3)`` plus reshapes and transposes, and its kernel writes dq, dk, dv into one array
    laid out like ``qkv``. The engine follows each gradient back through re-viewing ops (reshape,
    transpose) to the slices it came from; when the pieces sent to a tensor are exactly the parts of
    one buffer, each at the index the op declared, with their element order intact (strides equal to
    the buffer's), the buffer itself becomes that tensor's gradient: no zero fill, no copy. In any
    other case (the pieces sliced from elsewhere, in another order, or permuted on the way) they are
    ordinary gradients and the engine copies them as usual, so the contract only ever saves work.
    """
    __slots__ = ("buffer", "grads", "index")

    def __init__(self, buffer: np.ndarray, grads: tuple, index: tuple):
        if len(grads) != len(index):
            raise ValueError(f"PackedGrad: {len(grads)} gradients but {len(index)} indices")
        self.buffer, self.grads, self.index = buffer, tuple(grads), tuple(index)

    def parts(self) -> tuple[PackedPart | None, ...]:
        """One :class:`PackedPart` per gradient (``None`` where the gradient is ``None``)."""
        return tuple(None if g is None else PackedPart(self.buffer, i) for g, i in zip(self.grads, self.index))


class SliceGrad:
    """The gradient of ``a[index]`` (basic indexing): ``grad`` belongs at ``a_grad[index]``, zeros elsewhere.

    Ops may return one from ``backward``; the engine adds it into the input's gradient buffer
    (``np.add.at`` when ``advanced``, i.e. integer-array indices that may repeat). ``packed`` is set by
    the engine when ``grad`` is a part of a :class:`PackedGrad` buffer.
    """
    __slots__ = ("index", "grad", "advanced", "packed")

    def __init__(self, index, grad: np.ndarray, advanced: bool = False, packed: PackedPart | None = None):
        self.index, self.grad, self.advanced, self.packed = index, grad, advanced, packed

    def add_into(self, buf: np.ndarray) -> None:
        if self.advanced:
            np.add.at(buf, self.index, self.grad)
        else:
            buf[self.index] += self.grad

    def box(self, shape: tuple[int, ...]) -> tuple[tuple[int, int], ...] | None:
        """The ``(start, stop)`` per axis that this piece's index covers in an array of ``shape``."""
        return None if self.advanced else _box(self.index, shape)


def _box(index, shape: tuple[int, ...]) -> tuple[tuple[int, int], ...] | None:
    """The ``(start, stop)`` per axis that a plain slice index (unit steps, no ints, ``None`` or ``...``)
    covers in an array of ``shape``; ``None`` for any other index."""
    index = index if isinstance(index, tuple) else (index,)
    if len(index) > len(shape):
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
    read-modify-write; when they are the parts of one :class:`PackedGrad` buffer, each in its place,
    that buffer is the gradient and nothing is copied. Anything else is added into zeros
    (``np.add.at`` for integer indices).
    """
    if grad is None:
        boxes = [p.box(shape) for p in pieces]
        if all(b is not None for b in boxes) and _tile_exactly(boxes, shape):
            packed = _packed_buffer(pieces, boxes, shape, dtype)
            if packed is not None:
                return packed, False
            buf = np.empty(shape, dtype)
            for p in pieces:
                buf[p.index] = p.grad
            return buf, True
    buf = np.zeros(shape, dtype) if grad is None else np.array(grad, dtype=dtype, copy=True)
    for p in pieces:
        p.add_into(buf)
    return buf, True


def _packed_buffer(pieces: list[SliceGrad], boxes: list, shape: tuple[int, ...], dtype) -> np.ndarray | None:
    """The :class:`PackedGrad` buffer the pieces are the parts of, when it can serve as the gradient
    as is: one buffer of the input's shape and dtype, every piece declared at its own box, with the
    buffer's element order (strides, on the axes longer than 1); else ``None``."""
    first = pieces[0].packed
    if first is None or first.buffer.shape != shape or first.buffer.dtype != dtype:
        return None
    buffer = first.buffer
    for p, box in zip(pieces, boxes):
        part = p.packed
        if part is None or part.buffer is not buffer or _box(part.index, shape) != box:
            return None
        g = p.grad
        if g.shape != tuple(hi - lo for lo, hi in box) or any(
                n > 1 and s != t for n, s, t in zip(g.shape, g.strides, buffer.strides)):
            return None
    return buffer


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


module_stack: list = []
"""The modules whose ``forward`` is running, innermost last: ``nn.Module.__call__`` pushes and pops.
Each node records the innermost one, so graphs (``tt.graph``) and traces (``tt.trace``) can say which
module made an op."""


class Node:
    """The record one op leaves on its output: which op, its context, its tensor inputs, the module
    that called it (``None`` outside any module)."""
    __slots__ = ("fn", "ctx", "inputs", "released", "module")

    def __init__(self, fn: type[Function], ctx: Context, inputs: tuple[TensorLike, ...]):
        self.fn = fn
        self.ctx = ctx
        self.inputs = inputs
        self.released = False
        self.module = module_stack[-1] if module_stack else None

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
    broadcast shape of the output; the engine reduces them. Instead of the tuple, ``backward`` may
    return a :class:`PackedGrad` (several gradients in one buffer), and instead of one gradient a
    :class:`SliceGrad` (a gradient that belongs at an index of the input).

    Set ``backward_is_view = True`` on an op whose backward returns its upstream gradient re-viewed,
    with no arithmetic (a view holding the same elements: reshape, transpose), so packed gradients
    keep their identity through it.
    """
    name: str = ""
    backward_is_view: bool = False

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
    def apply(cls, *inputs: Any, **params: Any) -> TensorLike:
        cls_t = _Tensor
        tensors = tuple(x if isinstance(x, cls_t) else cls_t(x) for x in inputs)
        needs = tuple(t.requires_grad for t in tensors)
        track = _grad_enabled and True in needs
        ctx = Context(needs)
        arrays = [t.data for t in tensors]
        if profiler.active is None:
            out = cls.forward(ctx, *arrays, **params)
        else:
            out = profiler.active.run_forward(cls, ctx, arrays, params)
        result = cls_t._wrap(out, requires_grad=track)
        if track:
            result._node = Node(cls, ctx, tensors)
        return result


def _toposort(root: TensorLike) -> list[TensorLike]:
    """Tensors reachable from ``root`` through nodes, each after all of its inputs (post-order).

    Iterative depth-first search keyed by ``id()``: no recursion limit, and Tensor's ``__eq__`` is
    never called.
    """
    order: list[TensorLike] = []
    visited: set[int] = set()
    stack: list[tuple[TensorLike, bool]] = [(root, False)]
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


def backward(root: TensorLike, grad: Any = None, retain_graph: bool = False) -> None:
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
            raise ShapeError(f"backward(): grad has shape {g_root.shape} but the tensor has shape {root.shape}")
        g_root = g_root.astype(root.dtype, copy=False)

    grads: dict[int, np.ndarray] = {id(root): g_root}
    owned: set[int] = set()  # ids whose grads[] array the engine allocated: safe to add into in place
    pieces: dict[int, list[SliceGrad]] = {}  # slice gradients per input, gathered when it is reached
    parts: dict[int, PackedPart] = {}  # ids whose (single) gradient is a part of a PackedGrad buffer
    for t in reversed(_toposort(root)):
        g = grads.pop(id(t), None)
        part = parts.pop(id(t), None) if parts else None
        if id(t) in pieces:
            g, engine_made = _gather_slices(t.shape, t.dtype, g, pieces.pop(id(t)))
            part = None
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
        in_parts = None
        if isinstance(in_grads, PackedGrad):
            in_parts = in_grads.parts()
            in_grads = in_grads.grads
        elif not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        if part is not None and node.fn.backward_is_view:  # the part passes on, re-viewed
            in_parts = (part,)
        if len(in_grads) != len(node.inputs):
            raise RuntimeError(f"op {node.fn.name!r}: backward returned {len(in_grads)} gradients for "
                               f"{len(node.inputs)} inputs")
        for i, (inp, ig) in enumerate(zip(node.inputs, in_grads)):
            if ig is None or not inp.requires_grad:
                continue
            key = id(inp)
            if isinstance(ig, SliceGrad):  # kept until every piece for this input has arrived
                if part is not None and ig.grad is g:  # a slice of a packed part: say where it lives
                    ig.packed = part
                pieces.setdefault(key, []).append(ig)
                continue
            prev = grads.get(key)
            new_part = in_parts[i] if in_parts is not None else None
            if ig.shape != inp.shape:
                try:
                    ig = unbroadcast(ig, inp.shape)
                except ValueError as e:
                    raise RuntimeError(f"op {node.fn.name!r}: {e}") from None
                new_part = None
            if ig.dtype != inp.dtype:
                ig = ig.astype(inp.dtype)
                new_part = None
            # subtle: add in place only into arrays the engine allocated: an op may hand its upstream
            # gradient on unchanged (add's backward returns `g` twice), shared with another input.
            if prev is None:
                grads[key] = ig
                if new_part is not None and (ig.base is new_part.buffer or ig is new_part.buffer):
                    parts[key] = new_part
            elif key in owned:
                prev += ig
            else:
                grads[key] = prev + ig
                owned.add(key)
                parts.pop(key, None)
        if not retain_graph:
            node.release()
