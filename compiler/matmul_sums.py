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

from collections.abc import Callable

from .ir import Graph, Node
from .sum_trees import SumTree, rewrite_sums

MIN_TERMS = 3  # two GEMMs gain too little to pay for the concatenation copies


def fuse_matmul_sums(graph: Graph) -> Graph:
    """Replace each add tree of at least MIN_TERMS same-shaped single-use 2-D matmuls."""
    return rewrite_sums(graph, _stack)


def _stack(tree: SumTree, g: Graph) -> Node | None:
    terms = [t for t in tree.leaves if _is_term(t, tree.root, tree.uses)]
    if len(terms) < MIN_TERMS:
        return None
    # in the order their right operands were computed (a loop's steps in time order): a stacked
    # operand is then often a run of a concat the graph already has (concats.concat_runs)
    terms.sort(key=lambda t: tree.position[t.inputs[1]])
    return tree.rest(_stacked_matmul(terms, tree.new, g), terms, g)


def _is_term(t: Node, root: Node, uses: dict[Node, int]) -> bool:
    return (t.op == "call" and t.target == "matmul" and uses.get(t, 0) == 1 and t.type == root.type
            and t.type.ndim == 2)


def _stacked_matmul(terms: list[Node], new: Callable[[Node], Node], g: Graph) -> Node:
    lefts, rights = ([new(t.inputs[k]) for t in terms] for k in (0, 1))
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
