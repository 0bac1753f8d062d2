"""The transposed (scatter) convolution at stride 1: each input element is multiplied only by the
taps whose outputs it reaches, so a heavily padded conv (the input gradient, a "full" convolution
of the output gradient with the flipped weights) multiplies no padding rows.

A stride-1 conv2d out[o, Y, X] = sum over (c, i, j) of W[o, c, i, j] * x[c, Y + i*dh - ph, X + j*dw - pw]
is, read the other way, a scatter: input element (y, x) adds W[o, c, i, j] * x[c, y, x] into
output (y - i*dh + ph, x - j*dw + pw). Per image and group:

1. the group's input channels are copied into "wide" rows of length Wp = W + (KW-1)*dw, zero
   after column W, so the input positions s = y*Wp + x run through one contiguous range;
2. the output goes into a zeroed plane per channel with margins ((KH-1)*dh - ph rows above,
   (KW-1)*dw - pw columns left) and the same row length Wp: there tap (i, j) of position s
   lands at s + ((KH-1-i)*dh)*Wp + (KW-1-j)*dw, contiguous in s;
3. so the product  P[(i, j, o), s] = sum over c of W[o, c, i, j] * xwide[c, s]  is a GEMM whose
   A is the weight packed as MR-row panels of (tap, channel) rows (channels fastest, so the rows
   of one tile write different planes), B's rows are the wide input rows read in place, and the
   micro-kernel (gemm.tile_kernel) adds its C rows into the plane through a row-offset table;
4. the plane's interior is copied into the output, epilogue applied.

A work item is (image, group, chunk of output channels): the rows are ordered by chunk, so an
item's blocks write only its chunk's planes. Items are taken from conv.TileQueue (a thread's
own contiguous share first, then what is left of the others'); a thread rebuilds its wide rows only when its item's image or group changes. A batch
large enough gives each thread a few whole images (one chunk); a small one is cut into chunks
(conv_lowering.transposed_parts) so every thread has work.

The wide rows' zero columns are multiplied by the weights (about (KW-1)*dw / Wp of the work;
for LeNet's conv2 input gradient 4 of 14 columns), but no row of padding is. The depth of
the GEMM is the input's channels (a backward conv's output channels).
"""

from __future__ import annotations

from llvmlite import ir

from ..conv_lowering import transposed_parts
from ..ir import Group, Node
from .conv import TileQueue, _copy_run, _epilogue, thread_scratch
from .gemm import I64, LAYOUTS, PTR, Layout, View, elem_ptr, i64, loop, output_buffer, tile_kernel
from .module import LoweringContext


def lower_transposed(ctx: LoweringContext, group: Group, x: View) -> None:
    anchor = group.anchor
    lay = LAYOUTS[anchor.type.dtype.short]
    geo = _Geometry(anchor, lay, transposed_parts(anchor, ctx.max_threads))
    panels = _pack_weights(ctx, lay, anchor.inputs[1], geo)
    offsets = _row_offsets(ctx, anchor, geo)
    queue = TileQueue(ctx, x.shape[0] * anchor.attrs["groups"] * geo.parts)
    ctx.barrier()  # every thread reads all the panels and offsets
    wide, plane = thread_scratch(ctx, geo.cg * geo.wide_plane * lay.itemsize, (geo.og * geo.out_plane + geo.junk) * lay.itemsize)
    out = output_buffer(ctx, group)
    kernel = _scatter_kernel(ctx.module, lay, geo.wide_plane)
    b, groups = ctx.builder, anchor.attrs["groups"]
    built = ctx.alloca(I64)  # the (image, group) whose wide rows this thread holds
    b.store(i64(-1), built)
    with queue.items() as item:
        k, plane_id = b.urem(item, i64(geo.parts)), b.udiv(item, i64(geo.parts))
        img, g = b.udiv(plane_id, i64(groups)), b.urem(plane_id, i64(groups))
        with b.if_then(b.icmp_signed("!=", b.load(built, typ=I64), plane_id)):
            _wide_rows(ctx, lay, x, img, b.mul(g, i64(geo.cg)), geo, wide)
            b.store(plane_id, built)
        _scatter_chunk(ctx, lay, geo, (kernel, panels, offsets, wide, plane), g, k)
        _crop(ctx, group, lay, geo, plane, out, img, g, k)


