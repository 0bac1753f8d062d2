"""Elementwise groups: one loop over the root's shape, every member computed by index mapping.

A group of only elementwise ops (and reshapes) runs one flat loop over all elements, which LLVM
vectorizes; a group with other injective ops (expand, permute, pad...) needs the multi-index, so it
runs rows x columns of the root's shape, the row divided into dims once per row.
"""

from __future__ import annotations

from ..ir import Group, Node
from ..primitives import Kind
from .index import Index, Override, rows_cols
from .module import LOWERINGS, LoweringContext


def lower_elementwise(ctx: LoweringContext, group: Group) -> None:
    emit_pointwise(ctx, group.outputs[0], flat=needs_only_flat(group.nodes))


def needs_only_flat(nodes: list[Node]) -> bool:
    """True when no member needs a multi-index: elementwise ops and reshapes only, no iota."""
    return all((n.prim.kind is Kind.ELEMENTWISE and n.target != "iota") or n.target == "reshape" for n in nodes)


def emit_pointwise(ctx: LoweringContext, root: Node, *, flat: bool, overrides: dict[Node, Override] | None = None) -> None:
    """Store the value of `root` at every position of its shape, this thread's share of them."""
    b, shape = ctx.builder, root.type.shape
    if flat or len(shape) <= 1:
        lo, hi = ctx.thread_range(root.type.numel, align=64)  # whole cache lines per thread
        with ctx.loop(lo, hi) as i:
            ctx.store(root, i, ctx.element(root, Index(b, shape, flat=i), overrides))
        return
    rows, cols = rows_cols(shape)
    lo, hi = ctx.thread_range(rows)
    with ctx.loop(lo, hi) as r, ctx.loop(0, cols) as c:
        idx = Index.rows(b, shape, r, c)
        ctx.store(root, idx.flat(), ctx.element(root, idx, overrides))


LOWERINGS["elementwise"] = lower_elementwise
