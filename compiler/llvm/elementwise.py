"""Elementwise groups: one loop over the root's shape, every member computed by index mapping.

A group of only elementwise ops (and reshapes) runs one flat loop over all elements, which LLVM
vectorizes; a group with other injective ops (expand, permute, pad...) needs the multi-index, so it
runs rows x columns of the root's shape, the row divided into dims once per row.
"""

from __future__ import annotations

import itertools
import math

from llvmlite import ir

from ..ir import Group, Node
from ..primitives import Kind
from . import index
from .index import Index, Override, rows_cols
from .module import LOWERINGS, LoweringContext

MAX_ROW_PIECES = 256  # a concat split into more row pieces than this keeps its per-element select


def lower_elementwise(ctx: LoweringContext, group: Group) -> None:
    root = group.outputs[-1]  # a multi-output group's outputs all have the root's shape (sibling_fusion.py)
    cols = sorted(set(pad_column_breaks(group.nodes, root)) | set(concat_breaks(group.nodes, root, last=True)))
    emit_pointwise(ctx, root, flat=needs_only_flat(group.nodes), col_breaks=cols,
                   row_breaks=concat_breaks(group.nodes, root, last=False), also=group.outputs[:-1])


def pad_column_breaks(nodes: list[Node], root: Node) -> list[int]:
    """Where a pad of the root's shape starts or stops being padding along the last dim: the column
    loop is split there, so each pad is known inside (a plain load) or outside (its value, its input
    never evaluated) in each piece. A concat written as a sum of pads (the LSTM's four gate
    gradients) then costs one evaluation per element instead of one per pad, and vectorizes."""
    shape = root.type.shape
    breaks = set()
    for n in nodes:
        if n.target == "pad" and n.type.shape == shape and shape:
            lo, _ = n.attrs["pads"][-1]
            breaks |= {lo, lo + n.inputs[0].type.shape[-1]}
    return sorted(c for c in breaks if 0 < c < shape[-1]) if breaks else []


def concat_breaks(nodes: list[Node], root: Node, *, last: bool) -> list[int]:
    """Where a concat of the root's shape passes from one part to the next: columns when it joins
    along the last dim (`last`), rows otherwise. A loop split there reads one part per piece: the
    LSTM's per-step values stacked for the weight-gradient GEMMs (31 parts) read all 31 per element
    before, 4x slower than a copy."""
    shape, breaks = root.type.shape, set()
    if not shape:
        return []
    for n in nodes:
        if n.target != "concat" or n.type.shape != shape or (n.attrs["dim"] == len(shape) - 1) != last:
            continue
        dim = n.attrs["dim"]
        edges = list(itertools.accumulate(x.type.shape[dim] for x in n.inputs))[:-1]
        if last:
            breaks |= set(edges)
            continue
        inner, outer = math.prod(shape[dim + 1:-1]), math.prod(shape[:dim])
        if outer * len(edges) <= MAX_ROW_PIECES:
            breaks |= {(o * shape[dim] + e) * inner for o in range(outer) for e in [0, *edges]}
    end = shape[-1] if last else math.prod(shape[:-1])
    return sorted(c for c in breaks if 0 < c < end)


def needs_only_flat(nodes: list[Node]) -> bool:
    """True when no member needs a multi-index: elementwise ops and reshapes only, no iota."""
    return all((n.prim.kind is Kind.ELEMENTWISE and n.target != "iota") or n.target == "reshape" for n in nodes)


def emit_pointwise(ctx: LoweringContext, root: Node, *, flat: bool, overrides: dict[Node, Override] | None = None,
                   col_breaks: list[int] = (), row_breaks: list[int] = (), also: list[Node] = ()) -> None:
    """Store the value of `root` (and of the outputs `also`, of its shape) at every position of its
    shape, this thread's share of them; the row and column loops of a multi-index walk run in
    pieces split at `row_breaks`, `col_breaks`."""
    b, shape = ctx.builder, root.type.shape
    outputs = [*also, root]
    if flat or len(shape) <= 1:  # (a pad needs the multi-index: flat groups have no col_breaks)
        lo, hi = ctx.thread_range(root.type.numel, align=64)  # whole cache lines per thread
        with ctx.loop(lo, hi) as i:
            _store_all(ctx, outputs, Index(b, shape, flat=i), overrides)
        return
    rows, cols = rows_cols(shape)
    lo, hi = ctx.thread_range(rows)
    row_bounds, col_bounds = [0, *row_breaks, rows], [0, *col_breaks, cols]
    for first, end in zip(row_bounds, row_bounds[1:]):
        mine = (_clamp(b, lo, first, end), _clamp(b, hi, first, end)) if row_breaks else (lo, hi)
        with ctx.loop(*mine) as r:
            for start, stop in zip(col_bounds, col_bounds[1:]):
                with ctx.loop(start, stop) as c:
                    idx = Index.rows(b, shape, r, c)
                    idx.row_span, idx.col_span = (first, end), (start, stop)
                    _store_all(ctx, outputs, idx, overrides)


def _store_all(ctx: LoweringContext, outputs: list[Node], idx: Index, overrides: dict[Node, Override] | None) -> None:
    """Every output's value at `idx`, computed once each (shared members too) and all before the
    first store: an output may be written over an input the others still read (memory_plan.py)."""
    env = index.Env(ctx, overrides)
    values = [index.value(env, o, idx) for o in outputs]
    for o, v in zip(outputs, values):
        ctx.store(o, idx.flat(), v)


def _clamp(b: ir.IRBuilder, v: ir.Value, lo: int, hi: int) -> ir.Value:
    """min(max(v, lo), hi): this thread's rows that fall in the piece [lo, hi)."""
    v = b.select(b.icmp_signed("<", v, index.i64(lo)), index.i64(lo), v)
    return b.select(b.icmp_signed(">", v, index.i64(hi)), index.i64(hi), v)


LOWERINGS["elementwise"] = lower_elementwise
