"""Index mapping: the value of any elementwise/injective member at a position of its shape.

This is the one mechanism behind every fused kernel: an elementwise group evaluates its root at
each position of the root's shape; a reduction evaluates its prologue at positions of the anchor's
input and its epilogue at positions of its output; a matmul/conv epilogue evaluates the group's
root over a tile of the anchor's output (`emit_epilogue`). Walking back from a value to its inputs,
an elementwise op keeps the position, an injective op maps it (expand drops broadcast dims,
permute reorders, slice scales and shifts, pad/concat select, gather reads the index, unfold maps
window coordinates), and a group input is loaded from its buffer.

A position is an `Index`: a multi-index, a flat row-major offset, or both; each form is computed
from the other only when some consumer needs it, so a chain of elementwise ops over contiguous
buffers costs one induction variable, not a div/mod per dim. A reshape maps a multi-index run by
run (dims whose sizes multiply to the same product), never through the whole flat offset.

In a rows x columns walk the column loop runs in pieces (`column_breaks`) with constant bounds
(`Index.col_span`), carried through elementwise ops, reshapes and pads: in each piece a pad is
known all inside or all padding, and a last dim split into heads (the attention's head merge)
is in one head, whose number is then a constant: the reads are plain contiguous loads.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from llvmlite import ir

from ..dtypes import row_major_strides as strides  # one definition for every backend
from ..ir import Group, Node
from ..primitives import Kind
from . import scalar
from .scalar import I64

if TYPE_CHECKING:
    from .module import LoweringContext


def i64(v: int) -> ir.Constant:
    return ir.Constant(I64, v)


class Index:
    """A position in a tensor of `shape` (i64 values; dims given, flat given, or a (row, col) pair)."""

    def __init__(self, b: ir.IRBuilder, shape: tuple[int, ...], *, dims: list[ir.Value] | None = None,
                 flat: ir.Value | None = None, row: ir.Value | None = None):
        self.b, self.shape = b, tuple(shape)
        self._dims, self._flat, self._row = dims, flat, row
        self.col_span: tuple[int, int] | None = None  # constant bounds [lo, hi) of the last index, when known
        self.row_span: tuple[int, int] | None = None  # constant bounds [lo, hi) of the row (Index.rows), when known

    @classmethod
    def rows(cls, b: ir.IRBuilder, shape: tuple[int, ...], row: ir.Value, col: ir.Value) -> Index:
        """Element `col` of row `row` of `shape` viewed as (prod(shape[:-1]), shape[-1])."""
        flat = b.add(b.mul(row, i64(shape[-1]), flags=("nuw", "nsw")), col, flags=("nuw", "nsw"))
        idx = cls(b, shape, flat=flat, row=row)
        idx._col = col
        return idx

    def same_rows(self, shape: tuple[int, ...]) -> Index:
        """This position in `shape`, a reshape keeping the last dim: the same row and column, so a
        column loop's bounds (`col_span`) still hold and the row is still divided once per row."""
        idx = Index(self.b, shape, flat=self._flat, row=self._row)
        idx._col, idx.col_span = self._col, self.col_span
        return idx

    def flat(self) -> ir.Value:
        if self._flat is None:
            acc = i64(0)
            for d, st, size in zip(self._dims, strides(self.shape), self.shape):
                if size != 1:
                    acc = self.b.add(acc, self.b.mul(d, i64(st), flags=("nuw", "nsw")), flags=("nuw", "nsw"))
            self._flat = acc
        return self._flat

    def dims(self) -> list[ir.Value]:
        if self._dims is None:
            if self._row is not None:  # divide the row only: invariant in the column loop, hoisted by LICM
                self._dims = unflatten(self.b, self._row, self.shape[:-1]) + [self._col]
            else:
                self._dims = unflatten(self.b, self._flat, self.shape)
        return self._dims


def unflatten(b: ir.IRBuilder, flat: ir.Value, shape: tuple[int, ...]) -> list[ir.Value]:
    dims: list[ir.Value] = []
    rest = flat
    for k in range(len(shape) - 1, -1, -1):
        if shape[k] == 1:
            dims.append(i64(0))
        elif k == 0:
            dims.append(rest)
        else:
            dims.append(b.urem(rest, i64(shape[k])))
            rest = b.udiv(rest, i64(shape[k]))
    return dims[::-1]


