"""Fused attention (compiler/attention.py) for the LLVM backend: a query row per loop step.

Forward: the row's scores are computed KEY_BLOCK keys at a time into a stack array; each block
updates the running max `m`, the running sum `l` and the output accumulator with one exp per
score (the online softmax: the old sums are rescaled by exp(m_old - m_new) once per block). So the
(Tq, Tk) score matrix is never written, whatever the sequence length. Causal rows stop at their
own position. The row's logsumexp m + log(l) is stored in the output's last column.

Backward: the gradient for q walks a query row's keys; the gradients for k and v walk a key's
query rows. Both recompute each probability as exp(score - logsumexp), never storing one.
Threads split the rows; each row's sums run in key order.
"""

from __future__ import annotations

import math

from llvmlite import ir

from ..ir import Node
from . import scalar
from .index import i64, unflatten
from .module import WORK, LoweringContext
from .opaque import OPAQUE

KEY_BLOCK = 64  # scores one query row holds at a time


class _Var:
    """A scalar kept in a stack slot (mem2reg makes it a register)."""

    def __init__(self, ctx: LoweringContext, ty: ir.Type):
        self.b, self.slot = ctx.builder, ctx.alloca(ty)

    def get(self) -> ir.Value:
        return self.b.load(self.slot)

    def set(self, value: ir.Value) -> None:
        self.b.store(value, self.slot)


class _Row:
    """A stack array of `n` floats: the output accumulator of one row."""

    def __init__(self, ctx: LoweringContext, ty: ir.Type, n: int):
        self.ctx, self.ty, self.n = ctx, ty, n
        self.slot = ctx.alloca(ir.ArrayType(ty, max(n, 1)))

    def at(self, k: ir.Value) -> ir.Value:
        return self.ctx.builder.gep(self.slot, [i64(0), k], inbounds=True)

    def fill(self, value: ir.Value) -> None:
        with self.ctx.loop(0, self.n) as k:
            self.ctx.builder.store(value, self.at(k))

    def scale(self, factor: ir.Value) -> None:
        b = self.ctx.builder
        with self.ctx.loop(0, self.n) as k:
            b.store(b.fmul(b.load(self.at(k)), factor), self.at(k))

    def add_scaled(self, weight: ir.Value, src: Node, base: ir.Value) -> None:
        """row += weight * src[base : base + n]"""
        b = self.ctx.builder
        with self.ctx.loop(0, self.n) as k:
            term = b.fmul(weight, self.ctx.load(src, b.add(base, k)))
            b.store(b.fadd(b.load(self.at(k)), term), self.at(k))


