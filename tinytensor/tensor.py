"""``Tensor``: one NumPy array, an optional gradient, and the node that made it.

The dunder methods and tensor methods are thin: each calls one op from :mod:`tinytensor.ops`, where the
forward and backward math lives. Creation functions (``tensor``, ``zeros``, ``randn`` ...) are here too.

Dtypes
------
Python floats become float32 (the default float dtype), Python ints int64, bools bool; a NumPy array
keeps its dtype. Binary ops follow NumPy's promotion rules (NEP 50): float32 with float64 gives
float64, and a Python scalar takes the tensor's dtype (``x * 2.0`` stays float32). Only floating
tensors can require grad.
"""
from __future__ import annotations

import numbers
from typing import Any, Iterable, Sequence

import numpy as np

from . import autograd, ops
from .errors import DTypeError, ShapeError, UsageError

DEFAULT_FLOAT = np.float32
_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the library's default generator (used by ``randn``, init, dropout without ``rng=``)."""
    global _rng
    _rng = np.random.default_rng(seed)
    return _rng


def default_rng() -> np.random.Generator:
    """The library's default ``np.random.Generator`` (reseed with ``manual_seed``)."""
    return _rng


def _to_array(data: Any, dtype: Any = None) -> np.ndarray:
    if isinstance(data, Tensor):
        arr = data.data
    elif isinstance(data, np.ndarray):
        arr = data
    else:
        arr = np.asarray(data)
        if dtype is None and arr.dtype == np.float64 and not isinstance(data, np.generic):
            arr = arr.astype(DEFAULT_FLOAT)  # Python floats and lists of them -> float32
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    if arr.dtype == object:
        raise DTypeError(f"cannot make a tensor from {type(data).__name__} (object array)")
    return arr


