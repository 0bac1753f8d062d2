"""Nodes that stand alone ("single" groups): dispatch by kind, and the opaque primitives.

rand is bit-exact with the numpy kernel (splitmix64 of key + i); cumsum and fold add in the
kernel's order, so float results are bit-exact too. scatter_add adds in index order to match
np.add.at: threads split the index's leading dims, whose positions never share an output.
A naive matmul stands in until gemm.py registers the real one (it only fills
LOWERINGS["matmul"] if nothing else did).
"""

from __future__ import annotations

import math

from llvmlite import ir

from .. import dtypes as dt
from ..ir import Group, Node
from ..primitives import Kind
from . import scalar
from .elementwise import lower_elementwise
from .host import lower_host
from .index import Index, emit_epilogue, i64, unflatten
from .module import LOWERINGS, LoweringContext
from .pooling import KERNELS as POOLING_KERNELS
from .reduction import lower_reduction


def lower_single(ctx: LoweringContext, group: Group) -> None:
    node = group.outputs[0]
    kind = node.prim.kind
    if kind in (Kind.ELEMENTWISE, Kind.INJECTIVE):
        lower_elementwise(ctx, group)
    elif kind is Kind.REDUCTION:
        lower_reduction(ctx, group)
    elif kind is Kind.OUT_FUSABLE and node.target in LOWERINGS:
        LOWERINGS[node.target](ctx, Group(group.id, node.target, group.nodes, group.inputs, group.outputs, node))
    elif node.target in OPAQUE:
        OPAQUE[node.target](ctx, node)
    else:  # no generated kernel (inverse, ...): the numpy kernel, called from the native code
        lower_host(ctx, node)


# ---------------------------------------------------------------- rand

_SPLITMIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def _u64(v: int) -> ir.Constant:
    return i64(v - (1 << 64) if v >= 1 << 63 else v)


def splitmix64(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """primitives.splitmix64 in IR: the same bits on every backend."""
    golden, m1, m2 = (_u64(c) for c in _SPLITMIX)
    z = b.add(x, golden)
    z = b.mul(b.xor(z, b.lshr(z, i64(30))), m1)
    z = b.mul(b.xor(z, b.lshr(z, i64(27))), m2)
    return b.xor(z, b.lshr(z, i64(31)))


def _rand(ctx: LoweringContext, node: Node) -> None:
    b, d = ctx.builder, node.type.dtype
    key = ctx.load(node.inputs[0], i64(0))
    f64 = ir.DoubleType()
    lo, hi = ctx.thread_range(node.type.numel, align=64)
    with ctx.loop(lo, hi) as i:
        bits = splitmix64(b, b.add(key, i))
        if d is dt.float64:
            v = b.fmul(b.uitofp(b.lshr(bits, i64(11)), f64), ir.Constant(f64, 2.0**-53))
        else:
            v = b.fmul(b.uitofp(b.lshr(bits, i64(40)), f64), ir.Constant(f64, 2.0**-24))
            v = scalar.fptrunc(b, v, scalar.reg_type(d))  # exact: 24 bits fit a float
        ctx.store(node, i, v)


# ---------------------------------------------------------------- cumsum


def _cumsum(ctx: LoweringContext, node: Node) -> None:
    b, d = ctx.builder, node.type.dtype
    (x,) = node.inputs
    shape, dim = node.type.shape, node.attrs["dim"] % max(node.type.ndim, 1)
    if not shape:
        with ctx.loop(0, b.select(b.icmp_signed("==", ctx.tid, i64(0)), i64(1), i64(0))) as i:
            ctx.store(node, i, ctx.load(x, i))
        return
    outer, n, inner = math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1:])
    lo, hi = ctx.thread_range(outer)
    with ctx.loop(lo, hi) as o:
        base = b.mul(o, i64(n * inner))
        if n:
            with ctx.loop(0, inner) as j:  # row 0 is x itself: no identity to add (keeps -0.0)
                at = b.add(base, j)
                ctx.store(node, at, ctx.load(x, at))
        with ctx.loop(1, n) as k, ctx.loop(0, inner) as j:
            at = b.add(base, b.add(b.mul(k, i64(inner)), j))
            prev = ctx.load(node, b.sub(at, i64(inner)))
            ctx.store(node, at, scalar.emit(b, "add", [prev, ctx.load(x, at)], d, d, {}))


# ---------------------------------------------------------------- fold


def _fold(ctx: LoweringContext, node: Node) -> None:
    b, d = ctx.builder, node.type.dtype
    (cols,) = node.inputs
    n, c, oh, ow, kh, kw = cols.type.shape
    hgt, wid = node.attrs["size"]
    (s0, s1), (d0, d1) = node.attrs["stride"], node.attrs["dilation"]
    lo, hi = ctx.thread_range(n * c)
    with ctx.loop(lo, hi) as p:
        plane = b.mul(p, i64(hgt * wid))
        with ctx.loop(0, hgt * wid) as q:
            ctx.store(node, b.add(plane, q), ctx.const(0, d))
        # the kernel's order: window offset (i, j) outermost, so each output adds its terms in (i, j) order
        with ctx.loop(0, kh) as i, ctx.loop(0, kw) as j, ctx.loop(0, oh) as a, ctx.loop(0, ow) as c2:
            h = b.add(b.mul(a, i64(s0)), b.mul(i, i64(d0)))
            w = b.add(b.mul(c2, i64(s1)), b.mul(j, i64(d1)))
            at = b.add(plane, b.add(b.mul(h, i64(wid)), w))
            src = Index(b, cols.type.shape, dims=[i64(0), i64(0), a, c2, i, j]).flat()
            src = b.add(src, b.mul(p, i64(oh * ow * kh * kw)))
            ctx.store(node, at, scalar.emit(b, "add", [ctx.load(node, at), ctx.load(cols, src)], d, d, {}))


