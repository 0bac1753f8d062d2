"""conv2d groups: im2col feeding the GEMM of gemm.py, the epilogue (bias, relu...) applied per output tile.

Per image n and group g the convolution is one GEMM:
    out[n, g*Og:(g+1)*Og, :] (Og x OH*OW) = W[g] (Og x Cg*KH*KW) @ cols (Cg*KH*KW x OH*OW)
where cols is the unfolded input (zero outside the padding). The columns are made a chunk of at
most COLS_MAX output positions at a time into each thread's own scratch, so memory stays bounded
and no thread waits for another: a work item is (image, column chunk), and there are enough
chunks per image to give every thread work even for a batch of one.

The depth (Cg*KH*KW) goes through the GEMM in channel chunks summed into the output: one chunk
for a dense W that fits the scratch, one channel at a time for a W that is a permuted view (the
weight gradient's conv2d reads the output gradient as its kernel in place). Where kernel rows
are longer than output rows (again the weight gradient) the columns are built transposed, so
im2col copies long runs. A padded stride-1 conv (the input gradient) copies the input into a
zero-padded plane and computes on its full-width rows (_lower_wide).

Which of these runs (or, with no im2col at all, conv_direct.py's direct convolution,
conv_transposed.py's scatter for padded stride-1 convs such as input gradients, or conv_dot.py's
dot products for weight gradients) is chosen by shape in compiler/conv_lowering.py, whose cost
model the fused dump and `explain` print. The direct and transposed kernels split their images
into work items through TileQueue (own share first, then the others') and keep each thread's
scratch in one block (thread_scratch), both defined here.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

from llvmlite import ir

from .. import conv_lowering
from ..ir import Group
from . import scalar
from .gemm import (
    I64,
    LAYOUTS,
    PTR,
    Matrix,
    View,
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


class TileQueue:
    """Work items 0..count-1 split like ctx.thread_range (thread t owns the t-th contiguous share,
    so it reads the images it wrote in the kernel before, from its own cache), but taken one at a
    time from a counter per share: a thread that has finished its own share takes the items left
    in the others'. On a machine whose cores other processes also use, a descheduled thread then
    holds up the kernel by one item, not by the rest of its static share.

    Make it before the kernel's first barrier: each thread resets its own counter there (the
    workspace is shared with other kernels, so it holds garbage on entry); the barrier publishes them."""

    def __init__(self, ctx: LoweringContext, count: int):
        self._ctx, self._count = ctx, count
        self._counters = ctx.workspace(64 * ctx.max_threads)  # a cache line per share
        lo, _ = ctx.thread_range(count)
        ctx.builder.atomic_rmw("xchg", self._counter(ctx.tid), lo, "monotonic")

    def _counter(self, owner: ir.Value) -> ir.Value:
        return self._ctx.builder.gep(self._counters, [self._ctx.builder.mul(owner, i64(8))], inbounds=True, source_etype=ir.IntType(64))

    @contextlib.contextmanager
    def items(self) -> Iterator[ir.Value]:
        """The body runs once per item taken: this thread's share first, then the others' in turn."""
        ctx = self._ctx
        b = ctx.builder
        with ctx.loop(0, ctx.nthreads) as turn:
            owner = b.urem(b.add(ctx.tid, turn), ctx.nthreads)
            stop = _share_start(b, self._count, b.add(owner, i64(1)), ctx.nthreads)
            head, body, done = (b.append_basic_block(n) for n in ("take", "item", "taken"))
            b.branch(head)
            b.position_at_end(head)
            item = b.atomic_rmw("add", self._counter(owner), i64(1), "monotonic")
            b.cbranch(b.icmp_signed("<", item, stop), body, done)
            b.position_at_end(body)
            yield item
            b.branch(head)
            b.position_at_end(done)


PAGE = 4096  # the address bits (11:0) that L1 sets and the store-to-load alias check look at
THREAD_SKEW = 17 * 64  # thread t's block starts t * THREAD_SKEW past a page (17 lines: odd, and past a 1 KiB row)


def scratch_layout(sizes: tuple[int, ...], max_threads: int) -> tuple[list[int], int, int]:
    """(offset of each buffer in a thread's block, the distance between threads' blocks, the bytes
    to reserve): buffers 64-byte aligned one after the other; blocks a whole number of pages plus
    THREAD_SKEW apart, after a page boundary the kernel finds at run time (PAGE - 64 bytes of slack)."""
    rounded = [-(-n // 64) * 64 for n in sizes]
    starts = [sum(rounded[:k]) for k in range(len(rounded))]
    stride = -(-sum(rounded) // PAGE) * PAGE + THREAD_SKEW
    return starts, stride, PAGE - 64 + stride * max_threads


def thread_scratch(ctx: LoweringContext, *sizes: int) -> list[ir.Value]:
    """This thread's scratch buffers (64-byte aligned), laid out one after the other in one
    per-thread block. Separate per-thread workspaces put thread t's buffers max_threads * size
    apart, at a distance that differs per thread: the ResNet's 3x3 conv on the transposed kernel
    then ran at 2 threads in 355 us instead of 231 (1 thread: 455), and built for 4 threads in 260.
    In one block every thread has the layout a single thread has. The block's place within a page
    is fixed (scratch_layout), not wherever the workspace happened to land in this process, so a
    kernel's timing is reproducible. (The 2-thread times that varied from process to process were
    not these bits: they were another process running on one of the cores, which reproduces with a
    busy loop beside the benchmark, with either placement.)"""
    starts, stride, reserve = scratch_layout(sizes, ctx.max_threads)
    b = ctx.builder
    region = b.ptrtoint(ctx.workspace(reserve), I64)
    page = b.and_(b.add(region, i64(PAGE - 1)), i64(-PAGE))
    block = b.inttoptr(b.add(page, b.mul(ctx.tid, i64(stride))), PTR)
    return [b.gep(block, [i64(at)], inbounds=True, source_etype=ir.IntType(8)) if at else block for at in starts]


def _share_start(b: ir.IRBuilder, count: int, t: ir.Value, n: ir.Value) -> ir.Value:
    """Where thread t's share of range(count) starts (ctx.thread_range's cut, align 1)."""
    return min_i64(b, b.udiv(b.mul(i64(count), t), n), i64(count))


@dataclass(frozen=True)
class _Plan:
    """How one conv2d group reads its operands (decided at compile time)."""

    w: View  # the weight, read as Og x depth matrices per channel chunk
    depth_stride: int  # W's element stride along the GEMM's depth
    per_chunk: int  # channels per GEMM; cg // per_chunk GEMMs are summed
    width: int  # output positions per im2col chunk
    direct: bool  # a 1x1 conv: the GEMM reads x in place
    transposed: bool  # columns built transposed (positions x depth)
    padded: View | None  # a zero-padded plane of the chunk's channels, or None


def _plan(ctx: LoweringContext, anchor, x: View, in_place: bool) -> _Plan:
    lay = LAYOUTS[anchor.type.dtype.short]
    _, cg, kh, kw = anchor.inputs[1].type.shape
    _, _, oh, ow = anchor.type.shape
    width = min(-(-(oh * ow) // lay.nr) * lay.nr, COLS_MAX)
    w = operand_view(ctx, anchor.inputs[1])
    per_chunk, depth_stride = _channel_chunks(w, width * lay.itemsize)
    if depth_stride is None:
        w = operand_view(ctx, anchor.inputs[1], copy=True)
        per_chunk, depth_stride = _channel_chunks(w, width * lay.itemsize)
    direct = in_place and _reads_input_as_columns(anchor, x)
    # long kernel rows (a weight gradient's kernel is the output gradient): columns transposed, so
    # im2col copies runs along the kernel row instead of along the (short) output row
    transposed = kw * anchor.attrs["dilation"][1] > ow and not direct
    padded = None
    (ph, pw), (_, _, h, wd) = anchor.attrs["padding"], x.shape
    plane_shape = (1, per_chunk, h + 2 * ph, wd + 2 * pw)
    if (ph, pw) != (0, 0) and not (direct or transposed) and math.prod(plane_shape) * lay.itemsize <= COLS_BYTES:
        padded = View(ctx.workspace(math.prod(plane_shape) * lay.itemsize, per_thread=True), plane_shape,
                      tuple(strides(plane_shape)))
    return _Plan(w, depth_stride, per_chunk, width, direct, transposed, padded)


def lower_conv2d(ctx: LoweringContext, group: Group) -> None:
    anchor = group.anchor
    dtype = anchor.type.dtype
    if dtype.short not in LAYOUTS:
        raise ctx.unsupported(anchor, f"is a conv2d of {dtype.name}; the LLVM backend has float32/float64 only")
    x = operand_view(ctx, anchor.inputs[0])
    choice = conv_lowering.choose(anchor).name
    if choice == "direct":
        from .conv_direct import lower_direct  # it builds on this module's plane and compaction helpers

        return lower_direct(ctx, group, x)
    if choice == "transposed":
        from .conv_transposed import lower_transposed  # likewise

        return lower_transposed(ctx, group, x)
    if choice == "dot":
        from .conv_dot import lower_dot  # likewise

        return lower_dot(ctx, group, x)
    plan = _plan(ctx, anchor, x, choice == "in_place")
    if choice == "wide" and anchor.inputs[1].type.shape[1] == plan.per_chunk and plan.padded is not None:
        return _lower_wide(ctx, group, x, plan.padded, plan.w, plan.depth_stride)
    _lower_im2col(ctx, group, x, plan)


def _lower_im2col(ctx: LoweringContext, group: Group, x: View, plan: _Plan) -> None:
    """Per image and slice of output positions: im2col columns (or the input in place), then a GEMM
    with the weights; channel chunks past the first add into the output."""
    anchor, root = group.anchor, group.outputs[0]
    n_img = anchor.inputs[0].type.shape[0]
    o, cg, kh, kw = anchor.inputs[1].type.shape
    _, _, oh, ow = anchor.type.shape
    groups = anchor.attrs["groups"]
    og, positions = o // groups, oh * ow
    lay = LAYOUTS[anchor.type.dtype.short]
    w, width, depth, chunks = plan.w, plan.width, plan.per_chunk * kh * kw, cg // plan.per_chunk
    out = output_buffer(ctx, group)
    cols = None if plan.direct else ctx.workspace(depth * width * lay.itemsize, per_thread=True)
    partial = ctx.workspace(og * width * lay.itemsize, per_thread=True) if chunks > 1 else None
    gemm_ws = ctx.workspace(workspace_elements(og, width, depth, lay) * lay.itemsize, per_thread=True)

    b = ctx.builder
    # chunks per image: at least one per thread (batch 1), and none wider than the scratch
    per_image = b.select(b.icmp_signed(">", ctx.nthreads, i64(n_img)),
                         b.sdiv(b.add(ctx.nthreads, i64(n_img - 1)), i64(n_img)), i64(1))
    per_image = max_i64(b, per_image, i64(-(-positions // width)))
    lo, hi = ctx.thread_range(b.mul(per_image, i64(n_img)))
    with ctx.loop(lo, hi) as item:
        img, part = b.sdiv(item, per_image), b.srem(item, per_image)
        s0, s1 = split(b, i64(positions), per_image, part, lay.nr)
        with ctx.loop(0, groups) as g:
            c_tile = elem_ptr(b, out, b.add(b.mul(b.add(b.mul(img, i64(o)), b.mul(g, i64(og))), i64(positions)), s0), lay)
            epilogue = None
            if root is not anchor:
                epilogue = _epilogue(ctx, group, out, img, b.mul(g, i64(og)), s0)
            cols_range = (i64(0), b.sub(s1, s0))
            with ctx.loop(0, chunks) as chunk:
                c0 = b.mul(chunk, i64(plan.per_chunk))
                b_mat = _columns(ctx, anchor, plan, x, img, b.add(b.mul(g, i64(cg)), c0), s0, s1, cols)
                a_ptr = elem_ptr(b, w.ptr, b.add(b.mul(g, i64(og * w.strides[0])), b.mul(c0, i64(w.strides[1]))), lay)
                a_mat = Matrix(a_ptr, i64(w.strides[0]), i64(plan.depth_stride))
                if chunks == 1:
                    emit_gemm(b, lay, a_mat, b_mat, c_tile, i64(positions), depth,
                              (i64(0), i64(og)), cols_range, gemm_ws, (og, width), epilogue)
                else:  # the first chunk stores into the output, later ones add their product to it
                    first = b.icmp_signed("==", chunk, i64(0))
                    emit_gemm(b, lay, a_mat, b_mat, b.select(first, c_tile, partial),
                              b.select(first, i64(positions), i64(width)), depth,
                              (i64(0), i64(og)), cols_range, gemm_ws, (og, width))
                    with b.if_then(b.not_(first)):
                        _accumulate(ctx, lay, partial, width, c_tile, positions, og, b.sub(s1, s0))
            if chunks > 1 and epilogue is not None:
                epilogue(b, i64(0), i64(og), i64(0), b.sub(s1, s0))


def _columns(ctx, anchor, plan: _Plan, x: View, img, c_first, s0, s1, cols) -> Matrix:
    """The GEMM's B for channels [c_first, c_first + per_chunk) of image img, positions [s0, s1)."""
    b, lay = ctx.builder, LAYOUTS[anchor.type.dtype.short]
    _, _, kh, kw = anchor.inputs[1].type.shape
    depth = plan.per_chunk * kh * kw
    if plan.direct:  # x[img, channels] is already the Cg x H*W column matrix
        at = b.add(b.add(b.mul(img, i64(x.strides[0])), b.mul(c_first, i64(x.strides[1]))), b.mul(s0, i64(x.strides[3])))
        return Matrix(elem_ptr(b, x.ptr, at, lay), i64(x.strides[1]), i64(x.strides[3]))
    if plan.transposed:
        _im2col_transposed(ctx, anchor, x, img, c_first, plan.per_chunk, s0, s1, cols)
        return Matrix(cols, i64(1), i64(depth))
    if plan.padded is not None:  # im2col from the padded plane: runs with no padding to cut out
        _pad_plane(ctx, lay, x, img, c_first, anchor.attrs["padding"], plan.padded)
        return _im2col(ctx, anchor, plan.padded, i64(0), i64(0), depth, s0, s1, cols, plan.width, (0, 0))
    return _im2col(ctx, anchor, x, img, c_first, depth, s0, s1, cols, plan.width, anchor.attrs["padding"])


