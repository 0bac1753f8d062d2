"""Fused attention (compiler/attention.py) for the LLVM backend.

Shared here: shapes, addressing, a score as a dot product of rows held as vector values. exp is `vecmath.exp` in float32 (plain arithmetic, so the
loops over a block of scores vectorize; with libm's expf the row-at-a-time forward took 2.2x as long).

- attention: blocked, the FlashAttention-2 way (compiler/llvm/flash.py): a block of query rows
  against blocks of keys as small GEMMs, an online softmax per row, so the (Tq, Tk) score matrix
  is never written, whatever the sequence length. The row's logsumexp goes to the output's last column.
- attention_probs (short sequences): the scores, then exp and sum, then the normalization,
  written straight into the output row. Up to MAX_SCORE_VECTOR keys a row's scores are one
  vector (q's elements times the rows of k^T, copied per head), a few rows at a time; longer rows
  take a dot product per key.
- attention_grad: blocked too (flash.py): dq by query blocks, dk and dv by key blocks, each
  recomputing the probabilities exp(score - logsumexp) a block at a time, never storing them.

Causal rows stop at their own position. A row masked whole has logsumexp -inf (zeros, no
gradient) or NaN with masked_rows="nan" (NaN propagates, as through the softmax written out).
Threads split the rows (flash.py: blocks of rows); each row's sums run in key order.
"""

from __future__ import annotations

import math

from llvmlite import ir

from .. import attention
from ..ir import Node
from . import flash, scalar, vecmath
from .host import lower_host
from .index import i64, unflatten
from .module import WORK, LoweringContext
from .opaque import OPAQUE
from .scalar import I64

MAX_HEAD_DIM = 256  # rows are vector registers up to this width; wider heads run the numpy kernel
MAX_SCORE_VECTOR = 128  # keys up to which attention_probs holds a row's scores in one vector
MAX_KT_ELEMENTS = 16384  # k^T of one head in scratch (64 kB in float32) for the scores by columns
REASSOC = ("reassoc",)
CONTRACT = ("contract",)  # q k^T's multiply-adds may fuse (as BLAS's do)  # a dot product's horizontal sum may add in any order (a tree)


class _Var:
    """A value kept in a stack slot (mem2reg makes it a register)."""

    def __init__(self, ctx: LoweringContext, ty: ir.Type):
        self.b, self.slot = ctx.builder, ctx.alloca(ty)

    def get(self) -> ir.Value:
        return self.b.load(self.slot)

    def set(self, value: ir.Value) -> None:
        self.b.store(value, self.slot)