Override = Callable[[Index], ir.Value]


class Env:
    """One evaluation: where values come from, and values already computed at a position."""

    def __init__(self, ctx: LoweringContext, overrides: dict[Node, Override] | None = None):
        self.ctx, self.b = ctx, ctx.builder
        self.overrides = overrides or {}
        self.memo: dict[tuple[Node, Index], ir.Value] = {}


def emit_element(ctx: LoweringContext, node: Node, index: Index | list[ir.Value],
                 overrides: dict[Node, Override] | None = None) -> ir.Value:
    """The value of `node` (in registers: bool as i1) at `index`, a multi-index of node's shape.

    Group inputs are loaded from their buffers (ctx.ptr); `overrides` supplies other values,
    e.g. {anchor: lambda idx: <load from the accumulator tile>} in an epilogue.
    """
    if not isinstance(index, Index):
        index = Index(ctx.builder, node.type.shape, dims=list(index))
    return value(Env(ctx, overrides), node, index)


def value(env: Env, node: Node, idx: Index) -> ir.Value:
    key = (node, idx)
    if key not in env.memo:
        env.memo[key] = _compute(env, node, idx)
    return env.memo[key]


def _compute(env: Env, node: Node, idx: Index) -> ir.Value:
    if node in env.overrides:
        return env.overrides[node](idx)
    ctx, b = env.ctx, env.b
    if ctx.is_input(node):
        return scalar.load(b, node.type.dtype, ctx.gep(node, idx.flat()))
    if node.op != "call":
        raise ctx.unsupported(node, "is neither a group input nor computed in the group")
    kind, name = node.prim.kind, node.target
    if name == "full":
        return scalar.const(node.type.dtype, node.attrs["value"])
    if name == "iota":
        return scalar.cast(b, _i64_dtype(), node.type.dtype, idx.dims()[node.attrs["dim"]])
    if kind is Kind.ELEMENTWISE:
        args = [value(env, i, idx) for i in node.inputs]
        in_dtype = node.inputs[-1].type.dtype  # where(c, a, b): the operand dtype is a's and b's
        return scalar.emit(b, name, args, in_dtype, node.type.dtype, node.attrs)
    if kind is Kind.INJECTIVE:
        return _INJECTIVE[name](env, node, idx)
    raise ctx.unsupported(node, f"is a {kind.value} op, which cannot be computed per element")


def _i64_dtype():
    from .. import dtypes as dt

    return dt.int64


def at(env: Env, node: Node, dims: list[ir.Value]) -> ir.Value:
    return value(env, node, Index(env.b, node.type.shape, dims=dims))


# ---------------------------------------------------------------- injective ops: output position -> input position


def _expand(env, node, idx):
    (x,) = node.inputs
    if x.type.shape == node.type.shape:
        return value(env, x, idx)
    lead = node.type.ndim - x.type.ndim
    out = idx.dims()
    return at(env, x, [i64(0) if s == 1 else out[lead + k] for k, s in enumerate(x.type.shape)])


def _reshape(env, node, idx):
    (x,) = node.inputs
    src, dst = x.type.shape, node.type.shape
    if idx._row is not None and src and src[-1] == dst[-1]:
        return value(env, x, idx.same_rows(src))
    if (idx._dims is not None or idx._row is not None) and x.type.numel > 0:  # map dim runs, not the flat offset
        dims, span = reshape_dims(env.b, idx.dims(), dst, src), None
        block = _column_block(idx.dims()[-1], idx.col_span, dst, src) if idx.col_span and dst else None
        if block is not None:
            tail, span = block(env.b)
            dims = dims[:len(src) - len(tail)] + tail
        mapped = Index(env.b, src, dims=dims)
        mapped.col_span = span
        return value(env, x, mapped)
    return value(env, x, Index(env.b, src, flat=idx.flat()))


