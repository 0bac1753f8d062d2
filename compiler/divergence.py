"""Where does a compiled graph's result leave the float64 truth? A shadow run, node by node.

`find_divergence(graph, groups, inputs, kernel_outputs)` evaluates every node twice: as compiled
(each kernel's output as the backend computed it; the nodes inside a fused kernel by the
interpreter at the graph's own precision, from the kernel's actual inputs) and in float64 (the
same graph with every floating dtype widened, on the interpreter). The first floating node in
topological order whose compiled value leaves `atol + rtol * |float64 value|` is the divergence:
being the first, its inputs were still within tolerance, so it is the node to blame.

Booleans and integers (comparison masks, argmax indices, random bits) are not compared: the
float64 run takes them from the compiled run, so a relu mask flipped by rounding near 0 does not
send the rest of the float64 run down another branch and report a divergence that is not one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import dtypes as dt
from .dtypes import TensorType
from .interpreter import evaluate
from .ir import Graph, Group, Node, format_node, rewrite


@dataclass
class Error:
    """How far `got` is from `expected` (float64): the worst element and how many leave tolerance."""

    max_abs: float
    max_rel: float
    bad: int  # elements outside tolerance
    numel: int
    index: tuple  # the worst element
    got: float
    expected: float

    def __str__(self) -> str:
        return (f"max abs error {self.max_abs:.3g}, max rel error {self.max_rel:.3g}, {self.bad} of "
                f"{self.numel} elements outside tolerance; worst at {list(self.index)}: got {self.got:.9g}, "
                f"float64 gives {self.expected:.9g}")


@dataclass
class Divergence:
    """The first node whose compiled result leaves tolerance, and what is known about it."""

    graph: str  # "forward" or "backward"
    node: Node
    line: str  # the IR line, as graph printouts show it
    group: Group | None
    kernel: str | None  # the backend's kernel name: "kernel3.elementwise"
    error: Error
    input_errors: list[tuple[str, Error | None]] = field(default_factory=list)  # None: not compared
    kernel_vs_interpreter: float | None = None  # max abs difference at the graph's own precision
    rtol: float = 0.0
    atol: float = 0.0
    source: str | None = None  # the text of the user's line, when the front end found it

    @property
    def loc(self) -> str | None:
        return self.node.loc

    def __str__(self) -> str:
        where = self.loc or "no user line recorded"
        lines = [f"first divergence from float64 in the {self.graph} graph, at {where} "
                 f"(rtol={self.rtol:g}, atol={self.atol:g}):",
                 f"  {self.line}",
                 *([f"  {self.loc}: {self.source}"] if self.source else []),
                 f"  {self.error}"]
        if self.group is not None:
            kernel = f"kernel {self.kernel}" if self.kernel else "no native kernel (interpreter backend)"
            lines.append(f"  fusion group {self.group.id} ({self.group.pattern}), {kernel}")
        for name, err in self.input_errors:
            lines.append(f"  input {name}: {err if err is not None else 'not a float: taken from the compiled run'}")
        if self.kernel_vs_interpreter is not None:
            lines.append(f"  the kernel differs from the interpreter at the same precision by up to "
                         f"{self.kernel_vs_interpreter:.3g}" + _kernel_verdict(self))
        return "\n".join(lines)


def _kernel_verdict(d: Divergence) -> str:
    if d.kernel_vs_interpreter > d.atol + d.rtol * abs(d.error.expected):
        return ": the kernel itself computes something else (a backend bug, not rounding)"
    return ": the kernel matches it, so this is the precision of the dtype, not a backend bug"


def widen(graph: Graph) -> Graph:
    """The same graph with every floating dtype (inputs, constants, dtype attributes) float64;
    node k of the result is node k of `graph`."""

    def fn(n: Node, ins: list[Node], g: Graph) -> Node:
        if n.op == "input":
            return g.input(n.target, TensorType(n.type.shape, _wide(n.type.dtype)))
        if n.op == "constant":
            return g.constant(n.value.astype(_wide(n.type.dtype).np), n.loc)
        attrs = {k: _wide(v) if isinstance(v, dt.DType) else v for k, v in n.attrs.items()}
        return g.call(n.target, ins, attrs, n.loc, n.origin)

    return rewrite(graph, fn)


def _wide(d: dt.DType) -> dt.DType:
    return dt.float64 if d.is_floating_point else d


def compiled_values(graph: Graph, groups: Sequence[Group], inputs: Sequence[np.ndarray],
                    kernel_outputs: dict[Node, np.ndarray]) -> tuple[dict[Node, np.ndarray], dict[Node, float]]:
    """Every node's value as compiled, and per kernel root how far the kernel is from the interpreter."""
    env: dict[Node, np.ndarray] = dict(zip(graph.inputs, inputs))
    env.update((n, n.value) for n in graph.nodes if n.op == "constant")
    kernel_gap: dict[Node, float] = {}
    for g in groups:
        for n in g.nodes:
            env[n] = evaluate(n, [env[i] for i in n.inputs])
        for root in (o for o in g.outputs if o in kernel_outputs):
            kernel_gap[root] = _max_abs_diff(kernel_outputs[root], env[root])
            env[root] = kernel_outputs[root]
    return env, kernel_gap


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.dtype == np.bool_:
        return float(np.count_nonzero(a != b))
    with np.errstate(all="ignore"):
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    same = (a == b) | (np.isnan(a.astype(np.float64)) & np.isnan(b.astype(np.float64)))
    d = np.where(same, 0.0, np.nan_to_num(d, nan=np.inf))
    return float(d.max()) if d.size else 0.0


