"""Neural-network building blocks: ``Module``, ``Parameter`` and the layers a GPT needs.

A ``Module`` finds its parameters and sub-modules by attribute assignment, in assignment order, like
PyTorch: ``self.fc = Linear(4, 8)`` registers ``fc.weight`` and ``fc.bias``. Weight layouts follow
PyTorch (``Linear.weight`` is ``[out_features, in_features]``) so state dicts map one to one.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Iterator

import numpy as np

from . import functional as F
from .autograd import module_stack
from .errors import ConfigError, ShapeError
from .ops.checks import check_probability
from .tensor import DEFAULT_FLOAT, Tensor, default_rng


class Parameter(Tensor):
    """A tensor that is a module's learnable weight (always ``requires_grad=True``)."""
    __slots__ = ()

    def __init__(self, data, dtype=None):
        super().__init__(data, dtype=dtype, requires_grad=True)

    def __repr__(self) -> str:
        return "Parameter(" + super().__repr__() + ")"


class Module:
    """Base class of layers and models. Subclasses define ``forward``; call the module to run it."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() before "
                               f"assigning attribute {name!r}")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def forward(self, *args, **kwargs):  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        module_stack.append(self)      # ops made inside record this module (tt.graph, tt.trace)
        try:
            return self.forward(*args, **kwargs)
        finally:
            module_stack.pop()

    # ---------------------------------------------------------------------------- traversal
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        yield from self._modules.items()

    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Yield ``(dotted_name, parameter)``; a parameter shared by two modules is yielded once."""
        seen: set[int] = set()
        for mod_name, m in self.named_modules(prefix):
            for name, p in m._parameters.items():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # ------------------------------------------------------------------------------ state
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Parameter arrays by dotted name (the arrays themselves, not copies)."""
        return OrderedDict((name, p.data) for name, p in self.named_parameters())

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays into the parameters in place, checking names and shapes.

        Raises:
            KeyError: with ``strict``, names missing from ``state`` or not in the module.
            ShapeError: an array whose shape differs from the parameter's.
        """
        own = dict(self.named_parameters())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for name, p in own.items():
            if name not in state:
                continue
            arr = np.asarray(state[name])
            if arr.shape != p.shape:
                raise ShapeError(f"load_state_dict: {name} has shape {arr.shape} in the state dict but "
                                 f"{p.shape} in the module")
            _copy_into(p.data, arr)

    def to_dtype(self, dtype) -> Module:
        """Cast every parameter to ``dtype`` in place (e.g. float64 for gradient checks)."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        return self

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return "\n".join(lines) + (")" if len(lines) == 1 else "\n)")


_TILE = 64     # a 64 x 64 float32 tile of source and destination (16 KiB each) stays in L1


def _copy_into(dst: np.ndarray, src: np.ndarray) -> None:
    """``np.copyto(dst, src, casting="same_kind")``, in square tiles when ``src`` is a transposed 2-D view.

    NumPy walks ``dst`` in memory order, so it reads a transposed ``src`` one element per cache line,
    a column at a time; copying ``TILE x TILE`` blocks keeps the lines a block reads in L1 until all
    their elements are used (GPT-2's Conv1D weights arrive transposed: ``benchmarks/load_gpt2.py``).
    """
    if src.ndim != 2 or src.flags.c_contiguous or dst.shape != src.shape or min(src.shape) <= _TILE:
        np.copyto(dst, src, casting="same_kind")
        return
    rows, cols = src.shape
    for i in range(0, rows, _TILE):
        for j in range(0, cols, _TILE):
            np.copyto(dst[i:i + _TILE, j:j + _TILE], src[i:i + _TILE, j:j + _TILE], casting="same_kind")


# ================================================================================== layers
def _uniform(rng, bound: float, shape, dtype) -> np.ndarray:
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def _weights(init: bool, draw, shape, dtype) -> np.ndarray:
    """``draw()`` cast to ``dtype``, or with ``init=False`` an uninitialised ``np.empty`` of that shape."""
    return draw().astype(dtype) if init else np.empty(shape, dtype=dtype)


class Linear(Module):
    """``y = x @ weight.T + bias`` with ``weight [out_features, in_features]`` (PyTorch layout).

    Init as PyTorch: uniform in ``±1/sqrt(in_features)`` for weight and bias. ``init=False`` leaves both
    uninitialised (``np.empty``, no random draws) for a caller that overwrites them next (loading weights).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 rng: np.random.Generator | None = None, dtype=DEFAULT_FLOAT, init: bool = True):
        super().__init__()
        g = rng if rng is not None else default_rng()
        bound = 1.0 / math.sqrt(in_features) if in_features else 0.0
        self.in_features, self.out_features = in_features, out_features
        w_shape = (out_features, in_features)
        self.weight = Parameter(_weights(init, lambda: g.uniform(-bound, bound, w_shape), w_shape, dtype))
        self.bias = Parameter(_weights(init, lambda: g.uniform(-bound, bound, out_features), (out_features,),
                                       dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)              # x @ weight.T + bias: [..., out]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table ``weight [num_embeddings, embedding_dim]``, init N(0, 1) as PyTorch (``init=False``:
    uninitialised, as :class:`Linear`)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, rng: np.random.Generator | None = None,
                 dtype=DEFAULT_FLOAT, init: bool = True):
        super().__init__()
        g = rng if rng is not None else default_rng()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        shape = (num_embeddings, embedding_dim)
        self.weight = Parameter(_weights(init, lambda: g.standard_normal(shape), shape, dtype))

    def forward(self, ids) -> Tensor:
        return F.embedding(ids, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Layer norm over the last axis with learnable ``weight`` (ones) and optional ``bias`` (zeros)."""

    def __init__(self, normalized_shape: int, eps: float = 1e-5, bias: bool = True, dtype=DEFAULT_FLOAT):
        super().__init__()
        self.eps = eps
        self.weight = Parameter(np.ones(normalized_shape, dtype=dtype))
        self.bias = Parameter(np.zeros(normalized_shape, dtype=dtype)) if bias else None

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """The norm of ``x``, or of ``x + residual`` in one fused pass (a post-LN residual connection)."""
        return F.layer_norm(x, self.weight, self.bias, self.eps, residual=residual)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class Dropout(Module):
    """Inverted dropout with probability ``p`` while training; identity in eval mode."""

    def __init__(self, p: float = 0.5, rng: np.random.Generator | None = None):
        super().__init__()
        self.p = check_probability("Dropout", "p", p)  # at construction: a bad config fails where it is made
        self.rng = rng

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training, self.rng)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class GELU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x)


class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class Sequential(Module):
    """Runs its modules in order: ``Sequential(Linear(2, 8), ReLU(), Linear(8, 1))``."""

    def __init__(self, *modules: Module):
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


class ModuleList(Module):
    """A list of modules whose parameters are registered (``h.0.attn.c_attn.weight`` ...)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, m: Module) -> ModuleList:
        setattr(self, str(len(self._modules)), m)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]


