"""Reductions (sum/prod/max/min/argmax/argmin over any dims, keepdim) with prologue and epilogue.

The anchor's input is evaluated through the index emitter (the prologue: x*x before a sum, a
cast...), accumulated, and the epilogue (mean's 1/n, ...) is applied where the result is stored.
Two shapes of kernel:
- short reductions (fewer than BLOCK_MIN elements each): a thread per output element, a serial
  loop; no cooperation, so the CPU check runs it;
- long ones: a block per output element, threads stride over the reduced elements, then warp
  shuffles and one shared-memory step across the warps.

Integers accumulate in long long with wrapping arithmetic (numpy sums small ints in int64 and casts
back: the same bits); bool sums are `any`, products `all`. max/min propagate NaN explicitly (fmax
does not); argmax/argmin pick the first NaN, else the first extreme, as numpy.
"""

from __future__ import annotations

import math

from .. import dtypes as dt
from ..ir import Group, Node
from . import scalar
from .elementwise import BLOCK, MAX_BLOCKS, grid_1d
from .epilogue import store_result, with_epilogue, written
from .index import Index, unflatten
from .kernel import Kernel

BLOCK_MIN = 128  # reductions at least this long get a block per output element
LLONG_MIN, LLONG_MAX = "(-9223372036854775807LL - 1)", "9223372036854775807LL"


class _Op:
    """How one reduction accumulates: C types, identity, and the combine step."""

    def __init__(self, anchor: Node):
        x = anchor.inputs[0]
        self.name, self.d = anchor.target, x.type.dtype
        self.floating = self.d.is_floating_point
        self.acc_t = scalar.ctype(self.d) if self.floating else "long long"
        self.arg = self.name in ("argmax", "argmin")

    def identity(self) -> str:
        n, d = self.name, self.d
        if n in ("sum", "prod"):
            return scalar.literal(d, 1 if n == "prod" else 0) if self.floating else ("1LL" if n == "prod" else "0LL")
        high = n in ("min", "argmin")
        if self.floating:
            return scalar.literal(d, math.inf if high else -math.inf)
        if d is dt.bool_ and not self.arg:
            return "1LL" if high else "0LL"
        return LLONG_MAX if high else LLONG_MIN

    def combine(self, k: Kernel, acc: str, arg: str, v: str, r: str) -> None:
        """acc (and arg) updated with value v found at reduced position r."""
        n, f = self.name, self.floating
        if self.arg:
            better = ">" if n == "argmax" else "<"
            k.line(f"if (({v} != {v}) ? ({acc} == {acc} || {r} < {arg}) : "
                   f"({acc} == {acc} && ({v} {better} {acc} || ({v} == {acc} && {r} < {arg})))) "
                   f"{{ {acc} = {v}; {arg} = {r}; }}")
            return
        if self.d is dt.bool_:
            k.line(f"{acc} {'|' if n in ('sum', 'max') else '&'}= {v};")
        elif n in ("max", "min"):
            k.line(f"{acc} = gt_{n}({acc}, {v});")
        elif f:
            k.line(f"{acc} {'+' if n == 'sum' else '*'}= {v};")
        else:
            k.line(f"{acc} = (long long)((unsigned long long){acc} {'+' if n == 'sum' else '*'} (unsigned long long){v});")

    def result(self, acc: str, arg: str, anchor: Node) -> str:
        """The anchor's value in its own dtype."""
        if self.arg:
            return arg
        return scalar.cast(dt.int64, anchor.type.dtype, acc) if not self.floating else acc


def _dims(anchor: Node) -> tuple[int, ...]:
    x = anchor.inputs[0]
    if anchor.target in ("argmax", "argmin"):
        return (anchor.attrs["dim"],) if x.type.ndim else ()
    return tuple(sorted(anchor.attrs["dims"]))


def emit_group(mod, group: Group) -> None:
    with_epilogue(mod, group, _emit)


def _emit(mod, group: Group, fused: bool) -> None:
    anchor = group.anchor
    x = anchor.inputs[0]
    red = _dims(anchor)
    kept = [d for d in range(x.type.ndim) if d not in red]
    n_out, n_red = anchor.type.numel, math.prod(x.type.shape[d] for d in red)
    op = _Op(anchor)
    k = mod.kernel(group, [*group.inputs, written(group, fused)])
    t = k.index_t

    def accumulate(o: str, r: str) -> None:
        dims = [""] * x.type.ndim
        for d, e in zip(kept, unflatten(k, o, tuple(x.type.shape[d] for d in kept))):
            dims[d] = e
        for d, e in zip(red, unflatten(k, r, tuple(x.type.shape[d] for d in red))):
            dims[d] = e
        v = k.value(x, Index(k, x.type.shape, dims=dims))
        op.combine(k, "acc", "arg", v if op.floating else f"(long long){v}", r)

    def finish(o: str) -> None:
        store_result(k, group, Index(k, anchor.type.shape, flat=o), op.result("acc", "arg", anchor), fused)

    def start() -> None:
        k.line(f"{op.acc_t} acc = {op.identity()};")
        if op.arg:
            k.line(f"long long arg = {LLONG_MAX};")

    if n_red < BLOCK_MIN:
        with k.grid_stride(n_out, "o"):
            start()
            with k.block(f"for ({t} r = 0; r < {n_red}; ++r)"):
                accumulate("o", "r")
            finish("o")
        k.finish(grid_1d(n_out), (BLOCK, 1, 1), cooperative=False, comment=f": {n_out} x {n_red}, a thread each")
        return

    k.line(f"__shared__ {op.acc_t} s_acc[{BLOCK // 32}];")
    if op.arg:
        k.line(f"__shared__ long long s_arg[{BLOCK // 32}];")
    k.line("const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;")
    with k.block(f"for ({t} o = blockIdx.x; o < {n_out}; o += gridDim.x)"):
        start()
        with k.block(f"for ({t} r = threadIdx.x; r < {n_red}; r += blockDim.x)"):
            accumulate("o", "r")
        _warp_reduce(k, op)
        with k.block("if (lane == 0)"):
            k.line("s_acc[warp] = acc;" + (" s_arg[warp] = arg;" if op.arg else ""))
        k.line("__syncthreads();")
        with k.block("if (warp == 0)"):
            k.line(f"acc = lane < {BLOCK // 32} ? s_acc[lane] : {op.identity()};")
            if op.arg:
                k.line(f"arg = lane < {BLOCK // 32} ? s_arg[lane] : {LLONG_MAX};")
            _warp_reduce(k, op)
            with k.block("if (lane == 0)"):
                finish("o")
        k.line("__syncthreads();  // s_acc is reused by the next output")
    k.finish((min(n_out, MAX_BLOCKS), 1, 1), (BLOCK, 1, 1), comment=f": {n_out} x {n_red}, a block each")


def _warp_reduce(k: Kernel, op: _Op) -> None:
    with k.block("for (int off = 16; off > 0; off >>= 1)"):
        k.line(f"const {op.acc_t} o_acc = __shfl_down_sync(0xffffffffu, acc, off);")
        if op.arg:
            k.line("const long long o_arg = __shfl_down_sync(0xffffffffu, arg, off);")
        op.combine(k, "acc", "arg", "o_acc", "o_arg")
