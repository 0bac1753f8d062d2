"""Reduction groups: sum/prod/max/min/argmax/argmin with an elementwise prologue and epilogue.

Each thread takes a share of the output positions; for each it loops over the reduced dims (the
last one innermost, contiguous when it is reduced) accumulating the prologue's value, then
evaluates the epilogue at that position with the accumulator standing in for the anchor. When the
epilogue moves the anchor's positions (an injective op between anchor and root), the anchor is
first written to workspace and the epilogue runs as a second phase after a barrier. When only
leading dims are reduced (column sums), the loops swap: rows outer, output positions inner.

NaN semantics are numpy's: max/min propagate NaN (llvm.maximum/minimum), argmax/argmin return the
first maximum and count NaN as the extreme. Float sums carry `reassoc` so LLVM vectorizes them with
several partial sums: the result may differ from numpy's pairwise sum in the last bits.
"""

from __future__ import annotations

import math

from llvmlite import ir

from .. import dtypes as dt
from ..ir import Group, Node
from ..primitives import Kind
from . import scalar
from .elementwise import emit_pointwise, needs_only_flat
from .index import Index, final_value, i64, strides
from .module import LOWERINGS, LoweringContext


def lower_reduction(ctx: LoweringContext, group: Group) -> None:
    anchor = group.anchor or group.outputs[0]
    root = group.outputs[0]
    value = final_value(group)
    if value is anchor or _elementwise_path(group, anchor, value):
        reduce = _reduce_columns if _columnwise(anchor) else _reduce_all
        reduce(ctx, anchor, lambda idx, acc: ctx.store(root, idx.flat(), ctx.element(value, idx, {anchor: lambda _: acc})))
        return
    ws = ctx.workspace(anchor.type.numel * anchor.type.dtype.itemsize)
    ty = scalar.mem_type(anchor.type.dtype)
    b = ctx.builder
    _reduce_all(ctx, anchor, lambda idx, acc: scalar.store(b, anchor.type.dtype, acc, b.gep(ws, [idx.flat()], source_etype=ty)))
    ctx.barrier()
    load = lambda idx: scalar.load(b, anchor.type.dtype, b.gep(ws, [idx.flat()], source_etype=ty))
    emit_pointwise(ctx, root, flat=needs_only_flat(group.nodes[group.nodes.index(anchor) + 1:]), overrides={anchor: load})


def _elementwise_path(group: Group, anchor: Node, value: Node) -> bool:
    """Every member downstream of the anchor up to `value` is elementwise: `value` is read at the
    anchor's position."""
    downstream = {anchor}
    for n in group.nodes[:group.nodes.index(value) + 1]:
        if any(i in downstream for i in n.inputs):
            if n.prim.kind is not Kind.ELEMENTWISE:
                return False
            downstream.add(n)
    return True


def _reduce_all(ctx: LoweringContext, anchor: Node, finish) -> None:
    b = ctx.builder
    lo, hi = ctx.thread_range(anchor.type.numel)
    with ctx.loop(lo, hi) as o:
        idx = Index(b, anchor.type.shape, flat=o)
        finish(idx, emit_reduce(ctx, anchor, idx))


def _columnwise(anchor: Node) -> bool:
    """The reduced dims lead and the kept ones trail (a bias gradient's column sum): each input
    row adds into the whole output row, contiguous and vectorizable, instead of a strided walk
    down each column."""
    x, red = anchor.inputs[0], sorted(reduced_dims(anchor))
    return (anchor.target in ("sum", "prod", "max", "min") and x.type.dtype is not dt.bool_
            and 0 < len(red) < x.type.ndim and red == list(range(len(red))))


