"""Add trees. Backpropagation sums a tensor's gradient over its uses one add at a time, so a
value used at every step of a loop gets a chain of T adds. The passes that turn such a sum into
one op (matmul_sums: a stacked matmul; concats: a concat of padded parts) find the trees and
rebuild them the same way, here.

A tree is an add whose inputs have its type, with the adds below it that feed nothing else; its
leaves are whatever those adds read. `combine(tree, g)` returns the new graph's node for the
whole sum, built from some of the leaves (`tree.rest` adds back the others), or None to leave
the sum as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .ir import Graph, Node, rewrite


@dataclass
class SumTree:
    root: Node
    leaves: list[Node]
    uses: dict[Node, int]  # readers of each node of the old graph
    position: dict[Node, int]  # each node's place in the old graph
    mapped: dict[Node, Node]  # the old nodes before the root -> their nodes in the new graph

    def new(self, node: Node) -> Node:
        return self.mapped[node]

    def rest(self, total: Node, used: list[Node], g: Graph) -> Node:
        """total + the leaves not in `used`."""
        for other in (t for t in self.leaves if t not in used):
            total = g.call("add", [total, self.new(other)], {}, self.root.loc, self.root.origin)
        return total


def rewrite_sums(graph: Graph, combine: Callable[[SumTree, Graph], Node | None]) -> Graph:
    """Offer each maximal add tree of `graph` to `combine`."""
    uses = use_counts(graph)
    position = {n: k for k, n in enumerate(graph.nodes)}
    summed = {i for u in graph.nodes if is_sum(u) for i in u.inputs}
    inner = {n for n in summed if is_sum(n) and uses[n] == 1 and n not in graph.outputs}  # mid-tree adds
    mapped: dict[Node, Node] = {}  # each node visited so far -> its node in the new graph
    changed = False

    def fn(n: Node, ins: list[Node], g: Graph) -> Node:
        nonlocal changed
        new = None
        if is_sum(n) and n not in inner:
            new = combine(SumTree(n, leaves(n, inner), uses, position, mapped), g)
            changed = changed or new is not None
        mapped[n] = new if new is not None else g.add_copy(n, ins)
        return mapped[n]

    out = rewrite(graph, fn)
    return out if changed else graph


def use_counts(graph: Graph) -> dict[Node, int]:
    uses: dict[Node, int] = {}
    for n in graph.nodes:
        for i in n.inputs:
            uses[i] = uses.get(i, 0) + 1
    return uses


def is_sum(n: Node) -> bool:
    return n.op == "call" and n.target == "add" and all(i.type == n.type for i in n.inputs)


def leaves(n: Node, inner: set[Node]) -> list[Node]:
    out: list[Node] = []
    for i in n.inputs:
        out += leaves(i, inner) if i in inner else [i]
    return out
