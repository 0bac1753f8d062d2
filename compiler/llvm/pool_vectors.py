"""Pooling vectorized along the output width: VL adjacent outputs of one output row at a time.

Per tap row, the block's windows read one run of (VL-1)*stride + (kw-1)*dilation + 1 input
elements: one vector load, split into kw vectors of VL lanes by shufflevector (for 2x2 tiles a
deinterleave of pairs of lanes). The scan is torch's, lane-wise: a tap wins when greater than the
best so far or NaN (the first tap lies inside, so it starts the scan); compiler/pooling.py defines
what is computed.

- Disjoint tiles (pooling.tiles: MaxPool2d(k), kernel == stride, no padding or dilation) get
  whole kernels (`lower_tiles`) for max_pool, max_pool_index and max_pool_grad. A row's last
  partial block is a masked load (and store): no lane reads or writes past the row, so no other
  bounds check. The gradient writes each tile once: g + 0 at the winner (the last tap that won), 0
  at the other taps, interleaved back into one vector store per tap row; no zero-fill pass. The
  elements outside every tile (columns past OW*kw, rows past OH*kh) are zeroed by the thread that
  owns the row next to them. Threads split the N*C*OH output rows.
- Other windows (overlapping, padded, dilated, gapped) run llvm/pooling.py's scan, whose interior
  spans (every window inside the input) call `vector_span`; the border windows stay scalar and
  checked. A gradient finds its argmax VL windows at a time, then adds each window's g lane by
  lane (windows may share an element, so the adds keep the order of the outputs). A float
  average sums its taps in tap order lane-wise (0 + first + ..., as the scalar scan) and divides
  by the window's size or the divisor override; its gradient stays scalar.

Max pooling counts as twice the elements it moves (`_work`), so LeNet's second pool (128k
elements) runs on two threads too: 17.5 us on one, 8.6 us on two (thread 0's time with the
barrier, on the shared machine).
"""

from __future__ import annotations

import math

from llvmlite import ir

from .. import dtypes as dt
from ..ir import Node
from ..pooling import tiles
from . import scalar
from .index import i64
from .intrinsics import function, type_suffix
from .module import WORK, LoweringContext

VECTOR_BYTES = 32  # one AVX2 register: 8 float32 lanes
MAX_TAPS = 64  # the scan is unrolled over the taps: a larger window takes pooling.py's scalar scan
MAX_SPAN = 128  # input elements per tap row of a block (one vector load): wider strides stay scalar
I32 = ir.IntType(32)


def vectorizable(node: Node, x: Node) -> bool:
    """Whether max-pool `node` over input `x` takes the tile kernel here."""
    a, shape = node.attrs, x.type.shape
    return tiles(a, shape[2:]) and 0 not in shape and min(a["out"]) > 0 and vector_windows(node, x)


def vector_windows(node: Node, x: Node) -> bool:
    """Whether the interior windows of pooling `node` (max, or a float average) can be scanned VL
    outputs at a time."""
    a, d = node.attrs, x.type.dtype
    if a["adaptive"] or d is dt.bool_ or d.name == "float16" or a["kernel"][0] * a["kernel"][1] > MAX_TAPS:
        return False
    return _Windows.span_of(a, _lanes(d)) <= MAX_SPAN