def _scatter_chunk(ctx, lay: Layout, geo: _Geometry, buffers, g, k) -> None:
    """Zero chunk k's output planes (and the junk area), then add every (tap, channel) row of the
    chunk times the wide input rows into them."""
    b, (kernel, panels, offsets, wide, plane) = ctx.builder, buffers
    first = b.mul(k, i64(geo.chunk * geo.out_plane))
    for lo, hi in ((first, b.add(first, i64(geo.chunk * geo.out_plane))), (i64(geo.og * geo.out_plane), i64(geo.og * geo.out_plane + geo.junk))):
        with ctx.loop(lo, hi) as e:
            b.store(ir.Constant(lay.scalar, 0), elem_ptr(b, plane, e, lay))
    chunk_block = b.add(b.mul(g, i64(geo.parts * geo.blocks)), b.mul(k, i64(geo.blocks)))
    with ctx.loop(0, geo.blocks) as blk, loop(b, 0, geo.span, lay.nr) as s:
        a = elem_ptr(b, panels, b.mul(b.add(chunk_block, blk), i64(lay.mr * geo.cg)), lay)
        row = b.mul(b.add(b.mul(k, i64(geo.blocks)), blk), i64(lay.mr))
        rows = b.gep(offsets, [row], inbounds=True, source_etype=I64)
        b.call(kernel, [i64(geo.cg), a, elem_ptr(b, wide, s, lay), elem_ptr(b, plane, s, lay), i64(0),
                        ir.Constant(ir.IntType(1), 1), rows])


