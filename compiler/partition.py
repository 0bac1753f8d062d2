"""Split a joint forward+backward graph into a forward graph and a backward graph.

The joint graph's inputs are the forward inputs plus the output gradients. Everything that
depends on an output gradient is backward (the "tangent" nodes). The forward values the
backward reads are either saved (extra outputs of the forward graph, inputs of the backward
graph) or recomputed in the backward from other saved values. Which ones to save is a minimum
cut, in the spirit of AOTAutograd's min-cut rematerialization:

- every forward value v becomes an edge v_in -> v_out whose capacity is the cost of saving v:
  its size in bytes. Cutting that edge means saving v;
- v_out -> u_in for every use (infinite): a recomputed value needs its operands in the backward;
- the forward values a tangent node reads, and gradients that are forward values, -> sink:
  the backward must have them;
- source -> v_in for values the backward may not recompute: graph inputs (only the caller has
  them), matmul/conv2d, reductions and opaque ops (rand, ...: costly or not repeatable), and
  values too far from any backward reader (see MAX_RECOMPUTE_DISTANCE). They can still be saved.

A minimum cut then saves the fewest bytes such that the backward computes everything else
from saved values and output gradients. Values built from constants alone are never saved
(infinite capacity, no source edge): the backward rebuilds them for free.

Graph inputs cost their bytes like any other value, so the figure is honest (the forward hands
them over as outputs), but they win ties: the caller keeps them alive anyway. Among equal bytes
the cut then prefers values closer to the backward (less recomputation), then later nodes.
The tie-break is exact: capacities are integers, bytes * K + rank with K above any sum of ranks.
Flow graphs are built in node order, so the same joint graph always gives the same partition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx

from .errors import GraphtorchCompileError
from .ir import Graph, Node
from .memory_plan import nbytes
from .primitives import Kind

# A value is recomputed in the backward only if a backward reader is at most this many uses
# downstream of it: every op the backward repeats lies within this many ops of a value it reads.
# LeNet needs 3 (the pooling windows rebuilt from the conv output); at 2 it saves 4.4x more.
MAX_RECOMPUTE_DISTANCE = 4

# Kinds the backward never recomputes: costly (matmul, conv2d, reductions re-read their whole
# input) or with effects/state (rand, and opaque ops in general).
_BANNED_KINDS = (Kind.OUT_FUSABLE, Kind.REDUCTION, Kind.OPAQUE)


def extract(graph: Graph, inputs: list[Node], outputs: list[Node], names: list[str] | None = None) -> Graph:
    """A new graph computing `outputs` from `inputs` (which become its input nodes), in order."""
    out = Graph()
    mapping: dict[Node, Node] = {}
    for i, n in enumerate(inputs):
        mapping[n] = out.input(names[i] if names else n.target if n.op == "input" else f"saved_{i}", n.type)
    needed = _ancestors(outputs, stop=set(inputs))
    for n in graph.nodes:
        if n not in needed or n in mapping:
            continue
        if n.op == "input":
            raise GraphtorchCompileError("GT020", f"{n.name} is needed but is not an input of the extracted graph",
                                         n.loc, stage="partitioned")
        if n.op == "constant":
            mapping[n] = out.constant(n.value, n.loc)
        else:
            mapping[n] = out.call(n.target, [mapping[i] for i in n.inputs], dict(n.attrs), n.loc, n.origin)
    out.outputs = [mapping[o] for o in outputs]
    return out


def _ancestors(roots: list[Node], stop: set[Node]) -> set[Node]:
    seen: set[Node] = set()
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n not in stop:
            stack.extend(n.inputs)
    return seen


@dataclass
class Partition:
    forward: Graph  # inputs: the joint inputs but the output gradients; outputs: fwd outputs + saved
    backward: Graph  # inputs: saved + output gradients; outputs: the gradients
    num_saved: int

    @property
    def saved_bytes(self) -> int:
        """What the forward hands the backward, in bytes."""
        return sum(nbytes(n) for n in self.backward.inputs[:self.num_saved])


def partition(joint: Graph, grad_inputs: list[Node], fwd_outputs: list[Node], bwd_outputs: list[Node]) -> Partition:
    saved = choose_saved(joint, grad_inputs, bwd_outputs)
    primal_inputs = [n for n in joint.inputs if n not in grad_inputs]
    forward = extract(joint, primal_inputs, fwd_outputs + saved)
    backward = extract(joint, saved + list(grad_inputs), bwd_outputs,
                       names=[f"saved_{i}" for i in range(len(saved))] + [g.target for g in grad_inputs])
    return Partition(forward, backward, len(saved))


def choose_saved(joint: Graph, grad_inputs: list[Node], bwd_outputs: list[Node]) -> list[Node]:
    """The forward values to save, in joint-graph order: a minimum cut (see the module docstring)."""
    tangent = _descendants(joint, set(grad_inputs))
    reads = _backward_reads(tangent, bwd_outputs)
    if not reads:
        return []
    order = {n: i for i, n in enumerate(joint.nodes)}
    candidates = sorted(_ancestors(sorted(reads, key=order.__getitem__), stop=set()), key=order.__getitem__)
    free = _constant_only(candidates)
    dist = _distance_from_backward(candidates, reads)
    cost = _save_costs([n for n in candidates if n not in free], dist, order)

    flow = nx.DiGraph()
    for n in candidates:
        i = order[n]
        if n in free:
            flow.add_edge((i, "in"), (i, "out"))  # no capacity: infinite, never saved
        else:
            flow.add_edge((i, "in"), (i, "out"), capacity=cost[n])
        if n.op == "input" or (n not in free and (_banned(n) or dist[n] > MAX_RECOMPUTE_DISTANCE)):
            flow.add_edge("source", (i, "in"))
        for x in n.inputs:
            flow.add_edge((order[x], "out"), (i, "in"))
        if n in reads:
            flow.add_edge((i, "out"), "sink")
    if "source" not in flow:  # the backward can rebuild all it reads from constants
        return []
    _, (reachable, _) = nx.minimum_cut(flow, "source", "sink")
    return [n for n in candidates if (order[n], "in") in reachable and (order[n], "out") not in reachable]


def _backward_reads(tangent: set[Node], bwd_outputs: list[Node]) -> set[Node]:
    """The forward values the backward reads directly (and gradients that are forward values)."""
    live = _ancestors(bwd_outputs, stop=set()) & tangent
    reads = {i for n in live for i in n.inputs if i not in tangent}
    return reads | {o for o in bwd_outputs if o not in tangent}


def _banned(n: Node) -> bool:
    return n.op == "call" and n.prim.kind in _BANNED_KINDS


def _constant_only(nodes: list[Node]) -> set[Node]:
    """Values built from constants alone by recomputable ops (`full`, `iota`, their expands...)."""
    free: set[Node] = set()
    for n in nodes:  # topological order
        if n.op == "constant" or (n.op == "call" and not _banned(n) and all(i in free for i in n.inputs)):
            free.add(n)
    return free


def _distance_from_backward(nodes: list[Node], reads: set[Node]) -> dict[Node, float]:
    """Per value, the fewest uses between it and a value the backward reads (0 for those)."""
    dist: dict[Node, float] = {n: 0 if n in reads else math.inf for n in nodes}
    for n in reversed(nodes):  # users come after their inputs
        for x in n.inputs:
            dist[x] = min(dist[x], dist[n] + 1)
    return dist


def _save_costs(nodes: list[Node], dist: dict[Node, float], order: dict[Node, int]) -> dict[Node, int]:
    """Integer capacities: bytes first, then the tie-break rank (graph inputs, then nearest the
    backward, then latest). K exceeds any sum of ranks, so ranks never outweigh one byte."""
    ranked = sorted(nodes, key=lambda n: (n.op != "input", dist[n], -order[n]))
    k = len(nodes) ** 2 + 1
    return {n: nbytes(n) * k + rank for rank, n in enumerate(ranked)}


def _descendants(graph: Graph, roots: set[Node]) -> set[Node]:
    out = set(roots)
    for n in graph.nodes:
        if any(i in out for i in n.inputs):
            out.add(n)
    return out
