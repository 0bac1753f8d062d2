"""The graph IR: values are nodes, a graph is a list of nodes in topological order.

Kept deliberately small, in the spirit of torch.fx: a Node says what produced a value
(a graph input, a constant, or a call of a primitive with attributes), its static type, and
the user's file:line. Algorithms over the graph (order, reachability, dominators) use networkx
through `Graph.to_networkx()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import dtypes as dt
from .dtypes import TensorType
from .primitives import PRIMITIVES, Primitive


@dataclass(eq=False)
class Node:
    op: str  # "input" | "constant" | "call"
    target: str  # input: its name; call: the primitive's name; constant: "constant"
    inputs: list[Node]
    attrs: dict[str, Any]
    type: TensorType
    loc: str | None = None  # the user's "file.py:12" that created it
    origin: str | None = None  # the user-level op it came from: "max_pool2d", "linear"
    value: np.ndarray | None = None  # constants only
    name: str = ""  # "%7", given by the graph

    @property
    def prim(self) -> Primitive:
        return PRIMITIVES[self.target]

    def __repr__(self) -> str:
        return self.name or f"<{self.op} {self.target}>"


@dataclass(eq=False)
class Graph:
    nodes: list[Node] = field(default_factory=list)
    outputs: list[Node] = field(default_factory=list)

    # ---- building
    def _add(self, node: Node) -> Node:
        node.name = f"%{len(self.nodes)}" if node.op != "input" else f"%{node.target}"
        self.nodes.append(node)
        return node

    def input(self, name: str, type: TensorType) -> Node:
        return self._add(Node("input", name, [], {}, type))

    def constant(self, value: np.ndarray, loc: str | None = None) -> Node:
        value = np.ascontiguousarray(value)
        return self._add(Node("constant", "constant", [], {}, TensorType(value.shape, dt.from_numpy(value.dtype)), loc, value))

    def call(self, prim: str, inputs: list[Node], attrs: dict[str, Any] | None = None,
             loc: str | None = None, origin: str | None = None) -> Node:
        attrs = attrs or {}
        type = PRIMITIVES[prim].infer(*(i.type for i in inputs), **attrs)
        return self._add(Node("call", prim, list(inputs), attrs, type, loc, origin))

    @property
    def inputs(self) -> list[Node]:
        return [n for n in self.nodes if n.op == "input"]

    # ---- reading
    def users(self) -> dict[Node, list[Node]]:
        out: dict[Node, list[Node]] = {n: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                out[i].append(n)
        return out

    def to_networkx(self):
        import networkx as nx

        g = nx.DiGraph()
        g.add_nodes_from(self.nodes)
        g.add_edges_from((i, n) for n in self.nodes for i in n.inputs)
        return g

    def __str__(self) -> str:
        lines = [format_node(n) for n in self.nodes]
        lines.append(f"return ({', '.join(o.name for o in self.outputs)})")
        return "\n".join(lines)


def format_attr(v: Any) -> str:
    if isinstance(v, dt.DType):
        return v.short
    if isinstance(v, float) and v in (float("inf"), float("-inf")):
        return repr(v)
    return repr(v) if not isinstance(v, list) else repr(tuple(v))


def format_node(n: Node) -> str:
    """`%7 : f32[64,6,28,28] = conv2d(%x, %w1, stride=(1, 1), ...)  # lenet.py:12`"""
    head = f"{n.name} : {n.type}"
    if n.op == "input":
        body = f"{head} = input({n.target!r})"
    elif n.op == "constant":
        body = f"{head} = constant({_preview(n.value)})"
    else:
        args = [i.name for i in n.inputs] + [f"{k}={format_attr(v)}" for k, v in n.attrs.items()]
        body = f"{head} = {n.target}({', '.join(args)})"
    return f"{body}  # {n.loc}" if n.loc else body


def _preview(a: np.ndarray) -> str:
    if a.size <= 4:
        return np.array2string(a.reshape(-1) if a.ndim > 1 else a, separator=", ")
    return f"<{a.size} values>"


@dataclass(eq=False)
class Group:
    """A fusion group: the nodes one kernel computes, in order.

    `inputs` are values read from outside the group, `outputs` the members used outside it (or
    graph outputs). `pattern` names the kernel shape a backend emits: "elementwise",
    "reduction", "matmul", "conv2d", or "opaque:<primitive>" / "injective:<primitive>"
    for nodes that stand alone.
    """

    id: int
    pattern: str
    nodes: list[Node]
    inputs: list[Node]
    outputs: list[Node]
    anchor: Node | None = None  # the matmul/conv/reduction the group is built around
