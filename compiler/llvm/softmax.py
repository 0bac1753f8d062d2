"""softmax / log_softmax over the last dim (the `softmax` primitive): one kernel, a row per loop
step, three passes over the row while it is in cache: the max; exp(x - max) and its sum (stored
for softmax); the result. float32 uses fast_exp, so the second pass vectorizes; float64 libm's
exp; other dtypes run the numpy kernel through a host call.
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


OPAQUE["softmax"] = lower_softmax
