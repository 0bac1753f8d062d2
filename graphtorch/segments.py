"""Graph breaks (compile's fullgraph=False): run a function as compiled segments with eager code between.

When a signature's trace met code it cannot capture (a branch on a tensor's value, `.item()`,
`print`, a data-dependent shape), every call of that signature runs the Python function again
under a SegmentTracer. Ops are recorded into the current segment's graph; at a break the
segment is compiled (once per distinct graph: the cache key is the graph's structure, types and
constants) and run, every tracer tensor still alive gets its values, and Python goes on with
real values. Since Python runs each call, whatever it decided at a break (the branch taken, a
shape from `nonzero`) decides which segments follow: there is nothing stale to guard.

Autograd works unchanged: the eager engine records its tape while the segments are traced, so
a backward inside the function is traced into the segment, and one outside runs eagerly.
"""

from __future__ import annotations

import gc
import itertools
import weakref
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from . import dispatch
from .compiler.ir import Graph, Node
from .tensor import Tensor
from .tracer import Tracer, user_location


@dataclass
class SegmentTracer(Tracer):
    """A tracer whose breaks run the graph recorded so far instead of failing."""

    compile_graph: Callable[[Graph], Callable] = None  # graph -> (arrays -> arrays), cached by the caller
    on_break: Callable[[str | None, str], None] = None
    # this segment's tracer tensors, in creation order (a set's order would change the graph's outputs,
    # hence its fingerprint, from call to call)
    live: weakref.WeakValueDictionary = field(default_factory=weakref.WeakValueDictionary)
    serial: itertools.count = field(default_factory=itertools.count)

    def _tracer_tensor(self, node: Node, requires_grad: bool) -> Tensor:
        t = super()._tracer_tensor(node, requires_grad)
        self.live[next(self.serial)] = t
        return t

    def adopt(self, t: Tensor) -> None:
        self.live[next(self.serial)] = t

    def record(self, prim, inputs, attrs) -> Tensor:
        if not prim.data_dependent:
            return super().record(prim, inputs, attrs)
        self.on_break(user_location(), f"'{prim.name}' has an output shape that depends on its input's values")
        self.flush()
        with np.errstate(all="ignore"):
            return Tensor._wrap(np.asarray(prim.kernel(*(t._data for t in inputs), **attrs)))

    def data_access(self, t: Tensor, what: str) -> None:
        self.on_break(user_location(), f"{what} needs the tensor's values")
        self.flush()

    def add_guard(self, what: str, fn) -> None:
        pass  # Python runs every call: nothing it read can go stale

    def grad_written(self, t: Tensor) -> None:
        pass  # a .grad set by a traced backward is kept: it gets its values at the next flush

    def assign(self, target: Tensor, result: Tensor) -> None:
        if id(target) in self.views:
            self.flush()  # now the view aliases its base's array, as in eager: write through it
        if target._node is None and self._aliased(target):  # write through memory others may read: now
            self.flush()
            np.copyto(target._data, np.broadcast_to(result._data, target._data.shape))
            return
        super().assign(target, result)

    def _aliased(self, t: Tensor) -> bool:
        return t._base is not None or t._data.base is not None or any(b is t for _, _, b, _ in self.views.values())

    def flush(self) -> None:
        """Compile (or reuse) and run the segment recorded so far; its tensors get their values
        (views: the eager view of their base's values, so that writes through them reach it)."""
        live = [t for t in list(self.live.values()) if t._node is not None and id(t) not in self.views]
        mutated = list(self.mutated.values())
        if live or mutated:
            self.graph.outputs = [t._node for t in live] + [t._node for t in mutated]
            arrays = self._feeds()
            _fill(live, mutated, self.compile_graph(self.graph)(arrays), arrays)
        for view, prim, base, attrs in self.views.values():  # in creation order: a base before its views
            if view._node is not None:
                view._data, view._node = prim.kernel(base._data, **attrs), None
        self._next_segment()

    def _feeds(self) -> list:
        by_node = {lf.node: lf.tensor._data for lf in self.lifted.values()}
        for _, node, first in self.rng:
            by_node[node] = np.array(first & 0xFFFFFFFFFFFFFFFF, np.uint64).view(np.int64)
        return [by_node[n] for n in self.graph.inputs]

    def _next_segment(self) -> None:
        self.graph, self.lifted, self.mutated, self.rng, self.views = Graph(), {}, {}, [], {}
        self.created = {}  # made in an earlier segment: now lifted like any outside tensor
        self.live = weakref.WeakValueDictionary()


def _fill(live: list[Tensor], mutated: list[Tensor], results: list, inputs: list) -> None:
    fed = {id(a) for a in inputs}
    for t, value in zip(live, results):
        t._data = np.array(value) if id(value) in fed else value  # an output never aliases an input
        t._node = None
    for t, value in zip(mutated, results[len(live):]):
        if value is not t._data:
            np.copyto(t._data, value)
        t._node = None


def fingerprint(graph: Graph) -> tuple:
    """The graph's structure, types, attributes and constants: equal fingerprints, same program."""
    index = {n: i for i, n in enumerate(graph.nodes)}
    rows = [(n.op, n.target if n.op == "call" else "", tuple(index[i] for i in n.inputs), repr(n.attrs),
             repr(n.type), n.value.tobytes() if n.value is not None else None) for n in graph.nodes]
    return tuple(rows), tuple(index[o] for o in graph.outputs)


@contextmanager
def segmented(tracer: SegmentTracer):
    """Activate `tracer`; on the way out the last segment runs, after an error too (what eager
    did before the error, such as a buffer update, is done)."""
    if dispatch._tracer is not None:
        raise RuntimeError("graphtorch.compile: a graph-broken function was called while another was tracing")
    dispatch._tracer = tracer
    try:
        yield tracer
    finally:
        try:
            tracer.flush()
        finally:
            dispatch._tracer = None
            for t in tracer.mutated.values():  # the flush failed: outside tensors keep their data
                t._node = None


def run_segmented(fn: Callable, args: tuple, kwargs: dict, compile_graph: Callable[[Graph], Callable],
                  on_break: Callable[[str | None, str], None]):
    """Call `fn` as compiled segments split at its graph breaks."""
    tracer = SegmentTracer(compile_graph=compile_graph, on_break=on_break)
    with segmented(tracer), _collector_paused():
        return fn(*args, **kwargs)


@contextmanager
def _collector_paused():
    """A traced call makes many short-lived objects: a cyclic collection in the middle walks every
    object of the process (measured: a third of a graph-broken LeNet step). It runs afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