# ============================================================================ transformer parts
class SinusoidalPositions(Module):
    """The Transformer paper's fixed positional encoding, added to ``x [..., T, d_model]``:
    ``PE[pos, 2i] = sin(pos / 10000^(2i / d_model))``, ``PE[pos, 2i + 1] = cos(pos / 10000^(2i / d_model))``.

    ``self.pe [max_len, d_model]`` is a buffer (``F.sinusoidal_positions``), not a parameter: it has no
    gradient and is not in the state dict (it is recomputed from the two sizes). ``forward(x)`` returns
    ``x + PE[:T]`` in ``x``'s dtype.
    """

    def __init__(self, max_len: int, d_model: int, dtype=DEFAULT_FLOAT):
        super().__init__()
        self.max_len, self.d_model = max_len, d_model
        self.pe = F.sinusoidal_positions(max_len, d_model, dtype)   # [max_len, d_model]

    def forward(self, x: Tensor) -> Tensor:
        T = x.shape[-2] if x.ndim >= 2 else -1
        if x.ndim < 2 or x.shape[-1] != self.d_model or T > self.max_len:
            raise ShapeError(f"SinusoidalPositions({self.max_len}, {self.d_model}): x must be [..., T, "
                             f"{self.d_model}] with T <= {self.max_len}, got {x.shape}")
        return x + self.pe.data[:T].astype(x.dtype, copy=False)    # [..., T, d_model]

    def extra_repr(self) -> str:
        return f"{self.max_len}, {self.d_model}"