class _Geometry:
    """Sizes of one transposed conv (all compile-time ints)."""

    def __init__(self, anchor, lay: Layout, parts: int):
        o, self.cg, self.kh, self.kw = anchor.inputs[1].type.shape
        _, _, self.h, self.w = anchor.inputs[0].type.shape
        (ph, pw), (self.dh, self.dw) = anchor.attrs["padding"], anchor.attrs["dilation"]
        self.og = o // anchor.attrs["groups"]
        self.row = self.w + (self.kw - 1) * self.dw  # Wp: wide rows and output plane rows
        self.span = self.h * self.row  # wide input positions
        self.wide_plane = self.span + lay.nr  # NR of zeros after: the last tile reads past span
        self.margins = ((self.kh - 1) * self.dh - ph, (self.kw - 1) * self.dw - pw)
        # a tile's last columns (past span, zero products) reach (KW-1)*dw + NR - 1 past the rows
        self.out_plane = (self.h + (self.kh - 1) * self.dh) * self.row + (self.kw - 1) * self.dw + lay.nr
        # the output channels go in `parts` chunks, each a work item of its own: its GEMM rows are
        # (tap, channel in the chunk), padded to whole MR-row blocks
        self.parts, self.chunk = parts, self.og // parts
        self.rows = self.kh * self.kw * self.chunk
        self.blocks = -(-self.rows // lay.mr)
        self.junk = -(-self.span // lay.nr) * lay.nr + lay.nr  # where the panels' zero rows add


def _wide_rows(ctx, lay: Layout, x: View, img, c_first, geo: _Geometry, wide) -> None:
    """wide[c, y*Wp + t] = x[img, c_first + c, y, t] for t < W, zero for t in [W, Wp) and after."""
    b = ctx.builder
    with ctx.loop(0, geo.cg) as c:
        base = b.mul(c, i64(geo.wide_plane))
        with ctx.loop(0, geo.h) as y:
            dst = elem_ptr(b, wide, b.add(base, b.mul(y, i64(geo.row))), lay)
            _copy_run(ctx, lay, x, img, b.add(c_first, c), y, dst, i64(0), i64(geo.row), 1, i64(0))
        with ctx.loop(geo.span, geo.wide_plane) as t:
            b.store(ir.Constant(lay.scalar, 0), elem_ptr(b, wide, b.add(base, t), lay))


def _scatter_kernel(module: ir.Module, lay: Layout, wide_plane: int) -> ir.Function:
    """The GEMM micro-kernel with B's row p at b + p*wide_plane and C's row i at c + offsets[i]."""
    def b_row(b, bp, p, extra):
        return elem_ptr(b, bp, b.mul(p, i64(wide_plane)), lay)

    def c_row(b, cp, i, ldc, extra):
        return elem_ptr(b, cp, b.load(b.gep(extra[0], [i64(i)], inbounds=True, source_etype=I64), typ=I64), lay)

    name = f"gt_conv_scatter_{lay.name}_{lay.mr}x{lay.nr}_{wide_plane}"
    return tile_kernel(module, lay, name, [PTR], b_row, lay.itemsize, c_row)


def _pack_weights(ctx: LoweringContext, lay: Layout, w: Node, geo: _Geometry) -> ir.Value:
    """panels[g, k, blk, c, r] = w[g*Og + k*chunk + o, c, i, j] for chunk k's GEMM row
    blk*MR + r = (i*KW + j)*chunk + o, zero for the rows past the chunk's last. w is read element
    by element through its prologue (an input gradient's flipped, transposed weight), so it needs
    no dense copy and no barrier of its own."""
    groups = w.type.shape[0] // geo.og
    total = groups * geo.parts * geo.blocks * geo.cg * lay.mr
    panels = ctx.workspace(total * lay.itemsize)
    b = ctx.builder
    lo, hi = ctx.thread_range(total)
    with ctx.loop(lo, hi) as e:
        r, c, block = b.urem(e, i64(lay.mr)), b.urem(b.udiv(e, i64(lay.mr)), i64(geo.cg)), b.udiv(e, i64(lay.mr * geo.cg))
        valid, tap, o = _chunk_row(b, geo, b.urem(block, i64(geo.parts * geo.blocks)), lay.mr, r)
        ch = b.add(b.mul(b.udiv(block, i64(geo.parts * geo.blocks)), i64(geo.og)), o)
        value = ctx.element(w, [ch, c, b.udiv(tap, i64(geo.kw)), b.urem(tap, i64(geo.kw))])
        b.store(b.select(valid, value, ir.Constant(lay.scalar, 0)), elem_ptr(b, panels, e, lay))
    return panels


def _chunk_row(b: ir.IRBuilder, geo: _Geometry, block, mr: int, r) -> tuple[ir.Value, ir.Value, ir.Value]:
    """(valid, tap, output channel in the group) of row r of block `block` = k*blocks + blk (tap 0,
    channel 0 for a padding row past the chunk's last)."""
    k, local = b.udiv(block, i64(geo.blocks)), b.add(b.mul(b.urem(block, i64(geo.blocks)), i64(mr)), r)
    valid = b.icmp_unsigned("<", local, i64(geo.rows))
    local = b.select(valid, local, i64(0))
    o = b.add(b.mul(k, i64(geo.chunk)), b.urem(local, i64(geo.chunk)))
    return valid, b.udiv(local, i64(geo.chunk)), o


def _row_offsets(ctx: LoweringContext, anchor, geo: _Geometry) -> ir.Value:
    """offsets[k*blocks*MR + row] = o*out_plane + ((KH-1-i)*dh)*Wp + (KW-1-j)*dw for chunk k's
    row (i*KW + j)*chunk + (o - k*chunk): where the row's products land in the output plane; the
    rows past a chunk's last land in the junk area after the planes."""
    lay = LAYOUTS[anchor.type.dtype.short]
    count = geo.parts * geo.blocks * lay.mr
    offsets = ctx.workspace(count * 8)
    b = ctx.builder
    lo, hi = ctx.thread_range(count)
    with ctx.loop(lo, hi) as row:
        valid, tap, o = _chunk_row(b, geo, b.udiv(row, i64(lay.mr)), lay.mr, b.urem(row, i64(lay.mr)))
        i, j = b.udiv(tap, i64(geo.kw)), b.urem(tap, i64(geo.kw))
        at = b.add(b.mul(o, i64(geo.out_plane)), b.mul(b.sub(i64(geo.kh - 1), i), i64(geo.dh * geo.row)))
        at = b.add(at, b.mul(b.sub(i64(geo.kw - 1), j), i64(geo.dw)))
        at = b.select(valid, at, i64(geo.og * geo.out_plane))
        b.store(at, b.gep(offsets, [row], inbounds=True, source_etype=I64))
    return offsets


def _crop(ctx, group: Group, lay: Layout, geo: _Geometry, plane, out, img, g, k) -> None:
    """out[img, g*Og + o, Y, X] = plane[o, (Y + mh)*Wp + X + mw] for chunk k's channels o, then
    the epilogue on each row."""
    anchor, b = group.anchor, ctx.builder
    _, o, oh, ow = anchor.type.shape
    (mh, mw), positions = geo.margins, oh * ow
    epilogue = _epilogue(ctx, group, out, img, b.mul(g, i64(geo.og)), i64(0)) if group.outputs[0] is not anchor else None
    first = b.mul(k, i64(geo.chunk))
    with ctx.loop(first, b.add(first, i64(geo.chunk))) as ch, ctx.loop(0, oh) as y:
        src = elem_ptr(b, plane, b.add(b.mul(ch, i64(geo.out_plane)), b.add(b.mul(b.add(y, i64(mh)), i64(geo.row)), i64(mw))), lay)
        first = b.add(b.mul(b.add(b.mul(img, i64(o)), b.add(b.mul(g, i64(geo.og)), ch)), i64(positions)), b.mul(y, i64(ow)))
        with ctx.loop(0, ow) as t:
            b.store(b.load(elem_ptr(b, src, t, lay), typ=lay.scalar), elem_ptr(b, out, b.add(first, t), lay))
        if epilogue is not None:
            start = b.mul(y, i64(ow))
            epilogue(b, ch, b.add(ch, i64(1)), start, b.add(start, i64(ow)))


__all__ = ["lower_transposed"]
