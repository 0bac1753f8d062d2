"""The verifier: the invariants every stage's graph keeps, checked after every pass.

A graph is well formed when its node names are unique, every node reads only nodes defined
earlier in `graph.nodes`, every call's type is what its primitive's type rule gives for its
inputs and attributes, constants match their types, and the outputs are nodes of the graph.
"""

from __future__ import annotations

from .dtypes import TensorType
from .errors import GraphtorchCompileError
from .ir import Graph, Node, format_node
from .primitives import PRIMITIVES

_HINT = "this is a bug in the pass that produced the graph; the dump directory shows each stage"


def verify(graph: Graph, stage: str | None = None) -> None:
    """Raise GraphtorchCompileError (GT010-GT014) at the first broken invariant."""
    defined: set[Node] = set()
    names: dict[str, Node] = {}
    for n in graph.nodes:
        if n.name in names:
            _fail("GT013", n, f"two nodes are named {n.name}", stage)
        names[n.name] = n
        for i in n.inputs:
            if i not in defined:
                _fail("GT011", n, f"{n.name} reads {i.name or i!r}, which is not defined before it in the graph", stage)
        _check_node(n, stage)
        defined.add(n)
    for k, o in enumerate(graph.outputs):
        if o not in defined:
            _fail("GT012", o, f"output {k} ({o.name or o!r}) is not a node of the graph", stage)


def _check_node(n: Node, stage: str | None) -> None:
    if n.op == "call":
        if n.target not in PRIMITIVES:
            _fail("GT014", n, f"{n.name} calls unknown primitive {n.target!r}", stage)
        try:
            want = PRIMITIVES[n.target].infer(*(i.type for i in n.inputs), **n.attrs)
        except (RuntimeError, TypeError, ValueError) as e:
            _fail("GT010", n, f"{n.name} ({n.target}) is ill-typed: {e}", stage)
        if want != n.type:
            _fail("GT010", n, f"{n.name} ({n.target}) has type {n.type}, but its inputs and attributes give {want}", stage)
    elif n.op in ("input", "constant"):
        if n.inputs:
            _fail("GT014", n, f"{n.name} is an {n.op} with inputs", stage)
        if n.op == "constant":
            actual = None if n.value is None else TensorType(n.value.shape, _dtype_of(n.value))
            if actual != n.type:
                _fail("GT014", n, f"constant {n.name} has type {n.type} but holds {actual}", stage)
    else:
        _fail("GT014", n, f"{n.name} has unknown op {n.op!r} (expected input, constant or call)", stage)


def _dtype_of(value):
    from . import dtypes as dt

    try:
        return dt.from_numpy(value.dtype)
    except TypeError:
        return None


def _fail(code: str, n: Node, message: str, stage: str | None) -> None:
    where = f" after stage {stage!r}" if stage else ""
    try:
        message += f"{where}\n  {format_node(n)}"
    except (AttributeError, TypeError):  # too broken to print
        message += where
    raise GraphtorchCompileError(code, message, n.loc, _HINT, stage)


def verify_rewrite(name: str, before: Graph, after: Graph, stage: str | None = None) -> None:
    """`after` (the result of pass `name` on `before`) is well formed and keeps the calling
    convention: the same inputs in order, and outputs of the same types."""
    if after is before:  # the pass changed nothing
        return
    verify(after, stage)
    ins = [(i.target, i.type) for i in before.inputs]
    if [(i.target, i.type) for i in after.inputs] != ins:
        raise GraphtorchCompileError("GT030", f"pass {name!r} changed the graph inputs", None, _HINT, stage)
    if len(before.outputs) != len(after.outputs):
        raise GraphtorchCompileError("GT030", f"pass {name!r} changed the number of outputs from "
                                     f"{len(before.outputs)} to {len(after.outputs)}", None, _HINT, stage)
    for k, (a, b) in enumerate(zip(before.outputs, after.outputs)):
        if a.type != b.type:
            raise GraphtorchCompileError("GT030", f"pass {name!r} changed output {k} from {a.type} to {b.type}",
                                         a.loc, _HINT, stage)
