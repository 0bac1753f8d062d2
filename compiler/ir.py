"""The graph IR: values are nodes, a graph is a list of nodes in topological order.

Kept deliberately small, in the spirit of torch.fx: a Node says what produced a value
(a graph input, a constant, or a call of a primitive with attributes), its static type, and
the user's file:line. Algorithms over the graph (order, reachability, dominators) use networkx
through `Graph.to_networkx()`.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import dtypes as dt
from .dtypes import TensorType
from .primitives import PRIMITIVES, Kind, Primitive


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
        value = np.array(value, order="C")  # a copy; ascontiguousarray would make 0-d arrays 1-d
        return self._add(Node("constant", "constant", [], {}, TensorType(value.shape, dt.from_numpy(value.dtype)), loc, value=value))

    def call(self, prim: str, inputs: list[Node], attrs: dict[str, Any] | None = None,
             loc: str | None = None, origin: str | None = None) -> Node:
        attrs = attrs or {}
        type = PRIMITIVES[prim].infer(*(i.type for i in inputs), **attrs)
        return self._add(Node("call", prim, list(inputs), attrs, type, loc, origin))

    def add_copy(self, node: Node, inputs: list[Node]) -> Node:
        """A copy of `node` (from another graph) reading `inputs` (nodes of this graph)."""
        if node.op == "input":
            new = self.input(node.target, node.type)
            new.loc, new.origin = node.loc, node.origin
            return new
        if node.op == "constant":
            new = self.constant(node.value, node.loc)
            new.origin = node.origin
            return new
        if all(a.type == b.type for a, b in zip(node.inputs, inputs)):  # the same inferred type: skip inferring
            return self._add(Node("call", node.target, list(inputs), dict(node.attrs), node.type, node.loc, node.origin))
        return self.call(node.target, inputs, dict(node.attrs), node.loc, node.origin)

    def copy(self) -> Graph:
        return rewrite(self, lambda n, ins, g: None)

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

    def table(self) -> str:
        """One row per node: name, op, target, args, type, loc, origin (aligned columns)."""
        head = ("name", "op", "target", "args", "type", "loc", "origin")
        rows = [head] + [(n.name, n.op, n.target, _args(n), str(n.type), n.loc or "", n.origin or "") for n in self.nodes]
        widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(f"outputs: {', '.join(o.name for o in self.outputs)}")
        return "\n".join(lines)

    def to_dot(self, groups: list[Group] | None = None) -> str:
        """Graphviz DOT text; fusion groups, when given, are drawn as clusters."""
        return _to_dot(self, groups or [])

    def to_json(self, indent: int | None = 1) -> str:
        """indent=None: one line, about 3x faster to write (what a cache key hashes)."""
        return _to_json(self, indent)

    @staticmethod
    def from_json(text: str) -> Graph:
        """Load a graph written by `to_json`; only data is read, no code runs."""
        return _from_json(text)

    def equals(self, other: Graph) -> bool:
        """Same nodes (op, target, inputs, attrs, type, loc, origin, constant bytes) and outputs."""
        if len(self.nodes) != len(other.nodes) or len(self.outputs) != len(other.outputs):
            return False
        pos = {n: i for i, n in enumerate(self.nodes)}
        opos = {n: i for i, n in enumerate(other.nodes)}
        for a, b in zip(self.nodes, other.nodes):
            if (a.op, a.target, a.type, a.loc, a.origin, a.name) != (b.op, b.target, b.type, b.loc, b.origin, b.name):
                return False
            if [pos[i] for i in a.inputs] != [opos.get(i) for i in b.inputs]:
                return False
            if freeze(a.attrs) != freeze(b.attrs):
                return False
            if a.op == "constant" and a.value.tobytes() != b.value.tobytes():
                return False
        return [pos[o] for o in self.outputs] == [opos.get(o) for o in other.outputs]


def rewrite(graph: Graph, fn: Callable[[Node, list[Node], Graph], Node | None], *, keep: bool = False,
            order: list[Node] | None = None) -> Graph:
    """A new graph built node by node, the way passes change graphs.

    `fn(node, new_inputs, new_graph)` returns the node of `new_graph` that replaces `node`
    (it may add nodes to `new_graph` first), or None to copy `node` as it is. Types are
    re-inferred for every copied call whose inputs changed type, and outputs follow their
    replacements.
    keep=True: when `fn` replaced nothing, return `graph` itself (a pass that changed nothing;
    the pipeline then skips verifying it and ends its fixed point without comparing graphs).
    order: visit the nodes in this topological order instead of the graph's.
    """
    out = Graph()
    env: dict[Node, Node] = {}
    replaced = False
    for n in order or graph.nodes:
        ins = [env[i] for i in n.inputs]
        new = fn(n, ins, out)
        replaced = replaced or new is not None
        env[n] = new if new is not None else out.add_copy(n, ins)
    out.outputs = [env[o] for o in graph.outputs]
    return out if replaced or not keep else graph


def freeze(v: Any) -> Any:
    """A hashable, exact key for an attribute value: floats by repr (0.0 and -0.0 differ),
    the Python type kept (1 and 1.0 differ), lists as tuples."""
    if isinstance(v, dict):
        return tuple(sorted((k, freeze(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, tuple(freeze(x) for x in v))
    if isinstance(v, (bool, int, float, np.generic)):
        return (type(v).__name__, repr(v))
    return v


def _args(n: Node) -> str:
    if n.op == "constant":
        return _preview(n.value)
    return ", ".join([i.name for i in n.inputs] + [f"{k}={format_attr(v)}" for k, v in n.attrs.items()])


# ---------------------------------------------------------------- DOT


def _dot_label(n: Node) -> str:
    what = n.target if n.op == "call" else n.op if n.op == "constant" else f"input {n.target}"
    text = f"{n.name} {what}\\n{n.type}"
    return text.replace('"', '\\"')


def _to_dot(graph: Graph, groups: list[Group]) -> str:
    ids = {n: f"n{i}" for i, n in enumerate(graph.nodes)}
    lines = ["digraph graphtorch {", "  rankdir=TB;", '  node [shape=box, fontname="monospace", fontsize=10];']
    grouped = set()
    for g in groups:
        lines.append(f"  subgraph cluster_{g.id} {{")
        lines.append(f'    label="group {g.id}: {g.pattern}"; style=rounded; color=blue;')
        for n in g.nodes:
            lines.append(f'    {ids[n]} [label="{_dot_label(n)}"];')
            grouped.add(n)
        lines.append("  }")
    for n in graph.nodes:
        if n not in grouped:
            style = ', style=filled, fillcolor="#e8e8e8"' if n.op != "call" else ""
            lines.append(f'  {ids[n]} [label="{_dot_label(n)}"{style}];')
    for n in graph.nodes:
        for i in n.inputs:
            lines.append(f"  {ids[i]} -> {ids[n]};")
    for k, o in enumerate(graph.outputs):
        lines.append(f'  out{k} [label="output {k}", shape=ellipse];')
        lines.append(f"  {ids[o]} -> out{k};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- JSON

_FORMAT = "graphtorch-ir"


def _encode_attr(v: Any) -> Any:
    if isinstance(v, dt.DType):
        return {"dtype": v.name}
    if isinstance(v, tuple):
        return {"tuple": [_encode_attr(x) for x in v]}
    if isinstance(v, list):
        return [_encode_attr(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return {"float": repr(v)}  # JSON has no inf/nan
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"cannot write attribute value {v!r} of type {type(v).__name__} to JSON")


def _decode_attr(v: Any) -> Any:
    if isinstance(v, list):
        return [_decode_attr(x) for x in v]
    if isinstance(v, dict):
        if set(v) == {"dtype"}:
            return dt.from_name(v["dtype"])
        if set(v) == {"tuple"}:
            return tuple(_decode_attr(x) for x in v["tuple"])
        if set(v) == {"float"} and v["float"] in ("inf", "-inf", "nan"):
            return float(v["float"])
        raise ValueError(f"unknown attribute encoding {v!r}")
    return v


def _encode_value(a: np.ndarray) -> dict:
    little = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return {"dtype": dt.from_numpy(a.dtype).name, "shape": list(a.shape),
            "data": base64.b64encode(little.tobytes()).decode("ascii")}


def _decode_value(v: dict) -> np.ndarray:
    dtype = dt.from_name(v["dtype"]).np
    shape = tuple(int(s) for s in v["shape"])
    raw = base64.b64decode(v["data"], validate=True)
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"constant of shape {shape} and dtype {dtype} needs "
                         f"{math.prod(shape) * dtype.itemsize} bytes, the file has {len(raw)}")
    return np.frombuffer(raw, dtype.newbyteorder("<")).astype(dtype).reshape(shape)


def _to_json(graph: Graph, indent: int | None = 1) -> str:
    pos = {n: i for i, n in enumerate(graph.nodes)}
    nodes = []
    for n in graph.nodes:
        item = {"name": n.name, "op": n.op, "target": n.target, "inputs": [pos[i] for i in n.inputs],
                "attrs": {k: _encode_attr(v) for k, v in n.attrs.items()},
                "type": {"shape": list(n.type.shape), "dtype": n.type.dtype.name}, "loc": n.loc, "origin": n.origin}
        if n.op == "constant":
            item["value"] = _encode_value(n.value)
        nodes.append(item)
    doc = {"format": _FORMAT, "version": 1, "nodes": nodes, "outputs": [pos[o] for o in graph.outputs]}
    return json.dumps(doc, indent=indent, allow_nan=False)


def _from_json(text: str) -> Graph:
    from .errors import GraphtorchCompileError

    try:
        doc = json.loads(text)
        if doc.get("format") != _FORMAT or doc.get("version") != 1:
            raise ValueError(f"expected format {_FORMAT!r} version 1, got {doc.get('format')!r} {doc.get('version')!r}")
        graph = Graph()
        for k, item in enumerate(doc["nodes"]):
            graph.nodes.append(_load_node(graph, item, k))
        graph.outputs = [graph.nodes[_index(i, len(graph.nodes))] for i in doc["outputs"]]
        return graph
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
        raise GraphtorchCompileError("GT015", f"not a valid graph file: {type(e).__name__}: {e}",
                                     hint="load files written by Graph.to_json()") from None


def _index(i: Any, limit: int) -> int:
    if not isinstance(i, int) or not 0 <= i < limit:
        raise ValueError(f"node index {i!r} does not refer to an earlier node (0..{limit - 1})")
    return i


def _load_node(graph: Graph, item: dict, k: int) -> Node:
    type = TensorType(tuple(int(s) for s in item["type"]["shape"]), dt.from_name(item["type"]["dtype"]))
    ins = [graph.nodes[_index(i, k)] for i in item["inputs"]]
    op, attrs = item["op"], {key: _decode_attr(v) for key, v in item["attrs"].items()}
    if op == "input":
        node = Node("input", str(item["target"]), [], {}, type)
    elif op == "constant":
        value = _decode_value(item["value"])
        node = Node("constant", "constant", [], {}, TensorType(value.shape, dt.from_numpy(value.dtype)), value=value)
    elif op == "call":
        if item["target"] not in PRIMITIVES:
            raise ValueError(f"unknown primitive {item['target']!r}")
        inferred = PRIMITIVES[item["target"]].infer(*(i.type for i in ins), **attrs)
        node = Node("call", item["target"], ins, attrs, inferred)
    else:
        raise ValueError(f"unknown node op {op!r}")
    if node.type != type:
        raise ValueError(f"node {k}: stored type {type} differs from the inferred {node.type}")
    node.loc, node.origin = item.get("loc"), item.get("origin")
    node.name = f"%{node.target}" if op == "input" else f"%{k}"
    if item.get("name", node.name) != node.name:
        raise ValueError(f"node {k} is named {item['name']!r}, expected {node.name!r}")
    return node


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
    """A fusion group: the nodes one kernel computes, in topological order.

    `outputs`: the root `nodes[-1]` (last) and, in a multi-output elementwise group
    (sibling_fusion.py), the other members used outside it; other members are used only inside,
    `inputs` the values read from outside it in first-use order. `pattern` names the kernel
    shape a backend emits: "elementwise", "reduction", "matmul", "conv2d", or "single" for
    an opaque node, which stands alone. docs/ir.md states the contract of each pattern.
    """

    id: int
    pattern: str
    nodes: list[Node]
    inputs: list[Node]
    outputs: list[Node]
    anchor: Node | None = None  # the matmul/conv/reduction the group is built around


ANCHOR_KINDS = (Kind.REDUCTION, Kind.OUT_FUSABLE)  # the op a non-elementwise group is built around


def make_group(gid: int, nodes: list[Node]) -> Group:
    """A Group of `nodes` (topologically ordered, root last) with its pattern, anchor and inputs."""
    inside = set(nodes)
    inputs: list[Node] = []
    for n in nodes:
        for i in n.inputs:
            if i not in inside and i not in inputs:
                inputs.append(i)
    anchor = next((n for n in nodes if n.prim.kind in ANCHOR_KINDS), None)
    if any(n.prim.kind is Kind.OPAQUE for n in nodes):
        pattern = "single"
    elif anchor is None:
        pattern = "elementwise"
    else:
        pattern = "reduction" if anchor.prim.kind is Kind.REDUCTION else anchor.target
    return Group(gid, pattern, list(nodes), inputs, [nodes[-1]], anchor)