# ---------------------------------------------------------------- scatter_add


def _scatter_add(ctx: LoweringContext, node: Node) -> None:
    b, d = ctx.builder, node.type.dtype
    base, idx, src = node.inputs
    dim, size = node.attrs["dim"], node.type.shape[node.attrs["dim"]] if node.type.ndim else 1
    lo, hi = ctx.thread_range(node.type.numel)
    with ctx.loop(lo, hi) as i:
        ctx.store(node, i, ctx.load(base, i))
    ctx.barrier()
    # positions of idx with the same dims before `dim` add into the same output rows, and only
    # they do: each thread takes whole prefixes and adds them in np.add.at's (serial) order
    prefix = math.prod(idx.type.shape[:dim]) if node.type.ndim else 1
    inner = idx.type.numel // prefix if prefix else 0
    q0, q1 = ctx.thread_range(prefix)
    with ctx.loop(b.mul(q0, i64(inner)), b.mul(q1, i64(inner))) as p:
        raw = ctx.load(idx, p)
        wrapped = b.select(b.icmp_signed("<", raw, i64(0)), b.add(raw, i64(size)), raw)
        bad = b.icmp_unsigned(">=", wrapped, i64(size))
        with b.if_else(bad, likely=False) as (then, otherwise):
            with then:
                ctx.index_error(raw, dim, size)
            with otherwise:
                at, from_src = _scatter_positions(b, node, idx, src, p, wrapped)
                s = ctx.load(src, from_src)
                ctx.store(node, at, scalar.emit(b, "add", [ctx.load(node, at), s], d, d, {}))


def _scatter_positions(b, node, idx, src, p, wrapped):
    """(output flat index, src flat index) of idx position p, whose index value is `wrapped`."""
    dim, shape = node.attrs["dim"], node.type.shape
    if idx.type.shape == src.type.shape and idx.type.shape[:dim] + idx.type.shape[dim + 1:] == shape[:dim] + shape[dim + 1:]:
        # idx spans the output but along dim (an argmax's scatter): no unflatten, one multiply-add
        post = math.prod(shape[dim + 1:])
        n = idx.type.shape[dim]
        outer, rest = b.udiv(p, i64(n * post)), b.urem(p, i64(post))
        return b.add(b.mul(b.add(b.mul(outer, i64(shape[dim])), wrapped), i64(post)), rest), p
    dims = unflatten(b, p, idx.type.shape)
    at = Index(b, shape, dims=dims[:dim] + [wrapped] + dims[dim + 1:]).flat()
    return at, Index(b, src.type.shape, dims=dims).flat()


OPAQUE = {"rand": _rand, "cumsum": _cumsum, "fold": _fold, "scatter_add": _scatter_add, **POOLING_KERNELS}


# ---------------------------------------------------------------- matmul fallback


def lower_matmul_naive(ctx: LoweringContext, group: Group) -> None:
    """C = A @ B row by row (i-k-j, the j loop vectorizes), then the epilogue on the same rows."""
    anchor, root = group.anchor, group.outputs[0]
    a, w = anchor.inputs
    *batch, m, k = a.type.shape
    n = w.type.shape[-1]
    b, d = ctx.builder, anchor.type.dtype
    in_place = root.type.shape == anchor.type.shape and root.type.dtype is d
    c_ptr = ctx.ptr(root) if in_place else ctx.workspace(anchor.type.numel * d.itemsize)
    ty = scalar.mem_type(d)
    cell = lambda flat: b.gep(c_ptr, [flat], inbounds=True, source_etype=ty)
    rows = math.prod(batch) * m
    lo, hi = ctx.thread_range(rows)
    with ctx.loop(lo, hi) as r:
        bdims = unflatten(b, b.udiv(r, i64(m)), tuple(batch)) if batch else []
        i = b.urem(r, i64(m))
        with ctx.loop(0, n) as j:
            b.store(ctx.const(0, d), cell(b.add(b.mul(r, i64(n)), j)))
        with ctx.loop(0, k) as kk:
            av = ctx.element(a, bdims + [i, kk])
            with ctx.loop(0, n) as j:
                at = cell(b.add(b.mul(r, i64(n)), j))
                prod = scalar.emit(b, "mul", [av, ctx.element(w, bdims + [kk, j])], d, d, {})
                b.store(scalar.emit(b, "add", [b.load(at, typ=ty), prod], d, d, {}), at)
    if root is not anchor:
        emit_epilogue(ctx, group, c_ptr, (lo, hi), (i64(0), i64(n)))


LOWERINGS["single"] = lower_single
LOWERINGS.setdefault("matmul", lower_matmul_naive)