def _lanes(d) -> int:
    return max(1, VECTOR_BYTES // d.itemsize)


class _Windows:
    """The geometry of VL-output blocks of one pooling node and the IR helpers they share."""

    def __init__(self, ctx: LoweringContext, node: Node, x: Node, want: str):
        # want: "value", "index", "grad" (tiles: written), "add" (a gradient added) or "avg"
        self.ctx, self.node, self.x, self.want = ctx, node, x, want
        self.b, self.d = ctx.builder, x.type.dtype
        _, _, self.h, self.w = x.type.shape
        a = node.attrs
        self.oh, self.ow = a["out"]
        (self.kh, self.kw), (self.sh, self.sw) = a["kernel"], a["stride"]
        (self.ph, self.pw), (self.dh, self.dw) = a["padding"], a["dilation"]
        self.lanes = _lanes(self.d)
        self.elem = scalar.mem_type(self.d)

    @staticmethod
    def span_of(attrs: dict, n: int) -> int:
        """Input elements one tap row of n adjacent windows covers, from the first's first tap."""
        return (n - 1) * attrs["stride"][1] + (attrs["kernel"][1] - 1) * attrs["dilation"][1] + 1

    def span(self, n: int) -> int:
        return self.span_of(self.node.attrs, n)

    def vec(self, n: int, elem: ir.Type | None = None) -> ir.VectorType:
        return ir.VectorType(elem or self.elem, n)

    def splat(self, value: ir.Value, n: int) -> ir.Value:
        b = self.b
        one = b.insert_element(ir.Constant(self.vec(1, value.type), ir.Undefined), value, ir.Constant(I32, 0))
        return b.shuffle_vector(one, one, ir.Constant(self.vec(n, I32), [0] * n))


def _work(node: Node) -> int:
    """Twice the elements read and written: shuffles, compare-selects and a masked tail per output
    row cost more per element than an elementwise loop (module.PARALLEL_WORK's unit)."""
    return 2 * (node.type.numel + sum(i.type.numel for i in node.inputs))


WORK.update(dict.fromkeys(("max_pool", "max_pool_index", "max_pool_grad"), _work))


def lower_tiles(ctx: LoweringContext, node: Node, x: Node, want: str) -> None:
    """The tile kernel of max_pool (want "value"), max_pool_index ("index") or max_pool_grad ("grad")."""
    t = _Windows(ctx, node, x, want)
    b = ctx.builder
    lo, hi = ctx.thread_range(math.prod(x.type.shape[:2]) * t.oh)
    with ctx.loop(lo, hi) as r:
        plane, oh = b.udiv(r, i64(t.oh)), b.urem(r, i64(t.oh))
        base = b.mul(plane, i64(t.h * t.w))
        _row(t, base, b.mul(oh, i64(t.kh * t.w)), b.mul(r, i64(t.ow)), 0, t.ow)
        if want == "grad":
            _zero_outside(t, plane, oh, b.add(base, b.mul(oh, i64(t.kh * t.w))))


def vector_span(ctx: LoweringContext, node: Node, x: Node, want: str, base: ir.Value, out_base: ir.Value,
                oh: ir.Value, start: int, stop: int) -> None:
    """Outputs [start, stop) of output row oh of one plane (input at base, output at out_base),
    every window inside the input (pooling.py's fast span), VL at a time: want "value", "index",
    "grad" (each window's g added at its winner, into the plane the scan zeroed) or "avg"."""
    t = _Windows(ctx, node, x, "add" if want == "grad" else want)
    b = ctx.builder
    top = b.mul(b.sub(b.mul(oh, i64(t.sh)), i64(t.ph)), i64(t.w))
    _row(t, base, top, b.add(out_base, b.mul(oh, i64(t.ow))), start, stop)


def _row(t: _Windows, base: ir.Value, top: ir.Value, out_row: ir.Value, start: int, stop: int) -> None:
    """Outputs [start, stop) of one output row whose windows' first tap row is `top` (in the plane
    at `base`): whole blocks of VL, then one masked block."""
    b, whole = t.b, (stop - start) // t.lanes
    if whole:
        with t.ctx.loop(0, whole) as blk:
            _block(t, base, top, out_row, b.add(i64(start), b.mul(blk, i64(t.lanes))), t.lanes)
    if (stop - start) % t.lanes:
        _block(t, base, top, out_row, i64(start + whole * t.lanes), (stop - start) % t.lanes)


def _block(t: _Windows, base: ir.Value, top: ir.Value, out_row: ir.Value, ow0: ir.Value, n: int) -> None:
    """Outputs ow0 .. ow0 + n of one output row (n < lanes: a masked block)."""
    b = t.b
    corner = b.add(top, b.sub(b.mul(ow0, i64(t.sw)), i64(t.pw)))  # the first window's first tap, in the plane
    first = b.add(base, corner)
    taps = [(i, j, v) for i in range(t.kh) for j, v in enumerate(_tap_row(t, b.add(first, i64(i * t.dh * t.w)), n))]
    at = b.add(out_row, ow0)
    if t.want == "avg":
        _store(t, t.node, at, _average(t, [v for _, _, v in taps]), n)
        return
    best, won = _scan(t, taps)
    if t.want == "value":
        _store(t, t.node, at, best, n)
    elif t.want == "index":
        _store(t, t.node, at, _argmax(t, corner, taps, won), n)
    elif t.want == "add":
        _scatter_add(t, base, at, _argmax(t, corner, taps, won), n)
    else:
        _scatter(t, first, at, best, won, n)


def _tap_row(t: _Windows, start: ir.Value, n: int) -> list[ir.Value]:
    """The kw vectors (tap j of each of the block's windows) of one tap row starting at `start`."""
    span = _load(t, t.x, start, t.span(t.lanes), t.span(n))
    return [t.b.shuffle_vector(span, span, ir.Constant(t.vec(t.lanes, I32), [j * t.dw + t.sw * lane for lane in range(t.lanes)]))
            for j in range(t.kw)]


def _scan(t: _Windows, taps: list[tuple[int, int, ir.Value]]) -> tuple[ir.Value, list[ir.Value]]:
    """(the best value per lane, per tap whether it won the scan when reached) in row-major tap order."""
    b = t.b
    best = taps[0][2]
    won = [ir.Constant(t.vec(t.lanes, ir.IntType(1)), [1] * t.lanes)]
    for _, _, v in taps[1:]:
        wins = greater_or_nan(b, t.d, v, best)
        won.append(wins)
        best = b.select(wins, v, best)
    return best, won


def _average(t: _Windows, taps: list[ir.Value]) -> ir.Value:
    """0 + the taps in tap order, / the divisor: every tap lies inside, so the window's size (or
    the override), as llvm/pooling.divisor on the fast path."""
    b = t.b
    total = ir.Constant(taps[0].type, [scalar.const(t.d, 0)] * t.lanes)
    for v in taps:
        total = b.fadd(total, v)
    div = t.node.attrs["divisor"] or t.kh * t.kw
    return b.fdiv(total, ir.Constant(total.type, [scalar.const(t.d, float(div))] * t.lanes))


def _argmax(t: _Windows, corner: ir.Value, taps, won) -> ir.Value:
    """The flat input index h*W + w of each lane's winner (the last tap that won)."""
    b = t.b
    lanes = ir.Constant(t.vec(t.lanes, scalar.I64), [t.sw * lane for lane in range(t.lanes)])
    corners = b.add(t.splat(corner, t.lanes), lanes)
    arg = corners
    for (i, j, _), wins in zip(taps[1:], won[1:]):
        offset = ir.Constant(t.vec(t.lanes, scalar.I64), [i * t.dh * t.w + j * t.dw] * t.lanes)
        arg = b.select(wins, b.add(corners, offset), arg)
    return arg


def _scatter(t: _Windows, first: ir.Value, at: ir.Value, best: ir.Value, won: list[ir.Value], n: int) -> None:
    """Each tile's gradient (tiles only: windows disjoint and adjacent): g + 0 at its winner, 0
    elsewhere (g + 0 as numpy's 0 + g: -0.0 lands as 0.0), one interleaved store per tap row. With
    relu, 0 where the winner (best) is <= 0 too: the other taps get 0 anyway."""
    b = t.b
    g = _load(t, t.node.inputs[1], at, t.lanes, n)
    zero = ir.Constant(g.type, [scalar.const(t.d, 0)] * t.lanes)
    share = b.fadd(g, zero) if t.d.is_floating_point else g
    if t.node.attrs.get("relu"):
        share = b.select(scalar.emit(b, "le", [best, zero], t.d, dt.bool_, {}), zero, share)
    later = ir.Constant(won[0].type, [0] * t.lanes)
    out = []
    for wins in reversed(won):  # the winner is the last tap that won
        out.append(b.select(b.and_(wins, b.not_(later)), share, zero))
        later = b.or_(later, wins)
    out.reverse()
    for i in range(t.kh):
        row = _interleave(t, out[i * t.kw:(i + 1) * t.kw])
        _store(t, t.node, b.add(first, i64(i * t.w)), row, n * t.kw)


def _scatter_add(t: _Windows, base: ir.Value, at: ir.Value, arg: ir.Value, n: int) -> None:
    """Each window's g added at its winner, lane by lane in the order of the outputs (windows may
    share an element): pooling.py's scatter, with the argmax found VL windows at a time."""
    b, ctx = t.b, t.ctx
    for lane in range(n):
        to = b.add(base, b.extract_element(arg, ir.Constant(I32, lane)))
        g = ctx.load(t.node.inputs[1], b.add(at, i64(lane)))
        ctx.store(t.node, to, scalar.emit(b, "add", [ctx.load(t.node, to), g], t.d, t.d, {}))


def _interleave(t: _Windows, vectors: list[ir.Value]) -> ir.Value:
    """Lane l*kw + j of the result is lane l of vectors[j]: tap j of tile l back in its column."""
    b, n = t.b, t.lanes * t.kw
    wide = [b.shuffle_vector(v, v, ir.Constant(t.vec(n, I32), [m % t.lanes for m in range(n)])) for v in vectors]
    row = wide[0]
    for j, v in enumerate(wide):
        pick = [n + m // t.kw if m % t.kw == j else m for m in range(n)]
        row = b.shuffle_vector(row, v, ir.Constant(t.vec(n, I32), pick))
    return row


def _zero_outside(t: _Windows, plane: ir.Value, oh: ir.Value, in_row: ir.Value) -> None:
    """The gradient's elements no tile covers: the kh rows' columns past OW*kw, and after the
    plane's last output row, the rows past OH*kh."""
    b, ctx = t.b, t.ctx
    zero = scalar.const(t.d, 0)
    if t.w > t.ow * t.kw:
        for i in range(t.kh):
            with ctx.loop(t.ow * t.kw, t.w) as col:
                ctx.store(t.node, b.add(in_row, b.add(col, i64(i * t.w))), zero)
    if t.h > t.oh * t.kh:
        with b.if_then(b.icmp_unsigned("==", oh, i64(t.oh - 1))):
            rest = b.add(b.mul(plane, i64(t.h * t.w)), i64(t.oh * t.kh * t.w))
            with ctx.loop(0, (t.h - t.oh * t.kh) * t.w) as q:
                ctx.store(t.node, b.add(rest, q), zero)


def greater_or_nan(b: ir.IRBuilder, d, v: ir.Value, best: ir.Value) -> ir.Value:
    """torch's max-scan rule (scalars or vectors): v wins when greater than best or NaN."""
    if d.is_floating_point:
        return b.or_(b.fcmp_ordered(">", v, best), b.fcmp_unordered("uno", v, v))
    return b.icmp_signed(">", v, best) if d.is_signed else b.icmp_unsigned(">", v, best)


# ---------------------------------------------------------------- whole and masked vectors


def _load(t: _Windows, node: Node, at: ir.Value, width: int, n: int) -> ir.Value:
    """node[at : at + n] in the first n of `width` lanes (the others zero and not read)."""
    b, vec = t.b, t.vec(width, t.ctx.ty(node))
    ptr = t.ctx.gep(node, at)
    if n == width:
        return b.load(ptr, typ=vec, align=node.type.dtype.itemsize)
    fn = function(t.ctx.module, f"llvm.masked.load.{_mangle(vec)}.p0", vec, [ptr.type, I32, _mask(n, width).type, vec])
    return b.call(fn, [ptr, ir.Constant(I32, node.type.dtype.itemsize), _mask(n, width), ir.Constant(vec, None)])


def _store(t: _Windows, node: Node, at: ir.Value, value: ir.Value, n: int) -> None:
    """value's first n lanes to node[at : at + n]; no other element is written."""
    b, width = t.b, value.type.count
    ptr = t.ctx.gep(node, at)
    if n == width:
        b.store(value, ptr, align=node.type.dtype.itemsize)
        return
    fn = function(t.ctx.module, f"llvm.masked.store.{_mangle(value.type)}.p0", ir.VoidType(),
                  [value.type, ptr.type, I32, _mask(n, width).type])
    b.call(fn, [value, ptr, ir.Constant(I32, node.type.dtype.itemsize), _mask(n, width)])


def _mask(n: int, width: int) -> ir.Constant:
    return ir.Constant(ir.VectorType(ir.IntType(1), width), [lane < n for lane in range(width)])


def _mangle(vec: ir.VectorType) -> str:
    """The overload suffix of a vector: v8f32."""
    return f"v{vec.count}{type_suffix(vec.element)}"
