"""LLVM kernels of the pooling primitives; compiler/pooling.py defines what they compute.

Threads split the N*C planes (a gradient zeroes and fills its own planes, so no two threads
touch one element). Each plane's outputs are visited in row-major order, and every kernel is one
scan over each output's window, told apart by what it does at the window's start, at each tap
inside the input and at the end (`_Max`, `_Avg`, `_AvgGrad`). An output whose window lies wholly
inside the input (`Axis.inside`) takes the fast path: its taps unrolled at constant offsets with
no bounds checks, so LLVM can vectorize the loop along the output width. Border outputs and
adaptive windows take the checked path: a loop per dim over the window, a tap outside skipped.
Max pooling over disjoint tiles (MaxPool2d(k)) takes pool_vectors.py's kernels instead, and
other max-pool windows and float averages run their fast path through its vector blocks.
"""

from __future__ import annotations

import math

from llvmlite import ir

from .. import dtypes as dt
from ..ir import Node
from ..pooling import Axis, axes
from . import scalar
from .index import i64
from .module import LoweringContext
from .pool_vectors import greater_or_nan, lower_tiles, vector_span, vector_windows, vectorizable
from .scalar import I64

MAX_UNROLL = 64  # taps per window on the fast path; a larger window takes the checked path everywhere


class _Window:
    """One output's window: (start, taps) per dim as i64 values, or None on the fast path."""

    def __init__(self, oh: ir.Value, ow: ir.Value, starts: tuple[ir.Value, ir.Value] | None = None):
        self.oh, self.ow, self.starts = oh, ow, starts


class _Scan:
    """The per-window actions of one kernel: plane(p), begin(win), tap(flat position), end(win)."""

    def __init__(self, ctx: LoweringContext, node: Node, x: Node):
        self.ctx, self.b, self.node, self.x = ctx, ctx.builder, node, x
        self.d = x.type.dtype
        n, c, self.h, self.w = x.type.shape
        self.oh_n, self.ow_n = node.attrs["out"]
        self.ah, self.aw = axes(node.attrs, (self.h, self.w))

    def plane(self, p: ir.Value) -> None:
        b = self.b
        self.in_base = b.mul(p, i64(self.h * self.w))
        self.out_base = b.mul(p, i64(self.oh_n * self.ow_n))

    def out_at(self, win: _Window) -> ir.Value:
        b = self.b
        return b.add(self.out_base, b.add(b.mul(win.oh, i64(self.ow_n)), win.ow))

    def zero_plane(self, grad: Node) -> None:
        with self.ctx.loop(0, self.h * self.w) as q:
            self.ctx.store(grad, self.b.add(self.in_base, q), self.ctx.const(0, grad))


# ---------------------------------------------------------------- max: values, indices, gradient


class _Max(_Scan):
    """torch's scan: a tap wins when greater than the best so far or NaN (or when it is the first)."""

    def __init__(self, ctx, node, x, *, want: str):
        super().__init__(ctx, node, x)
        self.want = want  # "value", "index" or "grad"
        self.best = ctx.alloca(scalar.reg_type(self.d))
        self.arg = ctx.alloca(I64)
        if want == "grad":
            self.g = node.inputs[1]

    def plane(self, p):
        super().plane(p)
        if self.want == "grad":
            self.zero_plane(self.node)

    def begin(self, win):
        self.b.store(scalar.const(self.d, float("-inf") if self.d.is_floating_point else _lowest(self.d)), self.best)
        self.b.store(i64(-1), self.arg)
        # a fast-path window of a gradient whose windows never overlap: no scatter, each tap's
        # element stored (g at the winner, 0 elsewhere) after the scan, see end()
        self.taps = [] if self.want == "grad" and win.starts is None and self.disjoint else None

    @property
    def disjoint(self) -> bool:
        return all(a.stride >= (a.kernel - 1) * a.dilation + 1 for a in (self.ah, self.aw))

    def tap(self, pos):
        b = self.b
        v = self.ctx.load(self.x, b.add(self.in_base, pos))
        best = b.load(self.best, typ=v.type)
        wins = greater_or_nan(b, self.d, v, best)
        if self.taps is not None:
            self.taps.append((pos, wins if self.taps else ir.Constant(ir.IntType(1), 1)))
        elif self.want != "value":  # the first tap inside wins even when it is the lowest value
            arg = b.load(self.arg, typ=I64)
            wins = b.or_(wins, b.icmp_signed("<", arg, i64(0)))
            b.store(b.select(wins, pos, arg), self.arg)
        b.store(b.select(wins, v, best), self.best)

    def end(self, win):
        b, ctx = self.b, self.ctx
        at = self.out_at(win)
        if self.taps is not None:
            self._store_taps(ctx.load(self.g, at))
            return
        if self.want == "value":
            ctx.store(self.node, at, b.load(self.best, typ=scalar.reg_type(self.d)))
            return
        arg = b.load(self.arg, typ=I64)
        if self.want == "index":
            ctx.store(self.node, at, arg)
            return
        with b.if_then(b.icmp_signed(">=", arg, i64(0))):
            to = b.add(self.in_base, arg)
            g = ctx.load(self.g, at)
            ctx.store(self.node, to, scalar.emit(b, "add", [ctx.load(self.node, to), g], self.d, self.d, {}))


    def _store_taps(self, g: ir.Value) -> None:
        """The winner is the last tap that won the scan; branch-free (the selects of a scatter
        became branches that mispredict on random data, 7x slower). g + 0 as numpy's 0 + g (-0.0)."""
        b, zero = self.b, scalar.const(self.d, 0)
        share = scalar.emit(b, "add", [g, zero], self.d, self.d, {})
        later = ir.Constant(ir.IntType(1), 0)
        for pos, won in reversed(self.taps):
            self.ctx.store(self.node, b.add(self.in_base, pos), b.select(b.and_(won, b.not_(later)), share, zero))
            later = b.or_(later, won)


