"""Row kernels over the last dim: a row per loop step, a few passes over it while it is in cache,
instead of a chain of reduction and elementwise kernels each reading it from memory.

- softmax / log_softmax (the `softmax` primitive): the max; exp(x - max) and its sum (stored for
  softmax); the result. float32 uses fast_exp, so the second pass vectorizes; float64 libm's exp.
- layer_norm: the mean; the variance of x - mean (two passes, as the numpy kernel, not
  E[x^2] - mean^2); (x - mean) * rstd * w + b.

Other dtypes run the numpy kernel through a host call. Sums may add in any order (REASSOC).
"""

from __future__ import annotations

from llvmlite import ir

from ..ir import Node
from . import scalar
from .fast_exp import fast_exp
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
    exp = (lambda v: fast_exp(b, v)) if f == ir.FloatType() else (lambda v: scalar.emit(b, "exp", [v], d, d, {}))
    top, total = ctx.alloca(f), ctx.alloca(f)
    lo, hi = ctx.thread_range(node.type.numel // n if n else 0)
    with ctx.loop(lo, hi) as r:
        at = lambda j: b.add(b.mul(r, i64(n)), j)
        b.store(ir.Constant(f, float("-inf")), top)
        with ctx.loop(0, n) as j:  # numpy's maximum: NaN propagates
            b.store(scalar.emit(b, "maximum", [b.load(top), ctx.load(x, at(j))], d, d, {}), top)
        m = b.load(top)
        b.store(ir.Constant(f, 0.0), total)
        with ctx.loop(0, n) as j:
            e = exp(b.fsub(ctx.load(x, at(j)), m))
            if not node.attrs["log"]:
                ctx.store(node, at(j), e)
            b.store(b.fadd(b.load(total), e, flags=REASSOC), total)
        _finish_row(ctx, node, at, m, b.load(total))


def _finish_row(ctx: LoweringContext, node: Node, at, m: ir.Value, total: ir.Value) -> None:
    """softmax: e / total (e stored in pass two); log_softmax: x - max - log(total)."""
    b, d, (x,) = ctx.builder, node.type.dtype, node.inputs
    n = node.type.shape[-1]
    if node.attrs["log"]:
        shift = b.fadd(m, scalar.emit(b, "log", [total], d, d, {}))
        with ctx.loop(0, n) as j:
            ctx.store(node, at(j), b.fsub(ctx.load(x, at(j)), shift))
        return
    with ctx.loop(0, n) as j:
        ctx.store(node, at(j), b.fdiv(ctx.load(node, at(j)), total))


def lower_layer_norm(ctx: LoweringContext, node: Node) -> None:
    x, w, bias = node.inputs
    d = node.type.dtype
    if d.name not in ("float32", "float64"):
        lower_host(ctx, node)
        return
    b, n = ctx.builder, node.type.shape[-1]
    f = scalar.reg_type(d)
    acc = ctx.alloca(f)
    lo, hi = ctx.thread_range(node.type.numel // n if n else 0)

    def row_mean(value_at) -> ir.Value:
        b.store(ir.Constant(f, 0.0), acc)
        with ctx.loop(0, n) as j:
            b.store(b.fadd(b.load(acc), value_at(j), flags=REASSOC), acc)
        return b.fdiv(b.load(acc), ir.Constant(f, float(n)))

    with ctx.loop(lo, hi) as r:
        at = lambda j: b.add(b.mul(r, i64(n)), j)  # noqa: E731
        mean = row_mean(lambda j: ctx.load(x, at(j)))
        centered = lambda j: b.fsub(ctx.load(x, at(j)), mean)  # noqa: E731
        var = row_mean(lambda j: b.fmul(centered(j), centered(j)))
        rstd = b.fdiv(ir.Constant(f, 1.0), scalar.emit(b, "sqrt", [b.fadd(var, ir.Constant(f, node.attrs["eps"]))], d, d, {}))
        with ctx.loop(0, n) as j:
            ctx.store(node, at(j), b.fadd(b.fmul(b.fmul(centered(j), rstd), ctx.load(w, j)), ctx.load(bias, j)))


OPAQUE["softmax"], OPAQUE["layer_norm"] = lower_softmax, lower_layer_norm