class Tensor:
    """An n-dimensional array that can record the operations applied to it.

    Attributes:
        data: the ``np.ndarray`` holding the values.
        grad: ``np.ndarray`` of the same shape after ``backward()``, else ``None``.
        requires_grad: whether operations on this tensor are recorded.
    """
    __slots__ = ("data", "grad", "requires_grad", "_node", "__weakref__")
    __array_priority__ = 1000.0  # `ndarray + Tensor` calls Tensor.__radd__

    def __init__(self, data: Any, dtype: Any = None, requires_grad: bool = False):
        self.data = _to_array(data, dtype)
        self.grad: np.ndarray | None = None
        self.requires_grad = False
        self._node: autograd.Node | None = None
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, arr: np.ndarray, requires_grad: bool = False) -> Tensor:
        """Wrap an op's output array without copying or dtype conversion."""
        t = cls.__new__(cls)
        t.data = arr if isinstance(arr, np.ndarray) else np.asarray(arr)
        t.grad = None
        t.requires_grad = requires_grad
        t._node = None
        return t

    # -------------------------------------------------------------------------- basic attributes
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def T(self) -> Tensor:
        return self.transpose()

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    def numpy(self) -> np.ndarray:
        """The underlying array (no copy). Mutating it changes the tensor."""
        return self.data

    def item(self) -> Any:
        """The single value of a one-element tensor as a Python scalar."""
        if self.data.size != 1:
            raise ShapeError(f"item() needs a one-element tensor; got shape {self.shape}")
        return self.data.item()

    def tolist(self) -> Any:
        return self.data.tolist()

    def detach(self) -> Tensor:
        """A tensor sharing this one's data, outside the graph (requires_grad False)."""
        return Tensor._wrap(self.data)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set ``requires_grad`` in place (floating dtypes only) and return self."""
        if requires_grad and not np.issubdtype(self.data.dtype, np.floating):
            raise DTypeError(f"only floating tensors can require grad; this one is {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Backpropagate from this tensor into the ``.grad`` of every leaf that requires grad."""
        autograd.backward(self, grad, retain_graph)

    def zero_grad(self) -> None:
        self.grad = None

    def astype(self, dtype: Any) -> Tensor:
        """Cast to ``dtype``. To a floating dtype it is differentiable (the gradient is cast back); to an
        integer or bool dtype the result has no gradient and is cut from the graph, as in PyTorch."""
        dtype = np.dtype(dtype)
        if not np.issubdtype(dtype, np.floating):
            return Tensor._wrap(self.data.astype(dtype))
        return ops.Cast.apply(self, dtype=dtype)

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        extra = f", dtype={self.dtype}" if self.dtype not in (np.float32, np.int64, np.bool_) else ""
        if self.requires_grad:
            extra += f", grad_fn={self._node.fn.name}" if self._node is not None else ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __bool__(self) -> bool:
        return bool(self.data)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # ------------------------------------------------------------------------------- arithmetic
    def __add__(self, other): return ops.Add.apply(self, _lift(other, self))
    def __radd__(self, other): return ops.Add.apply(_lift(other, self), self)
    def __sub__(self, other): return ops.Sub.apply(self, _lift(other, self))
    def __rsub__(self, other): return ops.Sub.apply(_lift(other, self), self)
    def __mul__(self, other): return ops.Mul.apply(self, _lift(other, self))
    def __rmul__(self, other): return ops.Mul.apply(_lift(other, self), self)
    def __truediv__(self, other): return ops.Div.apply(self, _lift(other, self))
    def __rtruediv__(self, other): return ops.Div.apply(_lift(other, self), self)
    def __neg__(self): return ops.Neg.apply(self)
    def __matmul__(self, other): return ops.MatMul.apply(self, _lift(other, self))
    def __rmatmul__(self, other): return ops.MatMul.apply(_lift(other, self), self)

    def __pow__(self, other):
        if _is_number(other):  # a Python or NumPy real number: d/dx only, exact for integer exponents
            return ops.PowScalar.apply(self, exponent=other.item() if isinstance(other, np.generic) else other)
        return ops.Pow.apply(self, _lift(other, self))

    def __rpow__(self, other):
        return ops.Pow.apply(_lift(other, self), self)

    # comparisons give bool tensors outside the graph; hashing stays by identity
    def __lt__(self, other): return Tensor._wrap(self.data < _raw(other))
    def __le__(self, other): return Tensor._wrap(self.data <= _raw(other))
    def __gt__(self, other): return Tensor._wrap(self.data > _raw(other))
    def __ge__(self, other): return Tensor._wrap(self.data >= _raw(other))
    def __eq__(self, other): return Tensor._wrap(self.data == _raw(other))  # type: ignore[override]
    def __ne__(self, other): return Tensor._wrap(self.data != _raw(other))  # type: ignore[override]
    __hash__ = object.__hash__

    def __getitem__(self, index):
        return ops.GetItem.apply(self, index=_raw_index(index))

    # --------------------------------------------------------------------------- elementwise
    def exp(self): return ops.Exp.apply(self)
    def log(self): return ops.Log.apply(self)
    def log1p(self): return ops.Log1p.apply(self)
    def sqrt(self): return ops.Sqrt.apply(self)
    def tanh(self): return ops.Tanh.apply(self)
    def sigmoid(self): return ops.Sigmoid.apply(self)
    def relu(self): return ops.Relu.apply(self)
    def abs(self): return ops.Abs.apply(self)
    def __abs__(self): return ops.Abs.apply(self)
    def maximum(self, other): return ops.Maximum.apply(self, _lift(other, self))
    def minimum(self, other): return ops.Minimum.apply(self, _lift(other, self))

    def clip(self, min=None, max=None):  # noqa: A002 - NumPy's names
        """Clamp to ``[min, max]``; the gradient passes where ``min <= x <= max`` (inclusive)."""
        return ops.Clip.apply(self, lo=min, hi=max)

    def masked_fill(self, mask, value: float) -> Tensor:
        """Return a copy with ``value`` where ``mask`` is True (mask broadcasts; no gradient there)."""
        return where(mask, value, self)

    # ----------------------------------------------------------------------------- reductions
    def sum(self, axis=None, keepdims=False): return ops.Sum.apply(self, axis=axis, keepdims=keepdims)
    def mean(self, axis=None, keepdims=False): return ops.Mean.apply(self, axis=axis, keepdims=keepdims)
    def max(self, axis=None, keepdims=False): return ops.Max.apply(self, axis=axis, keepdims=keepdims)
    def min(self, axis=None, keepdims=False): return ops.Min.apply(self, axis=axis, keepdims=keepdims)
    def var(self, axis=None, keepdims=False): return ops.Var.apply(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis=None) -> Tensor:
        return Tensor._wrap(np.argmax(self.data, axis=axis))

    # ---------------------------------------------------------------------------------- shape
    def reshape(self, *shape) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.Reshape.apply(self, shape=tuple(int(s) for s in shape))

    def view(self, *shape) -> Tensor:
        return self.reshape(*shape)

    def flatten(self) -> Tensor:
        return self.reshape(-1)

    def transpose(self, *axes) -> Tensor:
        """Permute axes with NumPy semantics: no argument reverses them."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        if not axes:
            axes = tuple(range(self.ndim))[::-1]
        return ops.Transpose.apply(self, axes=tuple(int(a) for a in axes))

    def swapaxes(self, axis1: int, axis2: int) -> Tensor:
        perm = list(range(self.ndim))
        a1, a2 = _norm_axis(axis1, self.ndim, "swapaxes"), _norm_axis(axis2, self.ndim, "swapaxes")
        perm[a1], perm[a2] = perm[a2], perm[a1]
        return self.transpose(*perm)

    def broadcast_to(self, shape) -> Tensor:
        return ops.BroadcastTo.apply(self, shape=tuple(int(s) for s in shape))

    def squeeze(self, axis=None) -> Tensor:
        """Remove size-1 axes (all of them, or the given ones; a given axis must have size 1)."""
        if axis is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        axes = {_norm_axis(a, self.ndim, "squeeze") for a in ((axis,) if _is_int(axis) else axis)}
        for a in axes:
            if self.shape[a] != 1:
                raise ShapeError(f"squeeze: axis {a} has size {self.shape[a]}, not 1 (shape {self.shape})")
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if i not in axes))

    def expand_dims(self, axis) -> Tensor:
        """Insert size-1 axes at the given positions (NumPy ``expand_dims`` semantics)."""
        axes = (axis,) if _is_int(axis) else tuple(axis)
        out_nd = self.ndim + len(axes)
        axes = sorted(_norm_axis(a, out_nd, "expand_dims") for a in axes)
        shape = list(self.shape)
        for a in axes:
            shape.insert(a, 1)
        return self.reshape(tuple(shape))

    def unsqueeze(self, axis: int) -> Tensor:
        return self.expand_dims(axis)


# --------------------------------------------------------------------------------- helpers
def _raw(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


def _raw_index(index: Any) -> Any:
    if isinstance(index, tuple):
        return tuple(_raw(i) for i in index)
    return _raw(index)


def _lift(x: Any, like: Tensor) -> Tensor:
    """Turn an operand into a Tensor; Python scalars take ``like``'s dtype when that is exact (NEP 50).

    NumPy scalars (``np.float32(0.5)``) keep their own dtype and promote as NumPy arrays do."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (bool, int, float)) and not isinstance(x, np.generic):
        return Tensor._wrap(np.asarray(x, dtype=np.result_type(like.data.dtype, x)))
    return Tensor._wrap(_to_array(x))