def _lower_wide(ctx: LoweringContext, group: Group, x: View, plane: View, w: View, depth_stride: int) -> None:
    """A padded stride-1 conv computed on "wide" rows: output position s = oh*R + ow with R the
    padded plane's row length, ow running past OW into columns that are dropped. Then the
    column row of kernel tap (c, i, j) is one contiguous stretch of the plane, copied in one run,
    and the GEMM tile is compacted into the output row by row (epilogue applied there). It pays
    where padding makes the runs of plain im2col short and many (the stride-1 input gradient);
    without padding the extra GEMM columns cost more than the shorter im2col saves."""
    anchor = group.anchor
    lay = LAYOUTS[anchor.type.dtype.short]
    n_img = x.shape[0]
    o, cg, kh, kw = anchor.inputs[1].type.shape
    _, _, oh, ow = anchor.type.shape
    groups, (dh, dw) = anchor.attrs["groups"], anchor.attrs["dilation"]
    og, depth, row = o // groups, cg * kh * kw, plane.strides[2]
    span = (oh - 1) * row + ow
    width = min(-(-span // lay.nr) * lay.nr, COLS_MAX)
    out = output_buffer(ctx, group)
    cols = ctx.workspace(depth * width * lay.itemsize, per_thread=True)
    tile = ctx.workspace(og * width * lay.itemsize, per_thread=True)
    gemm_ws = ctx.workspace(workspace_elements(og, width, depth, lay) * lay.itemsize, per_thread=True)

    b = ctx.builder
    per_image = b.select(b.icmp_signed(">", ctx.nthreads, i64(n_img)),
                         b.sdiv(b.add(ctx.nthreads, i64(n_img - 1)), i64(n_img)), i64(1))
    per_image = max_i64(b, per_image, i64(-(-span // width)))
    lo, hi = ctx.thread_range(b.mul(per_image, i64(n_img)))
    with ctx.loop(lo, hi) as item:
        img, part = b.sdiv(item, per_image), b.srem(item, per_image)
        s0, s1 = split(b, i64(span), per_image, part, lay.nr)
        with ctx.loop(0, groups) as g:
            _pad_plane(ctx, lay, x, img, b.mul(g, i64(cg)), anchor.attrs["padding"], plane)
            with ctx.loop(0, depth) as kk:
                c, ki, kj = b.udiv(kk, i64(kh * kw)), b.urem(b.udiv(kk, i64(kw)), i64(kh)), b.urem(kk, i64(kw))
                at = _sum(b, [s0, b.mul(c, i64(plane.strides[1])), b.mul(ki, i64(dh * row)), b.mul(kj, i64(dw))])
                from_ = elem_ptr(b, plane.ptr, at, lay)
                to = elem_ptr(b, cols, b.mul(kk, i64(width)), lay)
                with ctx.loop(0, b.sub(s1, s0)) as t:
                    b.store(b.load(elem_ptr(b, from_, t, lay), typ=lay.scalar), elem_ptr(b, to, t, lay))
            a_ptr = elem_ptr(b, w.ptr, b.mul(g, i64(og * w.strides[0])), lay)
            emit_gemm(b, lay, Matrix(a_ptr, i64(w.strides[0]), i64(depth_stride)), Matrix(cols, i64(width), i64(1)),
                      tile, i64(width), depth, (i64(0), i64(og)), (i64(0), b.sub(s1, s0)), gemm_ws, (og, width))
            _compact(ctx, group, lay, tile, width, out, img, g, (s0, s1), row)


def _compact(ctx, group, lay, tile, width, out, img, g, wide, row):
    """out[img, g*Og + r, oh*OW + ow] = tile[r, oh*R + ow - s0] for the wide positions [s0, s1)
    with ow < OW, then the epilogue on each such stretch of the output row."""
    anchor, root = group.anchor, group.outputs[0]
    o, og = anchor.type.shape[1], anchor.type.shape[1] // anchor.attrs["groups"]
    _, _, _, ow = anchor.type.shape
    positions = anchor.type.shape[2] * ow
    b, (s0, s1) = ctx.builder, wide
    plane = elem_ptr(b, out, b.mul(b.add(b.mul(img, i64(o)), b.mul(g, i64(og))), i64(positions)), lay)
    epilogue = _epilogue(ctx, group, out, img, b.mul(g, i64(og)), i64(0)) if root is not anchor else None
    with ctx.loop(b.udiv(s0, i64(row)), b.udiv(b.add(s1, i64(row - 1)), i64(row))) as r_oh:
        start = b.mul(r_oh, i64(row))
        t0, t1 = max_i64(b, s0, start), min_i64(b, s1, b.add(start, i64(ow)))
        shift = b.sub(b.mul(r_oh, i64(ow)), start)  # wide position + shift = output position
        with ctx.loop(0, og) as r, ctx.loop(t0, t1) as t:
            v = b.load(elem_ptr(b, tile, b.add(b.mul(r, i64(width)), b.sub(t, s0)), lay), typ=lay.scalar)
            b.store(v, elem_ptr(b, plane, b.add(b.mul(r, i64(positions)), b.add(t, shift)), lay))
        if epilogue is not None:
            epilogue(b, i64(0), i64(og), b.add(t0, shift), b.add(t1, shift))


COLS_BYTES = 1 << 20  # im2col scratch per thread for one channel chunk


def _channel_chunks(w, row_bytes: int) -> tuple[int, int | None]:
    """(channels per GEMM, W's element stride along the GEMM's depth), the stride None when W's
    (kernel row, kernel column) do not merge into one stride (then W must be copied).

    When every (channel, row, column) merges, as in a dense W, the channels go in as few chunks
    as fit COLS_BYTES of columns; otherwise one channel at a time, so a permuted W (the output
    gradient of a weight gradient) is read in place and its im2col scratch stays in cache."""
    _, cg, kh, kw = w.shape
    kernel = View(w.ptr, (kh, kw), w.strides[2:]).merged(2)
    if kernel is None:
        return 1, None
    whole = View(w.ptr, (cg, kh, kw), w.strides[1:]).merged(3)
    if whole is None:
        return 1, kernel[0]
    fit = max(1, COLS_BYTES // (kh * kw * row_bytes))
    return max(d for d in range(1, min(cg, fit) + 1) if cg % d == 0), whole[0]


def _accumulate(ctx, lay, partial, width, c_tile, positions, rows, cols):
    b = ctx.builder
    with ctx.loop(0, rows) as r, ctx.loop(0, cols) as c:
        src = elem_ptr(b, partial, b.add(b.mul(r, i64(width)), c), lay)
        dst = elem_ptr(b, c_tile, b.add(b.mul(r, i64(positions)), c), lay)
        b.store(b.fadd(b.load(dst, typ=lay.scalar), b.load(src, typ=lay.scalar)), dst)


def _reads_input_as_columns(anchor, x) -> bool:
    """A 1x1 kernel at stride 1 without padding: the columns are the input itself (when its rows
    and columns merge into one stride), so the GEMM reads x in place."""
    a = anchor.attrs
    _, _, kh, kw = anchor.inputs[1].type.shape
    plain = (kh, kw) == (1, 1) and tuple(a["stride"]) == (1, 1) and tuple(a["padding"]) == (0, 0)
    return plain and x.strides[2] == x.shape[3] * x.strides[3]


def _im2col(ctx, anchor, x, img, c_first, depth, s0, s1, cols, width, padding) -> Matrix:
    """cols[kk, s - s0] = x[img, c_first + c, h, w] for kk = (c, i, j) < depth and output position
    s in [s0, s1), zero in the padding; returns cols as the GEMM's B. Each output row is one run
    along x's row."""
    b = ctx.builder
    _, _, kh, kw = anchor.inputs[1].type.shape
    ow = anchor.type.shape[3]
    (sh, sw), (ph, pw), (dh, dw) = anchor.attrs["stride"], padding, anchor.attrs["dilation"]
    lay = LAYOUTS[anchor.type.dtype.short]
    with ctx.loop(0, depth) as kk:
        c = b.add(c_first, b.udiv(kk, i64(kh * kw)))
        ki, kj = b.urem(b.udiv(kk, i64(kw)), i64(kh)), b.urem(kk, i64(kw))
        row = elem_ptr(b, cols, b.sub(b.mul(kk, i64(width)), s0), lay)  # row[s] for s in [s0, s1)
        h_off, w_off = b.sub(b.mul(ki, i64(dh)), i64(ph)), b.sub(b.mul(kj, i64(dw)), i64(pw))
        with ctx.loop(b.udiv(s0, i64(ow)), b.udiv(b.add(s1, i64(ow - 1)), i64(ow))) as oh:
            base = b.mul(oh, i64(ow))
            lo, hi = max_i64(b, b.sub(s0, base), i64(0)), min_i64(b, b.sub(s1, base), i64(ow))
            h, dst = b.add(b.mul(oh, i64(sh)), h_off), elem_ptr(b, row, base, lay)
            if (ph, pw) != (0, 0):
                _copy_run(ctx, lay, x, img, c, h, dst, lo, hi, sw, w_off)
            else:  # every run lies inside x
                _copy_inside(ctx, lay, x, img, c, h, dst, lo, hi, sw, w_off, ow)
    return Matrix(cols, i64(width), i64(1))


def _im2col_transposed(ctx, anchor, x, img, c_first, channels, s0, s1, cols):
    """cols[s - s0, kk] = x[img, c_first + c, h, w] for kk = (c, i, j), c < channels: per output
    position, one run along x's row for each kernel row."""
    b = ctx.builder
    _, _, kh, kw = anchor.inputs[1].type.shape
    ow = anchor.type.shape[3]
    (sh, sw), (ph, pw), (dh, dw) = anchor.attrs["stride"], anchor.attrs["padding"], anchor.attrs["dilation"]
    lay = LAYOUTS[anchor.type.dtype.short]
    with ctx.loop(s0, s1) as s:
        oh, ow_ = b.udiv(s, i64(ow)), b.urem(s, i64(ow))
        h0, w_off = b.sub(b.mul(oh, i64(sh)), i64(ph)), b.sub(b.mul(ow_, i64(sw)), i64(pw))
        row = elem_ptr(b, cols, b.mul(b.sub(s, s0), i64(channels * kh * kw)), lay)
        with ctx.loop(0, channels * kh) as ci:
            c, ki = b.add(c_first, b.udiv(ci, i64(kh))), b.urem(ci, i64(kh))
            h = b.add(h0, b.mul(ki, i64(dh)))
            _copy_run(ctx, lay, x, img, c, h, elem_ptr(b, row, b.mul(ci, i64(kw)), lay), i64(0), i64(kw), dw, w_off)


def _pad_plane(ctx, lay, x, img, c_first, padding, plane):
    """plane[0, c] = x[img, c_first + c] with `padding` zeros around it, for every c of the plane."""
    b = ctx.builder
    _, channels, hp, wp = plane.shape
    (ph, pw), (_, cs, rs, _) = padding, plane.strides
    with ctx.loop(0, channels) as c, ctx.loop(0, hp) as row:
        dst = elem_ptr(b, plane.ptr, b.add(b.mul(c, i64(cs)), b.mul(row, i64(rs))), lay)
        _copy_run(ctx, lay, x, img, b.add(c_first, c), b.sub(row, i64(ph)), dst, i64(0), i64(wp), 1, i64(-pw))


def _copy_inside(ctx, lay, x, img, c, h, dst, lo, hi, step, off, length):
    """dst[t] = x[img, c, h, t*step + off] for t in [lo, hi), all inside x. A whole run
    (lo, hi = 0, length) is a copy of constant length, which LLVM unrolls and vectorizes."""
    b = ctx.builder
    at = [(img, 0), (c, 1), (h, 2), (off, 3)]
    src = elem_ptr(b, x.ptr, _sum(b, [b.mul(v, i64(x.strides[d])) for v, d in at]), lay)
    step = step * x.strides[3]
    whole = b.and_(b.icmp_signed("==", lo, i64(0)), b.icmp_signed("==", hi, i64(length)))
    with b.if_else(whole) as (then, otherwise):
        for block, (start, stop) in ((then, (i64(0), i64(length))), (otherwise, (lo, hi))):
            with block, ctx.loop(start, stop) as t:
                v = b.load(elem_ptr(b, src, b.mul(t, i64(step)), lay), typ=lay.scalar)
                b.store(v, elem_ptr(b, dst, t, lay))


def _sum(b, values):
    total = values[0]
    for v in values[1:]:
        total = b.add(total, v)
    return total


def _copy_run(ctx, lay, x, img, c, h, dst, lo, hi, step, off):
    """dst[t] = x[img, c, h, t*step + off] for t in [lo, hi), zero where (h, t*step + off) is
    padding. The run splits into padding, interior and padding, so the interior copy has no
    bounds checks and vectorizes (a plain copy at stride 1)."""
    b = ctx.builder
    _, _, height, wide = x.shape
    zero = ir.Constant(lay.scalar, 0)
    # the t whose input column t*step + off lies in [0, W)
    first_in = max_i64(b, i64(0), b.sdiv(b.add(b.neg(off), i64(step - 1)), i64(step)))
    last = b.sub(i64(wide - 1), off)
    stop_in = b.select(b.icmp_signed("<", last, i64(0)), i64(0), b.add(b.sdiv(last, i64(step)), i64(1)))
    h_ok = b.icmp_unsigned("<", h, i64(height))
    in_lo = min_i64(b, max_i64(b, first_in, lo), hi)
    in_hi = b.select(h_ok, max_i64(b, min_i64(b, stop_in, hi), in_lo), in_lo)
    plane = b.add(b.mul(img, i64(x.strides[0])), b.mul(c, i64(x.strides[1])))
    src = elem_ptr(b, x.ptr, b.add(plane, b.mul(b.select(h_ok, h, i64(0)), i64(x.strides[2]))), lay)
    for start, stop in ((lo, in_lo), (in_hi, hi)):
        with ctx.loop(start, stop) as t:
            b.store(zero, elem_ptr(b, dst, t, lay))
    with ctx.loop(in_lo, in_hi) as t:
        col = b.add(b.mul(t, i64(step)), off)
        b.store(b.load(elem_ptr(b, src, b.mul(col, i64(x.strides[3])), lay), typ=lay.scalar), elem_ptr(b, dst, t, lay))


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
