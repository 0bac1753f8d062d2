"""Elementwise groups: one loop over the root's shape, every member computed by index mapping.

A group of only elementwise ops (and reshapes) runs one flat loop over all elements, which LLVM
vectorizes; a group with other injective ops (expand, permute, pad...) needs the multi-index, so it
runs rows x columns of the root's shape, the row divided into dims once per row.
"""

from __future__ import annotations

from ..ir import Group, Node
from ..primitives import Kind
from .index import Index, Override, column_breaks, rows_cols
from .module import LOWERINGS, LoweringContext


def lower_elementwise(ctx: LoweringContext, group: Group) -> None:
    root = group.outputs[0]
    emit_pointwise(ctx, root, flat=needs_only_flat(group.nodes), col_breaks=pad_column_breaks(group.nodes, root))


def pad_column_breaks(nodes: list[Node], root: Node) -> list[int]:
    """Where a pad below the root starts or stops being padding along the last dim, and where a
    head split of the last dim (index.column_breaks) changes head: the column loop is split there,
    so each pad is known inside (a plain load) or outside (its value, its input never evaluated)
    in each piece. A concat written as a sum of pads (the LSTM's four gate gradients, the
    attention's q, k, v split) then costs one evaluation per element instead of one per pad, and
    vectorizes."""
    return column_breaks(nodes, root) if root.type.shape else []


def needs_only_flat(nodes: list[Node]) -> bool:
    """True when no member needs a multi-index: elementwise ops and reshapes only, no iota."""
    return all((n.prim.kind is Kind.ELEMENTWISE and n.target != "iota") or n.target == "reshape" for n in nodes)


def emit_pointwise(ctx: LoweringContext, root: Node, *, flat: bool, overrides: dict[Node, Override] | None = None,
                   col_breaks: list[int] = ()) -> None:
    """Store the value of `root` at every position of its shape, this thread's share of them; the
    column loop of a multi-index walk runs in pieces split at `col_breaks`."""
    b, shape = ctx.builder, root.type.shape
    if flat or len(shape) <= 1:  # (a pad needs the multi-index: flat groups have no col_breaks)
        lo, hi = ctx.thread_range(root.type.numel, align=64)  # whole cache lines per thread
        with ctx.loop(lo, hi) as i:
            ctx.store(root, i, ctx.element(root, Index(b, shape, flat=i), overrides))
        return
    rows, cols = rows_cols(shape)
    lo, hi = ctx.thread_range(rows)
    bounds = [0, *col_breaks, cols]
    with ctx.loop(lo, hi) as r:
        for start, stop in zip(bounds, bounds[1:]):
            with ctx.loop(start, stop) as c:
                idx = Index.rows(b, shape, r, c)
                idx.col_span = (start, stop)
                ctx.store(root, idx.flat(), ctx.element(root, idx, overrides))


LOWERINGS["elementwise"] = lower_elementwise