class _Attention:
    """Shapes, addressing and the score of one (query, key) pair for an attention node. A row of
    q, k, v or dout is one vector value (<D x float>): dot products are a vector multiply and a
    horizontal sum, and the output row is a vector accumulator that stays in registers."""

    def __init__(self, ctx: LoweringContext, node: Node):
        self.ctx, self.b, self.node = ctx, ctx.builder, node
        self.q, self.k, self.v, self.bias = attention.operands(node)
        self.batch, self.tq, self.d, self.tk, self.dv = attention.head_dims(node)
        self.heads = math.prod(self.batch)
        self.dtype = self.q.type.dtype
        self.f = scalar.reg_type(self.dtype)
        self.causal, self.scale = node.attrs["causal"], node.attrs["scale"]
        self.masked_nan = node.attrs["masked_rows"] == "nan"
        self.bias_strides = _broadcast_strides(self.bias.type.shape)

    def const(self, value: float) -> ir.Constant:
        return ir.Constant(self.f, value)

    def q_row(self, bh: ir.Value, i: ir.Value) -> ir.Value:
        return self.b.add(self.b.mul(bh, i64(self.tq)), i)

    def k_row(self, bh: ir.Value, j: ir.Value) -> ir.Value:
        return self.b.add(self.b.mul(bh, i64(self.tk)), j)

    # ---- rows as vectors
    def row(self, node: Node, row: ir.Value, width: int) -> ir.Value:
        """node's elements [row * width, row * width + width) as one vector."""
        ptr = self.ctx.gep(node, self.b.mul(row, i64(width)))
        return self.b.load(ptr, typ=ir.VectorType(self.f, width), align=self.dtype.itemsize)

    def store_row(self, node: Node, flat: ir.Value, value: ir.Value) -> None:
        self.b.store(value, self.ctx.gep(node, flat), align=self.dtype.itemsize)

    def zeros(self, width: int) -> ir.Constant:
        return ir.Constant(ir.VectorType(self.f, width), [0.0] * width)

    def splat(self, x: ir.Value, width: int) -> ir.Value:
        vec = ir.VectorType(x.type, width)
        one = self.b.insert_element(ir.Constant(vec, ir.Undefined), x, i64(0))
        return self.b.shuffle_vector(one, ir.Constant(vec, ir.Undefined),
                                     ir.Constant(ir.VectorType(ir.IntType(32), width), [0] * width))

    def dot(self, x: ir.Value, y: ir.Value) -> ir.Value:
        n, b = x.type.count, self.b
        fn = scalar.function(b.module, f"llvm.vector.reduce.fadd.v{n}{'f64' if self.f == ir.DoubleType() else 'f32'}",
                             self.f, [self.f, x.type])
        return b.call(fn, [self.const(-0.0), b.fmul(x, y)], fastmath=REASSOC)

    # ---- scores
    def bias_base(self, bh: ir.Value) -> ir.Value:
        b, at = self.b, i64(0)
        for dim, stride in zip(unflatten(b, bh, self.batch), self.bias_strides[:-2]):
            if stride:
                at = b.add(at, b.mul(dim, i64(stride)))
        return at

    def score(self, bias_base: ir.Value, q_row: ir.Value, k_row: ir.Value, i: ir.Value, j: ir.Value) -> ir.Value:
        """q_i . k_j * scale + bias[i, j], for the rows q_i, k_j as vectors"""
        b, (si, sj) = self.b, self.bias_strides[-2:]
        at = b.add(bias_base, b.add(b.mul(i, i64(si)), b.mul(j, i64(sj))))
        return b.fadd(b.fmul(self.dot(q_row, k_row), self.const(self.scale)), self.ctx.load(self.bias, at))

    def keys_of(self, i: ir.Value) -> ir.Value:
        """How many keys query i sees: all, or up to its own position when causal."""
        if not self.causal:
            return i64(self.tk)
        b, upto = self.b, self.b.add(i, i64(1))
        return b.select(b.icmp_signed("<", upto, i64(self.tk)), upto, i64(self.tk))

    def exp(self, x: ir.Value) -> ir.Value:
        """exp without a libm call in float32 (vecmath.exp: the loops around it vectorize); libm's in float64."""
        if self.f == ir.FloatType():
            return vecmath.exp(self.b, x)
        return scalar.emit(self.b, "exp", [x], self.dtype, self.dtype, {})

    def lanes_max(self, v: ir.Value) -> ir.Value:
        """The max of v's lanes, NaN if one is (numpy's max), by a tree of vector selects (LLVM's
        fmaximum reduction runs lane by lane on x86, a serial chain as long as the row)."""
        b, n = self.b, v.type.count
        width = 1 << (n - 1).bit_length()
        mask = lambda idx: ir.Constant(ir.VectorType(ir.IntType(32), len(idx)), list(idx))
        if width != n:  # -inf lanes up to a power of two
            v = b.shuffle_vector(v, self.splat(self.const(-math.inf), n), mask([*range(n), *[n] * (width - n)]))
        while width > 1:
            width //= 2
            lo, hi = (b.shuffle_vector(v, v, mask(range(k, k + width))) for k in (0, width))
            v = b.select(b.or_(b.fcmp_ordered(">", lo, hi), b.fcmp_unordered("uno", lo, lo)), lo, hi)
        return b.extract_element(v, i64(0))


def vectorizable(node: Node, v: Node | None = None) -> bool:
    """float32/float64 rows no wider than MAX_HEAD_DIM: the generated kernel; else the numpy one."""
    q, v = node.inputs[0], v or node.inputs[2]
    return q.type.dtype.name in ("float32", "float64") and max(q.type.shape[-1], v.type.shape[-1]) <= MAX_HEAD_DIM