def _lowest(d) -> int:
    bits = 8 * d.itemsize
    return -(1 << (bits - 1)) if d.is_signed else 0


# ---------------------------------------------------------------- avg: values and gradient


class _Avg(_Scan):
    def __init__(self, ctx, node, x):
        super().__init__(ctx, node, x)
        self.sum = ctx.alloca(scalar.reg_type(self.d))

    def begin(self, win):
        self.b.store(scalar.const(self.d, 0), self.sum)

    def tap(self, pos):
        b = self.b
        v = self.ctx.load(self.x, b.add(self.in_base, pos))
        total = b.load(self.sum, typ=v.type)
        b.store(scalar.emit(b, "add", [total, v], self.d, self.d, {}), self.sum)

    def end(self, win):
        total = self.b.load(self.sum, typ=scalar.reg_type(self.d))
        self.ctx.store(self.node, self.out_at(win), _divide(self.b, self.d, total, divisor(self, win)))


class _AvgGrad(_Scan):
    """Each output's share g / divisor added to its window's taps inside the input."""

    def __init__(self, ctx, node):
        super().__init__(ctx, node, node)  # the gradient has the input's shape
        self.g = node.inputs[0]
        self.share = ctx.alloca(scalar.reg_type(self.d))

    def plane(self, p):
        super().plane(p)
        self.zero_plane(self.node)

    def begin(self, win):
        g = self.ctx.load(self.g, self.out_at(win))
        self.b.store(_divide(self.b, self.d, g, divisor(self, win)), self.share)

    def tap(self, pos):
        b, ctx = self.b, self.ctx
        to = b.add(self.in_base, pos)
        share = b.load(self.share, typ=scalar.reg_type(self.d))
        ctx.store(self.node, to, scalar.emit(b, "add", [ctx.load(self.node, to), share], self.d, self.d, {}))

    def end(self, win):
        pass


def divisor(scan: _Scan, win: _Window) -> ir.Value:
    """pooling.divisors at one output: the override, the taps inside, or the taps up to the padded end."""
    a = scan.node.attrs
    if a["divisor"]:
        return i64(a["divisor"])
    if win.starts is None:  # the fast path: every tap inside
        return i64(scan.ah.max_taps * scan.aw.max_taps)
    b = scan.b
    counts = [_count(b, axis, start, a["count_include_pad"]) for axis, start in zip((scan.ah, scan.aw), win.starts)]
    return b.mul(counts[0], counts[1])


def _count(b: ir.IRBuilder, axis: Axis, start_taps: tuple[ir.Value, ir.Value], include_pad: bool) -> ir.Value:
    start, taps = start_taps
    end = b.add(start, taps)
    if include_pad and not axis.adaptive:
        return b.sub(_min(b, end, i64(axis.size + axis.padding)), start)
    n = b.sub(_min(b, end, i64(axis.size)), _max(b, start, i64(0)))
    return _max(b, n, i64(1))  # a window with no tap inside sums to 0: 0 / 1, as pooling.divisors


