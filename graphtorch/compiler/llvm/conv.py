"""conv2d groups: im2col feeding the GEMM of gemm.py, the epilogue (bias, relu...) applied per output tile.

Per image n and group g the convolution is one GEMM:
    out[n, g*Og:(g+1)*Og, :] (Og x OH*OW) = W[g] (Og x Cg*KH*KW) @ cols (Cg*KH*KW x OH*OW)
where cols is the unfolded input (zero outside the padding). The columns are made a chunk of at
most COLS_MAX output positions at a time into each thread's own scratch, so memory stays bounded
and no thread waits for another: a work item is (image, column chunk), and there are enough
chunks per image to give every thread work even for a batch of one.
"""

from __future__ import annotations

from llvmlite import ir

from ..ir import Group
from . import scalar
from .gemm import (
    LAYOUTS,
    Matrix,
    elem_ptr,
    emit_gemm,
    i64,
    max_i64,
    min_i64,
    operand_view,
    output_buffer,
    split,
    workspace_elements,
)
from .index import Index, strides
from .module import LOWERINGS, LoweringContext

COLS_MAX = 1024  # output positions per im2col chunk: Cg*KH*KW x 1024 elements of scratch per thread


def lower_conv2d(ctx: LoweringContext, group: Group) -> None:
    anchor, root = group.anchor, group.outputs[0]
    dtype = anchor.type.dtype
    if dtype.short not in LAYOUTS:
        raise ctx.unsupported(anchor, f"is a conv2d of {dtype.name}; the LLVM backend has float32/float64 only")
    x_node, w_node = anchor.inputs
    n_img, _, _, _ = x_node.type.shape
    o, cg, kh, kw = w_node.type.shape
    _, _, oh, ow = anchor.type.shape
    groups = anchor.attrs["groups"]
    og, depth, positions = o // groups, cg * kh * kw, oh * ow
    lay = LAYOUTS[dtype.short]
    width = min(-(-positions // lay.nr) * lay.nr, COLS_MAX)

    x = operand_view(ctx, x_node)
    w = operand_view(ctx, w_node)
    if w.strides != tuple(strides(w.shape)):  # the GEMM reads W[g] as a dense Og x Cg*KH*KW matrix
        w = operand_view(ctx, w_node, copy=True)
    out = output_buffer(ctx, group)
    direct = _reads_input_as_columns(anchor, x)
    cols = None if direct else ctx.workspace(depth * width * lay.itemsize, per_thread=True)
    gemm_ws = ctx.workspace(workspace_elements(og, width, depth, lay) * lay.itemsize, per_thread=True)

    b = ctx.builder
    # chunks per image: at least one per thread (batch 1), and none wider than the scratch
    per_image = b.select(b.icmp_signed(">", ctx.nthreads, i64(n_img)),
                         b.sdiv(b.add(ctx.nthreads, i64(n_img - 1)), i64(n_img)), i64(1))
    per_image = max_i64(b, per_image, i64(-(-positions // width)))
    lo, hi = ctx.thread_range(b.mul(per_image, i64(n_img)))
    with ctx.loop(lo, hi) as item:
        img, chunk = b.sdiv(item, per_image), b.srem(item, per_image)
        s0, s1 = split(b, i64(positions), per_image, chunk, lay.nr)
        with ctx.loop(0, groups) as g:
            if direct:  # x[img, g*Cg:(g+1)*Cg] is already the Cg x H*W column matrix
                plane = b.add(b.mul(img, i64(x.strides[0])), b.mul(g, i64(cg * x.strides[1])))
                b_mat = Matrix(elem_ptr(b, x.ptr, b.add(plane, b.mul(s0, i64(x.strides[3]))), lay),
                               i64(x.strides[1]), i64(x.strides[3]))
            else:
                _im2col(ctx, anchor, x, img, g, s0, s1, cols, width)
                b_mat = Matrix(cols, i64(width), i64(1))
            a_mat = Matrix(elem_ptr(b, w.ptr, b.mul(g, i64(og * depth)), lay), i64(depth), i64(1))
            c_tile = elem_ptr(b, out, b.add(b.mul(b.add(b.mul(img, i64(o)), b.mul(g, i64(og))), i64(positions)), s0), lay)
            epilogue = None
            if root is not anchor:
                epilogue = _epilogue(ctx, group, out, img, b.mul(g, i64(og)), s0)
            emit_gemm(b, lay, a_mat, b_mat, c_tile, i64(positions), depth,
                      (i64(0), i64(og)), (i64(0), b.sub(s1, s0)), gemm_ws, (og, width), epilogue)


def _reads_input_as_columns(anchor, x) -> bool:
    """A 1x1 kernel at stride 1 without padding: the columns are the input itself (when its rows
    and columns merge into one stride), so the GEMM reads x in place."""
    a = anchor.attrs
    _, _, kh, kw = anchor.inputs[1].type.shape
    plain = (kh, kw) == (1, 1) and tuple(a["stride"]) == (1, 1) and tuple(a["padding"]) == (0, 0)
    return plain and x.strides[2] == x.shape[3] * x.strides[3]


def _im2col(ctx, anchor, x, img, g, s0, s1, cols, width):
    """cols[kk, s - s0] = x[img, g*Cg + c, h, w] for kk = (c, i, j) and output position s in [s0, s1),
    zero in the padding. Each output row splits into padding, interior and padding, so the
    interior copy has no bounds checks and vectorizes (a plain copy at stride 1)."""
    b, lay = ctx.builder, LAYOUTS[anchor.type.dtype.short]
    _, cg, kh, kw = anchor.inputs[1].type.shape
    _, _, height, wide = x.shape
    ow = anchor.type.shape[3]
    a = anchor.attrs
    (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
    zero = ir.Constant(lay.scalar, 0)
    with ctx.loop(0, cg * kh * kw) as kk:
        c = b.add(b.mul(g, i64(cg)), b.udiv(kk, i64(kh * kw)))
        ki, kj = b.urem(b.udiv(kk, i64(kw)), i64(kh)), b.urem(kk, i64(kw))
        plane = elem_ptr(b, x.ptr, b.add(b.mul(img, i64(x.strides[0])), b.mul(c, i64(x.strides[1]))), lay)
        row = elem_ptr(b, cols, b.sub(b.mul(kk, i64(width)), s0), lay)  # row[s] for s in [s0, s1)
        h_off, w_off = b.sub(b.mul(ki, i64(dh)), i64(ph)), b.sub(b.mul(kj, i64(dw)), i64(pw))
        # the output columns whose input column w = o*sw + w_off lies in [0, W)
        first_in = max_i64(b, i64(0), b.sdiv(b.add(b.neg(w_off), i64(sw - 1)), i64(sw)))
        last = b.sub(i64(wide - 1), w_off)
        stop_in = b.select(b.icmp_signed("<", last, i64(0)), i64(0), b.add(b.sdiv(last, i64(sw)), i64(1)))
        with ctx.loop(b.udiv(s0, i64(ow)), b.udiv(b.add(s1, i64(ow - 1)), i64(ow))) as oh:
            base = b.mul(oh, i64(ow))
            lo, hi = max_i64(b, b.sub(s0, base), i64(0)), min_i64(b, b.sub(s1, base), i64(ow))
            h = b.add(b.mul(oh, i64(sh)), h_off)
            h_ok = b.icmp_unsigned("<", h, i64(height))
            in_lo = min_i64(b, max_i64(b, first_in, lo), hi)
            in_hi = b.select(h_ok, max_i64(b, min_i64(b, stop_in, hi), in_lo), in_lo)
            src = elem_ptr(b, plane, b.mul(b.select(h_ok, h, i64(0)), i64(x.strides[2])), lay)
            dst = elem_ptr(b, row, base, lay)
            for start, stop in ((lo, in_lo), (in_hi, hi)):
                with ctx.loop(start, stop) as o:
                    b.store(zero, elem_ptr(b, dst, o, lay))
            with ctx.loop(in_lo, in_hi) as o:
                w = b.add(b.mul(o, i64(sw)), w_off)
                b.store(b.load(elem_ptr(b, src, b.mul(w, i64(x.strides[3])), lay), typ=lay.scalar), elem_ptr(b, dst, o, lay))


def _epilogue(ctx, group, out, img, o0, s0):
    """The tile epilogue for image `img`: GEMM rows are channels o0 + r, columns positions s0 + c."""
    anchor, root = group.anchor, group.outputs[0]
    shape = anchor.type.shape
    _, o, oh, ow = shape
    d = anchor.type.dtype

    def apply(b, r0, r1, c0, c1):
        with ctx.loop(r0, r1) as r, ctx.loop(c0, c1) as c:
            ch, s = b.add(o0, r), b.add(s0, c)
            flat = b.add(b.mul(b.add(b.mul(img, i64(o)), ch), i64(oh * ow)), s)
            idx = Index(b, shape, dims=[img, ch, b.udiv(s, i64(ow)), b.urem(s, i64(ow))], flat=flat)
            load = lambda i: scalar.load(b, d, b.gep(out, [i.flat()], inbounds=True, source_etype=ctx.ty(anchor)))
            v = ctx.element(root, idx, {anchor: load})
            ctx.store(root, flat, v)

    return apply



LOWERINGS["conv2d"] = lower_conv2d
