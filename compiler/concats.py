"""Concats that backpropagation spells another way, and concats a graph builds twice.

`pad_sums`: backpropagating through `x[t]` for every step t of a loop (or through chunk or
split) gives x's gradient as a sum of zero pads, one per slice: T full-size tensors, mostly
zeros, added up. When the pads' windows do not overlap, the sum is a concat of the parts (zeros
in the gaps), which writes each element once. The LSTM's input-projection gradient: 32 pads of
32x256 into 32x32x256, summed by 6 kernels of 1 MB each, become one concat.

`concat_runs`: a concat along the leading dim whose parts are a run of another such concat's parts
(the stacked operands matmul_sums builds for the LSTM's recurrent weight gradient are steps 1..31
of the gate gradients the concat above stacks, and steps 0..30 of the layer's stacked output)
is a slice of that one: its readers read it in place instead of a second copy. When the longer
concat comes later in the graph, the shorter one's readers move after it.

`part_sums`: a sum over the steps of each step's column sums (an LSTM bias's gradient: 32 kernels
summing 32x256 to 1x256, then the adds) is the column sum of the concat that stacks the steps,
which is often computed already (the other bias's gradient: CSE then merges the two).
"""

from __future__ import annotations

import heapq
import math

from .ir import Graph, Node, rewrite
from .sum_trees import SumTree, rewrite_sums, use_counts


def pad_sums(graph: Graph) -> Graph:
    """Replace each add tree with at least two single-use zero pads along the same dim whose
    windows do not overlap by a concat of their inputs (plus the other leaves)."""
    return rewrite_sums(graph, _concat_of_pads)


def _concat_of_pads(tree: SumTree, g: Graph) -> Node | None:
    root = tree.root
    pads = [t for t in tree.leaves if _is_zero_pad(t, root, tree.uses)]
    dim = _padded_dim(pads)
    if dim is None:
        return None
    pads.sort(key=lambda p: p.attrs["pads"][dim][0])
    parts, at = [], 0
    for p in pads:
        lo = p.attrs["pads"][dim][0]
        if lo < at:
            return None  # windows overlap: the sum adds them
        parts += [_zeros(root, dim, lo - at, g)] if lo > at else []
        parts.append(tree.new(p.inputs[0]))
        at = lo + p.inputs[0].type.shape[dim]
    parts += [_zeros(root, dim, root.type.shape[dim] - at, g)] if at < root.type.shape[dim] else []
    return tree.rest(g.call("concat", parts, dict(dim=dim), root.loc, root.origin), pads, g)


def _is_zero_pad(n: Node, root: Node, uses: dict[Node, int]) -> bool:
    return (n.op == "call" and n.target == "pad" and n.attrs["value"] == 0 and uses.get(n, 0) == 1
            and n.type == root.type)


def _padded_dim(pads: list[Node]) -> int | None:
    """The one dim every pad pads (none pads another), or None."""
    dims = {tuple(d for d, (lo, hi) in enumerate(p.attrs["pads"]) if lo or hi) for p in pads}
    if len(pads) < 2 or len(dims) != 1:
        return None
    (padded,) = dims
    return padded[0] if len(padded) == 1 else None


def _zeros(like: Node, dim: int, size: int, g: Graph) -> Node:
    shape = tuple(size if d == dim else n for d, n in enumerate(like.type.shape))
    return g.call("full", [], dict(shape=shape, value=0.0, dtype=like.type.dtype), like.loc, like.origin)


# ---------------------------------------------------------------- sums of each part's column sums


def part_sums(graph: Graph) -> Graph:
    """Replace each add tree whose leaves include a column sum (over dim 0) of every part of a
    leading-dim concat by one column sum of that concat."""
    read = use_counts(graph)  # a concat nobody reads yet would be computed just for the sum
    where = {part: c for c in graph.nodes if _is_leading_concat(c) and read.get(c) for part in _bases(c)}
    return rewrite_sums(graph, lambda tree, g: _column_sum_of_concat(tree, where, g))


def _column_sum_of_concat(tree: SumTree, where: dict[Node, Node], g: Graph) -> Node | None:
    terms = {t: where.get(_summed_part(t, tree.uses)) for t in tree.leaves}
    for concat in dict.fromkeys(c for c in terms.values() if c is not None):
        mine = [t for t, c in terms.items() if c is concat]
        if sorted(map(id, (_summed_part(t, tree.uses) for t in mine))) == sorted(map(id, _bases(concat))) and \
                concat in tree.mapped:
            return tree.rest(_column_sum(tree.new(concat), mine[0], g), mine, g)
    return None