def _min(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


def _max(b, x, y):
    return b.select(b.icmp_signed(">", x, y), x, y)


def _divide(b: ir.IRBuilder, d, total: ir.Value, div: ir.Value) -> ir.Value:
    if d.is_floating_point:
        return b.fdiv(total, scalar.cast(b, dt.int64, d, div))
    wide = scalar.cast(b, d, dt.int64, total)  # in 64 bits, as pooling._divide
    return scalar.cast(b, dt.int64, d, b.sdiv(wide, div))  # C's integer division, toward zero


# ---------------------------------------------------------------- the loops


def _scan(ctx: LoweringContext, s: _Scan) -> None:
    """For each plane of this thread, each output in row-major order: s.begin, s.tap per tap inside, s.end."""
    n_planes = math.prod(s.node.type.shape[:2])
    lo, hi = ctx.thread_range(n_planes)
    (r0, r1), (c0, c1) = s.ah.inside(), s.aw.inside()
    if s.ah.adaptive or s.ah.kernel * s.aw.kernel > MAX_UNROLL or r0 == r1 or c0 == c1:
        r0 = r1 = 0  # no fast path
    with ctx.loop(lo, hi) as p:
        s.plane(p)
        for rows, fast in [((0, r0), False), ((r0, r1), True), ((r1, s.oh_n), False)]:
            if rows[0] == rows[1]:
                continue
            with ctx.loop(*rows) as oh:
                spans = [(0, c0, False), (c0, c1, True), (c1, s.ow_n, False)] if fast else [(0, s.ow_n, False)]
                for start, stop, inside in spans:
                    if start < stop:
                        (_fast if inside else _checked)(ctx, s, oh, start, stop)


def _fast(ctx: LoweringContext, s: _Scan, oh: ir.Value, start: int, stop: int) -> None:
    want = s.want if isinstance(s, _Max) else "avg" if isinstance(s, _Avg) and s.d.is_floating_point else None
    if want and vector_windows(s.node, s.x):
        vector_span(ctx, s.node, s.x, want, s.in_base, s.out_base, oh, start, stop)
        return
    b = ctx.builder
    ah, aw = s.ah, s.aw
    with ctx.loop(start, stop) as ow:
        win = _Window(oh, ow)
        s.begin(win)
        corner = b.add(b.mul(b.sub(b.mul(oh, i64(ah.stride)), i64(ah.padding)), i64(s.w)),
                       b.sub(b.mul(ow, i64(aw.stride)), i64(aw.padding)))
        for i in range(ah.kernel):
            for j in range(aw.kernel):
                s.tap(b.add(corner, i64(i * ah.dilation * s.w + j * aw.dilation)))
        s.end(win)


def _checked(ctx: LoweringContext, s: _Scan, oh: ir.Value, start: int, stop: int) -> None:
    b = ctx.builder
    rows = _window(b, s.ah, oh)
    with ctx.loop(start, stop) as ow:
        cols = _window(b, s.aw, ow)
        win = _Window(oh, ow, (rows, cols))
        s.begin(win)
        with ctx.loop(0, rows[1]) as i:
            h = b.add(rows[0], b.mul(i, i64(s.ah.step)))
            with b.if_then(b.icmp_unsigned("<", h, i64(s.h))):  # unsigned: a negative row is skipped too
                with ctx.loop(0, cols[1]) as j:
                    w = b.add(cols[0], b.mul(j, i64(s.aw.step)))
                    with b.if_then(b.icmp_unsigned("<", w, i64(s.w))):
                        s.tap(b.add(b.mul(h, i64(s.w)), w))
        s.end(win)


def _window(b: ir.IRBuilder, axis: Axis, o: ir.Value) -> tuple[ir.Value, ir.Value]:
    """(first position, number of taps) of output o's window along `axis` (Axis.start/taps in IR)."""
    if not axis.adaptive:
        return b.sub(b.mul(o, i64(axis.stride)), i64(axis.padding)), i64(axis.kernel)
    start = b.udiv(b.mul(o, i64(axis.size)), i64(axis.out))
    end = b.udiv(b.add(b.mul(b.add(o, i64(1)), i64(axis.size)), i64(axis.out - 1)), i64(axis.out))
    return start, b.sub(end, start)


# ---------------------------------------------------------------- registration


def max_kernel(ctx: LoweringContext, node: Node, x: Node, want: str) -> None:
    """max_pool ("value"), max_pool_index ("index") or max_pool_grad ("grad") of x: the vectorized
    tile kernel (pool_vectors.py) where the windows are disjoint tiles, else the scan."""
    if vectorizable(node, x):
        lower_tiles(ctx, node, x, want)
        return
    _scan(ctx, _Max(ctx, node, x, want=want))
    if want == "grad" and node.attrs.get("relu"):
        _relu_mask(ctx, node, x)


def _relu_mask(ctx: LoweringContext, node: Node, x: Node) -> None:
    """grad = where(x <= 0, 0, grad) over this thread's planes: _scan's split, so each thread
    masks what it wrote and no barrier is needed."""
    b, d = ctx.builder, x.type.dtype
    plane = x.type.shape[2] * x.type.shape[3]
    lo, hi = ctx.thread_range(math.prod(x.type.shape[:2]))
    zero = ctx.const(0, node)
    with ctx.loop(b.mul(lo, i64(plane)), b.mul(hi, i64(plane))) as q:
        le = scalar.emit(b, "le", [ctx.load(x, q), zero], d, dt.bool_, {})
        ctx.store(node, q, b.select(le, zero, ctx.load(node, q)))


def _max_pool(ctx, node):
    max_kernel(ctx, node, node.inputs[0], "value")


def _max_pool_index(ctx, node):
    max_kernel(ctx, node, node.inputs[0], "index")


def _max_pool_grad(ctx, node):
    max_kernel(ctx, node, node.inputs[0], "grad")


def _avg_pool(ctx, node):
    _scan(ctx, _Avg(ctx, node, node.inputs[0]))


def _avg_pool_grad(ctx, node):
    _scan(ctx, _AvgGrad(ctx, node))


KERNELS = {"max_pool": _max_pool, "max_pool_index": _max_pool_index, "max_pool_grad": _max_pool_grad,
           "avg_pool": _avg_pool, "avg_pool_grad": _avg_pool_grad}