class MultiheadAttention(Module):
    """Multi-head attention shaped like ``torch.nn.MultiheadAttention(batch_first=True)``.

    Separate projections ``q_proj``, ``k_proj``, ``v_proj`` (each ``Linear(d_model, d_model)``) so the
    queries may come from another sequence than the keys and values (cross-attention), then
    ``n_head`` heads of ``F.scaled_dot_product_attention`` and ``out_proj``. Init as PyTorch: the three
    input projections Xavier-uniform over their stacked ``[3 d_model, d_model]`` (bound
    ``sqrt(6 / (4 d_model))``), every bias 0, ``out_proj.weight`` as a ``Linear``'s. PyTorch's
    ``in_proj_weight`` is ``concat(q_proj.weight, k_proj.weight, v_proj.weight)``.

    ``dropout`` applies to the attention weights while training (``rng`` draws its seeds).
    """

    def __init__(self, d_model: int, n_head: int, bias: bool = True, dropout: float = 0.0,
                 rng: np.random.Generator | None = None, dtype=DEFAULT_FLOAT):
        super().__init__()
        if n_head < 1 or d_model % n_head:
            raise ConfigError(f"MultiheadAttention: d_model {d_model} must be a multiple of n_head {n_head} >= 1")
        g = rng if rng is not None else default_rng()
        self.d_model, self.n_head = d_model, n_head
        self.dropout = check_probability("MultiheadAttention", "dropout", dropout)
        self.rng = g
        bound = math.sqrt(6.0 / (4 * d_model))            # xavier_uniform_ of the stacked [3C, C] in_proj
        for name in ("q_proj", "k_proj", "v_proj"):
            lin = Linear(d_model, d_model, bias=bias, rng=g, dtype=dtype)
            lin.weight.data[...] = _uniform(g, bound, (d_model, d_model), dtype)
            setattr(self, name, lin)
        self.out_proj = Linear(d_model, d_model, bias=bias, rng=g, dtype=dtype)
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            if lin.bias is not None:
                lin.bias.data[...] = 0

    def _heads(self, x: Tensor, proj: Linear, name: str) -> Tensor:
        """``proj(x)`` for ``x [B, n, C]`` (checked), split into heads ``[B, H, n, C / H]``."""
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ShapeError(f"MultiheadAttention: {name} must be [B, n, {self.d_model}], got {x.shape}")
        B, n, C = x.shape
        return proj(x).reshape(B, n, self.n_head, C // self.n_head).transpose(0, 2, 1, 3)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask=None, attn_mask=None,
                causal: bool = False) -> Tensor:
        """``query [B, T, C]``, ``key`` and ``value [B, S, C]`` -> ``[B, T, C]``.

        Masks as in ``F.scaled_dot_product_attention`` (True = ignore): ``key_padding_mask [B, S]``;
        ``attn_mask`` bool or additive float, ``[T, S]``, broadcastable to ``[B, H, T, S]``, or PyTorch's
        ``[B * H, T, S]``; ``causal`` hides later keys. A query with every key masked gets ``out_proj``'s
        bias (its attention output is zeros; PyTorch gives NaN).
        """
        k, v = self.project_kv(key, value)                            # [B, H, S, D] each
        return self.attend(query, k, v, key_padding_mask, attn_mask, causal)

    def project_kv(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """The keys and values split into heads, ``[B, H, S, C / H]`` each: what a decoder caches
        (cross-attention projects the encoder's output once; self-attention appends one position a step)."""
        return self._heads(key, self.k_proj, "key"), self._heads(value, self.v_proj, "value")

    def attend(self, query: Tensor, k: Tensor, v: Tensor, key_padding_mask=None, attn_mask=None,
               causal: bool = False) -> Tensor:
        """``query [B, T, C]`` attends to already projected ``k``, ``v [B, H, S, D]`` -> ``[B, T, C]``."""
        q = self._heads(query, self.q_proj, "query")                  # [B, H, T, D]
        B, H, T, D = q.shape
        if attn_mask is not None and not isinstance(attn_mask, Tensor):
            attn_mask = np.asarray(attn_mask)
        if attn_mask is not None and attn_mask.ndim == 3 and B * H > 1 and attn_mask.shape[0] == B * H:
            attn_mask = attn_mask.reshape(B, H, *attn_mask.shape[1:])      # PyTorch's [B * H, T, S] layout
        y = F.scaled_dot_product_attention(q, k, v, causal=causal, dropout_p=self.dropout, training=self.training,
                                           rng=self.rng, key_padding_mask=key_padding_mask,
                                           attn_mask=attn_mask)       # [B, H, T, D]
        y = y.transpose(0, 2, 1, 3).reshape(B, T, H * D)              # [B, T, C] heads side by side
        return self.out_proj(y)                                       # [B, T, C]

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_head={self.n_head}, dropout={self.dropout}"
