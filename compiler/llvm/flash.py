"""Blocked attention for the LLVM backend, the FlashAttention-2 way: the long-sequence kernels of
`attention` and `attention_grad` (compiler/attention.py) as small GEMMs on BLOCK x BLOCK tiles.

A work item is one head's block of BLOCK query rows (the forward, dq) or keys (dk, dv); threads
split the items and each writes only its own rows, so nothing races and the sums run in the same
order whatever the timing. Per thread, scratch holds the block's scores S (BLOCK x BLOCK, then
the probabilities P in place), the dP block, a GEMM's product and the rows' accumulator.

- forward, per query block and key block up to the causal limit: S = Q K^T * scale + bias
  (-inf where masked), the online softmax per row (the running max, sum and the factor that
  rescales the old accumulator), then acc = acc * rescale + P @ V. The rows' end is
  attention._store_row's: out = acc / sum and the logsumexp in the last column.
- backward: P = exp(S - lse) recomputed from the saved logsumexp; dP = dO V^T and
  dS = P (dP - delta) * scale. dq sums dS @ K over key blocks; dv sums P^T @ dO and dk
  dS^T @ Q over the query blocks at or after the key block (causal); wrt="kv" sums both from
  one P and dS per block pair, side by side in one output.
- a head's K^T (and V^T) is packed into GEMM panels once per head a thread meets (PackedHead).

GEMMs are compiler/llvm/gemm.py's small path (A read in place through strides, B packed unless its
rows are whole contiguous panels) with run-time sizes, so an edge block (T not a multiple of
BLOCK) reads only rows and keys that exist; masked scores are -inf before the exp, so they add 0.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from llvmlite import ir

from . import gemm, scalar
from .gemm import Matrix, elem_ptr, i64, max_i64, min_i64

if TYPE_CHECKING:  # attention.py imports this module
    from .attention import _Attention, _Grad

BLOCK = 64  # query rows and keys per block: a 64 x 64 score block is 16 kB in float32 (L1)


class Blocks:
    """The per-thread scratch and the GEMM call of one blocked attention kernel."""

    def __init__(self, a: _Attention, grad: bool = False):
        self.a, self.ctx, self.b = a, a.ctx, a.b
        self.lay = gemm.small_layout(gemm.GemmSpec(BLOCK, BLOCK, a.d, "f32" if a.f == ir.FloatType() else "f64"))
        self.width = max(a.d, a.dv)
        self.scores = self.buffer(BLOCK * BLOCK)
        self.dp = self.buffer(BLOCK * BLOCK) if grad else None
        self.product, self.acc = self.buffer(BLOCK * self.width), self.buffer(BLOCK * (a.d + a.dv))
        self.row_max, self.row_sum, self.rescale = (self.buffer(BLOCK) for _ in range(3))
        depth, cols = max(BLOCK, self.width), gemm.round_up(max(BLOCK, self.width), self.lay.nr)
        self.gemm_scratch = self.buffer(self.lay.mr * self.lay.nr + depth * cols)
        self.keys_t = PackedHead(self, a.k, a.d)
        self.values_t = PackedHead(self, a.v, a.dv) if grad else None

    def buffer(self, elements: int) -> ir.Value:
        return self.ctx.workspace(elements * self.a.dtype.itemsize, per_thread=True)

    def at(self, buf: ir.Value, index: ir.Value | int) -> ir.Value:
        return elem_ptr(self.b, buf, i64(index), self.lay)

    def load(self, buf: ir.Value, index: ir.Value | int) -> ir.Value:
        return self.b.load(self.at(buf, index), typ=self.a.f)

    def store(self, buf: ir.Value, index: ir.Value | int, value: ir.Value) -> None:
        self.b.store(value, self.at(buf, index))

    def matrix(self, node_or_buf, start: ir.Value, rs: int, cs: int) -> Matrix:
        """A strided view starting at element `start` of a node's buffer or of a scratch buffer."""
        ptr = node_or_buf if isinstance(node_or_buf, ir.Value) else self.ctx.ptr(node_or_buf)
        return Matrix(self.at(ptr, start), i64(rs), i64(cs))

    def gemm(self, lhs: Matrix, rhs: Matrix | ir.Value, shape: tuple, out: ir.Value, ldc: int,
             rhs_in_place: bool = False) -> None:
        """out[:m, :n] = lhs[:m, :k] @ rhs[:k, :n] for run-time (m, n, k); rhs_in_place: its rows are
        contiguous whole panels (unit column stride, n a static multiple of NR), else packed first;
        an rhs that is a pointer holds panels packed already (PackedHead)."""
        b, lay, (m, n, k) = self.b, self.lay, (i64(x) for x in shape)
        tile, packed = self.gemm_scratch, self.at(self.gemm_scratch, lay.mr * lay.nr)
        if isinstance(rhs, ir.Value):
            b_ptr, ldb = rhs, i64(lay.nr)
        elif rhs_in_place:
            b_ptr, ldb = rhs.ptr, rhs.rs
        else:
            b.call(gemm.pack_function(b.module, lay, lay.nr), [rhs.ptr, rhs.cs, rhs.rs, n, k, packed])
            b_ptr, ldb = packed, i64(lay.nr)
        b.call(gemm.small_macro_kernel(b.module, lay, rhs_in_place),
               [m, n, k, lhs.ptr, lhs.rs, lhs.cs, b_ptr, ldb, out, i64(ldc), tile])

    def in_place(self, cols: int) -> bool:
        """Rows of `cols` contiguous elements are whole panels of B, read without packing."""
        return cols % self.lay.nr == 0

    def clear_acc(self, rows: ir.Value, width: int) -> None:
        with self.ctx.loop(0, self.b.mul(rows, i64(width))) as e:
            self.store(self.acc, e, self.a.const(0.0))

    def add_product(self, rows: ir.Value, width: int, rescale: bool = False, acc_cols: tuple[int, int] | None = None) -> None:
        """acc[:rows, first:first + width] += product[:rows] (rows x width), the old acc first times
        rescale[row] if asked; acc_cols = (first, acc's row length), default (0, width)."""
        b, (first, acc_width) = self.b, acc_cols or (0, width)
        with self.ctx.loop(0, rows) as r:
            factor = self.load(self.rescale, r) if rescale else None
            with self.ctx.loop(0, width) as e:
                at = b.add(b.mul(r, i64(acc_width)), b.add(e, i64(first)))
                old = self.load(self.acc, at)
                old = b.fmul(old, factor) if rescale else old
                self.store(self.acc, at, b.fadd(old, self.load(self.product, b.add(b.mul(r, i64(width)), e))))