def _summed_part(leaf: Node, uses: dict[Node, int]) -> Node | None:
    """P for a leaf sum(P, dims=(0,)) (or a reshape of one), each read only here; else None."""
    s = leaf.inputs[0] if leaf.op == "call" and leaf.target == "reshape" and uses.get(leaf.inputs[0]) == 1 else leaf
    if s.op != "call" or s.target != "sum" or tuple(s.attrs["dims"]) != (0,) or uses.get(s) != 1:
        return None
    return _bases_of(s.inputs[0])


def _column_sum(concat: Node, like: Node, g: Graph) -> Node:
    """sum(concat as rows of like's part's trailing dims, dims=(0,)), shaped like `like`."""
    s = like.inputs[0] if like.target == "reshape" else like
    row = s.inputs[0].type.shape[1:]
    rows = g.call("reshape", [concat], dict(shape=(concat.type.numel // math.prod(row), *row)), s.loc, s.origin)
    total = g.call("sum", [rows], dict(s.attrs), s.loc, s.origin)
    return total if total.type == like.type else g.call("reshape", [total], dict(shape=like.type.shape), like.loc, like.origin)


# ---------------------------------------------------------------- a run of another concat's parts


def concat_runs(graph: Graph) -> Graph:
    """Replace each leading-dim concat whose parts are a run of a longer one's by a slice of it."""
    runs = _runs(graph)
    order = _order(graph, {small: big for small, (big, _) in runs.items()}) if runs else None
    if order is None:
        return graph
    bigs = {big for big, _ in runs.values()}
    new: dict[Node, Node] = {}  # each longer concat's node in the new graph

    def fn(n: Node, ins: list[Node], g: Graph) -> Node | None:
        out = _rows(n, new[runs[n][0]], runs[n][1], g) if n in runs else g.add_copy(n, ins) if n in bigs else None
        if n in bigs:
            new[n] = out
        return out

    return rewrite(graph, fn, order=order)


def _order(graph: Graph, waits: dict[Node, Node]) -> list[Node] | None:
    """The graph's nodes in their order, except that each key of `waits` (and what reads it) comes
    after its value; None when that is impossible (the value reads the key)."""
    position = {n: k for k, n in enumerate(graph.nodes)}
    users = graph.users()
    missing = {n: len(set(n.inputs)) + (n in waits) for n in graph.nodes}
    for small, big in waits.items():
        users[big] = [*users[big], small]
    ready = [position[n] for n in graph.nodes if not missing[n]]
    heapq.heapify(ready)
    order: list[Node] = []
    while ready:
        n = graph.nodes[heapq.heappop(ready)]
        order.append(n)
        for u in dict.fromkeys(users[n]):
            missing[u] -= 1
            if not missing[u]:
                heapq.heappush(ready, position[u])
    return order if len(order) == len(graph.nodes) else None


def _runs(graph: Graph) -> dict[Node, tuple[Node, int]]:
    """concat -> (the longer concat it is a run of, the element offset of the run in it)."""
    concats = [n for n in graph.nodes if _is_leading_concat(n)]
    found: dict[Node, tuple[Node, int]] = {}
    where: dict[Node, list[tuple[Node, int]]] = {}
    for c in concats:
        for k, part in enumerate(_bases(c)):
            where.setdefault(part, []).append((c, k))
    for small in (c for c in concats if c not in graph.outputs):
        parts = _bases(small)
        for big, k in where.get(parts[0], []):
            offset, row = sum(p.type.numel for p in big.inputs[:k]), math.prod(small.type.shape[1:])
            if big is not small and big not in found and _bases(big)[k:k + len(parts)] == parts and \
                    big.type.dtype is small.type.dtype and len(big.inputs) > len(parts) and not offset % row:
                found[small] = (big, offset)
                break
    return found


def _is_leading_concat(n: Node) -> bool:
    """A concat whose parts each fill a contiguous block of it (every dim before `dim` is 1)."""
    return n.op == "call" and n.target == "concat" and all(s == 1 for s in n.type.shape[:n.attrs["dim"]])


def _bases(concat: Node) -> list[Node]:
    """Each part with reshapes seen through: the same bytes in the same order."""
    return [_bases_of(p) for p in concat.inputs]


def _bases_of(node: Node) -> Node:
    while node.op == "call" and node.target == "reshape":
        node = node.inputs[0]
    return node


def _rows(n: Node, big: Node, offset: int, g: Graph) -> Node:
    """n as rows of `big` (its longer concat, in the new graph) flattened to n's trailing dims."""
    row = math.prod(n.type.shape[1:])
    rows = g.call("reshape", [big], dict(shape=(big.type.numel // row, *n.type.shape[1:])), n.loc, n.origin)
    start = (offset // row,) + (0,) * (n.type.ndim - 1)
    stop = (offset // row + n.type.shape[0], *n.type.shape[1:])
    return g.call("slice", [rows], dict(starts=start, stops=stop, steps=(1,) * n.type.ndim), n.loc, n.origin)
