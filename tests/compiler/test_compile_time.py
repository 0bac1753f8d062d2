"""What keeps the cleanup passes cheap: a pass that changes nothing returns its input graph (the
pipeline then neither verifies it nor compares graphs), and a copied node keeps its type unless
its inputs' types changed."""

from __future__ import annotations

import numpy as np

from graphtorch.compiler import cleanup
from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.ir import Graph, rewrite


def _graph() -> Graph:
    g = Graph()
    x = g.input("x", TensorType((4, 5), dt.float32))
    y = g.call("exp", [x])
    z = g.call("exp", [x])  # a common subexpression
    one = g.constant(np.ones((4, 5), np.float32))
    g.call("sin", [x])  # dead
    g.outputs = [g.call("add", [g.call("mul", [y, one]), z])]
    return g


def test_each_pass_returns_its_input_once_nothing_is_left_to_do():
    done = cleanup.optimize(_graph())
    assert len(done.nodes) < len(_graph().nodes)
    for name, p in cleanup.PASSES:
        assert p(done) is done, name
    calls = []
    again = cleanup.optimize(done, check=lambda name, before, after: calls.append(after is before))
    assert again.equals(done) and calls and all(calls[:len(cleanup.PASSES)])


def test_a_pass_that_changes_something_returns_a_new_graph():
    g = _graph()
    assert cleanup.dce(g) is not g and cleanup.cse(g) is not g and cleanup.simplify(g) is not g


def test_rewrite_keeps_the_graph_only_when_asked_and_nothing_was_replaced():
    g = _graph()
    assert rewrite(g, lambda n, ins, out: None, keep=True) is g
    copy = rewrite(g, lambda n, ins, out: None)
    assert copy is not g and copy.equals(g)


def test_a_copy_keeps_its_type_unless_its_inputs_changed_type():
    g = _graph()
    add = g.outputs[0]
    h = Graph()
    a, b = h.input("a", TensorType((4, 5), dt.float32)), h.input("b", TensorType((4, 5), dt.float32))
    assert h.add_copy(add, [a, b]).type == add.type
    c, d = h.input("c", TensorType((2, 3), dt.float64)), h.input("d", TensorType((2, 3), dt.float64))
    assert h.add_copy(add, [c, d]).type == TensorType((2, 3), dt.float64)  # inferred again