def _broadcast_strides(shape: tuple[int, ...]) -> list[int]:
    """Contiguous strides, 0 along size-1 dims (the bias broadcasts there)."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step if size != 1 else 0)
        step *= size
    return strides[::-1]


# ---------------------------------------------------------------- forward


def lower_attention(ctx: LoweringContext, node: Node) -> None:
    if not vectorizable(node):
        lower_host(ctx, node)
        return
    flash.forward(_Attention(ctx, node))


# ---------------------------------------------------------------- the probabilities alone


def lower_attention_probs(ctx: LoweringContext, node: Node) -> None:
    """P[r] = softmax of row r's scores, written straight into the output row: the scores and
    their max, then exp and sum in one vectorized loop, then the normalization."""
    if not vectorizable(node, v=node.inputs[1]):
        lower_host(ctx, node)
        return
    a = _Attention(ctx, node)
    if by_columns(a):
        _probs_by_columns(a)
        return
    b = ctx.builder
    lo, hi = ctx.thread_range(a.heads * a.tq)
    with ctx.loop(lo, hi) as r:
        bh, i = b.udiv(r, i64(a.tq)), b.urem(r, i64(a.tq))
        _softmax_row(a, r, a.keys_of(i), _scores_by_keys(a, (bh, i, r), a.keys_of(i)))


def by_columns(a: _Attention) -> bool:
    """Short rows of keys: a row's scores are one vector, q_i's elements times the rows of k^T
    (copied once per head into scratch), instead of one dot product and horizontal sum per key."""
    return a.tk <= MAX_SCORE_VECTOR and a.d * a.tk <= MAX_KT_ELEMENTS


def _softmax_row(a: _Attention, r: ir.Value, keys: ir.Value, m: ir.Value) -> None:
    """Output row r holds its scores for keys [0, keys), whose max is m: make it their softmax,
    zeros past `keys` (a causal row's end); a row masked whole (m -inf) gives zeros or NaN."""
    ctx, b, node = a.ctx, a.b, a.node
    base = b.mul(r, i64(a.tk))
    at = lambda j: b.add(base, j)
    total = _Var(ctx, a.f)
    total.set(a.const(0.0))
    with ctx.loop(0, keys) as j:  # a row masked whole (max -inf) gives NaN here: fixed below
        p = a.exp(b.fsub(ctx.load(node, at(j)), m))
        ctx.store(node, at(j), p)
        total.set(b.fadd(total.get(), p, flags=REASSOC))
    dead = b.fcmp_ordered("==", m, a.const(-math.inf))
    dead_value = a.const(math.nan if a.masked_nan else 0.0)
    inv = b.fdiv(a.const(1.0), total.get())
    with ctx.loop(0, keys) as j:
        ctx.store(node, at(j), b.select(dead, dead_value, b.fmul(ctx.load(node, at(j)), inv)))
    with ctx.loop(keys, a.tk) as j:  # past a causal row's end
        ctx.store(node, at(j), b.select(dead, dead_value, a.const(0.0)))


def _scores_by_keys(a: _Attention, row: tuple, keys: ir.Value) -> ir.Value:
    """Store row r's scores for keys [0, keys), one dot product per key; return their max (NaN if one is)."""
    ctx, b = a.ctx, a.b
    bh, i, r = row
    q_row, bias_base, base = a.row(a.q, r, a.d), a.bias_base(bh), b.mul(r, i64(a.tk))
    m = _Var(ctx, a.f)
    m.set(a.const(-math.inf))
    with ctx.loop(0, keys) as j:
        s = a.score(bias_base, q_row, a.row(a.k, a.k_row(bh, j), a.d), i, j)
        ctx.store(a.node, b.add(base, j), s)
        m.set(b.select(b.or_(b.fcmp_ordered(">", s, m.get()), b.fcmp_unordered("uno", s, s)), s, m.get()))
    return m.get()


def _probs_by_columns(a: _Attention) -> None:
    """Threads split the heads; each copies its head's k^T to scratch, then scores up to four query
    rows at a time (independent accumulators sharing each k^T row: more work between loads, and no
    chain of dependent adds), then the rows' softmax."""
    ctx, b = a.ctx, a.b
    kt = ctx.workspace(a.d * a.tk * a.dtype.itemsize, per_thread=True)
    block = 4 if a.tk <= 32 else 2 if a.tk <= 64 else 1  # rows' accumulators: 4 x 32 lanes at most 128
    lo, hi = ctx.thread_range(a.heads)
    with ctx.loop(lo, hi) as bh:
        with ctx.loop(0, a.tk) as j, ctx.loop(0, a.d) as e:
            at = b.gep(kt, [b.add(b.mul(e, i64(a.tk)), j)], inbounds=True, source_etype=a.f)
            b.store(ctx.load(a.k, b.add(b.mul(a.k_row(bh, j), i64(a.d)), e)), at)
        whole = a.tq // block * block
        with ctx.loop(0, whole // block) as k:
            _score_rows(a, kt, bh, [b.add(b.mul(k, i64(block)), i64(n)) for n in range(block)])
        with ctx.loop(whole, a.tq) as i:
            _score_rows(a, kt, bh, [i])


def _score_rows(a: _Attention, kt: ir.Value, bh: ir.Value, rows: list[ir.Value]) -> None:
    """Query rows i of head bh: scores for all Tk keys as one vector each, the sum over e of
    q[i, e] * k^T[e, :], scaled, plus the bias row; each stored, then made its softmax."""
    ctx, b = a.ctx, a.b
    accs = [_Var(ctx, ir.VectorType(a.f, a.tk)) for _ in rows]
    for acc in accs:
        acc.set(a.zeros(a.tk))
    with ctx.loop(0, a.d) as e:
        kt_row = b.load(b.gep(kt, [b.mul(e, i64(a.tk))], inbounds=True, source_etype=a.f),
                        typ=ir.VectorType(a.f, a.tk), align=a.dtype.itemsize)
        for acc, i in zip(accs, rows):
            q = ctx.load(a.q, b.add(b.mul(a.q_row(bh, i), i64(a.d)), e))
            acc.set(b.fadd(acc.get(), b.fmul(a.splat(q, a.tk), kt_row, flags=CONTRACT), flags=CONTRACT))
    lanes = ir.Constant(ir.VectorType(I64, a.tk), list(range(a.tk)))
    for acc, i in zip(accs, rows):
        r, keys = a.q_row(bh, i), a.keys_of(i)
        scores = b.fadd(b.fmul(acc.get(), a.splat(a.const(a.scale), a.tk)), _bias_row(a, bh, i))
        a.store_row(a.node, b.mul(r, i64(a.tk)), scores)
        seen = b.icmp_signed("<", lanes, a.splat(keys, a.tk))  # keys past a causal row's end: not in the max
        _softmax_row(a, r, keys, a.lanes_max(b.select(seen, scores, a.splat(a.const(-math.inf), a.tk))))


def _bias_row(a: _Attention, bh: ir.Value, i: ir.Value) -> ir.Value:
    """bias[..., i, :] as a vector of Tk (one value splatted where the bias broadcasts over keys)."""
    b, (si, sj) = a.b, a.bias_strides[-2:]
    at = b.add(a.bias_base(bh), b.mul(i, i64(si)))
    if sj == 0:
        return a.splat(a.ctx.load(a.bias, at), a.tk)
    return b.load(a.ctx.gep(a.bias, at), typ=ir.VectorType(a.f, a.tk), align=a.dtype.itemsize)


# ---------------------------------------------------------------- backward


class _Grad(_Attention):
    def __init__(self, ctx: LoweringContext, node: Node):
        super().__init__(ctx, node)
        self.fwd, self.dout, self.delta = node.inputs[4:7]
        self.wrt = node.attrs["wrt"]

    def lse(self, qr: ir.Value) -> ir.Value:
        return self.ctx.load(self.fwd, self.b.add(self.b.mul(qr, i64(self.dv + 1)), i64(self.dv)))



def lower_attention_grad(ctx: LoweringContext, node: Node) -> None:
    if not vectorizable(node):
        lower_host(ctx, node)
        return
    flash.grad(_Grad(ctx, node))


EXP_COST = 32  # multiply-adds a vecmath.exp costs per element (about 30 vector ops per lane group)


def _work(node: Node) -> int:
    """Multiply-adds / 16, as module.work counts a matmul's: scores, their exp, the weighted sum."""
    batch, tq, d, tk, dv = attention.head_dims(node)
    dv = 0 if node.target == "attention_probs" else dv
    return math.prod(batch) * tq * tk * (d + EXP_COST + dv) // 16


WORK["attention"] = WORK["attention_probs"] = WORK["attention_grad"] = _work
OPAQUE.update(attention=lower_attention, attention_probs=lower_attention_probs, attention_grad=lower_attention_grad)
