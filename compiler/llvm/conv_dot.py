"""The dot-product convolution: few output positions and a large kernel (the shape of a weight gradient).

The conv2d VJP computes a weight gradient as conv2d(x^T, g^T) (autograd_rules.conv2d_weight_grad):
the kernel is the output gradient (OH x OW of the forward, large), the output is KH x KW (small).
A GEMM over output positions leaves most of the micro-kernel's NR lanes idle and unfolds a huge
im2col; here the lanes run along the kernel's rows instead. Per image and group the input's
channels are copied into a zero-padded plane (row length R); then

    out[img, o, i, j] = sum over (c, p) of  dot(K[o, c, p, :], plane[c, i*sh + p*dh, j*sw : j*sw + KW])

with both operands contiguous. A register tile of DOT_ROWS output channels x DOT_COLS positions
keeps one vector accumulator each; the horizontal sums come once at the end. The kernel is packed
once per call with its rows padded with zeros to a whole number of vectors; the input lanes past
KW are zeroed by a mask (never multiplied by the zeros: 0 * inf is NaN), and the plane is wide
enough (zeros past the input) that every vector load stays inside it.
Needs a kernel dilation of 1 along the width (lanes are consecutive columns).
"""

from __future__ import annotations

import math

from llvmlite import ir

from ..conv_lowering import DOT_COLS, DOT_ROWS
from ..ir import Group
from . import scalar
from .conv import _epilogue, _pad_plane
from .gemm import LAYOUTS, Layout, View, elem_ptr, i64, min_i64, operand_view, output_buffer
from .index import strides
from .module import LoweringContext


