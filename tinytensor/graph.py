"""The recorded graph, as data and as Graphviz DOT: what ``backward`` will walk.

    logits, loss = model(x, y)
    g = tt.graph(loss, model)              # before backward (it frees the graph), or backward(retain_graph=True)
    print(g.summary())                     # node and edge counts per op
    open("g.dot", "w").write(g.to_dot())   # DOT text needs nothing installed
    g.render("g.svg")                      # SVG/PNG/PDF: the graphviz package and the `dot` program (viz extra)

Nodes are tensors: an **op** node is a tensor some op made (op name, output shape, dtype, bytes the op saved
for backward, the module that called it); a **parameter** is a leaf that requires grad (named when the module
is given); any other leaf is an **input**. An edge ``a -> b`` means b's op read a. Ops are grouped into one
cluster per module (``transformer.h.0.attn``), parameters drawn as leaves with their names.
``to_dot(highlight="transformer.h.0.attn.c_attn.weight")`` colours the path from that parameter to the root:
the chain of ops its gradient flows back along. After ``backward``, a parameter's edge is labelled with its
gradient's shape.
"""
from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import UsageError
from .fileio import atomic_write_bytes
from .profiler import saved_bytes

__all__ = ["Graph", "GraphNode", "graph"]


@dataclass
class GraphNode:
    """One tensor of the graph."""
    id: int
    kind: str                    # "op", "param" or "input"
    label: str                   # op name, parameter name, or "input"
    shape: tuple[int, ...]
    dtype: str
    saved_bytes: int = 0         # arrays the op kept for backward beyond its inputs
    module: str | None = None    # dotted name of the module whose forward called the op
    tensor: object = field(default=None, repr=False, compare=False)


