"""The dot-product convolution: few output positions and a large kernel (the shape of a weight gradient).

The conv2d VJP computes a weight gradient as conv2d(x^T, g^T) (autograd_rules.conv2d_weight_grad):
the kernel K is the output gradient (OH x OW of the forward, large), the output is KH x KW (small)
and the summed channels are the batch. A GEMM over output positions would leave most of its NR
lanes idle and unfold a huge im2col; here the vector lanes run along the kernel instead:

    out[img, o, i, j] = sum over c of  dot(K[o, c, :, :] flattened, X[c, j, phase(i)] from row(i))

where X[c, j, phase] is a "shifted plane": X[u, q] = input[c, phase + u*dh, j*sw + q*dw] (zero in
the padding) for u < U, q < KW, so the window of output (i, j) is one contiguous run of KH*KW
elements of it, starting at row (i*sh) // dh of phase (i*sh) % dh. Both operands of every dot
are contiguous, whatever the stride and dilation: there is no lane waste at the kernel's rows.

Work items are (image, group, chunk of channels): an item copies its channels' shifted planes
(runs KW long; OW*U per channel against an im2col's OH*OW*KH, about a quarter of its copies for
a weight gradient) into the thread's scratch, then runs register tiles of R output channels x T positions (conv_lowering's
dot_tile) over them, one vector accumulator per (channel, position), added into the thread's
own partial sums (vectors, one per output element). Threads split the items, so the summed
channels (a weight gradient's batch) are split too; after a barrier the partial sums of all
threads are added and reduced across lanes into the output, and the epilogue runs there.
The kernel's last partial vector is read with a masked load: no lane reads past a row or the
buffer, and no padding lane is multiplied (0 * inf would be NaN).
"""

from __future__ import annotations

from llvmlite import ir

from ..conv_lowering import DotPlan, dot_plan
from ..ir import Group
from . import scalar
from .conv import _copy_run, _epilogue
from .gemm import LAYOUTS, Layout, View, elem_ptr, i64, min_i64, operand_view, output_buffer
from .module import LoweringContext


def lower_dot(ctx: LoweringContext, group: Group, x: View) -> None:
    anchor = group.anchor
    lay = LAYOUTS[anchor.type.dtype.short]
    plan = dot_plan(anchor, ctx.max_threads)
    k = _flat_kernel(ctx, anchor)
    entries = anchor.type.numel  # one partial vector per output element, per thread
    partials = ctx.workspace(entries * lay.width * lay.itemsize * ctx.max_threads)
    b = ctx.builder
    mine = elem_ptr(b, partials, b.mul(ctx.tid, i64(entries * lay.width)), lay)
    with ctx.loop(0, entries * lay.width) as e:
        b.store(ir.Constant(lay.scalar, 0), elem_ptr(b, mine, e, lay))
    planes = ctx.workspace(plan.chunk * plan.per_channel * lay.itemsize, per_thread=True)
    img_groups = x.shape[0] * anchor.attrs["groups"]
    lo, hi = ctx.thread_range(img_groups * plan.chunks)
    with ctx.loop(lo, hi) as item:
        ig, chunk = b.udiv(item, i64(plan.chunks)), b.urem(item, i64(plan.chunks))
        c0 = b.mul(chunk, i64(plan.chunk))
        c1 = min_i64(b, b.add(c0, i64(plan.chunk)), i64(anchor.inputs[1].type.shape[1]))
        _shifted_planes(ctx, lay, anchor, plan, x, ig, (c0, c1), planes)
        _tiles(ctx, lay, anchor, plan, (k, planes, mine), ig, (c0, c1))
    ctx.barrier()  # every thread's partial sums are complete
    _reduce_partials(ctx, group, lay, partials, output_buffer(ctx, group))


def _flat_kernel(ctx: LoweringContext, anchor) -> View:
    """K as a view whose (row, column) run is contiguous, read in place when it already is."""
    k = operand_view(ctx, anchor.inputs[1])
    _, _, kh, kw = k.shape
    if k.strides[3] != 1 or (kh > 1 and k.strides[2] != kw):
        k = operand_view(ctx, anchor.inputs[1], copy=True)
    return k