def lower_dot(ctx: LoweringContext, group: Group, x: View) -> None:
    anchor = group.anchor
    lay = LAYOUTS[anchor.type.dtype.short]
    o, cg, kh, kw = anchor.inputs[1].type.shape
    _, _, oh, ow = anchor.type.shape
    (ph, pw), sw, groups = anchor.attrs["padding"], anchor.attrs["stride"][1], anchor.attrs["groups"]
    og, kwr = o // groups, -(-kw // lay.width) * lay.width
    row = max(x.shape[3] + 2 * pw, (ow - 1) * sw + kwr)
    plane_shape = (1, cg, x.shape[2] + 2 * ph, row)
    plane = View(ctx.workspace(math.prod(plane_shape) * lay.itemsize, per_thread=True), plane_shape,
                 tuple(strides(plane_shape)))
    packed = _pack_kernel(ctx, lay, operand_view(ctx, anchor.inputs[1]), kwr)
    ctx.barrier()  # every thread reads the whole packed kernel
    out = output_buffer(ctx, group)
    b = ctx.builder
    blocks = -(-og // DOT_ROWS)
    lo, hi = ctx.thread_range(x.shape[0] * groups * blocks)
    with ctx.loop(lo, hi) as item:
        img, rest = b.udiv(item, i64(groups * blocks)), b.urem(item, i64(groups * blocks))
        g, blk = b.udiv(rest, i64(blocks)), b.urem(rest, i64(blocks))
        _pad_plane(ctx, lay, x, img, b.mul(g, i64(cg)), (ph, pw), plane)  # once per item: cheap next to the dots
        o0 = b.add(b.mul(g, i64(og)), b.mul(blk, i64(DOT_ROWS)))
        o1 = min_i64(b, b.add(o0, i64(DOT_ROWS)), b.add(b.mul(g, i64(og)), i64(og)))
        with ctx.loop(0, -(-(oh * ow) // DOT_COLS)) as tile:
            _dot_tile(ctx, lay, anchor, (packed, kwr), plane, (o0, o1), b.mul(tile, i64(DOT_COLS)), out, img)
        if group.outputs[0] is not anchor:
            _epilogue(ctx, group, out, img, i64(0), i64(0))(b, o0, o1, i64(0), i64(oh * ow))


def _dot_tile(ctx, lay: Layout, anchor, kernel, plane: View, rows, s0, out, img) -> None:
    """out[img, o, s] for o in [o0, o1) and positions s in [s0, s0 + DOT_COLS) (both clamped to
    the last valid one for the loads; only valid ones are stored)."""
    b, (packed, kwr), (o0, o1) = ctx.builder, kernel, rows
    o, cg, kh, _ = anchor.inputs[1].type.shape
    _, _, oh, ow = anchor.type.shape
    (sh, sw), dh = anchor.attrs["stride"], anchor.attrs["dilation"][0]
    cs, rs = plane.strides[1], plane.strides[2]
    orow = [min_i64(b, b.add(o0, i64(r)), b.sub(o1, i64(1))) for r in range(DOT_ROWS)]
    pos = [min_i64(b, b.add(s0, i64(k)), i64(oh * ow - 1)) for k in range(DOT_COLS)]
    at = [b.add(b.mul(b.udiv(s, i64(ow)), i64(sh * rs)), b.mul(b.urem(s, i64(ow)), i64(sw))) for s in pos]
    zero = ir.Constant(lay.vec, None)
    accs = [[ctx.alloca(lay.vec) for _ in pos] for _ in orow]
    for cell in (a for line in accs for a in line):
        b.store(zero, cell)
    per_o = cg * kh * kwr  # packed elements per output channel
    with ctx.loop(0, cg * kh) as cp:
        c, p = b.udiv(cp, i64(kh)), b.urem(cp, i64(kh))
        k_at = b.mul(cp, i64(kwr))
        x_at = b.add(b.mul(c, i64(cs)), b.mul(p, i64(dh * rs)))
        with ctx.loop(0, kwr // lay.width) as v:
            lane0 = b.mul(v, i64(lay.width))
            a = [_vload(b, lay, packed, b.add(b.add(b.mul(r, i64(per_o)), k_at), lane0)) for r in orow]
            inside = _lanes_inside(b, lay, lane0, anchor.inputs[1].type.shape[3])
            for k, off in enumerate(at):
                xv = _vload(b, lay, plane.ptr, b.add(b.add(x_at, off), lane0))
                if inside is not None:  # lanes past KW read real input: zero them, not multiply (inf * 0)
                    xv = b.select(inside, xv, zero)
                for r in range(DOT_ROWS):
                    b.store(_fma(ctx, lay, a[r], xv, b.load(accs[r][k], typ=lay.vec)), accs[r][k])
    for r, orow_r in enumerate(orow):
        for k, s in enumerate(pos):
            valid = b.and_(b.icmp_signed("<", b.add(o0, i64(r)), o1), b.icmp_signed("<", b.add(s0, i64(k)), i64(oh * ow)))
            with b.if_then(valid):
                total = _hsum(b, lay, b.load(accs[r][k], typ=lay.vec))
                b.store(total, elem_ptr(b, out, b.add(b.mul(b.add(b.mul(img, i64(o)), orow_r), i64(oh * ow)), s), lay))


def _lanes_inside(b, lay: Layout, lane0, kw: int):
    """The vector mask lane0 + lane < kw, or None when every vector is whole."""
    if kw % lay.width == 0:
        return None
    splat = b.insert_element(ir.Constant(ir.VectorType(lane0.type, lay.width), None), lane0, i64(0))
    splat = b.shuffle_vector(splat, splat, ir.Constant(ir.VectorType(ir.IntType(32), lay.width), None))
    lanes = b.add(splat, ir.Constant(ir.VectorType(lane0.type, lay.width), list(range(lay.width))))
    return b.icmp_signed("<", lanes, ir.Constant(ir.VectorType(lane0.type, lay.width), [kw] * lay.width))


def _vload(b, lay: Layout, ptr, at):
    return b.load(elem_ptr(b, ptr, at, lay), typ=lay.vec, align=lay.itemsize)


def _fma(ctx, lay: Layout, a, x, acc):
    fma = scalar.function(ctx.module, f"llvm.fma.v{lay.width}{lay.name}", lay.vec, [lay.vec] * 3)
    return ctx.builder.call(fma, [a, x, acc])


def _hsum(b, lay: Layout, v):
    total = b.extract_element(v, i64(0))
    for lane in range(1, lay.width):
        total = b.fadd(total, b.extract_element(v, i64(lane)))
    return total


def _pack_kernel(ctx: LoweringContext, lay: Layout, k: View, kwr: int) -> ir.Value:
    """packed[o, c, p, q] = K[o, c, p, q], zero for q in [KW, kwr): rows whole vectors long."""
    o, cg, kh, kw = k.shape
    total = o * cg * kh * kwr
    packed = ctx.workspace(total * lay.itemsize)
    b = ctx.builder
    lo, hi = ctx.thread_range(total)
    with ctx.loop(lo, hi) as e:
        q, rest = b.urem(e, i64(kwr)), b.udiv(e, i64(kwr))
        p, rest = b.urem(rest, i64(kh)), b.udiv(rest, i64(kh))
        c, oc = b.urem(rest, i64(cg)), b.udiv(rest, i64(cg))
        valid = b.icmp_unsigned("<", q, i64(kw))
        at = b.mul(oc, i64(k.strides[0]))
        for v, st in ((c, k.strides[1]), (p, k.strides[2]), (b.select(valid, q, i64(0)), k.strides[3])):
            at = b.add(at, b.mul(v, i64(st)))
        value = b.load(elem_ptr(b, k.ptr, at, lay), typ=lay.scalar)
        b.store(b.select(valid, value, ir.Constant(lay.scalar, 0)), elem_ptr(b, packed, e, lay))
    return packed


__all__ = ["lower_dot"]
