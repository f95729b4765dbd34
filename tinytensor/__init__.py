"""tinytensor: a NumPy tensor library with a hand-written reverse-mode autograd engine.

    import tinytensor as tt
    x = tt.tensor([[1.0, 2.0]], requires_grad=True)
    y = (x * x).sum()
    y.backward()          # x.grad == [[2., 4.]]

Modules: ``tensor`` (Tensor and creation), ``autograd`` (the engine), ``ops`` (every differentiable op),
``functional`` (softmax, cross_entropy, layer_norm, attention, ...), ``nn``, ``optim``, ``gradcheck``,
``backend`` + ``kernels`` (NumPy reference and Numba kernels), ``profiler``.
"""
from . import runtime as _runtime

_runtime.configure()  # threads, malloc, Numba cache, debug: the process-wide policy (tinytensor/runtime.py)

from . import functional, nn, ops, optim  # noqa: E402
from .autograd import enable_grad, is_grad_enabled, no_grad
from .backend import get_backend, set_backend
from .errors import ConfigError, DTypeError, FileFormatError, ShapeError, UsageError
from .gradcheck import GradcheckError, GradcheckResult, gradcheck
from .graph import Graph, graph
from .profiler import profile
from .trace import Trace, trace
from .tensor import (
    Tensor,
    arange,
    as_tensor,
    concatenate,
    default_rng,
    full,
    manual_seed,
    maximum,
    minimum,
    ones,
    ones_like,
    rand,
    randn,
    split,
    stack,
    tensor,
    where,
    zeros,
    zeros_like,
)

__all__ = [
    "Tensor", "tensor", "as_tensor", "zeros", "ones", "full", "zeros_like", "ones_like", "arange", "randn",
    "rand", "manual_seed", "default_rng", "where", "concatenate", "stack", "split", "maximum", "minimum",
    "no_grad", "enable_grad", "is_grad_enabled", "set_backend", "get_backend", "gradcheck",
    "GradcheckError", "GradcheckResult", "profile", "trace", "Trace", "graph", "Graph", "UsageError", "ShapeError", "DTypeError", "ConfigError",
    "FileFormatError", "functional", "nn", "ops", "optim",
]
__version__ = "0.1.0"