def _column_block(col: ir.Value, span: tuple[int, int], shape: tuple[int, ...], to: tuple[int, ...]):
    """When the last dim of `shape` alone becomes the last dims of `to` (kept, or split into heads
    of to[-1]) and the column loop's bounds `span` lie in one block of to[-1]: a function giving
    those dims (the leading ones constants, the last col minus the block's start) and the span
    within the block. Then the heads are known per column piece and the reads are contiguous."""
    (i0, i1), (j0, j1) = reshape_runs(shape, to)[-1]
    size = to[-1] if to else 0
    if i1 - i0 != 1 or j1 - j0 < 1 or size == 0 or span[0] // size != (span[1] - 1) // size:
        return None
    q = span[0] // size

    def emit(b: ir.IRBuilder) -> tuple[list[ir.Value], tuple[int, int]]:
        lead = [i64(v) for v in np.unravel_index(q, to[j0:j1 - 1])] if j1 - j0 > 1 else []
        return lead + [b.sub(col, i64(q * size)) if q else col], (span[0] - q * size, span[1] - q * size)
    return emit


def reshape_dims(b: ir.IRBuilder, dims: list[ir.Value], shape: tuple[int, ...], to: tuple[int, ...]) -> list[ir.Value]:
    """The multi-index in `to` of position `dims` in `shape` (same numel, not 0): dims in runs of
    equal size products (a split or a merge) are flattened and unflattened within their run only,
    so an untouched dim passes through and the division by the whole row never happens."""
    out: list[ir.Value] = []
    for (i0, i1), (j0, j1) in reshape_runs(shape, to):
        flat = Index(b, shape[i0:i1], dims=dims[i0:i1]).flat()
        out += [flat] if j1 - j0 == 1 else unflatten(b, flat, to[j0:j1])
    return out


