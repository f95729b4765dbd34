"""Shape and indexing ops: reshape, transpose, broadcast_to, getitem (slicing), concatenate.

Reshape and transpose move no data: their backward re-views the gradient (``backward_is_view``), so a
packed gradient (``autograd.PackedGrad``) keeps its identity through them. Slicing's backward returns a
``SliceGrad`` that the engine scatters into one buffer per sliced tensor.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function, SliceGrad
from ..errors import ShapeError


class Reshape(Function):
    name = "reshape"
    backward_is_view = True

    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ShapeError(f"reshape: cannot reshape array of shape {a.shape} (size {a.size}) into {shape}") from None

    @staticmethod
    def backward(ctx, g):
        return (g.reshape(ctx.shape),)


class Transpose(Function):
    """Permute axes (NumPy ``transpose``); backward applies the inverse permutation."""
    name = "transpose"
    backward_is_view = True

    @staticmethod
    def forward(ctx, a, axes):
        n = a.ndim
        perm = tuple(x % n for x in axes) if n else tuple(axes)
        if len(perm) != n or sorted(perm) != list(range(n)):
            raise ShapeError(f"transpose: axes {axes} are not a permutation of the {n} axes of shape {a.shape}")
        inverse = [0] * n  # (plain Python: np.argsort costs more than the view itself)
        for i, x in enumerate(perm):
            inverse[x] = i
        ctx.inverse = tuple(inverse)
        return a.transpose(perm)

    @staticmethod
    def backward(ctx, g):
        return (g.transpose(ctx.inverse),)


class BroadcastTo(Function):
    """Broadcast to ``shape``; the engine's ``unbroadcast`` sums the gradient back."""
    name = "broadcast_to"

    @staticmethod
    def forward(ctx, a, shape):
        try:
            return np.broadcast_to(a, shape)
        except ValueError:
            raise ShapeError(f"broadcast_to: shape {a.shape} cannot broadcast to {shape}") from None

    @staticmethod
    def backward(ctx, g):
        return (g,)


def _is_advanced(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, (list, np.ndarray)) for i in items)


class GetItem(Function):
    """``a[index]``: basic slicing, ``...``, None, and integer/boolean arrays.

    Backward returns a ``SliceGrad``: the engine adds the gradient into the input's gradient buffer at
    ``index``; with integer arrays through ``np.add.at``, so repeated indices accumulate (``a[[0, 0]]``
    sends twice the gradient to ``a[0]``).
    """
    name = "getitem"

    @staticmethod
    def forward(ctx, a, index):
        ctx.shape, ctx.index, ctx.dtype = a.shape, index, a.dtype
        try:
            return a[index]
        except IndexError as e:
            raise IndexError(f"getitem: {e} (input shape {a.shape}, index {index!r})") from None

    @staticmethod
    def backward(ctx, g):
        # "g goes to x_grad[index], zeros elsewhere": the engine adds it into the input's gradient
        # buffer, so slicing one tensor into pieces allocates one buffer, not one per piece
        return (SliceGrad(ctx.index, g, advanced=_is_advanced(ctx.index)),)


class Concatenate(Function):
    """Join along an existing axis; backward slices the gradient back into pieces."""
    name = "concatenate"

    @staticmethod
    def forward(ctx, *arrays, axis):
        try:
            out = np.concatenate(arrays, axis=axis)
        except ValueError:
            raise ShapeError(f"concatenate: shapes {[a.shape for a in arrays]} do not join on axis {axis}") from None
        ctx.axis = axis % out.ndim
        ctx.bounds = np.cumsum([a.shape[ctx.axis] for a in arrays])[:-1]
        return out

    @staticmethod
    def backward(ctx, g):
        return tuple(np.split(g, ctx.bounds, axis=ctx.axis))