PACKED_HEAD_BYTES = 512 * 1024  # one head's K^T or V^T a thread keeps packed (T 1024 x D 128 in float32)


class PackedHead:
    """B = K^T (or V^T) of a whole head packed into GEMM panels once per head a thread meets, not
    once per (query block, key block) pair: a thread's items run head by head, so each head is
    packed about once. Heads over PACKED_HEAD_BYTES are read per block (the GEMM packs them)."""

    def __init__(self, s: Blocks, node, width: int):
        self.s, self.node, self.width = s, node, width
        self.whole = s.a.tk * width * s.a.dtype.itemsize <= PACKED_HEAD_BYTES
        if self.whole:
            self.panels = s.buffer(gemm.round_up(s.a.tk, s.lay.nr) * width)
            self.head = s.ctx.alloca(gemm.I64)  # the head the panels hold, -1 for none yet
            s.b.store(i64(-1), self.head)

    def rhs(self, bh: ir.Value, j0: ir.Value) -> Matrix | ir.Value:
        """B for keys from j0 (a multiple of BLOCK): the packed panels, or a strided view of the block."""
        s, b, width = self.s, self.s.b, self.width
        if not self.whole:
            return s.matrix(self.node, b.mul(s.a.k_row(bh, j0), i64(width)), 1, width)
        with b.if_then(b.icmp_signed("!=", b.load(self.head, typ=gemm.I64), bh)):
            src = s.at(s.ctx.ptr(self.node), b.mul(s.a.k_row(bh, i64(0)), i64(width)))
            pack = gemm.pack_function(b.module, s.lay, s.lay.nr)
            b.call(pack, [src, i64(width), i64(1), i64(s.a.tk), i64(width), self.panels])
            b.store(bh, self.head)
        return s.at(self.panels, b.mul(j0, i64(width)))


# ---------------------------------------------------------------- scores


def edge(b: ir.IRBuilder, start: ir.Value, total: int) -> ir.Value:
    """How many of BLOCK rows from `start` exist: min(BLOCK, total - start)."""
    return min_i64(b, i64(BLOCK), b.sub(i64(total), start))


