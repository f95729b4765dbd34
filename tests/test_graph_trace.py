"""tt.graph (the recorded graph as data and DOT) and tt.trace (every op call in order)."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess

import numpy as np
import pytest

import tinytensor as tt
from tinytensor import nn
from tinytensor.errors import UsageError
from gpt import GPT, GPTConfig
from gpt.commands.graph import block_graph


def test_graph_of_a_small_expression_has_exactly_its_nodes_and_edges():
    x = tt.tensor([[1.0, 2.0]], requires_grad=True)
    w = tt.tensor([[3.0], [4.0]], requires_grad=True)
    c = tt.tensor([[5.0]])                          # a constant: an input leaf
    y = ((x @ w) * c).sum()
    g = tt.graph(y)
    kinds = sorted((n.kind, n.label, n.shape) for n in g.nodes)
    assert kinds == [("input", "input", (1, 1)), ("op", "matmul", (1, 1)), ("op", "mul", (1, 1)),
                     ("op", "sum", ()), ("param", "parameter", (1, 2)), ("param", "parameter", (2, 1))]
    by = {n.label if n.kind == "op" else (n.kind, n.shape): n.id for n in g.nodes}
    assert sorted(g.edges) == sorted([(by[("param", (1, 2))], by["matmul"]), (by[("param", (2, 1))], by["matmul"]),
                                      (by["matmul"], by["mul"]), (by[("input", (1, 1))], by["mul"]),
                                      (by["mul"], by["sum"])])
    assert g.root == by["sum"] and g.nodes[-1].id == g.root
    dot = g.to_dot()
    assert dot.startswith("digraph tinytensor {") and dot.count("->") == 5


def test_graph_needs_a_recorded_graph():
    with tt.no_grad():
        y = tt.tensor([1.0], requires_grad=True) * 2.0
    with pytest.raises(UsageError, match="no recorded graph"):
        tt.graph(y)
    x = tt.tensor([1.0, 2.0], requires_grad=True)
    z = (x * x).sum()
    z.backward()
    with pytest.raises(UsageError, match="freed by backward"):
        tt.graph(z)


def test_every_parameter_of_a_gpt_block_appears_once_grouped_by_module():
    g, model = block_graph("baby", block=1)
    params = [n.label for n in g.nodes if n.kind == "param"]
    expected = sorted(n for n, _ in model.transformer.h[1].named_parameters(prefix="transformer.h.1"))
    assert sorted(params) == expected and len(params) == len(set(params)) == 12
    modules = {n.module for n in g.nodes if n.kind == "op"}
    assert {"transformer.h.1.attn", "transformer.h.1.attn.c_attn", "transformer.h.1.mlp.c_fc",
            "transformer.h.1.ln_1"} <= modules
    # after backward, a parameter's edge carries its gradient's shape; the highlighted path is red
    dot = g.to_dot(highlight="transformer.h.1.attn.c_attn.weight")
    assert 'label="grad [384, 128]"' in dot and 'color="red"' in dot
    hot = g.path_to_root("transformer.h.1.attn.c_attn.weight")
    names = {n.label for n in g.nodes if n.id in hot}
    assert {"linear", "attention", "add", "mean"} <= names and "gelu" in names
    assert g.node("transformer.h.1.mlp.c_fc.weight").id not in hot


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot program (apt install graphviz)")
def test_the_dot_text_parses(tmp_path):
    g, _ = block_graph("baby", block=0)
    r = subprocess.run(["dot", "-Tsvg"], input=g.to_dot(highlight="transformer.h.0.attn.c_attn.weight"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "<svg" in r.stdout
    if importlib.util.find_spec("graphviz") is not None:
        assert g.render(tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_trace_lists_every_call_in_order_with_modules_and_its_backward():
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=8), seed=0)
    x = np.arange(16).reshape(2, 8) % 11
    with tt.trace(model) as tr:
        _, loss = model(x, x)
        g = tt.graph(loss, model)
        loss.backward()
    fwd = [e for e in tr.events if e.phase == "forward"]
    bwd = [e for e in tr.events if e.phase == "backward"]
    assert [e.op for e in fwd] == [n.label for n in g.nodes if n.kind == "op"] or \
        sorted(e.op for e in fwd) == sorted(n.label for n in g.nodes if n.kind == "op")
    assert fwd[0].op == "embedding" and fwd[0].module == "transformer.wte"
    assert fwd[-1].op == "cross_entropy" and fwd[-1].module == ""
    assert [e.index for e in tr.events] == list(range(len(tr.events)))
    assert all(e.of is not None and tr.events[e.of].op == e.op for e in bwd)
    assert bwd[0].op == "cross_entropy"                         # backward starts at the loss
    c_attn = next(e for e in fwd if e.module == "transformer.h.0.attn.c_attn")
    assert c_attn.op == "linear" and c_attn.inputs == [[2, 8, 8], [24, 8], [24]] and c_attn.output == [[2, 8, 24]]
    assert c_attn.flops == 2 * 2 * 8 * 24 * 8
    table = tr.table(limit=5)
    assert "transformer.wte" in table and "more calls" in table


def test_trace_to_json_and_one_active_hook(tmp_path):
    lin = nn.Linear(3, 2, rng=np.random.default_rng(0))
    with tt.trace(lin) as tr:
        lin(tt.tensor(np.ones((4, 3), np.float32))).sum().backward()
        with pytest.raises(RuntimeError, match="already active"):
            with tt.profile():
                pass
    tr.to_json(tmp_path / "t.json")
    events = json.loads((tmp_path / "t.json").read_text())
    assert [e["op"] for e in events] == ["linear", "sum", "sum", "linear"]
    assert [e["phase"] for e in events] == ["forward", "forward", "backward", "backward"]
    assert events[0]["module"] == "" and events[3]["of"] == 0


def test_module_stack_is_empty_after_an_exception_in_forward():
    from tinytensor.autograd import module_stack

    class Boom(nn.Module):
        def forward(self, x):
            raise ValueError("boom")

    with pytest.raises(ValueError):
        Boom()(tt.tensor([1.0]))
    assert module_stack == []