def _reduce_columns(ctx: LoweringContext, anchor: Node, finish) -> None:
    """Rows outer, this thread's share of the output positions inner, accumulating in workspace."""
    b = ctx.builder
    x, d = anchor.inputs[0], anchor.inputs[0].type.dtype
    n = anchor.type.numel
    ws = ctx.workspace(n * d.itemsize)
    acc = lambda o: b.gep(ws, [o], inbounds=True, source_etype=scalar.mem_type(d))
    lo, hi = ctx.thread_range(n, align=16)
    with ctx.loop(lo, hi) as o:
        scalar.store(b, d, _identity(anchor.target, d), acc(o))
    with ctx.loop(0, x.type.numel // n) as r:
        row = b.mul(r, i64(n), flags=("nuw", "nsw"))
        with ctx.loop(lo, hi) as o:
            v = ctx.element(x, Index(b, x.type.shape, flat=b.add(row, o, flags=("nuw", "nsw"))))
            scalar.store(b, d, _combine(b, anchor.target, d, scalar.load(b, d, acc(o)), v), acc(o))
    with ctx.loop(lo, hi) as o:
        finish(Index(b, anchor.type.shape, flat=o), scalar.load(b, d, acc(o)))


def reduced_dims(anchor: Node) -> tuple[int, ...]:
    if anchor.target in ("argmax", "argmin"):
        return (anchor.attrs["dim"],) if anchor.inputs[0].type.ndim else ()
    return tuple(anchor.attrs["dims"])


def emit_reduce(ctx: LoweringContext, anchor: Node, out: Index) -> ir.Value:
    """The anchor's value at output position `out`: a loop nest over the reduced dims."""
    b = ctx.builder
    x = anchor.inputs[0]
    d, shape, red = x.type.dtype, x.type.shape, reduced_dims(anchor)
    keep = [k for k in range(len(shape)) if k not in red]
    out_dims = out.dims()
    kept = {k: out_dims[k] if anchor.attrs["keepdim"] else out_dims[j] for j, k in enumerate(keep)}
    name = anchor.target
    acc = ctx.alloca(scalar.reg_type(d))
    b.store(_identity(name, d), acc)
    best = ctx.alloca(scalar.I64) if name in ("argmax", "argmin") else None
    if best is not None:
        b.store(i64(0), best)

    if best is None and _flat_prologue(ctx, anchor):
        _reduce_runs(ctx, anchor, kept, acc)
        return b.load(acc)

    def nest(level: int, pos: dict[int, ir.Value]):
        if level == len(red):
            v = ctx.element(x, [pos[k] if k in pos else kept[k] for k in range(len(shape))])
            _update(b, name, d, acc, best, v, pos.get(red[0]) if red else i64(0))
            return
        with ctx.loop(0, shape[red[level]]) as i:
            nest(level + 1, {**pos, red[level]: i})

    nest(0, {})
    if best is not None:
        return b.load(best)
    return b.load(acc)


def _flat_prologue(ctx: LoweringContext, anchor: Node) -> bool:
    """The anchor's input is read by flat offset alone: a group input, or elementwise ops of them."""
    return needs_only_flat(ctx.group.nodes[:ctx.group.nodes.index(anchor)])


def _reduce_runs(ctx: LoweringContext, anchor: Node, kept: dict[int, ir.Value], acc) -> None:
    """Accumulate with one loop per run of adjacent reduced dims: a run is contiguous in the input,
    so (0, 2, 3) of NCHW (a conv bias gradient) is 64 x 784 contiguous elements rather than three
    loops whose short constant inner one LLVM unrolls into large, slow-to-compile code. Same order
    of accumulation as the loop per dim."""
    b, x = ctx.builder, anchor.inputs[0]
    shape, st, red = x.type.shape, strides(x.type.shape), set(reduced_dims(anchor))
    base = i64(0)
    for k, pos in kept.items():
        base = b.add(base, b.mul(pos, i64(st[k]), flags=("nuw", "nsw")), flags=("nuw", "nsw"))
    runs, k = [], 0
    while k < len(shape):
        if k in red:
            end = k
            while end + 1 < len(shape) and end + 1 in red:
                end += 1
            runs.append((math.prod(shape[k:end + 1]), st[end]))
            k = end + 1
        else:
            k += 1

    def nest(level: int, flat: ir.Value):
        if level == len(runs):
            v = ctx.element(x, Index(b, shape, flat=flat))
            b.store(_combine(b, anchor.target, x.type.dtype, b.load(acc), v), acc)
            return
        size, stride = runs[level]
        with ctx.loop(0, size) as i:
            nest(level + 1, b.add(flat, b.mul(i, i64(stride), flags=("nuw", "nsw")), flags=("nuw", "nsw")))

    nest(0, base)


def _identity(name: str, d: dt.DType) -> ir.Constant:
    if name == "sum":  # +0.0, as numpy: the sum of [-0.0] is 0.0
        return scalar.const(d, 0)
    if name == "prod":
        return scalar.const(d, 1)
    low = name in ("max", "argmax")
    if d.is_floating_point:
        return scalar.const(d, -math.inf if low else math.inf)
    if d is dt.bool_:
        return scalar.const(d, not low)
    bits = 8 * d.itemsize
    lo_val, hi_val = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if d.is_signed else (0, (1 << bits) - 1)
    return scalar.const(d, lo_val if low else hi_val)


def _update(b: ir.IRBuilder, name: str, d: dt.DType, acc, best, v: ir.Value, pos: ir.Value) -> None:
    cur = b.load(acc)
    if name in ("sum", "prod", "max", "min"):
        b.store(_combine(b, name, d, cur, v), acc)
    else:  # argmax/argmin: strictly better, or the first NaN
        better = scalar.emit(b, "gt" if name == "argmax" else "lt", [v, cur], d, dt.bool_, {})
        if d.is_floating_point:
            first_nan = b.and_(b.fcmp_unordered("uno", v, v), b.fcmp_ordered("ord", cur, cur))
            better = b.or_(better, first_nan)
        b.store(b.select(better, v, cur), acc)
        b.store(b.select(better, pos, b.load(best)), best)


def _combine(b: ir.IRBuilder, name: str, d: dt.DType, cur: ir.Value, v: ir.Value) -> ir.Value:
    if name == "sum" and d.is_floating_point:
        return b.fadd(cur, v, flags=("reassoc", "contract"))
    op = {"sum": "add", "prod": "mul", "max": "maximum", "min": "minimum"}[name]
    return scalar.emit(b, op, [cur, v], d, d, {})


LOWERINGS["reduction"] = lower_reduction