def scores(s: Blocks, blk: tuple, j0: ir.Value, cols: ir.Value) -> None:
    """S[:rows, :BLOCK] = Q[i0:i0+rows] K[j0:j0+cols]^T * scale + bias, -inf past each row's last key
    (causal) and past `cols`; blk is (bh, i0, rows, bias_base)."""
    a, b = s.a, s.b
    bh, i0, rows, _ = blk
    q = s.matrix(a.q, b.mul(a.q_row(bh, i0), i64(a.d)), a.d, 1)
    s.gemm(q, s.keys_t.rhs(bh, j0), (rows, cols, a.d), s.scores, BLOCK)
    with s.ctx.loop(0, rows) as r:
        _scale_row(s, blk, r, j0, cols)


def _scale_row(s: Blocks, blk: tuple, r: ir.Value, j0: ir.Value, cols: ir.Value) -> None:
    """Row r of S: times scale plus the bias for the keys the row sees, -inf for the rest of BLOCK."""
    a, b = s.a, s.b
    _, i0, _, bias_base = blk
    i, (si, sj) = b.add(i0, r), a.bias_strides[-2:]
    seen = min_i64(b, max_i64(b, b.sub(a.keys_of(i), j0), i64(0)), cols)
    row, bias_row = b.mul(r, i64(BLOCK)), b.add(bias_base, b.add(b.mul(i, i64(si)), b.mul(j0, i64(sj))))
    with s.ctx.loop(0, seen) as j:
        score = b.fmul(s.load(s.scores, b.add(row, j)), a.const(a.scale))
        s.store(s.scores, b.add(row, j), b.fadd(score, s.ctx.load(a.bias, b.add(bias_row, b.mul(j, i64(sj))))))
    with s.ctx.loop(seen, BLOCK) as j:
        s.store(s.scores, b.add(row, j), a.const(-math.inf))


def key_blocks(s: Blocks, i0: ir.Value, rows: ir.Value) -> ir.Value:
    """How many key blocks the query rows [i0, i0 + rows) see: all, or up to the last row's position."""
    a, b = s.a, s.b
    keys = min_i64(b, b.add(i0, rows), i64(a.tk)) if a.causal else i64(a.tk)
    return b.udiv(b.add(keys, i64(BLOCK - 1)), i64(BLOCK))


