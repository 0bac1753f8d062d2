"""The direct convolution (stride 1): no im2col, the GEMM's micro-kernel reads the input plane in place.

Per image and group the input's channels are copied into a zero-padded plane with row length R
(one copy, Cg*H*W elements). On the plane's "wide" positions s = oh*R + ow (ow running past OW into
columns that are dropped, as in conv.py's _lower_wide), the unfolded element of tap
p = (c, i, j) at position s is plane[off[p] + s] with off[p] = c*plane_stride + i*dh*R + j*dw: row
p of the GEMM's B is a contiguous stretch of the plane. So the micro-kernel (gemm.tile_kernel)
multiplies a packed panel of MR output channels by B rows found through the tap-offset table,
NR positions at a time, and nothing is unfolded. The weights are packed once per call into
MR-row panels (zero rows past the group's channels) shared by all threads; the depth goes
through in blocks of KC taps so a panel block stays in L1 while the plane streams.

A work item is (image, part of its wide positions), taken from conv.TileQueue;
a small batch is cut into parts (conv_lowering.parts_wanted) so every thread has some. The tile
of wide positions is compacted into the output (epilogue applied) by conv.py's _compact.
The plane has NR elements of slack after it: the last NR-wide tile reads up to NR - 1 past the
last used element.
"""

from __future__ import annotations

import math

from llvmlite import ir

from ..conv_lowering import parts_wanted
from ..ir import Group
from .conv import COLS_MAX, TileQueue, _compact, _pad_plane, thread_scratch
from .gemm import (
    I64,
    LAYOUTS,
    PTR,
    Layout,
    View,
    elem_ptr,
    i64,
    loop,
    min_i64,
    operand_view,
    output_buffer,
    split,
    tile_kernel,
)
from .index import strides
from .module import LoweringContext

KC = 256  # taps per depth block: an MR x KC panel block is 6 KiB of f32


