"""Row kernels over the last dim: a row per loop step, a few passes over it while it is in cache,
instead of a chain of reduction and elementwise kernels each reading it from memory.

- softmax / log_softmax (the `softmax` primitive): the max; exp(x - max) and its sum (stored for
  softmax); the result. float32 uses vecmath.exp (no libm call), so the second pass vectorizes; float64 libm's exp.
- layer_norm: the mean; the variance of x - mean (two passes, as the numpy kernel, not
  E[x^2] - mean^2); (x - mean) * rstd * w + b.

Other dtypes run the numpy kernel through a host call. Sums may add in any order (REASSOC).
"""

from __future__ import annotations

from llvmlite import ir

from ..ir import Node
from . import scalar, vecmath
from .host import lower_host
from .index import i64
from .module import LoweringContext
from .opaque import OPAQUE

REASSOC = ("reassoc",)  # the row's sum may add in any order: the loop vectorizes


def lower_softmax(ctx: LoweringContext, node: Node) -> None:
    (x,) = node.inputs
    d = node.type.dtype
    if d.name not in ("float32", "float64"):
        lower_host(ctx, node)
        return
    b, n = ctx.builder, node.type.shape[-1]
    f = scalar.reg_type(d)
    exp = (lambda v: vecmath.exp(b, v)) if f == ir.FloatType() else (lambda v: scalar.emit(b, "exp", [v], d, d, {}))
    top, total = ctx.alloca(f), ctx.alloca(f)
    lo, hi = ctx.thread_range(node.type.numel // n if n else 0)
    with ctx.loop(lo, hi) as r:
        at = lambda j: b.add(b.mul(r, i64(n)), j)
        b.store(ir.Constant(f, float("-inf")), top)
        with ctx.loop(0, n) as j:  # NaN propagates as in numpy; llvm.maximum vectorizes (its order of
            # 0.0 and -0.0 differs from numpy's tie rule, but exp(x - m) and x - (m + log) cannot tell)
            b.store(scalar.intrinsic(b, "maximum", b.load(top), ctx.load(x, at(j))), top)
        m = b.load(top)
        b.store(ir.Constant(f, 0.0), total)
        with ctx.loop(0, n) as j:
            e = exp(b.fsub(ctx.load(x, at(j)), m))
            if not node.attrs["log"]:
                ctx.store(node, at(j), e)
            b.store(b.fadd(b.load(total), e, flags=REASSOC), total)
        _finish_row(ctx, node, at, m, b.load(total))


def _finish_row(ctx: LoweringContext, node: Node, at, m: ir.Value, total: ir.Value) -> None:
    """softmax: e / total (e stored in pass two); log_softmax: (x - max) - log(total)."""
    b, d, (x,) = ctx.builder, node.type.dtype, node.inputs
    n = node.type.shape[-1]
    if node.attrs["log"]:  # (x - max) - log(total), numpy's order (x - (max + log) rounds differently)
        log_total = scalar.emit(b, "log", [total], d, d, {})
        with ctx.loop(0, n) as j:
            ctx.store(node, at(j), b.fsub(b.fsub(ctx.load(x, at(j)), m), log_total))
        return
    with ctx.loop(0, n) as j:
        ctx.store(node, at(j), b.fdiv(ctx.load(node, at(j)), total))


class _Rows:
    """A layer_norm(-grad) row kernel: row r's elements, sums over the row, its mean and rstd."""

    def __init__(self, ctx: LoweringContext, node: Node, r: ir.Value):
        self.ctx, self.b, self.node, self.x = ctx, ctx.builder, node, node.inputs[0]
        self.d, self.n = node.type.dtype, node.type.shape[-1]
        self.f, self.r = scalar.reg_type(self.d), r
        self.acc = ctx.alloca(self.f)

    def at(self, j: ir.Value) -> ir.Value:
        return self.b.add(self.b.mul(self.r, i64(self.n)), j)

    def load(self, node: Node, j: ir.Value) -> ir.Value:
        return self.ctx.load(node, self.at(j) if node.type.ndim == self.node.type.ndim else j)  # w, b: (N,)

    def mean(self, value_at) -> ir.Value:
        b = self.b
        b.store(ir.Constant(self.f, 0.0), self.acc)
        with self.ctx.loop(0, self.n) as j:
            b.store(b.fadd(b.load(self.acc), value_at(j), flags=REASSOC), self.acc)
        return b.fdiv(b.load(self.acc), ir.Constant(self.f, float(self.n)))

    def normalizer(self, eps: float):
        """(xhat(j), rstd): the mean, then the variance of x - mean (two passes, as the numpy kernel)."""
        b = self.b
        mean = self.mean(lambda j: self.load(self.x, j))
        centered = lambda j: b.fsub(self.load(self.x, j), mean)  # noqa: E731
        var = self.mean(lambda j: b.fmul(centered(j), centered(j)))
        sqrt = scalar.emit(b, "sqrt", [b.fadd(var, ir.Constant(self.f, eps))], self.d, self.d, {})
        rstd = b.fdiv(ir.Constant(self.f, 1.0), sqrt)
        return (lambda j: b.fmul(centered(j), rstd)), rstd

    def store(self, j: ir.Value, value: ir.Value) -> None:
        self.ctx.store(self.node, self.at(j), value)


def _row_kernel(body):
    """The lowering running body(rows) for each row of this thread's share (float32/64; else numpy's)."""
    def lower(ctx: LoweringContext, node: Node) -> None:
        if node.type.dtype.name not in ("float32", "float64"):
            lower_host(ctx, node)
            return
        n = node.type.shape[-1]
        lo, hi = ctx.thread_range(node.type.numel // n if n else 0)
        with ctx.loop(lo, hi) as r:
            body(_Rows(ctx, node, r))
    return lower


def _layer_norm_row(rows: _Rows) -> None:
    """(x - mean) * rstd * w + b"""
    _, w, bias = rows.node.inputs
    xhat, _ = rows.normalizer(rows.node.attrs["eps"])
    b = rows.b
    with rows.ctx.loop(0, rows.n) as j:
        rows.store(j, b.fadd(b.fmul(xhat(j), rows.load(w, j)), rows.load(bias, j)))


def _layer_norm_grad_row(rows: _Rows) -> None:
    """wrt x: rstd (g w - mean(g w) - xhat mean(g w xhat));  wrt w: g xhat."""
    _, w, g = rows.node.inputs
    xhat, rstd = rows.normalizer(rows.node.attrs["eps"])
    b = rows.b
    if rows.node.attrs["wrt"] == "w":
        with rows.ctx.loop(0, rows.n) as j:
            rows.store(j, b.fmul(rows.load(g, j), xhat(j)))
        return
    gw = lambda j: b.fmul(rows.load(g, j), rows.load(w, j))  # noqa: E731
    mean_gw = rows.mean(gw)
    mean_gw_xhat = rows.mean(lambda j: b.fmul(gw(j), xhat(j)))
    with rows.ctx.loop(0, rows.n) as j:
        rows.store(j, b.fmul(rstd, b.fsub(b.fsub(gw(j), mean_gw), b.fmul(xhat(j), mean_gw_xhat))))


OPAQUE.update(softmax=lower_softmax, layer_norm=_row_kernel(_layer_norm_row),
              layer_norm_grad=_row_kernel(_layer_norm_grad_row))
