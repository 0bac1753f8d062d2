"""graphtorch.compile: trace on the first call, compile per signature, then one native call.

A call checks its signature (the guard: shapes, dtypes, requires_grad of every tensor
argument and of every lifted tensor, the training flag, grad mode), finds the compiled entry,
feeds it the arguments, the current values of lifted tensors (parameters, buffers, optimizer
state) and fresh random keys, writes back in-place mutations, and returns tensors. When
gradients are needed the entry holds a forward and a backward graph (split from one joint
graph that the eager autograd engine recorded while tracing), and the outputs' grad_fn runs
the compiled backward, so `loss.backward(); opt.step()` works unchanged.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import autograd
from .autograd.grad_mode import is_grad_enabled
from .compiler.errors import GraphtorchCompileError
from .compiler.ir import Graph, Node
from .compiler.partition import partition
from .dispatch import attach_custom
from .guards import StateGuard
from .ops.random import default_generator
from .segments import fingerprint, run_segmented
from .tensor import Tensor
from .tracer import Tracer, tracing

CACHE_SIZE_LIMIT = 8
SEGMENT_CACHE_LIMIT = 64
STALE_LIMIT = 8  # recompiles of one signature for changed Python state before it runs as segments


# ---------------------------------------------------------------- pytrees (tensors in nested containers)


def flatten(obj) -> tuple[list, Any]:
    if isinstance(obj, (list, tuple)):
        leaves, specs = [], []
        for x in obj:
            lv, sp = flatten(x)
            leaves += lv
            specs.append((len(lv), sp))
        return leaves, (type(obj), specs)
    if isinstance(obj, dict):
        leaves, specs = [], []
        for k, x in obj.items():
            lv, sp = flatten(x)
            leaves += lv
            specs.append((k, len(lv), sp))
        return leaves, (dict, specs)
    return [obj], None


def unflatten(leaves: list, spec) -> Any:
    if spec is None:
        return leaves[0]
    kind, specs = spec
    if kind is dict:
        out, i = {}, 0
        for k, n, sp in specs:
            out[k] = unflatten(leaves[i:i + n], sp)
            i += n
        return out
    items, i = [], 0
    for n, sp in specs:
        items.append(unflatten(leaves[i:i + n], sp))
        i += n
    return kind(*items) if hasattr(kind, "_fields") else kind(items)  # namedtuples take fields


# ---------------------------------------------------------------- signatures and guards


def _describe(x) -> tuple:
    if isinstance(x, Tensor):
        return ("tensor", tuple(x.shape), x.dtype.name, x.requires_grad)
    return ("const", repr(x))


def _aliasing(flat_args: list) -> tuple | None:
    """Which tensor arguments share memory (the same tensor twice, views of one another), or None.
    A trace gives each argument its own graph input, so aliased arguments run eagerly."""
    tensors = [a for a in flat_args if isinstance(a, Tensor)]
    if len(tensors) < 2:
        return None
    owners = [id(_memory_owner(t._data)) for t in tensors]
    return None if len(set(owners)) == len(owners) else tuple(owners.index(o) for o in owners)


def _memory_owner(array):
    base = getattr(array, "base", None)  # device arrays have none
    return array if base is None else base


def why_different(old: tuple, new: tuple) -> str:
    """The first difference between two signatures, in words."""
    (old_args, old_mode), (new_args, new_mode) = old, new
    if len(old_args) != len(new_args):
        return f"number of inputs changed: expected {len(old_args)}, got {len(new_args)}"
    for i, (a, b) in enumerate(zip(old_args, new_args)):
        if a == b:
            continue
        if a[0] != b[0]:
            return f"input {i}: expected a {a[0]}, got a {b[0]}"
        if a[0] == "const":
            return f"input {i}: constant changed from {a[1]} to {b[1]}"
        if len(a[1]) != len(b[1]):
            return f"input {i}: rank mismatch, expected {len(a[1])}, got {len(b[1])}"
        for d, (x, y) in enumerate(zip(a[1], b[1])):
            if x != y:
                return f"input {i}: size mismatch at dim {d}, expected {x}, got {y}"
        if a[2] != b[2]:
            return f"input {i}: dtype mismatch, expected torch.{a[2]}, got torch.{b[2]}"
        return f"input {i}: requires_grad mismatch, expected {a[3]}, got {b[3]}"
    for what, a, b in zip(("training flag", "grad mode", "aliasing between inputs"), old_mode, new_mode):
        if a != b:
            return f"{what} changed from {a} to {b}"
    return "the signature is new"


# ---------------------------------------------------------------- one compiled signature


@contextlib.contextmanager
def _collector_paused():
    """Python's cyclic garbage collector off while a graph compiles: tracing, the passes and the
    LLVM IR builder make ~10^6 small objects that live until the compile ends, and the collector
    walked them ~400 times during the GPT step's compile (0.15-0.35 s of its ~1.5 s). The cycles a
    compile leaves (mostly the IR builder's objects) go in the first collection after it: ~80 ms."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class Entry:
    key: tuple
    forward: CompiledGraph
    backward: CompiledGraph | None
    feeds: list  # per forward-graph input: ("arg", i) | ("lifted", tensor) | ("rng", generator, numel)
    out_spec: Any
    num_outputs: int
    mutated: list  # per written-back output: a lifted Tensor, or the position (int) of an argument
    grads_written: list[Tensor]  # tensors whose .grad the traced code set (a compiled train step)
    diff_sources: list  # per gradient output: ("arg", i) | ("lifted", tensor)
    grad_outputs: list[int]  # which outputs carry gradients
    num_saved: int
    lifted_types: list[tuple] = field(default_factory=list)
    guards: list[tuple] = field(default_factory=list)  # (what, fn, value) from the tracer
    trace_seconds: float = 0.0
    joint: Graph | None = None  # the traced graph before the partition, when there is a backward (reports)
    out_constants: list = field(default_factory=list)  # the output leaves; None where a tensor goes
    state: StateGuard | None = None
    # (saved position, feed position) of each saved value that is a forward input (the batch, a
    # weight): the backward reads the caller's tensor, version-checked, instead of a copy
    saved_inputs: list[tuple[int, int]] = field(default_factory=list)

    def stale(self) -> str | None:
        """Why this entry no longer fits the Python state it was traced with, or None."""
        return lifted_changed(self.lifted_types) or _guards_changed(self.guards) or \
            (self.state.check() if self.state is not None else None)


def lifted_changed(lifted_types: list) -> str | None:
    for t, (shape, dtype, requires_grad) in lifted_types:  # per call: compare the raw fields
        if t._data.shape != shape or t._dtype is not dtype:
            return f"a captured tensor changed from {dtype.short}{list(shape)} to {t.dtype.short}{list(t.shape)}"
        if t._requires_grad != requires_grad:
            return f"requires_grad of a captured tensor changed from {requires_grad} to {t._requires_grad}"
    return None


def _guards_changed(guards: list) -> str | None:
    for what, fn, value in guards:
        if fn() != value:
            return f"{what} changed"
    return None


@dataclass
class GraphBreak:
    """Why a trace stopped, and where in the user's code."""

    where: str | None
    reason: str

    def __str__(self) -> str:
        return f"{self.where or '<unknown>'}: {self.reason}"


class TraceBroke(Exception):
    """The trace met code it cannot capture (fullgraph=False turns this into a graph break)."""

    def __init__(self, graph_break: GraphBreak):
        super().__init__(str(graph_break))
        self.graph_break = graph_break


@dataclass
class EagerEntry:
    """A signature whose trace broke (fullgraph=False) or whose inputs alias: it runs as compiled
    segments with eager code between (segments.py)."""

    graph_break: GraphBreak
    state: StateGuard

    def stale(self) -> str | None:
        return self.state.check()


class CompiledFunction:
    """The callable that graphtorch.compile returns for a function (modules wrap one)."""

    def __init__(self, fn: Callable, *, backend: str = "llvm", dump_dir: str | None = None, module=None,
                 name: str | None = None, warm_up: bool = True, fullgraph: bool = False):
        self.fn = fn
        self.fullgraph = fullgraph
        self.graph_breaks: list[GraphBreak] = []  # each distinct break met so far (reports read it)
        self.eager: dict[tuple, EagerEntry] = {}  # signatures that run as segments (a graph break)
        self.segments: dict[tuple, CompiledGraph] = {}  # segment fingerprint -> its compiled graph
        self._stale: dict[tuple, int] = {}  # signature -> recompiles because its guards failed
        self.backend = backend
        self.dump_dir = dump_dir or os.environ.get("GRAPHTORCH_DUMP_DIR")
        self.module = module
        self.name = name or getattr(fn, "__qualname__", type(fn).__name__)
        self.entries: dict[tuple, Entry] = {}
        self.last_key: tuple | None = None
        self._warned = False
        self._warmed: set[tuple] = set()
        self._warm_up = warm_up  # False: a function whose trace makes its own state (an optimizer step)

    def signature(self, flat_args: list) -> tuple:
        training = self.module.training if self.module is not None else None
        return tuple(_describe(a) for a in flat_args), (training, is_grad_enabled(), _aliasing(flat_args))

    def __call__(self, *args, **kwargs):
        flat, spec = flatten((args, kwargs))
        key = self.signature(flat)
        entry = self.entries.get(key) or self.eager.get(key)
        if entry is None and self.module is None and self._warm_up and key not in self._warmed:
            # A function's first call runs eagerly: optimizer state, lazily created buffers and
            # the like exist afterwards, so the trace sees the steady state it will replay.
            self._warmed.add(key)
            return self.fn(*args, **kwargs)
        stale = entry.stale() if entry is not None else None
        if entry is None or stale:
            entry = self._recompile(key, flat, spec, stale)
        if type(entry) is EagerEntry:
            return run_segmented(self.fn, args, kwargs, self._segment, self._note_break)
        return self._run(entry, flat)

    # ---------------------------------------------------------------- compiling
    def _recompile(self, key, flat, spec, stale: str | None = None) -> Entry | EagerEntry:
        if self.last_key is not None:
            reason = stale or why_different(self.last_key, key)
            from .compiler.pipeline import log_artifact

            log_artifact("recompiles", f"Recompiling {self.name}: {reason}")
            if len(self.entries) >= CACHE_SIZE_LIMIT and not self._warned:
                self._warned = True
                warnings.warn(f"graphtorch.compile: {self.name} reached the cache size limit "
                              f"({CACHE_SIZE_LIMIT} signatures); the last recompile was because {reason}. "
                              "Each new signature still compiles.", stacklevel=3)
        entry = self._build_or_break(key, flat, spec, stale)
        self.last_key = key
        if type(entry) is EagerEntry:
            self.entries.pop(key, None)
            self.eager[key] = entry
            return entry
        self.eager.pop(key, None)
        self.entries[key] = entry
        if os.environ.get("GRAPHTORCH_REPORT_DIR"):  # an HTML compile report per entry
            from .reporting import write_entry_report

            write_entry_report(self, key)
        return entry

    def _build_or_break(self, key, flat, spec, stale: str | None = None) -> Entry | EagerEntry:
        """The compiled entry; with fullgraph=False, an eager one when the trace cannot capture the
        function (the eager call then raises eager's own error for bad input)."""
        if key[1][2] is not None:
            return self._graph_break(GraphBreak(None, "inputs share memory (the same tensor twice, or views)"))
        if stale and not self.fullgraph:
            self._stale[key] = self._stale.get(key, 0) + 1
            if self._stale[key] > STALE_LIMIT:  # Python state that changes every call: segments rerun Python
                return self._graph_break(GraphBreak(None, f"guards failed {STALE_LIMIT} times, last: {stale}"))
        try:
            return self.build(key, flat, spec)
        except TraceBroke as broke:
            return self._graph_break(broke.graph_break)

    def _graph_break(self, brk: GraphBreak) -> EagerEntry:
        self._note_break(brk.where, brk.reason)
        return EagerEntry(brk, StateGuard(self.fn, self.module))

    def _note_break(self, where: str | None, reason: str) -> None:
        """Remember (and log, the first time) a graph break."""
        brk = GraphBreak(where, reason)
        if any((b.where or b.reason) == (where or reason) for b in self.graph_breaks):  # one per line
            return
        from .compiler.pipeline import log_artifact

        log_artifact("graph_breaks", f"Graph break in {self.name}: {brk}")
        self.graph_breaks.append(brk)

    def _segment(self, graph: Graph) -> CompiledGraph:
        """The compiled segment for `graph`, compiled on first sight (past the cache limit, segments
        that keep changing, e.g. with a Python number baked in, run on the interpreter)."""
        key = fingerprint(graph)
        compiled = self.segments.get(key)
        if compiled is None:
            backend = self.backend if len(self.segments) < SEGMENT_CACHE_LIMIT else "interpreter"
            compiled = self.segments[key] = compile_graph(graph, backend, None, "segment")
        return compiled

    def build(self, key, flat, spec) -> Entry:
        with _collector_paused():
            return self._build(key, flat, spec)

    def _build(self, key, flat, spec) -> Entry:
        start = time.perf_counter()
        try:
            traced = trace(self.fn, flat, spec, self.module, self.name)
        except Exception as error:  # backend errors below are the compiler's: they propagate
            if self.fullgraph:
                raise
            raise TraceBroke(graph_break_of(error)) from error
        traced.seconds = time.perf_counter() - start
        entry = assemble(key, traced, self.backend, self.dump_dir)
        entry.state = StateGuard(self.fn, self.module)
        entry.out_constants = traced.out_constants
        entry.trace_seconds = traced.seconds
        entry.joint = traced.graph if entry.backward is not None else None
        return entry

    # ---------------------------------------------------------------- running
    def _run(self, entry: Entry, flat: list):
        for t in entry.grads_written:
            # the step replaces this .grad: when nothing but t holds the old one, drop it now, so its
            # array is free for the backend to write the new gradient into (no fresh pages per call)
            if t._grad is not None and sys.getrefcount(t._grad) == 2:  # t's attribute, getrefcount's argument
                t._grad = None
        # non-contiguous arrays are the backend's to copy (a donated one is then copied back below)
        arrays = [flat[f[1]]._data if f[0] == "arg" else f[1]._data if f[0] == "lifted" else f[1].next_key(f[2])._data
                  for f in entry.feeds]
        results = entry.forward(arrays)
        n = entry.num_outputs
        outs = [Tensor._wrap(a) for a in results[:n]]
        for t, value in zip(entry.mutated, results[n:n + len(entry.mutated)]):
            t = flat[t] if type(t) is int else t
            if value is not t._data:  # else the graph wrote it in place (a donated input)
                np.copyto(t._data, value)
            t._version[0] += 1
        n += len(entry.mutated)
        for t, value in zip(entry.grads_written, results[n:n + len(entry.grads_written)]):
            t._grad = Tensor._wrap(value)
        n += len(entry.grads_written)
        if entry.backward is not None and is_grad_enabled():
            _attach_backward(entry, outs, results[n:], flat)
        if entry.out_constants:
            outs = _with_constants(outs, entry.out_constants)
        return unflatten(outs, entry.out_spec)


_TENSOR = object()  # marks where a tensor goes among an output's constant leaves


def _with_constants(tensors: list[Tensor], constants: list) -> list:
    it = iter(tensors)
    return [next(it) if c is _TENSOR else c for c in constants]


def graph_break_of(error: Exception) -> GraphBreak:
    """The break an exception raised while tracing stands for: its user file:line and message."""
    if isinstance(error, GraphtorchCompileError):
        return GraphBreak(error.loc, f"{error.code}: {error.message}")
    return GraphBreak(_user_frame(error.__traceback__), f"{type(error).__name__}: {error}")


def _user_frame(tb) -> str | None:
    """file:line of the innermost traceback frame outside graphtorch."""
    from .tracer import _PACKAGE_DIR

    where = None
    while tb is not None:
        path = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if not path.startswith(_PACKAGE_DIR):
            where = f"{os.path.basename(path)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def _contiguous(a: np.ndarray) -> np.ndarray:
    # not np.ascontiguousarray: it turns 0-d arrays into 1-d ones
    return a if a.flags.c_contiguous else np.array(a, order="C")


def _fed_tensor(feed: tuple, flat: list) -> Tensor:
    return flat[feed[1]] if feed[0] == "arg" else feed[1]


def _attach_backward(entry: Entry, outs: list[Tensor], computed: list, flat: list) -> None:
    """Each gradient-carrying output's grad_fn runs the compiled backward on the saved values: those
    the forward computed, and the forward inputs it reads again (`kept`: the autograd node checks
    their versions, so an in-place change before backward raises torch's error)."""
    sources = [_fed_tensor(s, flat) for s in entry.diff_sources]
    kept = [_fed_tensor(entry.feeds[j], flat) for _, j in entry.saved_inputs]
    grad_outs = entry.grad_outputs

    def make_vjp(k):
        def vjp(grad, kept_now):
            cotangents = [np.zeros(outs[i].shape, outs[i].dtype.np) for i in grad_outs]
            cotangents[k] = _contiguous(grad._data)
            grads = entry.backward(_saved_arrays(entry, computed, kept_now) + cotangents)
            return [Tensor._wrap(g) for g in grads]
        return vjp

    for k, i in enumerate(grad_outs):
        attach_custom(outs[i], "CompiledFunctionBackward", make_vjp(k), kept, sources)


def _saved_arrays(entry: Entry, computed: list, kept: list[Tensor]) -> list:
    """The backward's saved inputs in order: computed ones, with the kept forward inputs put back."""
    saved, it = list(computed), iter(kept)
    for position, _ in entry.saved_inputs:
        saved.insert(position, next(it)._data)
    return saved


# ---------------------------------------------------------------- tracing


@dataclass
class Traced:
    graph: Graph
    feeds: list
    out_spec: Any
    num_outputs: int
    mutated: list[Tensor]
    grads_written: list[Tensor]
    grad_inputs: list[Node]
    grad_outputs: list[int]
    diff_sources: list
    num_fwd_outputs: int
    lifted_types: list
    guards: list
    out_constants: list
    seconds: float = 0.0


def _arg_names(fn, n: int) -> list[str]:
    try:
        params = [p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return [params[i] if i < len(params) else f"arg{i}" for i in range(n)]


def trace(fn: Callable, flat: list, spec, module, name: str) -> Traced:
    tracer = Tracer()
    if module is not None:
        tracer.names = {id(t): n for n, t in list(module.named_parameters()) + list(module.named_buffers())}
    rng_state = default_generator.get_state()
    try:
        return _trace(tracer, fn, flat, spec)
    finally:
        default_generator.set_state(rng_state)  # tracing draws no random numbers for real


def _trace(tracer: Tracer, fn: Callable, flat: list, spec) -> Traced:
    names = _arg_names(fn, len(flat))
    with tracing(tracer):
        placeholders = []
        for i, a in enumerate(flat):
            if isinstance(a, Tensor):
                t = tracer.input(names[i] if i < len(names) else f"arg{i}", a)
                t.requires_grad = a.requires_grad and a.dtype.is_floating_point
                tracer.arguments[id(t)] = i
                placeholders.append(t)
            else:
                placeholders.append(a)
        input_nodes = [p._node if isinstance(p, Tensor) else None for p in placeholders]  # before in-place writes
        args, kwargs = unflatten(placeholders, spec)
        out = fn(*args, **kwargs)
        out_leaves, out_spec = flatten(out)
        out_tensors = [o for o in out_leaves if isinstance(o, Tensor)]
        out_constants = [] if len(out_tensors) == len(out_leaves) else \
            [_TENSOR if isinstance(o, Tensor) else o for o in out_leaves]
        grad_inputs, grads, grad_outputs, diff_sources = [], [], [], []
        # a function that runs backward() itself (a train step) returns plain values
        wants_grad = is_grad_enabled() and any(o.requires_grad for o in out_tensors) and not tracer.grads
        if wants_grad:
            diff = [(("arg", i), placeholders[i]) for i, a in enumerate(flat)
                    if isinstance(a, Tensor) and placeholders[i].requires_grad]
            diff += [(("lifted", lf.tensor), lf.tensor) for lf in tracer.lifted.values() if lf.tensor.requires_grad]
            grad_outputs = [i for i, o in enumerate(out_tensors) if o.requires_grad]
            cot = [tracer.input(f"grad_out_{i}", out_tensors[i]) for i in grad_outputs]
            grad_inputs = [c._node for c in cot]
            result = autograd.grad([out_tensors[i] for i in grad_outputs], [t for _, t in diff], cot,
                                   allow_unused=True, retain_graph=True)
            for (source, _), g in zip(diff, result):
                if g is not None:
                    diff_sources.append(source)
                    grads.append(tracer.value_of(g))
        mutated = list(tracer.mutated.values())
        mutated_nodes = [t._node for t in mutated]
        written = [t for t, _ in tracer.grads.values() if t._grad is not None]
        out_nodes = [tracer.value_of(o) for o in out_tensors] + mutated_nodes + \
            [tracer.value_of(t._grad) for t in written]
    spans = _rng_spans(tracer)
    graph = tracer.graph
    graph.outputs = out_nodes + grads
    feeds = _feeds(graph, tracer, input_nodes, spans)
    lifted_types = [(lf.tensor, (tuple(lf.tensor.shape), lf.tensor.dtype, lf.tensor._requires_grad))
                    for lf in tracer.lifted.values()]
    mutated = [tracer.arguments.get(id(t), t) for t in mutated]  # an argument by position, else the tensor
    if isinstance(out, Tensor):
        out_spec = None
    return Traced(graph, feeds, out_spec, len(out_tensors), mutated, written, grad_inputs, grad_outputs,
                  diff_sources, len(out_nodes), lifted_types, list(tracer.guards), out_constants)


def _feeds(graph: Graph, tracer: Tracer, input_nodes: list, rng_spans: dict) -> list:
    """What feeds each graph input at call time, in the graph's input order."""
    by_node = {}
    for i, node in enumerate(input_nodes):
        if node is not None:
            by_node[node] = ("arg", i)
    for lf in tracer.lifted.values():
        by_node[lf.node] = ("lifted", lf.tensor)
    for gen, node, _ in tracer.rng:
        by_node[node] = ("rng", gen, rng_spans[id(gen)])
    return [by_node.get(n, ("grad",)) for n in graph.inputs]


def _rng_spans(tracer: Tracer) -> dict[int, int]:
    """How many random values one call draws from each generator (its advance while tracing)."""
    from .compiler.primitives import splitmix64

    spans = {}
    for gen, _, first in tracer.rng:
        base = int(splitmix64(np.array(gen._seed, np.uint64)))
        spans[id(gen)] = base + gen._offset - first
    return spans


# ---------------------------------------------------------------- from a trace to runnable graphs


def assemble(key, traced: Traced, backend: str, dump_dir: str | None) -> Entry:
    graph = traced.graph
    if traced.grad_inputs:
        n_fwd = traced.num_fwd_outputs
        graph, grad_inputs = _before_partition(graph, traced.grad_inputs)
        parts = partition(graph, grad_inputs, graph.outputs[:n_fwd], graph.outputs[n_fwd:])
        feeds = [f for f, n in zip(traced.feeds, graph.inputs) if n not in grad_inputs]
        saved_inputs = _saved_inputs(parts.forward, parts.num_saved, feeds, traced.mutated)
        forward = compile_graph(parts.forward, backend, _sub(dump_dir, "forward"), "forward")
        backward = compile_graph(parts.backward, backend, _sub(dump_dir, "backward"), "backward")
        num_saved = parts.num_saved
    else:
        forward = compile_graph(graph, backend, dump_dir, "forward", _donations(traced))
        backward, feeds, num_saved, saved_inputs = None, traced.feeds, 0, []
    return Entry(key, forward, backward, feeds, traced.out_spec, traced.num_outputs, traced.mutated,
                 traced.grads_written, traced.diff_sources, traced.grad_outputs, num_saved, traced.lifted_types,
                 traced.guards, saved_inputs=saved_inputs)


def _saved_inputs(forward: Graph, num_saved: int, feeds: list, mutated: list) -> list[tuple[int, int]]:
    """Saved values that are forward inputs fed by an argument or a captured tensor the forward
    does not write: they leave `forward`'s outputs (a pass-through output is a copy per call: the
    batch and the weights, 1.4 MB per step of the 784-MLP), and the backward reads the tensor."""
    first = len(forward.outputs) - num_saved
    written = {id(t) for t in mutated if isinstance(t, Tensor)} | {("arg", t) for t in mutated if type(t) is int}
    position = {n: j for j, n in enumerate(forward.inputs)}
    kept = []
    for k, node in enumerate(forward.outputs[first:]):
        feed = feeds[position[node]] if node.op == "input" else None
        if feed is not None and feed[0] in ("arg", "lifted") and \
                (id(feed[1]) if feed[0] == "lifted" else feed) not in written:
            kept.append((k, position[node]))
    kept_outputs = {first + k for k, _ in kept}
    forward.outputs = [o for i, o in enumerate(forward.outputs) if i not in kept_outputs]
    return kept


def _before_partition(joint: Graph, grad_inputs: list[Node]) -> tuple[Graph, list[Node]]:
    """The joint graph with relu's backward reading relu's output instead of its input
    (cleanup.relu_masks_from_outputs), and its gradient inputs. Done before the split, the
    min-cut saves each relu output, which the next layer's weight gradient reads anyway, instead
    of the pre-activation; so the forward's relu stays in its matmul's or conv's epilogue rather
    than being a kernel of its own after a matmul whose output is saved."""
    from .compiler.cleanup import relu_masks_from_outputs

    positions = [joint.inputs.index(n) for n in grad_inputs]
    rewritten = relu_masks_from_outputs(joint)
    inputs = rewritten.inputs  # the same inputs in the same order (dce keeps every input)
    return rewritten, [inputs[k] for k in positions]


def _donations(traced: Traced) -> list[tuple[int, int]]:
    """(output, input) positions of each lifted tensor the graph updates: its new value may be
    written over its own array instead of copied back after the call."""
    lifted = {id(f[1]): k for k, f in enumerate(traced.feeds) if f[0] == "lifted"}
    first = traced.num_outputs
    return [(first + j, lifted[id(t)]) for j, t in enumerate(traced.mutated)
            if isinstance(t, Tensor) and id(t) in lifted]


def _sub(dump_dir: str | None, name: str) -> str | None:
    return os.path.join(dump_dir, name) if dump_dir else None


@dataclass
class CompiledGraph:
    """One graph through the pipeline and a backend: call it with arrays, get arrays."""

    run: Callable[[list], list]
    artifacts: Any  # pipeline.CompileArtifacts: the graphs of each stage, the fusion plan, times
    executable: Any = None  # the backend's object (llvm.Executable), for its plan and code

    def __call__(self, arrays: list) -> list:
        return self.run(arrays)


def compile_graph(graph: Graph, backend: str, dump_dir: str | None, name: str,
                  donate: list[tuple[int, int]] = ()) -> CompiledGraph:
    """Run the pipeline on `graph` and return `arrays -> arrays` for the chosen backend (donate:
    see llvm.build; the other backends ignore it)."""
    from .compiler.pipeline import run_pipeline

    if backend == "llvm":  # from the disk cache when this graph was compiled before
        from .compiler.llvm.saved import build_cached

        artifacts, exe = build_cached(graph, name=name, source=graphtorch_source(), donate=list(donate),
                                      dump_dir=dump_dir)
        return CompiledGraph(lambda arrays: exe(*arrays), artifacts, exe)
    artifacts = run_pipeline(graph, dump_dir=dump_dir)
    optimized = artifacts.optimized
    if backend == "interpreter":
        from .compiler import interpreter

        return CompiledGraph(lambda arrays: interpreter.run(optimized, arrays), artifacts)
    if backend == "cuda":  # arrays in and out are host numpy arrays; the runtime copies them
        from .compiler import cuda

        with artifacts.timed("lowered"):
            exe = cuda.build(optimized, artifacts.fusion.groups, name=name, dump=dump_dir)
        return CompiledGraph(lambda arrays: exe(*arrays), artifacts, exe)
    raise ValueError(f"unknown backend {backend!r}: expected 'llvm', 'cuda' or 'interpreter'")


def graphtorch_source() -> str:
    """The fingerprint of graphtorch's own source (all three layers): a change to any file makes
    every disk-cached compiled graph miss."""
    from . import compiler, runtime

    return runtime.source_fingerprint(os.path.dirname(__file__), *compiler.__path__, *runtime.__path__)


__all__ = ["CompiledFunction", "trace"]
