"""Split a joint forward+backward graph into a forward graph and a backward graph.

The joint graph's inputs are the forward inputs plus the output gradients. Everything that
depends on an output gradient is backward; the forward values the backward reads are "saved":
extra outputs of the forward graph and inputs of the backward graph. Nodes with no inputs
built only on constants, and layout ops of graph inputs, are recomputed in the backward rather
than saved (the strong version, a min-cut over the joint graph, is future work).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import GraphtorchCompileError
from .ir import Graph, Node
from .primitives import Kind


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


def partition(joint: Graph, grad_inputs: list[Node], fwd_outputs: list[Node], bwd_outputs: list[Node]) -> Partition:
    tangent = _descendants(joint, set(grad_inputs))
    cheap = _recomputable(joint)
    bwd = (_ancestors(bwd_outputs, stop=set()) & tangent) | {o for o in bwd_outputs if o in cheap}
    for n in reversed(joint.nodes):  # pull in the cheap producers the backward reads
        if n in bwd:
            bwd.update(i for i in n.inputs if i in cheap)
    saved: list[Node] = []
    for n in joint.nodes:
        if n in bwd:
            saved += [i for i in n.inputs if i not in bwd and i not in tangent and i not in saved]
    saved += [o for o in bwd_outputs if o not in bwd and o not in tangent and o not in saved]
    saved.sort(key=joint.nodes.index)
    primal_inputs = [n for n in joint.inputs if n not in grad_inputs]
    forward = extract(joint, primal_inputs, fwd_outputs + saved)
    backward = extract(joint, saved + list(grad_inputs), bwd_outputs,
                       names=[f"saved_{i}" for i in range(len(saved))] + [g.target for g in grad_inputs])
    return Partition(forward, backward, len(saved))


def _recomputable(graph: Graph) -> set[Node]:
    """Values the backward recomputes instead of saving: constants, `full`/`iota` and what is
    built only on them, and layout-only ops (permute, reshape, expand...) of such values or of
    graph inputs. Saving the input instead of its transpose costs nothing and saves memory."""
    free: set[Node] = set()  # no graph input upstream
    cheap: set[Node] = set()
    for n in graph.nodes:
        if n.op == "constant" or (n.op == "call" and n.target != "rand" and all(i in free for i in n.inputs)):
            free.add(n)
        elif n.op == "call" and n.prim.kind is Kind.INJECTIVE and \
                all(i in free or i in cheap or i.op == "input" for i in n.inputs):
            cheap.add(n)
    return free | cheap


def _descendants(graph: Graph, roots: set[Node]) -> set[Node]:
    out = set(roots)
    for n in graph.nodes:
        if any(i in out for i in n.inputs):
            out.add(n)
    return out
