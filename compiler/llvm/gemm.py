"""GEMM kernels C = A @ B for static shapes, BLIS style: packed panels, cache blocks, a 6x16 micro-kernel.

The loop nest (per thread, over its share of C):

    for jc in cols, step NC:                 B block (KC x NC) packed once, reused by every row block
      for pc in 0..K, step KC:
        pack B[pc:pc+KC, jc:jc+NC] into NR-wide panels
        for ic in rows, step MC:             A block (MC x KC) packed into MR-tall panels: stays in L2
          pack A[ic:ic+MC, pc:pc+KC]
          for jr, ir over the block:         one MR x NR tile of C: 12 vector accumulators in registers
            micro-kernel(kc, A panel, B panel) -> C tile (stored, or added to it after the first K block)
          after the last K block: the group's epilogue over the MC x NC block, while it is in L2

Packing pads edge panels with zeros, so the micro-kernel always runs the full tile; an edge tile
(odd M or N) goes through a scratch tile and only its valid part is copied to C.
Compile time: packing, the tile loops and the micro-kernel are functions shared by every GEMM of
a module and never inlined into a call site, so LLVM cannot specialize (unroll, unswitch) them
per constant shape; a call site is three loops. The epilogue runs per block rather than per tile
for the same reason: inside the tile loops, a vectorized relu made the module optimize 6x slower.
Operands are read through (row, column) element strides, so a transposed operand (x @ W^T) or
a broadcast batch (stride 0) is read in place: packing is the only copy. With at most
GEMV_MAX_M rows of A (batch-1 inference) nothing is packed: B is streamed once per row. With a
small C (SMALL_LIMITS: per-head attention, small weight gradients, recurrent steps) A is not packed
either: the micro-kernel reads it in place, and B too when its rows hold whole contiguous panels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from llvmlite import ir

from ..ir import Group, Node
from . import index, scalar
from .index import emit_epilogue, final_value
from .module import LOWERINGS, PARALLEL_WORK, SERIAL, LoweringContext, work
from .opaque import lower_matmul_naive

I1, I32, I64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
PTR = ir.PointerType()

# epilogue(builder, r0, r1, c0, c1): apply the elementwise epilogue to C[r0:r1, c0:c1] (i64 values)
Epilogue = Callable[[ir.IRBuilder, ir.Value, ir.Value, ir.Value, ir.Value], None]


@dataclass(frozen=True)
class Layout:
    """Register and cache blocking for one element type on AVX2 (16 vector registers)."""

    name: str
    scalar: ir.Type
    width: int  # lanes per vector register
    itemsize: int
    mr: int = 6  # 6 x 2 accumulators + 2 B vectors + 1 broadcast A value = 15 registers
    kc: int = 256  # a KC x NR panel of B fills a quarter of the 32 KiB L1
    mc: int = 144  # an MC x KC block of A fills about a third of the 512 KiB L2
    nc: int = 4096

    @property
    def nr(self) -> int:
        return 2 * self.width

    @property
    def vec(self) -> ir.VectorType:
        return ir.VectorType(self.scalar, self.width)


LAYOUTS = {"f32": Layout("f32", ir.FloatType(), 8, 4), "f64": Layout("f64", ir.DoubleType(), 4, 8, kc=128)}


@dataclass(frozen=True)
class Matrix:
    """A strided 2-D view: element (i, j) is at ptr[i * rs + j * cs] (element strides, i64 values)."""

    ptr: ir.Value
    rs: ir.Value
    cs: ir.Value


@dataclass(frozen=True)
class GemmSpec:
    """out[b] = A[b] @ B[b] for b < batch; A is m x k, B is k x n, out is dense row-major m x n.

    Strides are (batch, row, column) in elements: a transposed operand swaps row and column
    strides, a broadcast batch has batch stride 0.
    """

    m: int
    n: int
    k: int
    dtype: str = "f32"  # a DType.short with a layout: "f32" or "f64"
    batch: int = 1
    a_strides: tuple[int, int, int] | None = None  # default: dense row-major m x k
    b_strides: tuple[int, int, int] | None = None  # default: dense row-major k x n

    @staticmethod
    def dense(m: int, n: int, k: int, *, trans_a: bool = False, trans_b: bool = False, batch: int = 1,
              dtype: str = "f32") -> GemmSpec:
        """Contiguous operands; trans_a: A is stored k x m (read as its transpose), trans_b likewise n x k."""
        a = (m * k, 1, m) if trans_a else (m * k, k, 1)
        b = (k * n, 1, k) if trans_b else (k * n, n, 1)
        return GemmSpec(m, n, k, dtype, batch, a, b)

    @property
    def layout(self) -> Layout:
        if self.dtype not in LAYOUTS:
            raise NotImplementedError(f"GEMM: no kernel for dtype {self.dtype}; expected one of {sorted(LAYOUTS)}")
        return LAYOUTS[self.dtype]

    @property
    def strides(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        a = self.a_strides or (self.m * self.k, self.k, 1)
        b = self.b_strides or (self.k * self.n, self.n, 1)
        return a, b

    @property
    def split_rows(self) -> bool:
        """Threads split the larger of M and N: each thread packs all of the other operand. A small
        GEMM that reads B in place splits rows whenever it has a few strips of them: each thread
        then writes whole rows, which the elementwise kernel after it (split by rows too) reads
        from its own core's cache, not the other's (the LSTM's h @ W_hh^T, 32x256, then its gates)."""
        return self.m >= self.n or (self.m >= ROW_SPLIT_MIN_M and is_small(self) and direct_b(self))


def workspace_elements(m: int, n: int, k: int, layout: Layout) -> int:
    """Scratch elements one thread's `emit_gemm` needs for an m x n x k problem (or a part of one)."""
    return sum(_workspace_parts(m, n, k, layout))


def workspace_bytes(spec: GemmSpec) -> int:
    elements = workspace_elements(spec.m, spec.n, spec.k, spec.layout)
    if is_small(spec):
        elements = max(elements, _small_workspace_elements(spec))
    return elements * spec.layout.itemsize


def _workspace_parts(m: int, n: int, k: int, lay: Layout) -> tuple[int, int, int]:
    """(packed B, packed A, scratch tile) sizes, each rounded up to 64 bytes so the B panels stay aligned."""
    kc = max(1, min(lay.kc, k))
    nc = min(lay.nc, round_up(max(n, 1), lay.nr))
    mc = min(lay.mc, round_up(max(m, 1), lay.mr))
    per_line = 64 // lay.itemsize
    return tuple(round_up(x, per_line) for x in (kc * nc, mc * kc, lay.mr * lay.nr))


def round_up(x: int, to: int) -> int:
    return -(-x // to) * to


# ---------------------------------------------------------------- small IR helpers


def i64(x: int | ir.Value) -> ir.Value:
    return ir.Constant(I64, x) if isinstance(x, int) else x


def min_i64(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.select(b.icmp_signed("<", x, y), x, y)


def max_i64(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.select(b.icmp_signed(">", x, y), x, y)


def elem_ptr(b: ir.IRBuilder, ptr: ir.Value, index: ir.Value, lay: Layout) -> ir.Value:
    """&ptr[index] for elements of lay's type."""
    return b.gep(ptr, [index], inbounds=True, source_etype=lay.scalar)


@contextmanager
def loop(b: ir.IRBuilder, start: int | ir.Value, stop: int | ir.Value, step: int = 1) -> Iterator[ir.Value]:
    """for (i = start; i < stop; i += step): yields i; the builder continues after the loop."""
    start, stop = i64(start), i64(stop)
    pre = b.block
    head, body, done = (b.append_basic_block(s) for s in ("loop.head", "loop.body", "loop.done"))
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64, "i")
    i.add_incoming(start, pre)
    b.cbranch(b.icmp_signed("<", i, stop), body, done)
    b.position_at_end(body)
    yield i
    nxt = b.add(i, i64(step))
    i.add_incoming(nxt, b.block)
    b.branch(head)
    b.position_at_end(done)


def split(b: ir.IRBuilder, total: ir.Value, parts: ir.Value, part: ir.Value, align: int) -> tuple[ir.Value, ir.Value]:
    """[start, stop) of `part` when range(total) is cut into `parts` pieces, in multiples of `align`."""
    units = b.sdiv(b.add(total, i64(align - 1)), i64(align))
    per = b.mul(b.sdiv(b.add(units, b.sub(parts, i64(1))), parts), i64(align))
    start = min_i64(b, b.mul(part, per), total)
    return start, min_i64(b, b.add(start, per), total)


# ---------------------------------------------------------------- micro-kernel


def micro_kernel(module: ir.Module, lay: Layout) -> ir.Function:
    """`void (i64 kc, ptr a, ptr b, ptr c, i64 ldc, i1 accumulate)`: C[:MR, :NR] (+)= Apanel @ Bpanel.

    Apanel holds kc columns of MR values, Bpanel kc rows of NR values (64-byte aligned); C is any
    row-major tile with leading dimension ldc (only element-aligned).
    """
    return tile_kernel(module, lay, f"gt_gemm_ukernel_{lay.name}_{lay.mr}x{lay.nr}", [],
                       lambda b, bp, p, extra: elem_ptr(b, bp, b.mul(p, i64(lay.nr)), lay), 32)


# b_row(builder, b argument, depth index p, extra arguments) -> pointer to row p of B's NR lanes
BRow = Callable[[ir.IRBuilder, ir.Value, ir.Value, list], ir.Value]
# c_row(builder, c argument, row i (a Python int), ldc, extra arguments) -> pointer to row i of C
CRow = Callable[[ir.IRBuilder, ir.Value, int, ir.Value, list], ir.Value]


# a_elem(builder, a argument, row i (a Python int), depth index p, extra arguments) -> pointer to A[i, p]
AElem = Callable[[ir.IRBuilder, ir.Value, int, ir.Value, list], ir.Value]


def tile_kernel(module: ir.Module, lay: Layout, name: str, extra: list[ir.Type], b_row: BRow,
                b_align: int, c_row: CRow | None = None, a_elem: AElem | None = None) -> ir.Function:
    """`void (i64 kc, ptr a, ptr b, ptr c, i64 ldc, i1 accumulate, *extra)`: C[:MR, :NR] (+)= A @ B
    with A a packed panel (kc columns of MR values), or where `a_elem` says (a small GEMM's A read
    in place), and row p of B found by `b_row` (aligned to b_align bytes): the GEMM's packed panel,
    or a direct convolution's stretch of the input.
    Row i of C is at c + i*ldc, or where `c_row` says (a transposed convolution's scatter)."""
    if name in module.globals:
        return module.globals[name]
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [I64, PTR, PTR, PTR, I64, I1, *extra]), name)
    fn.linkage = "internal"
    kc, ap, bp, cp, ldc, accumulate = fn.args[:6]
    for arg in (ap, bp, cp):
        arg.add_attribute("noalias")
    # declare_intrinsic cannot type vector intrinsics: declared by name
    fma = scalar.function(module, f"llvm.fma.v{lay.width}{lay.name}", lay.vec, [lay.vec] * 3)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    head, body, done = (fn.append_basic_block(s) for s in ("head", "body", "done"))
    b.branch(head)

    b.position_at_end(head)
    p = b.phi(I64, "p")
    p.add_incoming(i64(0), fn.entry_basic_block)
    acc = [[b.phi(lay.vec, f"c{i}{h}") for h in range(2)] for i in range(lay.mr)]
    for row in acc:
        for a in row:
            a.add_incoming(ir.Constant(lay.vec, None), fn.entry_basic_block)
    b.cbranch(b.icmp_signed("<", p, kc), body, done)

    b.position_at_end(body)
    row = b_row(b, bp, p, list(fn.args[6:]))
    bvec = [b.load(elem_ptr(b, row, i64(h * lay.width), lay), typ=lay.vec, align=b_align) for h in range(2)]
    zeros = ir.Constant(ir.VectorType(I32, lay.width), None)
    for i in range(lay.mr):
        a_ptr = a_elem(b, ap, i, p, list(fn.args[6:])) if a_elem else elem_ptr(b, ap, b.add(b.mul(p, i64(lay.mr)), i64(i)), lay)
        a = b.load(a_ptr, typ=lay.scalar, align=lay.itemsize)
        abc = b.shuffle_vector(b.insert_element(ir.Constant(lay.vec, ir.Undefined), a, ir.Constant(I32, 0)),
                               ir.Constant(lay.vec, ir.Undefined), zeros)
        for h in range(2):
            acc[i][h].add_incoming(b.call(fma, [abc, bvec[h], acc[i][h]]), body)
    p.add_incoming(b.add(p, i64(1)), body)
    b.branch(head)

    b.position_at_end(done)
    add_block, store_block = fn.append_basic_block("add"), fn.append_basic_block("store")
    b.cbranch(accumulate, add_block, store_block)
    for block, add in ((add_block, True), (store_block, False)):
        b.position_at_end(block)
        for i in range(lay.mr):
            c_i = c_row(b, cp, i, ldc, list(fn.args[6:])) if c_row else elem_ptr(b, cp, b.mul(i64(i), ldc), lay)
            for h in range(2):
                ptr = elem_ptr(b, c_i, i64(h * lay.width), lay)
                v = b.fadd(b.load(ptr, typ=lay.vec, align=lay.itemsize), acc[i][h]) if add else acc[i][h]
                b.store(v, ptr, align=lay.itemsize)
        b.ret_void()
    return fn


# ---------------------------------------------------------------- packing


def _pack(b: ir.IRBuilder, lay: Layout, width: int, src: ir.Value, lane_stride: ir.Value, depth_stride: ir.Value,
          lanes: ir.Value, depth: ir.Value, dst: ir.Value) -> None:
    """Copy a lanes x depth block into panels of `width` lanes: dst[panel][p][l] = src[l * lane_stride + p * depth_stride].

    The last panel is padded with zeros (its loads are clamped to a valid lane, so nothing is
    read out of bounds).
    """
    with loop(b, 0, lanes, width) as l0:
        left = b.sub(lanes, l0)
        panel_src = elem_ptr(b, src, b.mul(l0, lane_stride), lay)
        panel_dst = elem_ptr(b, dst, b.mul(l0, depth), lay)
        with b.if_else(b.icmp_signed(">=", left, i64(width))) as (full, edge):
            with full, b.if_else(b.icmp_signed("==", lane_stride, i64(1))) as (lanes_contiguous, strided):
                with lanes_contiguous:  # a row of the panel is one vector copy
                    _copy_panel_rows(b, lay, width, panel_src, depth_stride, depth, panel_dst)
                with strided:
                    _pack_strided_panel(b, lay, width, panel_src, lane_stride, depth_stride, depth, panel_dst)
            with edge:
                _pack_panel(b, lay, width, panel_src, lane_stride, depth_stride, depth, panel_dst, left)


def _copy_panel_rows(b, lay, width, src, depth_stride, depth, dst):
    vec = ir.VectorType(lay.scalar, width)
    with loop(b, 0, depth) as p:
        v = b.load(elem_ptr(b, src, b.mul(p, depth_stride), lay), typ=vec, align=lay.itemsize)
        b.store(v, elem_ptr(b, dst, b.mul(p, i64(width)), lay), align=lay.itemsize)


def _pack_strided_panel(b, lay, width, src, lane_stride, depth_stride, depth, dst):
    """A full panel of strided lanes; when each lane runs contiguously along the depth (B of
    x @ W^T, W's rows) and the panel is whole vectors wide, square blocks are transposed in
    registers: a scalar load and store per element made packing W^T a third of a recurrent step."""
    if width % lay.width:
        return _pack_panel(b, lay, width, src, lane_stride, depth_stride, depth, dst, None)
    with b.if_else(b.icmp_signed("==", depth_stride, i64(1))) as (depth_contiguous, other):
        with depth_contiguous:
            _transpose_panel(b, lay, width, src, lane_stride, depth, dst)
        with other:
            _pack_panel(b, lay, width, src, lane_stride, depth_stride, depth, dst, None)


def _transpose_panel(b, lay, width, src, lane_stride, depth, dst):
    """dst[p][l] = src[l * lane_stride + p]: blocks of lay.width depth steps as vector loads along
    each lane, transposed; the last depth % lay.width steps one element at a time."""
    v = lay.width
    whole = b.mul(b.sdiv(depth, i64(v)), i64(v))
    with loop(b, 0, whole, v) as p0:
        lanes = [b.load(elem_ptr(b, src, b.add(b.mul(i64(lane), lane_stride), p0), lay), typ=lay.vec,
                        align=lay.itemsize) for lane in range(width)]
        for first in range(0, width, v):
            for p, row in enumerate(_transpose(b, lanes[first:first + v])):
                out = b.add(b.mul(b.add(p0, i64(p)), i64(width)), i64(first))
                b.store(row, elem_ptr(b, dst, out, lay), align=lay.itemsize)
    rest_src, rest_dst = elem_ptr(b, src, whole, lay), elem_ptr(b, dst, b.mul(whole, i64(width)), lay)
    _pack_panel(b, lay, width, rest_src, lane_stride, i64(1), b.sub(depth, whole), rest_dst, None)


def _transpose(b: ir.IRBuilder, rows: list[ir.Value]) -> list[ir.Value]:
    """The transpose of an n x n block held as n vectors (n a power of two): log2(n) rounds of
    interleaving row i with row i + n/2, lower halves then upper halves (unpcklps/unpckhps)."""
    n = len(rows)
    low = [j for i in range(n // 2) for j in (i, i + n)]
    masks = [ir.Constant(ir.VectorType(I32, n), [ir.Constant(I32, j + half) for j in low]) for half in (0, n // 2)]
    for _ in range(n.bit_length() - 1):
        rows = [b.shuffle_vector(rows[i], rows[i + n // 2], mask) for i in range(n // 2) for mask in masks]
    return rows


def _pack_panel(b, lay, width, src, lane_stride, depth_stride, depth, dst, valid):
    zero = ir.Constant(lay.scalar, 0)
    with loop(b, 0, depth) as p:
        row = elem_ptr(b, src, b.mul(p, depth_stride), lay)
        out = elem_ptr(b, dst, b.mul(p, i64(width)), lay)
        for lane in range(width):
            if valid is None:
                v = b.load(elem_ptr(b, row, b.mul(i64(lane), lane_stride), lay), typ=lay.scalar, align=lay.itemsize)
            else:
                inside = b.icmp_signed("<", i64(lane), valid)
                safe = b.select(inside, i64(lane), i64(0))
                v = b.select(inside, b.load(elem_ptr(b, row, b.mul(safe, lane_stride), lay), typ=lay.scalar), zero)
            b.store(v, elem_ptr(b, out, i64(lane), lay), align=lay.itemsize)


# ---------------------------------------------------------------- the driver


def emit_gemm(b: ir.IRBuilder, lay: Layout, a: Matrix, bm: Matrix, c: ir.Value, ldc: ir.Value, k: int,
              rows: tuple[ir.Value, ir.Value], cols: tuple[ir.Value, ir.Value], workspace: ir.Value,
              workspace_dims: tuple[int, int], epilogue: Epilogue | None = None) -> None:
    """C[rows, cols] = A[rows, :k] @ B[:k, cols], C row-major with leading dimension ldc.

    `workspace` holds workspace_elements(*workspace_dims, k, lay) elements (64-byte aligned) that
    this thread owns; workspace_dims = (m, n) bound the row and column ranges. `epilogue` runs on
    each MC x NC block of C once it is final (still in L2), with absolute C coordinates.
    Only the three outer loops are emitted here; packing and the tile loops are shared functions.
    """
    module = b.module
    pack_a, pack_b, macro = pack_function(module, lay, lay.mr), pack_function(module, lay, lay.nr), _macro_kernel(module, lay)
    nb, na, _ = _workspace_parts(*workspace_dims, k, lay)
    packed_b, packed_a = workspace, elem_ptr(b, workspace, i64(nb), lay)
    tile = elem_ptr(b, workspace, i64(nb + na), lay)
    (m0, m1), (n0, n1) = rows, cols
    with loop(b, n0, n1, lay.nc) as jc:
        nc = min_i64(b, i64(lay.nc), b.sub(n1, jc))
        with loop(b, 0, max(k, 1), lay.kc) as pc:  # K = 0 still runs one block: it stores zeros
            kc = min_i64(b, i64(lay.kc), b.sub(i64(k), pc))
            accumulate = b.icmp_signed(">", pc, i64(0))
            last = b.icmp_signed(">=", b.add(pc, i64(lay.kc)), i64(k))
            b_src = elem_ptr(b, bm.ptr, b.add(b.mul(pc, bm.rs), b.mul(jc, bm.cs)), lay)
            b.call(pack_b, [b_src, bm.cs, bm.rs, nc, kc, packed_b])
            with loop(b, m0, m1, lay.mc) as ic:
                mc = min_i64(b, i64(lay.mc), b.sub(m1, ic))
                a_src = elem_ptr(b, a.ptr, b.add(b.mul(ic, a.rs), b.mul(pc, a.cs)), lay)
                b.call(pack_a, [a_src, a.rs, a.cs, mc, kc, packed_a])
                c_block = elem_ptr(b, c, b.add(b.mul(ic, ldc), jc), lay)
                b.call(macro, [mc, nc, kc, packed_a, packed_b, c_block, ldc, accumulate, tile])
                if epilogue is not None:  # this block of C is final and still in L2
                    with b.if_then(last):
                        epilogue(b, ic, b.add(ic, mc), jc, b.add(jc, nc))


def _shared_function(module: ir.Module, name: str, args: list[ir.Type], emit: Callable[..., None]) -> ir.Function:
    """A helper function emitted once per module and never inlined: call sites stay small, so a
    module of several GEMMs optimizes in about the time of one, whatever their shapes."""
    if name in module.globals:
        return module.globals[name]
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), args), name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    for arg in fn.args:
        if arg.type == PTR:
            arg.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    emit(b, *fn.args)
    b.ret_void()
    return fn


def pack_function(module: ir.Module, lay: Layout, width: int) -> ir.Function:
    """`void (ptr src, i64 lane_stride, i64 depth_stride, i64 lanes, i64 depth, ptr dst)`: see _pack."""
    return _shared_function(module, f"gt_gemm_pack_{lay.name}_{width}", [PTR, I64, I64, I64, I64, PTR],
                            lambda b, *args: _pack(b, lay, width, *args))


def _macro_kernel(module: ir.Module, lay: Layout) -> ir.Function:
    """`void (i64 mc, i64 nc, i64 kc, ptr packed_a, ptr packed_b, ptr c, i64 ldc, i1 accumulate, ptr tile)`:
    C[:mc, :nc] (+)= packed A @ packed B, tile by tile; `tile` is MR x NR scratch for the edges."""

    def emit(b, mc, nc, kc, packed_a, packed_b, c, ldc, accumulate, tile):
        uk = micro_kernel(module, lay)
        with loop(b, 0, nc, lay.nr) as jr:  # one B panel stays in L1 while every A panel passes
            ncols, b_panel = min_i64(b, i64(lay.nr), b.sub(nc, jr)), elem_ptr(b, packed_b, b.mul(jr, kc), lay)
            with loop(b, 0, mc, lay.mr) as ir_:
                nrows, a_panel = min_i64(b, i64(lay.mr), b.sub(mc, ir_)), elem_ptr(b, packed_a, b.mul(ir_, kc), lay)
                c_tile = elem_ptr(b, c, b.add(b.mul(ir_, ldc), jr), lay)
                full = b.and_(b.icmp_signed("==", nrows, i64(lay.mr)), b.icmp_signed("==", ncols, i64(lay.nr)))
                with b.if_else(full) as (then, otherwise):
                    with then:
                        b.call(uk, [kc, a_panel, b_panel, c_tile, ldc, accumulate])
                    with otherwise:
                        b.call(uk, [kc, a_panel, b_panel, tile, i64(lay.nr), ir.Constant(I1, 0)])
                        _copy_tile(b, lay, tile, c_tile, ldc, nrows, ncols, accumulate)

    return _shared_function(module, f"gt_gemm_macro_{lay.name}", [I64, I64, I64, PTR, PTR, PTR, I64, I1, PTR], emit)


def _copy_tile(b, lay, tile, c, ldc, nrows, ncols, accumulate):
    with loop(b, 0, nrows) as i, loop(b, 0, ncols) as j:
        v = b.load(elem_ptr(b, tile, b.add(b.mul(i, i64(lay.nr)), j), lay), typ=lay.scalar)
        dst = elem_ptr(b, c, b.add(b.mul(i, ldc), j), lay)
        old = b.load(dst, typ=lay.scalar)
        b.store(b.select(accumulate, b.fadd(old, v), v), dst)


def emit_matmul(b: ir.IRBuilder, spec: GemmSpec, a: ir.Value, bm: ir.Value, out: ir.Value, workspace: ir.Value,
                tid: ir.Value, nthreads: ir.Value,
                epilogue: Callable[[ir.IRBuilder, ir.Value, ir.Value, ir.Value, ir.Value, ir.Value], None] | None = None,
                ) -> None:
    """This thread's share of out[batch] = A[batch] @ B[batch] (see GemmSpec).

    Work items are (batch, chunk) pairs, chunks cutting the larger of M and N so each thread
    writes its own part of the output; `workspace` is this thread's (workspace_bytes(spec)).
    `epilogue(builder, batch, r0, r1, c0, c1)` runs on each final tile.
    """
    lay = spec.layout
    (abs_, ars, acs), (bbs, brs, bcs) = spec.strides
    if spec.m <= GEMV_MAX_M and (bcs == 1 or (acs == 1 and brs == 1)):
        return _emit_gemv(b, spec, a, bm, out, tid, nthreads, epilogue)
    big, align = (spec.m, small_layout(spec).mr if is_small(spec) else lay.mr) if spec.split_rows else (spec.n, lay.nr)
    # enough chunks per batch to keep every thread busy, never more than there are tiles
    per_batch = min_i64(b, b.sdiv(b.add(nthreads, i64(spec.batch - 1)), i64(spec.batch)), i64(math.ceil(big / align)))
    items = b.mul(per_batch, i64(spec.batch))
    first, stop = b.sdiv(b.mul(tid, items), nthreads), b.sdiv(b.mul(b.add(tid, i64(1)), items), nthreads)
    with loop(b, first, stop) as item:
        bi, chunk = b.sdiv(item, per_batch), b.srem(item, per_batch)
        lo, hi = split(b, i64(big), per_batch, chunk, align)
        full_m, full_n = (i64(0), i64(spec.m)), (i64(0), i64(spec.n))
        rows, cols = ((lo, hi), full_n) if spec.split_rows else (full_m, (lo, hi))
        am = Matrix(elem_ptr(b, a, b.mul(bi, i64(abs_)), lay), i64(ars), i64(acs))
        bmat = Matrix(elem_ptr(b, bm, b.mul(bi, i64(bbs)), lay), i64(brs), i64(bcs))
        c = elem_ptr(b, out, b.mul(bi, i64(spec.m * spec.n)), lay)
        tile_epilogue = None
        if epilogue is not None:
            tile_epilogue = lambda bb, r0, r1, c0, c1, bi=bi: epilogue(bb, bi, r0, r1, c0, c1)
        if is_small(spec):
            emit_small_gemm(b, spec, am, bmat, c, rows, cols, workspace, tile_epilogue)
        else:
            emit_gemm(b, lay, am, bmat, c, i64(spec.n), spec.k, rows, cols, workspace, (spec.m, spec.n), tile_epilogue)


# ---------------------------------------------------------------- small GEMMs: A read in place

# (largest M*N, largest K) the small path takes, measured on one core: per-head attention, its
# gradients and small weight gradients up to 64x64x1024 (96 vs 77 GF/s packed); a wider C with a
# short K, the LSTM's recurrent h @ W_hh^T (32x256x64: 12.0 vs 13.5 us; 16x512x64: 11.4 vs 17.4 us),
# but not with a long one (64x128x1024 with A transposed was 8% slower unpacked)
SMALL_LIMITS = ((64 * 64, 1024), (32 * 256, 256))
ROW_SPLIT_MIN_M = 16  # rows a small GEMM needs before threads split them rather than its columns


def is_small(spec: GemmSpec) -> bool:
    """Small outputs (the attention's per-head matmuls, a 64x64 weight gradient) lose more to packing
    than they gain: each thread would pack all of B for a few tiles. The micro-kernel reads A in
    place instead, and B too when its rows are contiguous whole NR-wide panels."""
    return any(spec.m * spec.n <= mn and spec.k <= k for mn, k in SMALL_LIMITS)


def small_layout(spec: GemmSpec) -> Layout:
    """The small path's tiles: 4 rows tall when M is a multiple of 4 but not of MR (the GPT's 32
    tokens: eight full 4-row strips instead of five 6-row strips and a 2-row strip computed in the
    scratch tile and copied out)."""
    lay = spec.layout
    return replace(lay, mr=4) if spec.m % lay.mr and spec.m % 4 == 0 else lay


def _small_workspace_elements(spec: GemmSpec) -> int:
    """The scratch edge tile (a multiple of 64 bytes), then all of K x N of B packed."""
    lay = spec.layout
    return lay.mr * lay.nr + max(spec.k, 1) * round_up(spec.n, lay.nr)


def direct_b(spec: GemmSpec) -> bool:
    """B's panels are read in place: unit column stride and no partial panel (which packing pads)."""
    return spec.strides[1][2] == 1 and spec.n % spec.layout.nr == 0


def emit_small_gemm(b: ir.IRBuilder, spec: GemmSpec, a: Matrix, bm: Matrix, c: ir.Value,
                    rows: tuple[ir.Value, ir.Value], cols: tuple[ir.Value, ir.Value], workspace: ir.Value,
                    epilogue: Epilogue | None = None) -> None:
    """C[rows, cols] = A[rows, :] @ B[:, cols] (C dense m x n) without packing A, and B only when
    its panels cannot be read in place; the whole K in one pass (K within SMALL_LIMITS).
    `workspace`: _small_workspace_elements(spec), 64-byte aligned."""
    lay = small_layout(spec)
    tile, packed_b = workspace, elem_ptr(b, workspace, i64(lay.mr * lay.nr), lay)
    (m0, m1), (n0, n1) = rows, cols
    if direct_b(spec):
        b_ptr, ldb = elem_ptr(b, bm.ptr, n0, lay), bm.rs  # panel j starts at column n0 + j
    else:
        b_src = elem_ptr(b, bm.ptr, b.mul(n0, bm.cs), lay)
        b.call(pack_function(b.module, lay, lay.nr), [b_src, bm.cs, bm.rs, b.sub(n1, n0), i64(spec.k), packed_b])
        b_ptr, ldb = packed_b, i64(lay.nr)
    a_ptr = elem_ptr(b, a.ptr, b.mul(m0, a.rs), lay)
    c_ptr = elem_ptr(b, c, b.add(b.mul(m0, i64(spec.n)), n0), lay)
    b.call(small_macro_kernel(b.module, lay, direct_b(spec)),
           [b.sub(m1, m0), b.sub(n1, n0), i64(spec.k), a_ptr, a.rs, a.cs, b_ptr, ldb, c_ptr, i64(spec.n), tile])
    if epilogue is not None:
        epilogue(b, m0, m1, n0, n1)


def _small_micro_kernel(module: ir.Module, lay: Layout) -> ir.Function:
    """`void (i64 kc, ptr a, ptr b, ptr c, i64 ldc, i1 accumulate, i64 a_rs, i64 a_cs, i64 rows, i64 ldb)`:
    the micro-kernel with A[i, p] = a[min(i, rows - 1) * a_rs + p * a_cs] (an edge tile's missing
    rows re-read the last valid one: never out of bounds) and row p of B at b + p * ldb."""

    def a_elem(b, ap, i, p, extra):
        a_rs, a_cs, rows, _ = extra
        row = min_i64(b, i64(i), b.sub(rows, i64(1)))
        return elem_ptr(b, ap, b.add(b.mul(row, a_rs), b.mul(p, a_cs)), lay)

    return tile_kernel(module, lay, f"gt_gemm_small_ukernel_{lay.name}_{lay.mr}x{lay.nr}", [I64] * 4,
                       lambda b, bp, p, extra: elem_ptr(b, bp, b.mul(p, extra[3]), lay), lay.itemsize,
                       a_elem=a_elem)


def small_macro_kernel(module: ir.Module, lay: Layout, b_in_place: bool) -> ir.Function:
    """`void (i64 m, i64 n, i64 k, ptr a, i64 a_rs, i64 a_cs, ptr b, i64 ldb, ptr c, i64 ldc, ptr tile)`:
    C[:m, :n] = A @ B tile by tile. B panel j starts at b + j*NR (in place) or b + j*k (packed)."""

    def emit(b, m, n, k, a, a_rs, a_cs, bp, ldb, c, ldc, tile):
        uk, store = _small_micro_kernel(module, lay), ir.Constant(I1, 0)
        with loop(b, 0, n, lay.nr) as jr:
            ncols = min_i64(b, i64(lay.nr), b.sub(n, jr))
            b_panel = elem_ptr(b, bp, jr if b_in_place else b.mul(jr, k), lay)
            with loop(b, 0, m, lay.mr) as ir_:
                nrows = min_i64(b, i64(lay.mr), b.sub(m, ir_))
                a_strip, c_tile = elem_ptr(b, a, b.mul(ir_, a_rs), lay), elem_ptr(b, c, b.add(b.mul(ir_, ldc), jr), lay)
                full = b.and_(b.icmp_signed("==", nrows, i64(lay.mr)), b.icmp_signed("==", ncols, i64(lay.nr)))
                with b.if_else(full) as (then, otherwise):
                    with then:
                        b.call(uk, [k, a_strip, b_panel, c_tile, ldc, store, a_rs, a_cs, nrows, ldb])
                    with otherwise:
                        b.call(uk, [k, a_strip, b_panel, tile, i64(lay.nr), store, a_rs, a_cs, nrows, ldb])
                        _copy_tile(b, lay, tile, c_tile, ldc, nrows, ncols, store)

    name = f"gt_gemm_small_macro_{lay.name}_{lay.mr}_{'direct' if b_in_place else 'packed'}"
    return _shared_function(module, name, [I64, I64, I64, PTR, I64, I64, PTR, I64, PTR, I64, PTR], emit)


# ---------------------------------------------------------------- few rows: matrix-vector products

GEMV_MAX_M = 4  # up to this many rows of A, B is streamed once per row instead of packed


def _emit_gemv(b: ir.IRBuilder, spec: GemmSpec, a: ir.Value, bm: ir.Value, out: ir.Value,
               tid: ir.Value, nthreads: ir.Value, epilogue=None) -> None:
    """Batch-1 Linear and friends: memory-bound on reading B once, so packing B would only add a
    copy. Threads split the columns; each row of C is a row-vector times B, read in place along
    whichever of B's dims is contiguous (`gemv_function`)."""
    lay = spec.layout
    (abs_, ars, acs), (bbs, brs, bcs) = spec.strides
    dot = bcs != 1  # B's columns are contiguous (x @ W^T with W in its own layout): dot products
    fn = gemv_function(b.module, lay, dot)
    lo, hi = split(b, i64(spec.n), nthreads, tid, 2 * lay.nr)
    with loop(b, 0, spec.batch) as bi:
        bmat = elem_ptr(b, bm, b.mul(bi, i64(bbs)), lay)
        for r in range(spec.m):
            arow = elem_ptr(b, a, b.add(b.mul(bi, i64(abs_)), i64(r * ars)), lay)
            crow = elem_ptr(b, out, b.add(b.mul(bi, i64(spec.m * spec.n)), i64(r * spec.n)), lay)
            step, ldb = (1, bcs) if dot else (acs, brs)
            b.call(fn, [i64(spec.k), arow, i64(step), bmat, i64(ldb), crow, lo, hi])
        if epilogue is not None:
            epilogue(b, bi, i64(0), i64(spec.m), lo, hi)


def gemv_function(module: ir.Module, lay: Layout, dot: bool) -> ir.Function:
    """`void (i64 k, ptr a, i64 a_step, ptr b, i64 ldb, ptr c, i64 lo, i64 hi)`: c[j] = sum_p a[p] * B[p, j]
    for j in [lo, hi). dot: B[p, j] = b[j * ldb + p] (a_step is 1); else B[p, j] = b[p * ldb + j]
    and a[p] = a[p * a_step]. Scalar IR with reassociation allowed: LLVM vectorizes the unit-stride loop."""
    name = f"gt_gemv_{'dot' if dot else 'axpy'}_{lay.name}"
    if name in module.globals:
        return module.globals[name]
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [I64, PTR, I64, PTR, I64, PTR, I64, I64]), name)
    fn.linkage = "internal"
    k, ap, astep, bp, ldb, cp, lo, hi = fn.args
    for arg in (ap, bp, cp):
        arg.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    fast = ("reassoc", "contract")
    load = lambda ptr, i: b.load(elem_ptr(b, ptr, i, lay), typ=lay.scalar)
    zero = ir.Constant(lay.scalar, 0.0)
    if dot:
        acc = b.alloca(lay.scalar)  # in the entry block: mem2reg makes it a register
        with loop(b, lo, hi) as j:
            col = elem_ptr(b, bp, b.mul(j, ldb), lay)
            b.store(zero, acc)
            with loop(b, 0, k) as p:
                b.store(b.fadd(b.load(acc), b.fmul(load(ap, p), load(col, p), flags=fast), flags=fast), acc)
            b.store(b.load(acc), elem_ptr(b, cp, j, lay))
    else:
        with loop(b, lo, hi) as j:
            b.store(zero, elem_ptr(b, cp, j, lay))
        with loop(b, 0, k) as p:
            av = load(ap, b.mul(p, astep))
            row = elem_ptr(b, bp, b.mul(p, ldb), lay)
            with loop(b, lo, hi) as j:
                c = elem_ptr(b, cp, j, lay)
                b.store(b.fadd(b.load(c, typ=lay.scalar), b.fmul(av, load(row, j), flags=fast), flags=fast), c)
    b.ret_void()
    return fn


def build_gemm_module(spec: GemmSpec, name: str = "gemm") -> ir.Module:
    """A module with `void name(ptr a, ptr b, ptr out, ptr workspace, i64 tid, i64 nthreads)`: for tests and benchmarks."""
    module = ir.Module(name=f"gt_{name}")
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, PTR, PTR, PTR, I64, I64]), name)
    for arg in fn.args[:4]:
        arg.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    emit_matmul(b, spec, *fn.args)
    b.ret_void()
    return module


# ---------------------------------------------------------------- the "matmul" group lowering


@dataclass(frozen=True)
class View:
    """An operand read in place: element (i0, i1, ...) at ptr[sum(i_d * strides[d])]."""

    ptr: ir.Value
    shape: tuple[int, ...]
    strides: tuple[int, ...]

    def merged(self, lead: int) -> tuple[int, ...] | None:
        """The strides with dims [0, lead) merged into one batch dim, or None when they do not merge."""
        dims = [(n, s) for n, s in zip(self.shape[:lead], self.strides[:lead]) if n != 1]
        if any(s != s_next * n_next for (_, s), (n_next, s_next) in zip(dims, dims[1:])):
            return None
        return (dims[-1][1] if dims else 0, *self.strides[lead:])


def operand_view(ctx: LoweringContext, node: Node, copy: bool = False) -> View:
    """`node` as a strided view of a group input (through permute, expand, slice, dense reshape), or
    else (or if `copy`) a dense copy made in the workspace by this kernel's threads."""
    view = None if copy else _strided(ctx, node)
    if view is not None:
        return view
    b, shape = ctx.builder, node.type.shape
    ptr = ctx.workspace(max(node.type.numel, 1) * node.type.dtype.itemsize)
    lo, hi = ctx.thread_range(node.type.numel)
    with ctx.loop(lo, hi) as i:
        v = ctx.element(node, index.Index(b, shape, flat=i))
        scalar.store(b, node.type.dtype, v, b.gep(ptr, [i], inbounds=True, source_etype=ctx.ty(node)))
    ctx.barrier()  # every thread reads the whole copy
    return View(ptr, shape, tuple(index.strides(shape)))


def _strided(ctx: LoweringContext, node: Node) -> View | None:
    shape = tuple(node.type.shape)
    if ctx.is_input(node):
        return View(ctx.ptr(node), shape, tuple(index.strides(shape)))
    if node.op != "call" or node.target not in ("permute", "expand", "slice", "reshape"):
        return None
    src = _strided(ctx, node.inputs[0])
    if src is None:
        return None
    a, b = node.attrs, ctx.builder
    if node.target == "permute":
        return View(src.ptr, shape, tuple(src.strides[d] for d in a["dims"]))
    if node.target == "expand":
        lead = len(shape) - len(src.shape)
        kept = [0 if n == 1 and shape[lead + d] != 1 else s for d, (n, s) in enumerate(zip(src.shape, src.strides))]
        return View(src.ptr, shape, (0,) * lead + tuple(kept))
    if node.target == "slice":
        offset = sum(start * s for start, s in zip(a["starts"], src.strides))
        ptr = b.gep(src.ptr, [i64(offset)], inbounds=True, source_etype=ctx.ty(node)) if offset else src.ptr
        return View(ptr, shape, tuple(s * step for s, step in zip(src.strides, a["steps"])))
    if src.strides == tuple(index.strides(src.shape)):  # reshape of a dense view stays dense
        return View(src.ptr, shape, tuple(index.strides(shape)))
    strides = reshaped_strides(src.shape, src.strides, shape)  # e.g. heads split out of a sliced qkv
    return None if strides is None else View(src.ptr, shape, strides)


def reshaped_strides(old: tuple[int, ...], strides: tuple[int, ...], new: tuple[int, ...]) -> tuple[int, ...] | None:
    """Strides that read `new` from a strided view of shape `old` in row-major order, or None when
    the reshape needs a copy: each run of old dims that is contiguous among itself must be an
    exact run of new dims."""
    if math.prod(old) == 0:
        return tuple(index.strides(new))
    out, j = [0] * len(new), len(new) - 1
    run_size, base = 1, None
    for i in reversed(range(len(old))):
        base = strides[i] if base is None else base
        run_size *= old[i]
        if i > 0 and (old[i - 1] == 1 or strides[i - 1] == run_size * base):
            continue  # old dim i-1 continues this contiguous run
        done = 1
        while j >= 0 and (done < run_size or new[j] == 1):
            out[j], done, j = done * base, done * new[j], j - 1
        if done != run_size:
            return None
        run_size, base = 1, None
    return tuple(out) if j < 0 else None


def output_buffer(ctx: LoweringContext, group: Group) -> ir.Value:
    """Where the anchor's result goes: the group's output itself when the epilogue can run in place."""
    anchor, root = group.anchor, group.outputs[0]
    if final_value(group).type.shape == anchor.type.shape and root.type.dtype is anchor.type.dtype:
        return ctx.ptr(root)
    return ctx.workspace(anchor.type.numel * anchor.type.dtype.itemsize)


def lower_matmul(ctx: LoweringContext, group: Group) -> None:
    anchor, root = group.anchor, group.outputs[0]
    dtype = anchor.type.dtype
    if dtype.short not in LAYOUTS:
        return lower_matmul_naive(ctx, group)  # integer matmuls: correct, not fast
    *batch_dims, m, n = anchor.type.shape
    k = anchor.inputs[0].type.shape[-1]
    lead = len(batch_dims)
    views = [operand_view(ctx, x) for x in anchor.inputs]
    strides = [v.merged(lead) for v in views]
    outer, outer_strides = 1, [0, 0]
    if None in strides and lead >= 2 and None not in (splits := [_split_batch(v, lead) for v in views]):
        # attention heads (batch, heads) permuted out of (batch, tokens, heads, width): a loop over
        # the first batch dim reads them in place instead of copying both operands
        outer, outer_strides, strides = batch_dims[0], [s[0] for s in splits], [s[1] for s in splits]
    for i, st in enumerate(strides):
        if st is None:  # batch dims that are no single stride (a permuted batch): copy that operand
            views[i] = operand_view(ctx, anchor.inputs[i], copy=True)
            strides[i] = views[i].merged(lead)
    spec = GemmSpec(m, n, k, dtype.short, math.prod(batch_dims) // max(outer, 1), strides[0], strides[1])
    c = output_buffer(ctx, group)
    ws = ctx.workspace(workspace_bytes(spec), per_thread=True)
    b, lay = ctx.builder, spec.layout
    with loop(b, 0, outer) as o:
        epilogue = None
        if root is not anchor:
            def epilogue(bb, bi, r0, r1, c0, c1):
                base = bb.mul(bb.add(bb.mul(o, i64(spec.batch)), bi), i64(m))
                emit_epilogue(ctx, group, c, (bb.add(base, r0), bb.add(base, r1)), (c0, c1))
        a_ptr, b_ptr = (elem_ptr(b, v.ptr, b.mul(o, i64(s)), lay) for v, s in zip(views, outer_strides))
        out = elem_ptr(b, c, b.mul(o, i64(spec.batch * m * n)), lay)
        emit_matmul(b, spec, a_ptr, b_ptr, out, ws, ctx.tid, ctx.nthreads, epilogue)


def _split_batch(view: View, lead: int) -> tuple[int, tuple[int, ...]] | None:
    """(the stride of batch dim 0, the strides with batch dims [1, lead) merged), or None."""
    inner = View(view.ptr, view.shape[1:], view.strides[1:]).merged(lead - 1)
    return None if inner is None else (view.strides[0], inner)


LOWERINGS["matmul"] = lower_matmul


# ---------------------------------------------------------------- one thread or all of them

# f32 GFLOP/s of each path on one core (AVX2) at the LSTM's and the sin-MLP's shapes (32x256x64
# small 87, packed 78; 32x64x256 small 75); f64 runs at half the rate
PATH_GFLOPS = {"small": 80.0, "packed": 75.0}
# what threads cost a kernel that would otherwise run on thread 0 between serial neighbours: a
# barrier before it and one after (each ~1-2 us when the other core is free)
THREAD_COST_US = 3.0


def serial_time_us(spec: GemmSpec) -> float:
    """Estimated microseconds `spec` takes on one thread."""
    rate = PATH_GFLOPS["small" if is_small(spec) else "packed"] * 4 / spec.layout.itemsize
    return 2 * spec.batch * spec.m * spec.n * spec.k / (rate * 1e3)


def busiest_share(spec: GemmSpec, nthreads: int) -> float:
    """The fraction of the work the busiest of `nthreads` threads gets: threads split whole tiles
    (micro-kernel panels of the larger of M and N) of every batch, as emit_matmul does."""
    align = (small_layout(spec) if is_small(spec) else spec.layout).mr if spec.split_rows else spec.layout.nr
    units = spec.batch * math.ceil(max(spec.m, spec.n) / align)
    return math.ceil(units / nthreads) / units


def threads_save_us(spec: GemmSpec, nthreads: int = 2) -> float:
    """Microseconds saved by splitting `spec` over `nthreads` threads rather than running it on one
    (negative: the barriers cost more than the split saves)."""
    one = serial_time_us(spec)
    return one * (1 - busiest_share(spec, nthreads)) - THREAD_COST_US


def matmul_runs_serial(group: Group) -> bool:
    """A GEMM runs on thread 0 alone unless splitting it saves more than the barriers cost; integer
    matmuls and matrix-vector products (memory-bound) keep the size rule."""
    anchor = group.anchor
    *batch_dims, m, n = anchor.type.shape
    if anchor.type.dtype.short not in LAYOUTS or m <= GEMV_MAX_M:
        return work(group) < PARALLEL_WORK
    spec = GemmSpec(m, n, anchor.inputs[0].type.shape[-1], anchor.type.dtype.short, math.prod(batch_dims))
    return threads_save_us(spec) <= 0


SERIAL["matmul"] = matmul_runs_serial