class _Attention:
    """Shapes, addressing and the score of one (query, key) pair for an attention node."""

    def __init__(self, ctx: LoweringContext, node: Node):
        self.ctx, self.b, self.node = ctx, ctx.builder, node
        self.q, self.k, self.v, self.bias = node.inputs[:4]
        *batch, self.tq, self.d = self.q.type.shape
        self.batch, self.tk, self.dv = tuple(batch), self.k.type.shape[-2], self.v.type.shape[-1]
        self.heads = math.prod(self.batch)
        self.dtype = self.q.type.dtype
        self.f = scalar.reg_type(self.dtype)
        self.causal, self.scale = node.attrs["causal"], node.attrs["scale"]
        self.bias_strides = _broadcast_strides(self.bias.type.shape)

    def const(self, value: float) -> ir.Constant:
        return ir.Constant(self.f, value)

    def q_row(self, bh: ir.Value, i: ir.Value) -> ir.Value:
        return self.b.add(self.b.mul(bh, i64(self.tq)), i)

    def k_row(self, bh: ir.Value, j: ir.Value) -> ir.Value:
        return self.b.add(self.b.mul(bh, i64(self.tk)), j)

    def dot(self, x: Node, x_base: ir.Value, y: Node, y_base: ir.Value, n: int) -> ir.Value:
        b, acc = self.b, _Var(self.ctx, self.f)
        acc.set(self.const(0.0))
        with self.ctx.loop(0, n) as t:
            acc.set(b.fadd(acc.get(), b.fmul(self.ctx.load(x, b.add(x_base, t)), self.ctx.load(y, b.add(y_base, t)))))
        return acc.get()

    def bias_base(self, bh: ir.Value) -> ir.Value:
        b, at = self.b, i64(0)
        for dim, stride in zip(unflatten(b, bh, self.batch), self.bias_strides[:-2]):
            if stride:
                at = b.add(at, b.mul(dim, i64(stride)))
        return at

    def score(self, bias_base: ir.Value, bh: ir.Value, i: ir.Value, j: ir.Value) -> ir.Value:
        """q_i . k_j * scale + bias[i, j]"""
        b, (si, sj) = self.b, self.bias_strides[-2:]
        qk = self.dot(self.q, b.mul(self.q_row(bh, i), i64(self.d)), self.k, b.mul(self.k_row(bh, j), i64(self.d)),
                      self.d)
        at = b.add(bias_base, b.add(b.mul(i, i64(si)), b.mul(j, i64(sj))))
        return b.fadd(b.fmul(qk, self.const(self.scale)), self.ctx.load(self.bias, at))

    def keys_of(self, i: ir.Value) -> ir.Value:
        """How many keys query i sees: all, or up to its own position when causal."""
        if not self.causal:
            return i64(self.tk)
        b, upto = self.b, self.b.add(i, i64(1))
        return b.select(b.icmp_signed("<", upto, i64(self.tk)), upto, i64(self.tk))

    def exp(self, x: ir.Value) -> ir.Value:
        return scalar.emit(self.b, "exp", [x], self.dtype, self.dtype, {})

    def maximum(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self.b.select(self.b.fcmp_ordered(">", x, y), x, y)


def _broadcast_strides(shape: tuple[int, ...]) -> list[int]:
    """Contiguous strides, 0 along size-1 dims (the bias broadcasts there)."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step if size != 1 else 0)
        step *= size
    return strides[::-1]


# ---------------------------------------------------------------- forward


def lower_attention(ctx: LoweringContext, node: Node) -> None:
    a, b = _Attention(ctx, node), ctx.builder
    acc, scores = _Row(ctx, a.f, a.dv), _Row(ctx, a.f, KEY_BLOCK)
    m, total = _Var(ctx, a.f), _Var(ctx, a.f)
    lo, hi = ctx.thread_range(a.heads * a.tq)
    with ctx.loop(lo, hi) as r:
        bh, i = b.udiv(r, i64(a.tq)), b.urem(r, i64(a.tq))
        m.set(a.const(-math.inf))
        total.set(a.const(0.0))
        acc.fill(a.const(0.0))
        keys = a.keys_of(i)
        with ctx.loop(0, b.udiv(b.add(keys, i64(KEY_BLOCK - 1)), i64(KEY_BLOCK))) as block:
            _key_block(a, (bh, i, a.bias_base(bh)), b.mul(block, i64(KEY_BLOCK)), keys, (acc, scores, m, total))
        _store_row(a, r, acc, m.get(), total.get())


def _key_block(a: _Attention, row: tuple, j0: ir.Value, keys: ir.Value, state: tuple) -> None:
    """Fold keys [j0, min(j0 + KEY_BLOCK, keys)) into the row's running max, sum and accumulator."""
    ctx, b = a.ctx, a.b
    bh, i, bias_base = row
    acc, scores, m, total = state
    end = b.add(j0, i64(KEY_BLOCK))
    end = b.select(b.icmp_signed("<", end, keys), end, keys)
    block_max = _Var(ctx, a.f)
    block_max.set(a.const(-math.inf))
    with ctx.loop(j0, end) as j:
        s = a.score(bias_base, bh, i, j)
        b.store(s, scores.at(b.sub(j, j0)))
        block_max.set(a.maximum(block_max.get(), s))
    m_new = a.maximum(m.get(), block_max.get())
    with b.if_then(b.fcmp_ordered("!=", m_new, a.const(-math.inf))):  # else every score so far is masked
        rescale = a.exp(b.fsub(m.get(), m_new))
        total.set(b.fmul(total.get(), rescale))
        acc.scale(rescale)
        with ctx.loop(j0, end) as j:
            p = a.exp(b.fsub(b.load(scores.at(b.sub(j, j0))), m_new))
            total.set(b.fadd(total.get(), p))
            acc.add_scaled(p, a.v, b.mul(a.k_row(bh, j), i64(a.dv)))
        m.set(m_new)


def _store_row(a: _Attention, r: ir.Value, acc: _Row, m: ir.Value, total: ir.Value) -> None:
    """out[r] = acc / total and the logsumexp; a fully masked row (total 0) gives zeros and -inf."""
    ctx, b, width = a.ctx, a.b, a.dv + 1
    live = b.fcmp_unordered("!=", total, a.const(0.0))  # NaN stays live: it propagates as torch's does
    inv = b.select(live, b.fdiv(a.const(1.0), total), a.const(0.0))
    base = b.mul(r, i64(width))
    with ctx.loop(0, a.dv) as k:
        ctx.store(a.node, b.add(base, k), b.fmul(b.load(acc.at(k)), inv))
    log_total = scalar.emit(b, "log", [total], a.dtype, a.dtype, {})
    ctx.store(a.node, b.add(base, i64(a.dv)), b.select(live, b.fadd(m, log_total), a.const(-math.inf)))


# ---------------------------------------------------------------- backward


class _Grad(_Attention):
    def __init__(self, ctx: LoweringContext, node: Node):
        super().__init__(ctx, node)
        self.fwd, self.dout, self.delta = node.inputs[4:7]
        self.wrt = node.attrs["wrt"]

    def lse(self, qr: ir.Value) -> ir.Value:
        return self.ctx.load(self.fwd, self.b.add(self.b.mul(qr, i64(self.dv + 1)), i64(self.dv)))

    def score_grad(self, bias_base: ir.Value, bh: ir.Value, i: ir.Value, j: ir.Value, p: ir.Value) -> ir.Value:
        """dS_ij = P_ij (dout_i . v_j - delta_i) * scale"""
        b, qr = self.b, self.q_row(bh, i)
        dp = self.dot(self.dout, b.mul(qr, i64(self.dv)), self.v, b.mul(self.k_row(bh, j), i64(self.dv)), self.dv)
        ds = b.fmul(p, b.fsub(dp, self.ctx.load(self.delta, qr)))
        return b.fmul(ds, self.const(self.scale))

    def probability(self, bias_base: ir.Value, bh: ir.Value, i: ir.Value, j: ir.Value, lse: ir.Value) -> ir.Value:
        return self.exp(self.b.fsub(self.score(bias_base, bh, i, j), lse))


def lower_attention_grad(ctx: LoweringContext, node: Node) -> None:
    g = _Grad(ctx, node)
    if g.wrt == "q":
        _grad_q(g)
    else:
        _grad_kv(g)


def _grad_q(g: _Grad) -> None:
    """dq_i = sum over keys j of dS_ij k_j"""
    ctx, b = g.ctx, g.b
    acc = _Row(ctx, g.f, g.d)
    lo, hi = ctx.thread_range(g.heads * g.tq)
    with ctx.loop(lo, hi) as r:
        bh, i = b.udiv(r, i64(g.tq)), b.urem(r, i64(g.tq))
        acc.fill(g.const(0.0))
        lse, bias_base = g.lse(r), g.bias_base(bh)
        with b.if_then(b.fcmp_ordered("!=", lse, g.const(-math.inf))), ctx.loop(0, g.keys_of(i)) as j:
            ds = g.score_grad(bias_base, bh, i, j, g.probability(bias_base, bh, i, j, lse))
            acc.add_scaled(ds, g.k, b.mul(g.k_row(bh, j), i64(g.d)))
        _store(g, r, acc)


def _grad_kv(g: _Grad) -> None:
    """dk_j = sum over queries i of dS_ij q_i;  dv_j = sum over queries i of P_ij dout_i"""
    ctx, b = g.ctx, g.b
    width = g.d if g.wrt == "k" else g.dv
    acc = _Row(ctx, g.f, width)
    lo, hi = ctx.thread_range(g.heads * g.tk)
    with ctx.loop(lo, hi) as r:
        bh, j = b.udiv(r, i64(g.tk)), b.urem(r, i64(g.tk))
        acc.fill(g.const(0.0))
        bias_base = g.bias_base(bh)
        with ctx.loop(j if g.causal else i64(0), g.tq) as i:  # causal: only queries at or after key j see it
            qr = g.q_row(bh, i)
            lse = g.lse(qr)
            with b.if_then(b.fcmp_ordered("!=", lse, g.const(-math.inf))):
                p = g.probability(bias_base, bh, i, j, lse)
                if g.wrt == "v":
                    acc.add_scaled(p, g.dout, b.mul(qr, i64(g.dv)))
                else:
                    acc.add_scaled(g.score_grad(bias_base, bh, i, j, p), g.q, b.mul(qr, i64(g.d)))
        _store(g, r, acc)


def _store(g: _Grad, r: ir.Value, acc: _Row) -> None:
    b, base = g.b, g.b.mul(r, i64(acc.n))
    with g.ctx.loop(0, acc.n) as k:
        g.ctx.store(g.node, b.add(base, k), b.load(acc.at(k)))


def _work(node: Node) -> int:
    """Multiply-adds / 16, as module.work counts a matmul's: scores plus the weighted sum."""
    q, k, v = node.inputs[:3]
    return q.type.numel // q.type.shape[-1] * k.type.shape[-2] * (q.type.shape[-1] + v.type.shape[-1]) // 16


WORK["attention"] = WORK["attention_grad"] = _work
OPAQUE["attention"], OPAQUE["attention_grad"] = lower_attention, lower_attention_grad
