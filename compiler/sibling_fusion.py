"""Multi-output elementwise groups: neighbouring kernels over one iteration space run as one loop.

`fuse` first grows groups with one output each (a value used by two kernels ends a group). Then
elementwise groups whose roots have the same shape, and that read a common value (the four gates
of an LSTM step are slices of one gates tensor) or where one reads the other's outputs (the cell
update reads the gates), merge into one group that writes several outputs: each shared value is
loaded once, and an LSTM step's seven forward kernels become one. A group moves later to meet its
partner, so no kernel between them may read what it writes. A merged group looks for a partner
again, so a chain (an AdamW parameter's m, v and p updates) ends as one kernel.

Backends lower a multi-output group as one loop (LLVM) or take `one_output_per_group` (CUDA):
one kernel per output, each recomputing the members it needs, which is what fusion did before.
"""

from __future__ import annotations

from dataclasses import replace

from .ir import Graph, Group, Node, make_group

WINDOW = 8  # how far back a group looks for a partner: the LSTM's siblings are adjacent


def merge_siblings(graph: Graph, groups: list[Group], cap: int) -> list[Group]:
    """`groups` (a valid order) with related same-shape elementwise groups merged, in a valid order."""
    users, outputs = graph.users(), set(graph.outputs)
    order = {n: k for k, n in enumerate(graph.nodes)}
    result: list[Group] = []
    for g in groups:
        k = _partner(result, g, cap)
        while k is not None:  # the merged group looks again: an AdamW update's m, v and p kernels chain
            g = _merged(result.pop(k), g, users, outputs, order)
            k = _partner(result, g, cap)
        result.append(g)
    for gid, g in enumerate(result):
        g.id = gid
    return result


def _partner(done: list[Group], g: Group, cap: int) -> int | None:
    """The latest earlier group `g` may merge with: related, same iteration space, and read by no
    group between them (it runs at g's place once merged)."""
    if not _mergeable(g):
        return None
    for k in range(len(done) - 1, max(len(done) - 1 - WINDOW, -1), -1):
        p = done[k]
        if (_mergeable(p) and p.outputs[0].type.shape == g.outputs[0].type.shape
                and len(p.nodes) + len(g.nodes) <= cap and _related(p, g)
                and not any(o in later.inputs for later in done[k + 1:] for o in p.outputs)):
            return k
    return None


def _mergeable(g: Group) -> bool:
    return g.pattern == "elementwise" and bool(g.outputs[0].type.shape)


def _related(p: Group, g: Group) -> bool:
    """g reads p's outputs, or both read one value that is not a constant."""
    shared = set(p.inputs) | set(p.outputs)
    return any(i in shared and i.op != "constant" for i in g.inputs)


def _merged(p: Group, g: Group, users: dict[Node, list[Node]], outputs: set[Node], order: dict[Node, int]) -> Group:
    nodes = sorted(p.nodes + g.nodes, key=order.__getitem__)
    merged = make_group(g.id, nodes)
    merged.outputs = exposed(nodes, users, outputs)
    return merged


def exposed(nodes: list[Node], users: dict[Node, list[Node]], outputs: set[Node]) -> list[Node]:
    """The members a group must write: graph outputs, values read outside it, and its last node."""
    inside = set(nodes)
    return [n for n in nodes if n is nodes[-1] or n in outputs or any(u not in inside for u in users[n])]


def one_output_per_group(groups: list[Group]) -> list[Group]:
    """Each multi-output group split into one group per output, each with the members that output
    needs (shared ones recomputed), in an order that is still valid."""
    out: list[Group] = []
    for g in groups:
        if len(g.outputs) == 1:
            out.append(replace(g, id=len(out)))
            continue
        for o in g.outputs:
            needed = _ancestors_within(o, set(g.nodes))
            out.append(make_group(len(out), [n for n in g.nodes if n in needed]))
    return out


def _ancestors_within(n: Node, members: set[Node]) -> set[Node]:
    seen, stack = set(), [n]
    while stack:
        m = stack.pop()
        if m not in seen:
            seen.add(m)
            stack.extend(i for i in m.inputs if i in members)
    return seen