@dataclass
class Graph:
    """Nodes (root last) and edges ``(input id, output id)``."""
    nodes: list[GraphNode]
    edges: list[tuple[int, int]]
    root: int

    def node(self, label: str) -> GraphNode:
        """The node labelled ``label`` (a parameter name, say)."""
        for n in self.nodes:
            if n.label == label:
                return n
        raise UsageError(f"no node labelled {label!r} in this graph")

    def path_to_root(self, label: str) -> set[int]:
        """Ids of every node on a path from the node ``label`` to the root."""
        start = self.node(label).id
        out: dict[int, list[int]] = {}
        for a, b in self.edges:
            out.setdefault(a, []).append(b)
        reach, stack = {start}, [start]
        while stack:                                   # forward from the parameter ...
            for b in out.get(stack.pop(), ()):
                if b not in reach:
                    reach.add(b)
                    stack.append(b)
        back: dict[int, list[int]] = {}
        for a, b in self.edges:
            back.setdefault(b, []).append(a)
        onpath, stack = {self.root}, [self.root]
        while stack:                                   # ... intersected with backward from the root
            for a in back.get(stack.pop(), ()):
                if a in reach and a not in onpath:
                    onpath.add(a)
                    stack.append(a)
        return onpath & reach

    def summary(self) -> str:
        """Counts: nodes by kind, ops by name, edges, saved bytes."""
        kinds = Counter(n.kind for n in self.nodes)
        ops = Counter(n.label for n in self.nodes if n.kind == "op")
        saved = sum(n.saved_bytes for n in self.nodes)
        lines = [f"{len(self.nodes)} nodes ({kinds['op']} ops, {kinds['param']} parameters, "
                 f"{kinds['input']} inputs), {len(self.edges)} edges, {saved / 1e3:.1f} kB saved for backward"]
        lines += [f"  {name:<16} {count}" for name, count in ops.most_common()]
        return "\n".join(lines)

    def to_dot(self, highlight: str | None = None, rankdir: str = "BT") -> str:
        """Graphviz DOT text: one cluster per module, the path from ``highlight`` to the root in red."""
        hot = self.path_to_root(highlight) if highlight else set()
        lines = ["digraph tinytensor {", f"  rankdir={rankdir};",
                 '  node [fontname="Helvetica", fontsize=10];', '  edge [fontname="Helvetica", fontsize=8];']
        clusters: dict[str | None, list[GraphNode]] = {}
        for n in self.nodes:
            clusters.setdefault(n.module if n.kind == "op" else None, []).append(n)
        for i, (module, members) in enumerate(sorted(clusters.items(), key=lambda kv: kv[0] or "")):
            indent = "  "
            if module:
                lines.append(f'  subgraph cluster_{i} {{ label="{_esc(module)}"; style="rounded,dashed"; '
                             f'color="gray50"; fontname="Helvetica"; fontsize=9;')
                indent = "    "
            for n in members:
                lines.append(indent + _dot_node(n, n.id in hot))
            if module:
                lines.append("  }")
        for a, b in self.edges:
            attrs = []
            src = self._by_id(a)
            grad = getattr(src.tensor, "grad", None) if src.kind == "param" else None
            if grad is not None:
                attrs.append(f'label="grad {_shape(np.shape(grad))}"')
            if a in hot and b in hot:
                attrs.append('color="red", penwidth=2')
            lines.append(f"  n{a} -> n{b}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def render(self, path: str | os.PathLike, highlight: str | None = None) -> Path:
        """Write the picture (format from the suffix: .svg, .png, .pdf) with the ``dot`` program.

        Raises:
            UsageError: the graphviz package or the ``dot`` program is missing (the message says how to
                install them); ``to_dot()`` needs neither.
        """
        try:
            import graphviz   # optional dependency (the viz extra): imported only to draw
        except ImportError:
            raise UsageError('drawing the graph needs the graphviz package: pip install ".[viz]" '
                             "(to_dot() gives the DOT text without it)") from None
        if shutil.which("dot") is None:
            raise UsageError("drawing the graph needs Graphviz's dot program: apt install graphviz "
                             "(Debian/Ubuntu), brew install graphviz (macOS); to_dot() gives the DOT text")
        path = Path(path)
        fmt = path.suffix.lstrip(".") or "svg"
        data = graphviz.Source(self.to_dot(highlight)).pipe(format=fmt)
        atomic_write_bytes(path, data)
        return path

    def _by_id(self, i: int) -> GraphNode:
        if not hasattr(self, "_index"):
            self._index = {n.id: n for n in self.nodes}
        return self._index[i]


def _shape(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _dot_node(n: GraphNode, hot: bool) -> str:
    color = ', color="red", penwidth=2' if hot else ""
    if n.kind == "op":
        extra = f"\\nsaved {n.saved_bytes / 1e3:.1f} kB" if n.saved_bytes else ""
        return (f'n{n.id} [shape=box, style="rounded,filled", fillcolor="lightblue", '
                f'label="{_esc(n.label)}\\n{_shape(n.shape)} {n.dtype}{extra}"{color}];')
    if n.kind == "param":
        return (f'n{n.id} [shape=ellipse, style=filled, fillcolor="palegreen", '
                f'label="{_esc(n.label)}\\n{_shape(n.shape)}"{color}];')
    return f'n{n.id} [shape=note, label="input\\n{_shape(n.shape)} {n.dtype}"{color}];'


def graph(root, module=None) -> Graph:
    """The graph recorded behind ``root`` (call before ``backward``, or after ``backward(retain_graph=True)``).

    Args:
        root: the tensor whose graph to read (a loss).
        module: the ``nn.Module`` that built it: names the parameters and the modules of the ops.

    Raises:
        UsageError: ``root`` has no graph (built under ``no_grad``), or its graph was freed by ``backward``.
    """
    if getattr(root, "_node", None) is None:
        raise UsageError("this tensor has no recorded graph: it was built under no_grad, or it is a leaf")
    param_names = {id(p): n for n, p in module.named_parameters()} if module is not None else {}
    module_names = {id(m): n for n, m in module.named_modules()} if module is not None else {}
    nodes: dict[int, GraphNode] = {}
    edges: list[tuple[int, int]] = []
    order: list[int] = []
    stack = [(root, False)]
    while stack:                                   # iterative post-order: inputs before the ops that read them
        t, done = stack.pop()
        key = id(t)
        if done:
            order.append(key)
            continue
        if key in nodes:
            continue
        node = t._node
        if node is None:
            kind = "param" if t.requires_grad else "input"
            label = param_names.get(key, "parameter" if kind == "param" else "input")
            nodes[key] = GraphNode(key, kind, label, tuple(t.shape), str(t.dtype), tensor=t)
            order.append(key)
            continue
        if node.released:
            raise UsageError("the graph was freed by backward(); call tt.graph before backward, or use "
                             "backward(retain_graph=True)")
        owner = getattr(node, "module", None)
        nodes[key] = GraphNode(key, "op", node.fn.name, tuple(t.shape), str(t.dtype), saved_bytes(node.ctx, [i.data for i in node.inputs], t.data),
                               module_names.get(id(owner)) or None, tensor=t)
        stack.append((t, True))
        for inp in node.inputs:
            edges.append((id(inp), key))
            if id(inp) not in nodes:
                stack.append((inp, False))
    # number the nodes 0, 1, ... in post-order (inputs first, the root last) instead of by address
    number = {k: i for i, k in enumerate(dict.fromkeys(order))}
    for k, n in nodes.items():
        n.id = number[k]
    return Graph([nodes[k] for k in number], [(number[a], number[b]) for a, b in dict.fromkeys(edges)],
                 number[id(root)])
