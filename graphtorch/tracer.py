"""The tracer: the eager API run on tensors that carry graph nodes instead of data.

While a Tracer is active, `dispatch.apply` records each primitive as a node of one Graph,
with the user's file:line and the user-level op it came from. Tensors from outside the traced
function (parameters, buffers, optimizer state, captured globals) become graph inputs
("lifted"), so a compiled graph always reads their current values; tensors created while
tracing become constants. In-place writes to lifted tensors are recorded as mutations and
written back after each compiled call.
"""

from __future__ import annotations

import functools
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from . import dispatch
from .autograd import graph as autograd_graph
from .compiler.errors import GraphtorchCompileError
from .compiler.ir import Graph, Node
from .tensor import Tensor

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def user_location() -> str | None:
    """file:line of the innermost frame outside graphtorch: where the user wrote the op."""
    frame = sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename
        if not _in_package(path):
            return f"{os.path.basename(path)}:{frame.f_lineno}"
        frame = frame.f_back
    return None


@functools.cache
def _in_package(path: str) -> bool:
    """Cached: a trace asks ~10 frames per op, and abspath of each took ~30 ms of the GPT step's trace."""
    return os.path.abspath(path).startswith(_PACKAGE_DIR)


@dataclass
class Lifted:
    """An outside tensor read by the graph: fed from `tensor` at every call."""

    tensor: Tensor
    node: Node


