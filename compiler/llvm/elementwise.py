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
from .index import Index, Override, column_breaks, rows_cols
from .module import LOWERINGS, LoweringContext

MAX_ROW_PIECES = 256  # a pad or concat that would split the row loop more than this is tested per element


def lower_elementwise(ctx: LoweringContext, group: Group) -> None:
    root = group.outputs[-1]  # a multi-output group's outputs all have the root's shape (sibling_fusion.py)
    rows, cols = loop_breaks(group.nodes, group.outputs)
    emit_pointwise(ctx, root, flat=needs_only_flat(group.nodes), col_breaks=cols, row_breaks=rows,
                   also=group.outputs[:-1])


def loop_breaks(nodes: list[Node], outputs: list[Node]) -> tuple[list[int], list[int]]:
    """(rows, columns) where the loops over the outputs' shape split. Columns: index.column_breaks
    (pad, concat and head edges below an output, at their column shifts). Rows: where a pad or a
    concat of the outputs' shape along a leading dim changes what it reads. In each piece a pad is
    known inside (a plain load) or outside (its value, its input never evaluated) and a concat reads
    one part: a concat written as a sum of pads (the LSTM's gate gradients along the last dim, its
    per-step gradients along the time dim) costs one evaluation per element instead of one per pad,
    and vectorizes; the LSTM's 31-part stacks for the weight-gradient GEMMs read all 31 parts per
    element before."""
    shape = outputs[-1].type.shape
    if not shape:
        return [], []
    rows, cols = set(), {c for out in outputs for c in column_breaks(nodes, out)}
    for n in nodes:
        if n.type.shape != shape:
            continue
        for dim, edges in _edges(n):
            if dim == len(shape) - 1:  # column_breaks has these, at the right shifts
                continue
            edges = {min(max(e, 0), shape[dim]) for e in edges}
            inner, outer = math.prod(shape[dim + 1:-1]), math.prod(shape[:dim])
            edges |= {0, shape[dim]}  # a piece stays inside one block of the dims before `dim`
            if outer * len(edges) <= MAX_ROW_PIECES:
                rows |= {(o * shape[dim] + e) * inner for o in range(outer) for e in edges}
    return sorted(r for r in rows if 0 < r < math.prod(shape[:-1])), sorted(c for c in cols if 0 < c < shape[-1])


def _edges(n: Node) -> list[tuple[int, set[int]]]:
    """(dim, the indices along it where `n` changes which input, or padding, it reads)."""
    if n.target == "pad":
        pads, sizes = n.attrs["pads"], n.inputs[0].type.shape
        return [(d, {lo, lo + size}) for d, ((lo, hi), size) in enumerate(zip(pads, sizes)) if lo or hi]
    if n.target == "concat":
        dim = n.attrs["dim"]
        return [(dim, set(itertools.accumulate(x.type.shape[dim] for x in n.inputs)))]
    return []


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