def _shifted_planes(ctx, lay: Layout, anchor, plan: DotPlan, x: View, ig, channels, planes) -> None:
    """planes[c - c0, j, phase, u, q] = x[img, g*Cg + c, phase + u*dh - ph, j*sw + q*dw - pw] (zero
    in the padding) for the item's channels [c0, c1)."""
    b, (c0, c1) = ctx.builder, channels
    groups, (_, cg, _, kw) = anchor.attrs["groups"], anchor.inputs[1].type.shape
    ow = anchor.type.shape[3]
    (_, sw), (ph, pw), (dh, dw) = anchor.attrs["stride"], anchor.attrs["padding"], anchor.attrs["dilation"]
    img, g = b.udiv(ig, i64(groups)), b.urem(ig, i64(groups))
    with ctx.loop(c0, c1) as c, ctx.loop(0, ow * dh) as jp, ctx.loop(0, plan.rows) as u:
        j, phase = b.udiv(jp, i64(dh)), b.urem(jp, i64(dh))
        at = b.add(b.mul(b.sub(c, c0), i64(plan.per_channel)), b.add(b.mul(jp, i64(plan.plane)), b.mul(u, i64(kw))))
        h = b.sub(b.add(phase, b.mul(u, i64(dh))), i64(ph))
        off = b.sub(b.mul(j, i64(sw)), i64(pw))
        _copy_run(ctx, lay, x, img, b.add(b.mul(g, i64(cg)), c), h, elem_ptr(b, planes, at, lay), i64(0), i64(kw), dw, off)