@dataclass
class Tracer:
    graph: Graph = field(default_factory=Graph)
    origins: list[str] = field(default_factory=list)
    lifted: dict[int, Lifted] = field(default_factory=dict)  # id(tensor) -> Lifted
    names: dict[int, str] = field(default_factory=dict)  # id(tensor) -> "fc1.weight"
    created: dict[int, Tensor] = field(default_factory=dict)  # made while tracing: constants
    mutated: dict[int, Tensor] = field(default_factory=dict)  # lifted tensors written in place
    rng: list[tuple] = field(default_factory=list)  # (generator, input node, first offset)
    grads: dict[int, tuple] = field(default_factory=dict)  # id(t) -> (t, its .grad before tracing)
    guards: list[tuple] = field(default_factory=list)  # (what, fn, value): Python state the trace baked in
    arguments: dict[int, int] = field(default_factory=dict)  # id(placeholder) -> argument position
    views: dict[int, tuple] = field(default_factory=dict)  # id(view) -> (view, prim, base, attrs): may alias
    outputs: dict[Node, Tensor] = field(default_factory=dict)  # node -> the tensor record made (attention_pattern)

    # ---------------------------------------------------------------- recording
    def input(self, name: str, t: Tensor) -> Tensor:
        """A new graph input standing for `t` (shape and dtype only)."""
        node = self.graph.input(name, _type_of(t))
        return self._tracer_tensor(node, t.requires_grad)

    def record(self, prim, inputs, attrs) -> Tensor:
        if prim.data_dependent:
            raise GraphtorchCompileError(
                "GT003", f"'{prim.name}' has an output shape that depends on the values of its input",
                user_location(), hint="boolean-mask indexing and nonzero() cannot be compiled; use torch.where or "
                                      "multiply by the mask instead")
        nodes = [self.value_of(t) for t in inputs]
        backward = autograd_graph.running
        if backward is not None and "loc" in backward.metadata:  # a VJP: label it with its forward op
            loc, origin = backward.metadata["loc"], f"{backward.metadata['origin'] or prim.name} (backward)"
        else:
            loc, origin = user_location(), self.origins[0] if self.origins else None
        node = self.graph.call(prim.name, nodes, attrs, loc=loc, origin=origin)
        out = self._tracer_tensor(node, False)
        self.outputs[node] = out
        if prim.may_alias:  # eager may return a view of input 0: a write to it must reach the base
            self.views[id(out)] = (out, prim, inputs[0], attrs)
        return out

    def value_of(self, t: Tensor) -> Node:
        if t._node is not None:
            return t._node
        key = id(t._base if t._base is not None and id(t._base) in self.lifted and t._data is t._base._data else t)
        if key in self.lifted:
            return self.lifted[key].node
        if id(t) in self.created:
            return self.graph.constant(np.array(t._data), loc=user_location())
        name = self.names.get(id(t)) or f"captured_{len(self.lifted)}"
        node = self.graph.input(name, _type_of(t))
        self.lifted[id(t)] = Lifted(t, node)
        return node

    def _tracer_tensor(self, node: Node, requires_grad: bool) -> Tensor:
        t = object.__new__(Tensor)
        t._data, t._node, t._dtype = None, node, node.type.dtype
        t._version, t._requires_grad, t._grad, t._hooks = [0], requires_grad, None, []
        return t

    def assign(self, target: Tensor, result: Tensor) -> None:
        """In-place write while tracing: rebind, and remember writes to outside tensors."""
        if id(target) in self.views:
            self.view_written(target)
        node = self.value_of(result)
        if target._node is None:  # an outside tensor: now it holds a traced value until the trace ends
            self.value_of(target)  # make sure it is lifted (its old value may be read before)
            self.mutated[id(target)] = target
        elif id(target) in self.arguments:  # an argument written in place: written back after each call
            self.mutated[id(target)] = target
        target._node = node

    def adopt(self, t: Tensor) -> None:
        """`t` now holds a traced value it did not get from record() (a detach, a .data write)."""

    def add_guard(self, what: str, fn) -> None:
        """The graph depends on `fn()` staying equal (e.g. an optimizer's learning rate)."""
        self.guards.append((what, fn, fn()))

    def grad_written(self, t: Tensor) -> None:
        """`t.grad` is being set while tracing: it becomes an output, restored after the trace."""
        if id(t) not in self.grads:
            self.grads[id(t)] = (t, t._grad)

    def rng_key(self, generator, base: int) -> Tensor:
        """The key of a random draw: one int64 input per generator, plus a constant offset."""
        for gen, node, first in self.rng:
            if gen is generator:
                offset = self.graph.call("full", [], dict(shape=(), value=int(base - first), dtype=node.type.dtype))
                return self._tracer_tensor(self.graph.call("add", [node, offset]), False)
        node = self.graph.input(f"rng_key_{len(self.rng)}", _int64_scalar())
        self.rng.append((generator, node, base))
        return self._tracer_tensor(node, False)

    # ---------------------------------------------------------------- what cannot be traced
    def view_written(self, view: Tensor) -> None:
        raise GraphtorchCompileError(
            "GT006", "an in-place write to a view of a traced tensor (its base would not see it)", user_location(),
            hint="write to the tensor itself (x[1:] = ..., or torch.where), or clone() the view first")

    def data_access(self, t: Tensor, what: str) -> None:
        if what == "bool()":
            raise GraphtorchCompileError(
                "GT001", "data-dependent Python control flow on a tensor value (bool() of a traced tensor)",
                user_location(), hint="compute both branches and select with torch.where, or move the condition "
                                      "outside the compiled function")
        raise GraphtorchCompileError(
            "GT002", f"{what} needs the tensor's values, which do not exist while tracing", user_location(),
            hint="move it outside the compiled function (e.g. call .item() or print on the compiled result)")


def _type_of(t: Tensor):
    from .compiler.dtypes import TensorType

    return TensorType(tuple(t.shape), t.dtype)


def _int64_scalar():
    from .compiler import dtypes as dt

    return dt.TensorType((), dt.int64)


@contextmanager
def paused():
    """Run eagerly inside a trace: for checks on concrete tensors (a captured target's range)."""
    saved, dispatch._tracer = dispatch._tracer, None
    try:
        yield
    finally:
        dispatch._tracer = saved


@contextmanager
def tracing(tracer: Tracer):
    """Activate `tracer`; afterwards every outside tensor it rebound holds its data again."""
    if dispatch._tracer is not None:
        raise GraphtorchCompileError("GT004", "compile() was called while another compilation was tracing",
                                     user_location(), hint="do not nest compiled functions inside each other")
    dispatch._tracer = tracer
    try:
        yield tracer
    finally:
        dispatch._tracer = None
        for t in tracer.mutated.values():
            t._node = None
        for t, before in tracer.grads.values():
            t._grad = before
