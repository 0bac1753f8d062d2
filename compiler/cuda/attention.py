"""Fused attention (compiler/attention.py) as CUDA C: a thread per query row (forward, dq) or per key
row (dk, dv, or both side by side for wrt="kv"), the row-at-a-time algorithm (the LLVM backend
blocks rows and keys instead: compiler/llvm/flash.py): the forward holds KEY_BLOCK
scores in registers/local memory and runs the online softmax over key blocks, so the (Tq, Tk)
score matrix is never written; the backward recomputes each probability from the saved
logsumexp. Rows are independent: no shared memory, no barriers.
"""

from __future__ import annotations

import math

from .. import attention
from ..ir import Group, Node
from . import scalar
from .elementwise import BLOCK, grid_1d
from .index import unflatten
from .kernel import Kernel

KEY_BLOCK = 64


class _Names:
    """C names and expressions for one attention node's operands."""

    def __init__(self, k: Kernel, node: Node):
        self.k, self.node = k, node
        self.q, self.key, self.v, self.bias = attention.operands(node)
        self.batch, self.tq, self.d, self.tk, self.dv = attention.head_dims(node)
        self.heads = math.prod(self.batch)
        self.dtype = self.q.type.dtype
        self.t = scalar.ctype(self.dtype)
        self.causal, self.scale = node.attrs["causal"], node.attrs["scale"]
        self.neg_inf = scalar.literal(self.dtype, -math.inf)
        nan = node.attrs["masked_rows"] == "nan"  # what a row masked whole gives: NaN, or zeros and -inf
        self.dead_out, self.dead_lse = (self.lit(math.nan), self.lit(math.nan)) if nan else (self.lit(0.0), self.neg_inf)

    def lit(self, value: float) -> str:
        return scalar.literal(self.dtype, value)

    def at(self, node: Node, flat: str) -> str:
        return f"{self.k.ptr(node)}[{flat}]"

    def exp(self, x: str) -> str:
        return scalar.emit("exp", [x], self.dtype, self.dtype, {})

    def bias_base(self, bh: str) -> None:
        """Declares `bb`, the bias offset of batch row bh (0 along broadcast dims)."""
        shape, strides, step = self.bias.type.shape, [], 1
        for size in reversed(shape):
            strides.append(step if size != 1 else 0)
            step *= size
        strides = strides[::-1]
        terms = [f"{dim} * {s}" for dim, s in zip(unflatten(self.k, bh, self.batch), strides[:-2]) if s]
        self.k.line(f"const {self.k.index_t} bb = {' + '.join(terms) or '0'};")
        self.si, self.sj = strides[-2:]

    def score(self, name: str, i: str, j: str) -> None:
        """Declares `name` = q_i . k_j * scale + bias[i, j] (q_i, k_j rows of batch row bh)."""
        k = self.k
        k.line(f"{self.t} {name} = {self.lit(0.0)};")
        with k.block(f"for (int c = 0; c < {self.d}; ++c)"):
            k.line(f"{name} += {self.at(self.q, f'(bh * {self.tq} + {i}) * {self.d} + c')} * "
                   f"{self.at(self.key, f'(bh * {self.tk} + {j}) * {self.d} + c')};")
        k.line(f"{name} = {name} * {self.lit(self.scale)} + {self.at(self.bias, f'bb + {i} * {self.si} + {j} * {self.sj}')};")


def emit_attention(mod, group: Group, node: Node) -> None:
    k = mod.kernel(group, [*node.inputs, node])
    a = _Names(k, node)
    t = a.t
    rows = a.heads * a.tq
    with k.grid_stride(rows, "r"):
        k.line(f"const {k.index_t} bh = r / {a.tq}, i = r % {a.tq};")
        k.line(f"const {k.index_t} keys = {f'gt_min(i + 1, ({k.index_t}){a.tk})' if a.causal else a.tk};")
        a.bias_base("bh")
        k.line(f"{t} acc[{max(a.dv, 1)}], sc[{KEY_BLOCK}], m = {a.neg_inf}, total = {a.lit(0.0)};")
        k.line(f"for (int c = 0; c < {a.dv}; ++c) acc[c] = {a.lit(0.0)};")
        with k.block(f"for ({k.index_t} j0 = 0; j0 < keys; j0 += {KEY_BLOCK})"):
            _key_block(a)
        k.line(f"const bool live = !(total == {a.lit(0.0)});  // NaN stays live: it propagates")
        k.line(f"const {t} inv = live ? {a.lit(1.0)} / total : {a.dead_out};")
        k.line(f"for (int c = 0; c < {a.dv}; ++c) {a.at(node, f'r * {a.dv + 1} + c')} = acc[c] * inv;")
        log = scalar.emit("log", ["total"], a.dtype, a.dtype, {})
        k.line(f"{a.at(node, f'r * {a.dv + 1} + {a.dv}')} = live ? m + {log} : {a.dead_lse};")
    k.finish(grid_1d(rows), (BLOCK, 1, 1), cooperative=False)


def _key_block(a: _Names) -> None:
    k, t = a.k, a.t
    k.line(f"const {k.index_t} end = gt_min(j0 + {KEY_BLOCK}, keys);")
    k.line(f"{t} block_max = {a.neg_inf};")
    with k.block(f"for ({k.index_t} j = j0; j < end; ++j)"):
        a.score("s", "i", "j")
        k.line("sc[j - j0] = s;")
        k.line("if (s > block_max) block_max = s;")
    k.line(f"const {t} m_new = block_max > m ? block_max : m;")
    k.line(f"if (m_new == {a.neg_inf}) continue;  // every score so far is masked")
    k.line(f"const {t} rescale = {a.exp('m - m_new')};")
    k.line("total *= rescale;")
    k.line(f"for (int c = 0; c < {a.dv}; ++c) acc[c] *= rescale;")
    with k.block(f"for ({k.index_t} j = j0; j < end; ++j)"):
        k.line(f"const {t} p = {a.exp('sc[j - j0] - m_new')};")
        k.line("total += p;")
        k.line(f"for (int c = 0; c < {a.dv}; ++c) acc[c] += p * {a.at(a.v, f'(bh * {a.tk} + j) * {a.dv} + c')};")
    k.line("m = m_new;")