def _tiles(ctx, lay: Layout, anchor, plan: DotPlan, buffers, ig, channels) -> None:
    """Every register tile of the item's group: partial[img, o, t] += sum over its channels."""
    b, (rows, cols) = ctx.builder, plan.tile
    og = anchor.type.shape[1] // anchor.attrs["groups"]
    taps = anchor.type.shape[2] * anchor.type.shape[3]
    with ctx.loop(0, -(-og // rows)) as ob, ctx.loop(0, -(-taps // cols)) as tb:
        _tile(ctx, lay, anchor, plan, buffers, ig, channels, (b.mul(ob, i64(rows)), b.mul(tb, i64(cols))))


def _tile(ctx, lay: Layout, anchor, plan: DotPlan, buffers, ig, channels, corner) -> None:
    """R channels x T positions from `corner` (indices past the last clamped to it for the reads;
    only valid ones are written back)."""
    b, (k, planes, mine), (c0, c1), (o0, t0) = ctx.builder, buffers, channels, corner
    groups, (rows, cols) = anchor.attrs["groups"], plan.tile
    _, o, oh, ow = anchor.type.shape
    og, taps = o // groups, oh * ow
    img, g = b.udiv(ig, i64(groups)), b.urem(ig, i64(groups))
    chans = [b.add(b.mul(g, i64(og)), min_i64(b, b.add(o0, i64(r)), i64(og - 1))) for r in range(rows)]
    poss = [min_i64(b, b.add(t0, i64(t)), i64(taps - 1)) for t in range(cols)]
    slots = [[elem_ptr(b, mine, b.mul(b.add(b.mul(b.add(b.mul(img, i64(o)), ch), i64(taps)), s), i64(lay.width)), lay)
              for s in poss] for ch in chans]
    accs = [[ctx.alloca(lay.vec) for _ in poss] for _ in chans]
    for acc_row, slot_row in zip(accs, slots):
        for acc, slot in zip(acc_row, slot_row):
            b.store(b.load(slot, typ=lay.vec, align=lay.itemsize), acc)
    starts = [_window_start(b, anchor, plan, s) for s in poss]
    with ctx.loop(c0, c1) as c:
        ks = [elem_ptr(b, k.ptr, b.add(b.mul(ch, i64(k.strides[0])), b.mul(c, i64(k.strides[1]))), lay) for ch in chans]
        base = b.mul(b.sub(c, c0), i64(plan.per_channel))
        xs = [elem_ptr(b, planes, b.add(base, st), lay) for st in starts]
        _dots(ctx, lay, plan.length, ks, xs, accs)
    for r, acc_row in enumerate(accs):
        for t, acc in enumerate(acc_row):
            valid = b.and_(b.icmp_signed("<", b.add(o0, i64(r)), i64(og)), b.icmp_signed("<", b.add(t0, i64(t)), i64(taps)))
            with b.if_then(valid):
                b.store(b.load(acc, typ=lay.vec), slots[r][t], align=lay.itemsize)


def _window_start(b, anchor, plan: DotPlan, pos):
    """Where output position (i, j)'s window starts in a channel's shifted planes."""
    ow, kw = anchor.type.shape[3], anchor.inputs[1].type.shape[3]
    sh, dh = anchor.attrs["stride"][0], anchor.attrs["dilation"][0]
    i, j = b.udiv(pos, i64(ow)), b.urem(pos, i64(ow))
    shifted = b.mul(i, i64(sh))
    plane = b.add(b.mul(j, i64(dh)), b.urem(shifted, i64(dh)))
    return b.add(b.mul(plane, i64(plan.plane)), b.mul(b.udiv(shifted, i64(dh)), i64(kw)))


def _dots(ctx, lay: Layout, length: int, ks, xs, accs) -> None:
    """accs[r][t] += ks[r][s] * xs[t][s] lane-wise for s < length: whole vectors, then a masked one."""
    b, whole = ctx.builder, length // lay.width
    with ctx.loop(0, whole) as v:
        at = b.mul(v, i64(lay.width))
        _step(ctx, lay, [_vload(b, lay, p, at) for p in ks], [_vload(b, lay, p, at) for p in xs], accs)
    if length % lay.width:
        mask = ir.Constant(ir.VectorType(ir.IntType(1), lay.width), [t < length % lay.width for t in range(lay.width)])
        at = i64(whole * lay.width)
        _step(ctx, lay, [_masked_load(ctx, lay, p, at, mask) for p in ks],
              [_masked_load(ctx, lay, p, at, mask) for p in xs], accs)


def _step(ctx, lay: Layout, kv, xv, accs) -> None:
    b = ctx.builder
    for a, acc_row in zip(kv, accs):
        for xvec, acc in zip(xv, acc_row):
            b.store(_fma(ctx, lay, a, xvec, b.load(acc, typ=lay.vec)), acc)


def _reduce_partials(ctx, group: Group, lay: Layout, partials, out) -> None:
    """out[img, o, t] = the lane sum of every thread's partial vector; then the epilogue per row."""
    anchor, b = group.anchor, ctx.builder
    n_img, o, oh, ow = anchor.type.shape
    taps, entries = oh * ow, anchor.type.numel
    lo, hi = ctx.thread_range(n_img * o)
    with ctx.loop(lo, hi) as row:
        with ctx.loop(0, taps) as t:
            e = b.add(b.mul(row, i64(taps)), t)
            total = ctx.alloca(lay.vec)
            b.store(ir.Constant(lay.vec, None), total)
            with ctx.loop(0, ctx.nthreads) as th:
                at = b.mul(b.add(b.mul(th, i64(entries)), e), i64(lay.width))
                b.store(b.fadd(b.load(total, typ=lay.vec), _vload(b, lay, partials, at)), total)
            b.store(_hsum(b, lay, b.load(total, typ=lay.vec)), elem_ptr(b, out, e, lay))
        if group.outputs[0] is not anchor:
            img, ch = b.udiv(row, i64(o)), b.urem(row, i64(o))
            _epilogue(ctx, group, out, img, i64(0), i64(0))(b, ch, b.add(ch, i64(1)), i64(0), i64(taps))


def _vload(b, lay: Layout, ptr, at):
    return b.load(elem_ptr(b, ptr, at, lay), typ=lay.vec, align=lay.itemsize)


def _masked_load(ctx, lay: Layout, ptr, at, mask):
    """The lanes of ptr[at:at + width] where mask is set, zero elsewhere; the others are not read."""
    name = f"llvm.masked.load.v{lay.width}{lay.name}.p0"
    fn = scalar.function(ctx.module, name, lay.vec, [ptr.type, ir.IntType(32), mask.type, lay.vec])
    return ctx.builder.call(fn, [elem_ptr(ctx.builder, ptr, at, lay), ir.Constant(ir.IntType(32), lay.itemsize),
                                 mask, ir.Constant(lay.vec, None)])


def _fma(ctx, lay: Layout, a, x, acc):
    fma = scalar.function(ctx.module, f"llvm.fma.v{lay.width}{lay.name}", lay.vec, [lay.vec] * 3)
    return ctx.builder.call(fma, [a, x, acc])


def _hsum(b, lay: Layout, v):
    total = b.extract_element(v, i64(0))
    for lane in range(1, lay.width):
        total = b.fadd(total, b.extract_element(v, i64(lane)))
    return total


__all__ = ["lower_dot"]
