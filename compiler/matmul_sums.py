"""Sums of small matmuls become one matmul over concatenated operands.

Backpropagating through a time loop gives the recurrent weight's gradient as a sum over steps,
sum_t dgates_t^T @ h_{t-1}: T GEMMs with K = batch (32 here), each too short for the GEMM to reach
speed, then T - 1 adds. Stacked along K they are one GEMM, [dgates_0; ...]^T @ [h_0; ...], with one
pass over the output instead of T. Only 2-D matmuls whose result feeds nothing but the sum are
taken, so no work is repeated; a transposed left operand (the usual case) is concatenated before
the transpose, so the GEMM still reads it in place. The sum's order changes (rounding differs in
the last bits, as any reassociation would).
"""

from __future__ import annotations

from .ir import Graph, Node, rewrite

MIN_TERMS = 3  # two GEMMs gain too little to pay for the concatenation copies


def fuse_matmul_sums(graph: Graph) -> Graph:
    """Replace each add tree of at least MIN_TERMS same-shaped single-use 2-D matmuls."""
    uses = _uses(graph)
    summed = {i for u in graph.nodes if _is_sum(u) for i in u.inputs}
    inner = {n for n in summed if _is_sum(n) and uses[n] == 1 and n not in graph.outputs}  # mid-tree adds
    mapped: dict[Node, Node] = {}  # old node -> its node in the new graph, for leaves' operands

    def fn(n: Node, ins: list[Node], g: Graph) -> Node | None:
        mapped.update(zip(n.inputs, ins))
        if not _is_sum(n) or n in inner:
            return None
        leaves = _leaves(n, inner)
        terms = [t for t in leaves if _is_term(t, n, uses)]
        if len(terms) < MIN_TERMS:
            return None
        total = _stacked_matmul(terms, mapped, g)
        for other in (t for t in leaves if t not in terms):
            total = g.call("add", [total, mapped[other]], {}, n.loc, n.origin)
        return total

    return rewrite(graph, fn, keep=True)


def _uses(graph: Graph) -> dict[Node, int]:
    uses: dict[Node, int] = {}
    for n in graph.nodes:
        for i in n.inputs:
            uses[i] = uses.get(i, 0) + 1
    return uses


def _is_sum(n: Node) -> bool:
    return n.op == "call" and n.target == "add" and all(i.type == n.type for i in n.inputs)


def _leaves(n: Node, inner: set[Node]) -> list[Node]:
    out: list[Node] = []
    for i in n.inputs:
        out += _leaves(i, inner) if i in inner else [i]
    return out


def _is_term(t: Node, root: Node, uses: dict[Node, int]) -> bool:
    return (t.op == "call" and t.target == "matmul" and uses.get(t, 0) == 1 and t.type == root.type
            and t.type.ndim == 2)


def _stacked_matmul(terms: list[Node], mapped: dict[Node, Node], g: Graph) -> Node:
    lefts, rights = ([mapped[t.inputs[k]] for t in terms] for k in (0, 1))
    loc, origin = terms[-1].loc, terms[-1].origin
    if all(_is_transpose(a) for a in lefts):  # [a_0^T, a_1^T, ...] = [a_0; a_1; ...]^T
        rows = g.call("concat", [a.inputs[0] for a in lefts], dict(dim=0), loc, origin)
        left = g.call("permute", [rows], dict(dims=(1, 0)), loc, origin)
    else:
        left = g.call("concat", lefts, dict(dim=1), loc, origin)
    right = g.call("concat", rights, dict(dim=0), loc, origin)
    return g.call("matmul", [left, right], {}, loc, origin)


def _is_transpose(n: Node) -> bool:
    return n.op == "call" and n.target == "permute" and tuple(n.attrs["dims"]) == (1, 0)