def lower_direct(ctx: LoweringContext, group: Group, x: View) -> None:
    anchor = group.anchor
    lay = LAYOUTS[anchor.type.dtype.short]
    o, cg, kh, kw = anchor.inputs[1].type.shape
    _, _, oh, ow = anchor.type.shape
    (ph, pw), groups = anchor.attrs["padding"], anchor.attrs["groups"]
    depth, blocks = cg * kh * kw, -(-(o // groups) // lay.mr)
    plane_shape = (1, cg, x.shape[2] + 2 * ph, x.shape[3] + 2 * pw)
    used = math.prod(plane_shape)
    row = plane_shape[3]
    span = (oh - 1) * row + ow
    width = min(-(-span // lay.nr) * lay.nr, COLS_MAX)
    plane_ptr, tile = thread_scratch(ctx, (used + lay.nr) * lay.itemsize, blocks * lay.mr * width * lay.itemsize)
    plane = View(plane_ptr, plane_shape, tuple(strides(plane_shape)))
    panels = _pack_weights(ctx, lay, operand_view(ctx, anchor.inputs[1]), groups, blocks)
    offsets = _tap_offsets(ctx, anchor, plane)
    b, n_img = ctx.builder, x.shape[0]
    # parts of an image's positions: as many as the tile buffer needs, or more for a small batch
    # (each part copies the whole plane, so no more than one per NR positions)
    per_image = max(-(-span // width), min(parts_wanted(n_img, ctx.max_threads), -(-span // lay.nr)))
    queue = TileQueue(ctx, per_image * n_img)
    ctx.barrier()  # every thread reads all the panels and offsets
    out = output_buffer(ctx, group)
    kernel = _direct_kernel(ctx.module, lay)
    with queue.items() as item:
        img, part = b.udiv(item, i64(per_image)), b.urem(item, i64(per_image))
        s0, s1 = split(b, i64(span), i64(per_image), part, lay.nr)
        with ctx.loop(0, groups) as g:
            _pad_plane(ctx, lay, x, img, b.mul(g, i64(cg)), (ph, pw), plane)
            with ctx.loop(used, used + lay.nr) as t:  # the slack: read, never used; zero, not garbage
                b.store(ir.Constant(lay.scalar, 0), elem_ptr(b, plane.ptr, t, lay))
            group_panels = elem_ptr(b, panels, b.mul(g, i64(blocks * lay.mr * depth)), lay)
            _tiles(ctx, lay, kernel, (group_panels, plane.ptr, offsets, tile), depth, blocks, width, (s0, s1))
            _compact(ctx, group, lay, tile, width, out, img, g, (s0, s1), row)


def _tiles(ctx, lay: Layout, kernel, buffers, depth: int, blocks: int, width: int, wide) -> None:
    """tile[r, s - s0] = sum_p panels[r, p] * plane[off[p] + s] for s in [s0, s1) (rounded up to NR)."""
    b, (s0, s1), (panels, plane, offsets, tile) = ctx.builder, wide, buffers
    with loop(b, 0, depth, KC) as k0:
        kc, first = min_i64(b, i64(KC), b.sub(i64(depth), k0)), b.icmp_signed("==", k0, i64(0))
        with ctx.loop(0, blocks) as blk, loop(b, s0, s1, lay.nr) as s:
            a = elem_ptr(b, panels, b.add(b.mul(blk, i64(lay.mr * depth)), b.mul(k0, i64(lay.mr))), lay)
            c = elem_ptr(b, tile, b.add(b.mul(blk, i64(lay.mr * width)), b.sub(s, s0)), lay)
            tap_offsets = b.gep(offsets, [k0], inbounds=True, source_etype=I64)
            b.call(kernel, [kc, a, elem_ptr(b, plane, s, lay), c, i64(width), b.not_(first), tap_offsets])


def _direct_kernel(module: ir.Module, lay: Layout) -> ir.Function:
    """The GEMM micro-kernel with row p of B at b + offsets[p] (element-aligned loads)."""
    def b_row(b, bp, p, extra):
        return elem_ptr(b, bp, b.load(b.gep(extra[0], [p], inbounds=True, source_etype=I64), typ=I64), lay)

    return tile_kernel(module, lay, f"gt_conv_direct_{lay.name}_{lay.mr}x{lay.nr}", [PTR], b_row, lay.itemsize)


def _pack_weights(ctx: LoweringContext, lay: Layout, w: View, groups: int, blocks: int) -> ir.Value:
    """panels[g, blk, p, r] = w[g*Og + blk*MR + r, c, i, j] for tap p = (c, i, j), zero for the
    rows past Og: the micro-kernel's A, MR rows at a time, for every group."""
    o, cg, kh, kw = w.shape
    og, depth, mr = o // groups, cg * kh * kw, lay.mr
    total = groups * blocks * depth * mr
    panels = ctx.workspace(total * lay.itemsize)
    b = ctx.builder
    lo, hi = ctx.thread_range(total)
    with ctx.loop(lo, hi) as e:
        r, p, gb = b.urem(e, i64(mr)), b.urem(b.udiv(e, i64(mr)), i64(depth)), b.udiv(e, i64(mr * depth))
        local = b.add(b.mul(b.urem(gb, i64(blocks)), i64(mr)), r)
        valid = b.icmp_unsigned("<", local, i64(og))
        ch = b.add(b.mul(b.udiv(gb, i64(blocks)), i64(og)), b.select(valid, local, i64(0)))
        tap = [b.udiv(p, i64(kh * kw)), b.urem(b.udiv(p, i64(kw)), i64(kh)), b.urem(p, i64(kw))]
        at = b.mul(ch, i64(w.strides[0]))
        for v, st in zip(tap, w.strides[1:]):
            at = b.add(at, b.mul(v, i64(st)))
        value = b.load(elem_ptr(b, w.ptr, at, lay), typ=lay.scalar)
        b.store(b.select(valid, value, ir.Constant(lay.scalar, 0)), elem_ptr(b, panels, e, lay))
    return panels


def _tap_offsets(ctx: LoweringContext, anchor, plane: View) -> ir.Value:
    """offsets[p] = c*plane_stride + i*dh*R + j*dw for tap p = (c, i, j): where row p of B starts."""
    _, cg, kh, kw = anchor.inputs[1].type.shape
    (dh, dw), (_, cs, rs, _) = anchor.attrs["dilation"], plane.strides
    depth = cg * kh * kw
    offsets = ctx.workspace(depth * 8)
    b = ctx.builder
    lo, hi = ctx.thread_range(depth)
    with ctx.loop(lo, hi) as p:
        c, i, j = b.udiv(p, i64(kh * kw)), b.urem(b.udiv(p, i64(kw)), i64(kh)), b.urem(p, i64(kw))
        at = b.add(b.add(b.mul(c, i64(cs)), b.mul(i, i64(dh * rs))), b.mul(j, i64(dw)))
        b.store(at, b.gep(offsets, [p], inbounds=True, source_etype=I64))
    return offsets


__all__ = ["lower_direct"]