def nan_max(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """max(x, y), NaN if either is (so a NaN score reaches the row's output)."""
    return b.select(b.or_(b.fcmp_unordered("uno", x, x), b.fcmp_ordered(">", x, y)), x, y)


def blocks_of(b: ir.IRBuilder, n: ir.Value | int) -> ir.Value:
    return b.udiv(b.add(i64(n), i64(BLOCK - 1)), i64(BLOCK))


@contextlib.contextmanager
def items(s: Blocks, total: int) -> Iterator[tuple]:
    """This thread's share of the (head, block) items over blocks of `total` rows (queries or keys):
    yields (bh, the block's first row, its rows, the head's bias offset) inside the loop. Within a
    head the blocks run 0, n-1, 1, n-2, ...: a causal block's work grows with its index, so a
    thread's contiguous share of one head's items still gets about half of its work."""
    a, b = s.a, s.b
    count = -(-total // BLOCK)
    lo, hi = s.ctx.thread_range(a.heads * count)
    with s.ctx.loop(lo, hi) as item:
        bh, at = b.udiv(item, i64(count)), b.urem(item, i64(count))
        half = b.udiv(at, i64(2))
        block = b.select(b.icmp_unsigned("==", b.urem(at, i64(2)), i64(0)), half, b.sub(i64(count - 1), half))
        start = b.mul(block, i64(BLOCK))
        yield bh, start, edge(b, start, total), a.bias_base(bh)


# ---------------------------------------------------------------- forward


def forward(a: _Attention) -> None:
    """out[..., :Dv] = softmax(S) V and the logsumexp in the last column, a query block per item."""
    s = Blocks(a)
    with items(s, a.tq) as blk:
        _start_rows(s, blk[2])
        with s.ctx.loop(0, key_blocks(s, blk[1], blk[2])) as kb:
            _fold_key_block(s, blk, s.b.mul(kb, i64(BLOCK)))
        with s.ctx.loop(0, blk[2]) as r:
            _store_row(s, blk, r)


def _start_rows(s: Blocks, rows: ir.Value) -> None:
    """Running max -inf, sum 0 and accumulator 0 for the block's rows."""
    with s.ctx.loop(0, rows) as r:
        s.store(s.row_max, r, s.a.const(-math.inf))
        s.store(s.row_sum, r, s.a.const(0.0))
    s.clear_acc(rows, s.a.dv)


def _fold_key_block(s: Blocks, blk: tuple, j0: ir.Value) -> None:
    """Keys [j0, j0 + BLOCK) into the rows' running max, sum and accumulator."""
    a, b = s.a, s.b
    cols = edge(b, j0, a.tk)
    scores(s, blk, j0, cols)
    with s.ctx.loop(0, blk[2]) as r:
        _online_softmax_row(s, r)
    v = s.matrix(a.v, b.mul(a.k_row(blk[0], j0), i64(a.dv)), a.dv, 1)
    s.gemm(s.matrix(s.scores, i64(0), BLOCK, 1), v, (blk[2], a.dv, cols), s.product, a.dv, s.in_place(a.dv))
    s.add_product(blk[2], a.dv, rescale=True)


def _online_softmax_row(s: Blocks, r: ir.Value) -> None:
    """Row r of S becomes exp(S - m_new) with m_new the running max including this block; the
    running sum takes the row's sum, and rescale[r] = exp(m_old - m_new) is the factor for the old
    accumulator. While every score so far is masked (m_new -inf), exp runs against 0: P is 0."""
    a, b = s.a, s.b
    row = b.mul(r, i64(BLOCK))
    vector = b.load(s.at(s.scores, row), typ=ir.VectorType(a.f, BLOCK), align=a.dtype.itemsize)
    m_old = s.load(s.row_max, r)
    m_new = nan_max(b, m_old, a.lanes_max(vector))
    base = b.select(b.fcmp_ordered("==", m_new, a.const(-math.inf)), a.const(0.0), m_new)
    total = a.ctx.alloca(a.f)
    b.store(a.const(0.0), total)
    with s.ctx.loop(0, BLOCK) as j:  # vectorizes (vecmath.exp is plain arithmetic in float32)
        p = a.exp(b.fsub(s.load(s.scores, b.add(row, j)), base))
        s.store(s.scores, b.add(row, j), p)
        b.store(b.fadd(b.load(total), p, flags=("reassoc",)), total)
    rescale = a.exp(b.fsub(m_old, base))
    s.store(s.rescale, r, rescale)
    s.store(s.row_sum, r, b.fadd(b.fmul(s.load(s.row_sum, r), rescale), b.load(total)))
    s.store(s.row_max, r, m_new)


def _store_row(s: Blocks, blk: tuple, r: ir.Value) -> None:
    """out[i] = acc / sum and the logsumexp; a row masked whole (sum 0) gives zeros and -inf, or NaN."""
    a, b = s.a, s.b
    total, m, width = s.load(s.row_sum, r), s.load(s.row_max, r), a.dv + 1
    acc = b.load(s.at(s.acc, b.mul(r, i64(a.dv))), typ=ir.VectorType(a.f, a.dv), align=a.dtype.itemsize)
    live = b.fcmp_unordered("!=", total, a.const(0.0))  # NaN stays live: it propagates as torch's does
    dead = a.const(math.nan if a.masked_nan else 0.0)
    inv = b.select(live, b.fdiv(a.const(1.0), total), dead)
    base = b.mul(a.q_row(blk[0], b.add(blk[1], r)), i64(width))
    a.store_row(a.node, base, b.fmul(acc, a.splat(inv, a.dv)))
    log_total = scalar.emit(b, "log", [total], a.dtype, a.dtype, {})
    lse = b.select(live, b.fadd(m, log_total), a.const(math.nan if a.masked_nan else -math.inf))
    a.ctx.store(a.node, b.add(base, i64(a.dv)), lse)


# ---------------------------------------------------------------- backward


def grad(g: _Grad) -> None:
    """attention_grad: dq by query blocks, dk, dv or both by key blocks."""
    s = Blocks(g, grad=True)
    if g.wrt == "q":
        _grad_q(s)
    else:
        _grad_kv(s, {"k": g.d, "v": g.dv, "kv": g.d + g.dv}[g.wrt])


def probabilities(s: Blocks, blk: tuple, j0: ir.Value, cols: ir.Value) -> None:
    """S, then P = exp(S - lse) in place: 0 where masked, and on a row masked whole (lse -inf,
    taken as +inf so that exp(-inf - inf) is 0); a NaN lse (masked_rows="nan") propagates."""
    a, b = s.a, s.b
    bh, i0, rows, _ = blk
    scores(s, blk, j0, cols)
    with s.ctx.loop(0, rows) as r:
        lse = a.lse(a.q_row(bh, b.add(i0, r)))
        lse = b.select(b.fcmp_ordered("==", lse, a.const(-math.inf)), a.const(math.inf), lse)
        row = b.mul(r, i64(BLOCK))
        with s.ctx.loop(0, BLOCK) as j:
            s.store(s.scores, b.add(row, j), a.exp(b.fsub(s.load(s.scores, b.add(row, j)), lse)))


def score_grads(s: Blocks, blk: tuple, j0: ir.Value, cols: ir.Value) -> None:
    """dS = P (dO V^T - delta) * scale into the dP block, P already in the scores block."""
    a, b = s.a, s.b
    bh, i0, rows, _ = blk
    dout = s.matrix(a.dout, b.mul(a.q_row(bh, i0), i64(a.dv)), a.dv, 1)
    s.gemm(dout, s.values_t.rhs(bh, j0), (rows, cols, a.dv), s.dp, BLOCK)
    with s.ctx.loop(0, rows) as r:
        delta = a.ctx.load(a.delta, a.q_row(bh, b.add(i0, r)))
        with s.ctx.loop(0, cols) as j:
            at = b.add(b.mul(r, i64(BLOCK)), j)
            ds = b.fmul(s.load(s.scores, at), b.fsub(s.load(s.dp, at), delta))
            s.store(s.dp, at, b.fmul(ds, a.const(a.scale)))


def _grad_q(s: Blocks) -> None:
    """dq[i0:i0+rows] = the sum over key blocks of dS @ K[j0:j0+cols]."""
    a, b = s.a, s.b
    with items(s, a.tq) as blk:
        bh, i0, rows, _ = blk
        s.clear_acc(rows, a.d)
        with s.ctx.loop(0, key_blocks(s, i0, rows)) as kb:
            j0 = b.mul(kb, i64(BLOCK))
            cols = edge(b, j0, a.tk)
            probabilities(s, blk, j0, cols)
            score_grads(s, blk, j0, cols)
            k = s.matrix(a.k, b.mul(a.k_row(bh, j0), i64(a.d)), a.d, 1)
            s.gemm(s.matrix(s.dp, i64(0), BLOCK, 1), k, (rows, a.d, cols), s.product, a.d, s.in_place(a.d))
            s.add_product(rows, a.d)
        _store_acc(s, a.q_row(bh, i0), rows, a.d)


def _grad_kv(s: Blocks, width: int) -> None:
    """dv[j0:j0+cols] = the sum over query blocks of P^T @ dO, dk = that of dS^T @ Q, or both; causal:
    only the query blocks from the one holding query j0 (queries before a key do not see it)."""
    a, b = s.a, s.b
    qblocks = -(-a.tq // BLOCK)
    with items(s, a.tk) as (bh, j0, cols, bias_base):
        s.clear_acc(cols, width)
        first = b.udiv(j0, i64(BLOCK)) if a.causal else i64(0)
        with s.ctx.loop(first, qblocks) as qb:
            i0 = b.mul(qb, i64(BLOCK))
            _fold_query_block(s, (bh, i0, edge(b, i0, a.tq), bias_base), j0, cols, width)
        _store_acc(s, a.k_row(bh, j0), cols, width)


def _fold_query_block(s: Blocks, blk: tuple, j0: ir.Value, cols: ir.Value, width: int) -> None:
    """acc[:cols] += dS^T @ Q[i0:i0+rows] (dk), P^T @ dO[i0:i0+rows] (dv), or both side by side
    (kv: dk's columns, then dv's), from one P and dS."""
    a, b = s.a, s.b
    bh, i0, rows, _ = blk
    probabilities(s, blk, j0, cols)
    if a.wrt in ("v", "kv"):
        dout = s.matrix(a.dout, b.mul(a.q_row(bh, i0), i64(a.dv)), a.dv, 1)
        s.gemm(s.matrix(s.scores, i64(0), 1, BLOCK), dout, (cols, a.dv, rows), s.product, a.dv, s.in_place(a.dv))
        s.add_product(cols, a.dv, acc_cols=(width - a.dv, width))
    if a.wrt in ("k", "kv"):
        score_grads(s, blk, j0, cols)
        q = s.matrix(a.q, b.mul(a.q_row(bh, i0), i64(a.d)), a.d, 1)
        s.gemm(s.matrix(s.dp, i64(0), 1, BLOCK), q, (cols, a.d, rows), s.product, a.d, s.in_place(a.d))
        s.add_product(cols, a.d, acc_cols=(0, width))


def _store_acc(s: Blocks, first_row: ir.Value, rows: ir.Value, width: int) -> None:
    """The node's rows [first_row, first_row + rows) of `width` elements = acc[:rows]."""
    b, base = s.b, s.b.mul(first_row, i64(width))
    with s.ctx.loop(0, b.mul(rows, i64(width))) as e:
        s.ctx.store(s.a.node, b.add(base, e), s.load(s.acc, e))