def reshape_runs(shape: tuple[int, ...], to: tuple[int, ...]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Consecutive dim ranges ([i0, i1) of shape, [j0, j1) of to) with equal products, covering both
    shapes (numel not 0); a run of size-1 dims on one side pairs with an empty range on the other."""
    runs, i, j = [], 0, 0
    while i < len(shape) or j < len(to):
        i0, j0, p, q = i, j, 1, 1
        if i < len(shape):
            p, i = shape[i], i + 1
        if j < len(to):
            q, j = to[j], j + 1
        while p != q:  # grow the smaller side until the products meet (both cover the same numel)
            if p < q:
                p, i = p * shape[i], i + 1
            else:
                q, j = q * to[j], j + 1
        runs.append(((i0, i), (j0, j)))
    return runs


HEAD_BREAKS = (8, 32)  # split a column loop at head edges for heads of at least 8 columns, at most 32 pieces


def column_breaks(nodes: list[Node], root: Node) -> list[int]:
    """Columns of the root (0 < c < its last dim) where the rows x columns walk splits its column
    loop, so that in each piece every pad below is known inside or outside and every split of the
    last dim into heads (a reshape (.., h*e) -> (.., h, e), the attention's head merge) is in one
    head, and every concat along the last dim reads one part: each piece then reads its inputs
    contiguously (`_pad`, `_column_block`, `_concat`).
    Members are reached from the root through elementwise ops, reshapes that keep the last dim
    and pads, each at its column shift (its last index is the root's column minus the shift)."""
    members, shifts, todo = set(nodes), {}, [(root, 0)]
    breaks: set[int] = set()
    while todo:
        n, shift = todo.pop()
        if n in shifts or n not in members or n.op != "call" or not n.type.shape:
            continue
        shifts[n] = shift
        src = n.inputs[0].type.shape if n.inputs else ()
        if n.prim.kind is Kind.ELEMENTWISE and n.target != "iota":
            todo += [(i, shift) for i in n.inputs]
        elif n.target == "pad":
            lo, _ = n.attrs["pads"][-1]
            breaks |= {shift + lo, shift + lo + src[-1]}
            todo.append((n.inputs[0], shift + lo))
        elif n.target == "reshape" and src and src[-1] == n.type.shape[-1]:
            todo.append((n.inputs[0], shift))
        elif n.target == "reshape" and src:
            breaks |= _head_edges(n.type.shape, src, shift)
        elif n.target == "concat" and n.attrs["dim"] == len(n.type.shape) - 1:  # each piece reads one part
            breaks |= {shift + e for e in itertools.accumulate(x.type.shape[-1] for x in n.inputs)}
    cols = root.type.shape[-1]
    return sorted(c for c in breaks if 0 < c < cols)


def _head_edges(shape: tuple[int, ...], src: tuple[int, ...], shift: int) -> set[int]:
    """The head edges of a reshape whose last dim alone becomes src's last dims (heads of src[-1])."""
    (i0, i1), (j0, j1) = reshape_runs(shape, src)[-1] if math.prod(src) else ((0, 0), (0, 0))
    head, heads = src[-1], shape[-1] // max(src[-1], 1)
    if i1 - i0 != 1 or j1 - j0 < 2 or head < HEAD_BREAKS[0] or heads > HEAD_BREAKS[1]:
        return set()
    return {shift + k * head for k in range(1, heads)}


def _permute(env, node, idx):
    (x,) = node.inputs
    out = idx.dims()
    dims: list[ir.Value] = [i64(0)] * x.type.ndim
    for i, d in enumerate(node.attrs["dims"]):
        dims[d] = out[i]
    return at(env, x, dims)


def _slice(env, node, idx):
    (x,) = node.inputs
    if x.type.shape == node.type.shape:
        return value(env, x, idx)
    b, a = env.b, node.attrs
    dims = []
    for d, start, step in zip(idx.dims(), a["starts"], a["steps"]):
        d = b.mul(d, i64(step)) if step != 1 else d
        dims.append(b.add(d, i64(start)) if start else d)
    return at(env, x, dims)


def _pad(env, node, idx):
    (x,) = node.inputs
    pad_value = scalar.const(node.type.dtype, node.attrs["value"])
    if x.type.numel == 0:
        return pad_value
    b = env.b
    inside = ir.Constant(scalar.I1, 1)
    dims = []
    last = len(x.type.shape) - 1
    inner_span = idx.col_span if not node.attrs["pads"] or tuple(node.attrs["pads"][-1]) == (0, 0) else None
    for k, (d, (lo, hi), n) in enumerate(zip(idx.dims(), node.attrs["pads"], x.type.shape)):
        if lo == 0 and hi == 0:
            dims.append(d)
            continue
        d = b.sub(d, i64(lo))
        span = dim_span(idx, k)
        if span is not None and lo <= span[0] and span[1] <= lo + n:  # this column loop is all inside
            dims.append(d)
            if k == last:
                inner_span = (span[0] - lo, span[1] - lo)
            continue
        if span is not None and (span[1] <= lo or lo + n <= span[0]):  # all padding: x is never read
            return pad_value
        ok = b.and_(b.icmp_signed(">=", d, i64(0)), b.icmp_signed("<", d, i64(n)))
        inside = b.and_(inside, ok)
        dims.append(b.select(ok, d, i64(0)))  # a position outside reads element 0: never out of bounds
    inner = Index(b, x.type.shape, dims=dims)
    inner.col_span = inner_span  # the column loop's bounds, shifted: x's last index stays known
    return b.select(inside, value(env, x, inner), pad_value)


def _concat(env, node, idx):
    """The part that holds the position; where the loop's spans pin the concat dim to one part (a
    loop split at part edges, elementwise.py), that part alone is read, with no select."""
    dim = node.attrs["dim"]
    parts = [x for x in node.inputs if x.type.shape[dim] > 0]
    b, out = env.b, idx.dims()
    bounds = [0]
    for x in parts:
        bounds.append(bounds[-1] + x.type.shape[dim])
    span = dim_span(idx, dim)
    chosen = [j for j in range(len(parts)) if span is None or (bounds[j] < span[1] and span[0] < bounds[j + 1])]
    if len(chosen) == 1:
        j = chosen[0]
        return at(env, parts[j], out[:dim] + [b.sub(out[dim], i64(bounds[j]))] + out[dim + 1:])
    result = None
    for j in reversed(chosen):
        x, lo, hi = parts[j], bounds[j], bounds[j + 1]
        mine = b.and_(b.icmp_signed(">=", out[dim], i64(lo)), b.icmp_signed("<", out[dim], i64(hi)))
        local = b.select(mine, b.sub(out[dim], i64(lo)), i64(0))
        v = at(env, x, out[:dim] + [local] + out[dim + 1:])
        result = v if result is None else b.select(mine, v, result)
    return result


def dim_span(idx: Index, dim: int) -> tuple[int, int] | None:
    """Constant bounds [lo, hi) of index `dim` over the loop piece `idx` walks, when its spans fix them."""
    shape = idx.shape
    if dim == len(shape) - 1:
        return idx.col_span
    if idx.row_span is None:
        return None
    inner = math.prod(shape[dim + 1:-1])
    period = inner * shape[dim]
    r0, r1 = idx.row_span
    if r1 <= r0 or r0 // period != (r1 - 1) // period:
        return None
    return (r0 // inner) % shape[dim], ((r1 - 1) // inner) % shape[dim] + 1


def _gather(env, node, idx):
    x, index_node = node.inputs
    dim = node.attrs["dim"]
    n = x.type.shape[dim]
    ctx, b = env.ctx, env.b
    raw = value(env, index_node, idx)
    wrapped = b.select(b.icmp_signed("<", raw, i64(0)), b.add(raw, i64(n)), raw)
    bad = b.icmp_unsigned(">=", wrapped, i64(n))  # negative after wrapping counts as huge
    with b.if_then(bad, likely=False):
        ctx.index_error(raw, dim, n)
    if n == 0:
        return scalar.const(node.type.dtype, 0)
    out = idx.dims()
    return at(env, x, out[:dim] + [b.select(bad, i64(0), wrapped)] + out[dim + 1:])


def _unfold(env, node, idx):
    (x,) = node.inputs
    b, a = env.b, node.attrs
    n, c, oh, ow, kh, kw = idx.dims()
    (s0, s1), (d0, d1) = a["stride"], a["dilation"]
    h = b.add(b.mul(oh, i64(s0)), b.mul(kh, i64(d0)))
    w = b.add(b.mul(ow, i64(s1)), b.mul(kw, i64(d1)))
    return at(env, x, [n, c, h, w])


_INJECTIVE = {"expand": _expand, "reshape": _reshape, "permute": _permute, "slice": _slice, "pad": _pad,
              "concat": _concat, "gather": _gather, "unfold": _unfold}


# ---------------------------------------------------------------- epilogues


def emit_epilogue(ctx: LoweringContext, group: Group, anchor_ptr: ir.Value, row_range: tuple[ir.Value, ir.Value],
                  col_range: tuple[ir.Value, ir.Value], out_ptr: ir.Value | None = None) -> None:
    """Apply `group`'s epilogue over rows [r0, r1) x cols [c0, c1) of the anchor's output.

    The anchor's output is viewed as (prod(shape[:-1]), shape[-1]) and read from `anchor_ptr`
    (dense, row-major, the anchor's dtype); the root's value at each position is written to
    `out_ptr` (default: the group's output buffer), which may be `anchor_ptr` itself when the
    root has the anchor's shape and dtype (in place). Loops are emitted here; LLVM vectorizes the
    column loop.
    """
    anchor, root = group.anchor, group.outputs[0]
    shape = anchor.type.shape
    value = final_value(group)
    if value.type.shape != shape:
        raise ctx.unsupported(root, f"is an epilogue of shape {root.type.shape}, not the anchor's {shape}")
    out_ptr = out_ptr if out_ptr is not None else ctx.ptr(root)
    a_ty, o_ty = scalar.mem_type(anchor.type.dtype), scalar.mem_type(root.type.dtype)
    b = ctx.builder
    with ctx.loop(*row_range) as r, ctx.loop(*col_range) as c:
        idx = Index.rows(b, shape, r, c)
        load = lambda i: scalar.load(b, anchor.type.dtype, b.gep(anchor_ptr, [i.flat()], inbounds=True, source_etype=a_ty))
        v = emit_element(ctx, value, idx, {anchor: load})
        scalar.store(b, root.type.dtype, v, b.gep(out_ptr, [idx.flat()], inbounds=True, source_etype=o_ty))


def final_value(group: Group) -> Node:
    """The value a group with an anchor stores: its root, or what a final reshape reshapes (a reshape
    keeps flat positions, so that value is stored at the anchor's positions in the root's buffer)."""
    root = group.outputs[0]
    return root.inputs[0] if root.target == "reshape" and root is not group.anchor else root


def rows_cols(shape: tuple[int, ...]) -> tuple[int, int]:
    """(prod(shape[:-1]), shape[-1]); a scalar is one row of one column."""
    if not shape:
        return 1, 1
    return math.prod(shape[:-1]), shape[-1]