def emit_attention_probs(mod, group: Group, node: Node) -> None:
    """P[r] = softmax of row r's scores, written straight into the output row (three passes over it)."""
    k = mod.kernel(group, [*node.inputs, node])
    a = _Names(k, node)
    t, rows = a.t, a.heads * a.tq
    at = a.at(node, f"r * {a.tk} + j")
    with k.grid_stride(rows, "r"):
        k.line(f"const {k.index_t} bh = r / {a.tq}, i = r % {a.tq};")
        k.line(f"const {k.index_t} keys = {f'gt_min(i + 1, ({k.index_t}){a.tk})' if a.causal else a.tk};")
        a.bias_base("bh")
        k.line(f"{t} m = {a.neg_inf}, total = {a.lit(0.0)};")
        with k.block(f"for ({k.index_t} j = 0; j < keys; ++j)"):
            a.score("s", "i", "j")
            k.line(f"{at} = s;")
            k.line("if (s > m) m = s;")
        with k.block(f"for ({k.index_t} j = 0; j < keys; ++j)"):
            k.line(f"{at} = {a.exp(f'{at} - m')};")
            k.line(f"total += {at};")
        k.line(f"const bool dead = m == {a.neg_inf};  // a row masked whole")
        k.line(f"for ({k.index_t} j = 0; j < keys; ++j) {at} = dead ? {a.dead_out} : {at} / total;")
        k.line(f"for ({k.index_t} j = keys; j < {a.tk}; ++j) {at} = dead ? {a.dead_out} : {a.lit(0.0)};")
    k.finish(grid_1d(rows), (BLOCK, 1, 1), cooperative=False)


# ---------------------------------------------------------------- backward


def emit_attention_grad(mod, group: Group, node: Node) -> None:
    k = mod.kernel(group, [*node.inputs, node])
    a = _Names(k, node)
    wrt = node.attrs["wrt"]
    rows = a.heads * (a.tq if wrt == "q" else a.tk)
    width = {"q": a.d, "k": a.d, "v": a.dv, "kv": a.d + a.dv}[wrt]
    with k.grid_stride(rows, "r"):
        if wrt == "q":
            k.line(f"const {k.index_t} bh = r / {a.tq}, i = r % {a.tq};")
        else:
            k.line(f"const {k.index_t} bh = r / {a.tk}, j = r % {a.tk};")
        a.bias_base("bh")
        k.line(f"{a.t} acc[{max(width, 1)}];")
        k.line(f"for (int c = 0; c < {width}; ++c) acc[c] = {a.lit(0.0)};")
        if wrt == "q":
            keys = f"gt_min(i + 1, ({k.index_t}){a.tk})" if a.causal else str(a.tk)
            with k.block(f"for ({k.index_t} j = 0; j < {keys}; ++j)"):
                _pair(a, wrt, width)
        else:
            with k.block(f"for ({k.index_t} i = {'j' if a.causal else '0'}; i < {a.tq}; ++i)"):
                _pair(a, wrt, width)
        scale = {"v": "", "kv": f" * (c < {a.d} ? {a.lit(a.scale)} : {a.lit(1.0)})"}.get(wrt, f" * {a.lit(a.scale)}")
        k.line(f"for (int c = 0; c < {width}; ++c) {a.at(node, f'r * {width} + c')} = acc[c]{scale};")
    k.finish(grid_1d(rows), (BLOCK, 1, 1), cooperative=False)


def _pair(a: _Names, wrt: str, width: int) -> None:
    """Adds query i / key j's term to acc: P_ij dout_i (dv), dS_ij k_j (dq), dS_ij q_i (dk), or dk's
    then dv's side by side (kv)."""
    k, t = a.k, a.t
    fwd, dout, delta = a.node.inputs[4:7]
    k.line(f"const {k.index_t} qr = bh * {a.tq} + i, kr = bh * {a.tk} + j;")
    k.line(f"const {t} lse = {a.at(fwd, f'qr * {a.dv + 1} + {a.dv}')};")
    k.line(f"if (lse == {a.neg_inf}) continue;  // a fully masked row: no gradient")
    a.score("s", "i", "j")
    k.line(f"const {t} p = {a.exp('s - lse')};")
    if wrt in ("v", "kv"):
        first = a.d if wrt == "kv" else 0
        k.line(f"for (int c = 0; c < {a.dv}; ++c) acc[{first} + c] += p * {a.at(dout, f'qr * {a.dv} + c')};")
        if wrt == "v":
            return
    k.line(f"{t} dp = {a.lit(0.0)};")
    k.line(f"for (int c = 0; c < {a.dv}; ++c) dp += {a.at(dout, f'qr * {a.dv} + c')} * "
           f"{a.at(a.v, f'kr * {a.dv} + c')};")
    k.line(f"const {t} ds = p * (dp - {a.at(delta, 'qr')});")
    other, row = (a.key, "kr") if wrt == "q" else (a.q, "qr")
    k.line(f"for (int c = 0; c < {a.d}; ++c) acc[c] += ds * {a.at(other, f'{row} * {a.d} + c')};")
