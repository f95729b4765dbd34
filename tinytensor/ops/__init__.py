"""Every differentiable op, by family; each op's forward and backward side by side in one class.

Each class is one op: ``forward(ctx, *arrays, **params)`` computes the output from NumPy arrays and saves
what the backward needs on ``ctx``; ``backward(ctx, grad)`` returns one gradient per array input.
Gradients may keep the broadcast shape of the output: the engine (:func:`autograd.unbroadcast`) reduces
them to each input's shape, checks shapes and casts dtypes. Every op registers itself by name in
:data:`REGISTRY` (the test suite fails for an op without a gradient-check case).

Families: :mod:`.elementwise`, :mod:`.reductions`, :mod:`.shape` (shape and indexing), :mod:`.linalg`
(matmul, linear), :mod:`.nn` (softmax, cross-entropy, layer norm, GELU, ReLU, embedding, dropout) and
:mod:`.attention`. Ops with a fused kernel call it through :func:`backend.kernels`, never numba directly.
The user's arguments are checked once, at the op's entry, with the types of :mod:`tinytensor.errors`.
"""
from ..autograd import REGISTRY, Function
from .attention import Attention
from .elementwise import (Abs, Add, Cast, Clip, Div, Exp, Log, Log1p, Maximum, Minimum, Mul, Neg, Pow, PowScalar,
                          Sigmoid, Sqrt, Sub, Tanh, Where)
from .linalg import Linear, MatMul
from .nn import AddLayerNorm, CrossEntropy, Dropout, Embedding, Gelu, LayerNorm, LogSoftmax, Relu, Softmax
from .reductions import Max, Mean, Min, Sum, Var
from .shape import BroadcastTo, Concatenate, GetItem, Reshape, Transpose

__all__ = [
    "REGISTRY", "Function",
    "Add", "Sub", "Mul", "Div", "Neg", "Pow", "PowScalar", "Exp", "Log", "Log1p", "Sqrt", "Tanh", "Sigmoid", "Relu", "Abs",
    "Maximum", "Minimum", "Clip", "Cast", "Where",
    "Sum", "Mean", "Max", "Min", "Var",
    "Reshape", "Transpose", "BroadcastTo", "GetItem", "Concatenate",
    "MatMul", "Linear",
    "Softmax", "LogSoftmax", "CrossEntropy", "LayerNorm", "AddLayerNorm", "Gelu", "Embedding", "Dropout",
    "Attention",
]