def reference_values(graph: Graph, compiled: dict[Node, np.ndarray]) -> dict[Node, np.ndarray]:
    """Every node's value in float64; booleans and integers are the compiled run's (see the module doc)."""
    wide = widen(graph)
    ref: dict[Node, np.ndarray] = {}
    for n, w in zip(graph.nodes, wide.nodes):
        if not n.type.dtype.is_floating_point:
            ref[n] = compiled[n]
        elif n.op == "call":
            ref[n] = evaluate(w, [_as(ref[i], wi) for i, wi in zip(n.inputs, w.inputs)])
        else:
            ref[n] = compiled[n].astype(np.float64)
    return ref


def _as(value: np.ndarray, node: Node) -> np.ndarray:
    return value if value.dtype == node.type.dtype.np else value.astype(node.type.dtype.np)


def error(got: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> Error:
    """`got` against float64 `expected`, with torch.allclose's rule (NaN equals NaN)."""
    g = got.astype(np.float64)
    with np.errstate(all="ignore"):
        close = np.isclose(g, expected, rtol=rtol, atol=atol, equal_nan=True)
        abs_err = np.where(close & ~np.isfinite(expected), 0.0, np.abs(g - expected))
        abs_err = np.nan_to_num(abs_err, nan=np.inf)
        rel_err = np.where(abs_err == 0, 0.0, abs_err / np.abs(expected))  # inf where float64 gives 0
    if g.size == 0:
        return Error(0.0, 0.0, 0, 0, (), 0.0, 0.0)
    bad = ~close
    # the worst element among those outside tolerance (any element when none is)
    score = np.where(bad, abs_err, -1.0) if bad.any() else abs_err
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(score)), g.shape))
    max_rel = float(rel_err[bad].max()) if bad.any() else float(rel_err.max())
    return Error(float(abs_err.max()), max_rel, int(np.count_nonzero(bad)), int(g.size), worst,
                 float(g[worst]), float(expected[worst]))


def find_divergence(graph: Graph, groups: Sequence[Group], inputs: Sequence[np.ndarray],
                    kernel_outputs: dict[Node, np.ndarray] | None = None, *, rtol: float = 1e-4,
                    atol: float = 1e-5, name: str = "forward",
                    kernel_names: dict[int, str] | None = None) -> Divergence | None:
    """The first floating node (topological order) whose compiled value leaves tolerance, or None.

    kernel_outputs: each group root's value as the backend's kernel computed it (missing roots
    are the interpreter's); kernel_names: group id -> the backend's name for its kernel.
    """
    compiled, gap = compiled_values(graph, groups, inputs, kernel_outputs or {})
    ref = reference_values(graph, compiled)
    group_of = {n: g for g in groups for n in g.nodes}
    for n in graph.nodes:
        if n.op != "call" or not n.type.dtype.is_floating_point:
            continue
        err = error(compiled[n], ref[n], rtol, atol)
        if err.bad:
            group = group_of.get(n)
            inputs_err = [(i.name, error(compiled[i], ref[i], rtol, atol) if i.type.dtype.is_floating_point else None)
                          for i in n.inputs]
            kernel = (kernel_names or {}).get(group.id) if group is not None else None
            return Divergence(name, n, format_node(n), group, kernel, err, inputs_err, gap.get(n), rtol, atol)
    return None