def _is_int(x: Any) -> bool:
    """A Python or NumPy integer (not a bool): what an axis or a count may be."""
    return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))


def _is_number(x: Any) -> bool:
    """A Python or NumPy real number (not a bool)."""
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


def _norm_axis(axis: int, ndim: int, op: str) -> int:
    if not _is_int(axis):
        raise DTypeError(f"{op}: axis must be an integer, got {axis!r}")
    if not -ndim <= axis < max(ndim, 1):
        raise ShapeError(f"{op}: axis {axis} is out of range for {ndim}-d input")
    return int(axis) % ndim if ndim else 0


def as_tensor(x: Any) -> Tensor:
    """``x`` if it is a Tensor, else a new tensor wrapping ``x`` (arrays are not copied)."""
    return x if isinstance(x, Tensor) else Tensor(x)


# ------------------------------------------------------------------------------ creation
def tensor(data: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Make a tensor. Copies ``data``; Python floats become float32 unless ``dtype`` says otherwise."""
    arr = _to_array(data, dtype)
    return Tensor(np.array(arr, copy=True), requires_grad=requires_grad)


def _shape(shape: Sequence) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(int(s) for s in shape)


def zeros(*shape, dtype=DEFAULT_FLOAT, requires_grad=False) -> Tensor:
    return Tensor(np.zeros(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def ones(*shape, dtype=DEFAULT_FLOAT, requires_grad=False) -> Tensor:
    return Tensor(np.ones(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def full(shape, fill_value, dtype=DEFAULT_FLOAT, requires_grad=False) -> Tensor:
    return Tensor(np.full(_shape((shape,)), fill_value, dtype=dtype), requires_grad=requires_grad)


def zeros_like(t: Tensor, requires_grad=False) -> Tensor:
    return Tensor(np.zeros_like(_raw(t)), requires_grad=requires_grad)


def ones_like(t: Tensor, requires_grad=False) -> Tensor:
    return Tensor(np.ones_like(_raw(t)), requires_grad=requires_grad)


def arange(start, stop=None, step=1, dtype=None) -> Tensor:
    return Tensor(np.arange(start, stop, step, dtype=dtype) if stop is not None
                  else np.arange(start, dtype=dtype))


def randn(*shape, dtype=DEFAULT_FLOAT, requires_grad=False, rng: np.random.Generator | None = None) -> Tensor:
    """Standard-normal samples from ``rng`` (default: the library generator, see ``manual_seed``)."""
    g = rng if rng is not None else _rng
    return Tensor(g.standard_normal(_shape(shape)).astype(dtype), requires_grad=requires_grad)


def rand(*shape, dtype=DEFAULT_FLOAT, requires_grad=False, rng: np.random.Generator | None = None) -> Tensor:
    g = rng if rng is not None else _rng
    return Tensor(g.random(_shape(shape)).astype(dtype), requires_grad=requires_grad)


# ------------------------------------------------------------------- multi-tensor functions
def where(condition: Any, x: Any, y: Any) -> Tensor:
    """Elementwise ``x if condition else y`` with broadcasting; gradients flow to the chosen side."""
    cond = np.asarray(_raw(condition), dtype=bool)
    xt = x if isinstance(x, Tensor) else None
    yt = y if isinstance(y, Tensor) else None
    like = xt if xt is not None else yt
    if like is None:
        return Tensor(np.where(cond, x, y))
    return ops.Where.apply(_lift(x, like), _lift(y, like), condition=cond)


def concatenate(tensors: Iterable[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis (NumPy ``concatenate``)."""
    ts = [as_tensor(t) for t in tensors]
    if not ts:
        raise UsageError("concatenate needs at least one tensor")
    return ops.Concatenate.apply(*ts, axis=axis)


def stack(tensors: Iterable[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along a new axis (composed: expand_dims each, then concatenate)."""
    ts = [as_tensor(t) for t in tensors]
    if not ts:
        raise UsageError("stack needs at least one tensor")
    shapes = {t.shape for t in ts}
    if len(shapes) != 1:
        raise ShapeError(f"stack needs tensors of one shape; got {sorted(shapes)}")
    return concatenate([t.expand_dims(axis) for t in ts], axis=axis)


def split(t: Tensor, indices_or_sections, axis: int = 0) -> list[Tensor]:
    """Split into pieces along ``axis`` (NumPy ``split`` semantics; composed from slicing)."""
    t = as_tensor(t)
    ax = _norm_axis(axis, t.ndim, "split")
    n = t.shape[ax]
    if _is_int(indices_or_sections):
        indices_or_sections = int(indices_or_sections)
        if indices_or_sections <= 0 or n % indices_or_sections:
            raise ShapeError(f"split: axis {ax} of size {n} does not divide into {indices_or_sections} equal parts")
        step = n // indices_or_sections
        bounds = list(range(0, n + 1, step)) if step else [0] * (indices_or_sections + 1)
    else:
        bounds = [0, *[int(i) for i in indices_or_sections], n]
    pieces = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        index = (slice(None),) * ax + (slice(lo, hi),)
        pieces.append(t[index])
    return pieces


def maximum(a, b) -> Tensor:
    a = as_tensor(a)
    return a.maximum(b)


def minimum(a, b) -> Tensor:
    a = as_tensor(a)
    return a.minimum(b)


autograd.register_tensor_type(Tensor)  # the engine wraps op outputs in this class (autograd imports no tensor)
