"""Matmul as a shared-memory tiled GEMM whose epilogue (bias, relu...) is applied before the store.

`emit_tiled` is the one GEMM kernel; matmul (here) and conv2d (conv.py, as an implicit GEMM) differ
only in how an element of A (m, k) and of B (k, n) is read and where C (m, n) lives: callbacks
that go through the index emitter, so an operand reached through a permute (a transposed weight)
or an expand (batch broadcast) needs no kernel of its own.

A block computes a 64x64 tile of C: 256 threads, each a 4x4 micro-tile strided by 16 (conflict-free
shared-memory reads), over K in steps of 16 staged in shared memory; blockIdx.z is the batch.
Integers accumulate in long long with wrapping arithmetic; bool is not supported.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .. import dtypes as dt
from ..ir import Group
from . import scalar
from .epilogue import store_result, with_epilogue, written
from .index import Index, unflatten
from .kernel import Kernel, cuda_unsupported

BM, BN, BK, THREADS, TM = 64, 64, 16, 256, 4

# load(k, batch, row, col) -> C value; position(k, batch, m, n) -> the anchor's Index
Load = Callable[[Kernel, str, str, str], str]
Position = Callable[[Kernel, str, str, str], Index]


def emit_tiled(mod, group: Group, fused: bool, *, m: int, n: int, kdim: int, batches: int,
               load_a: Load, load_b: Load, position: Position, prologue: Callable[[Kernel], str], comment: str) -> None:
    """C[b] (m x n) = A[b] (m x kdim) @ B[b] (kdim x n), stored through the group's epilogue.

    prologue(k) runs first in the kernel and returns the batch context passed to the callbacks.
    """
    anchor = group.anchor
    d = anchor.type.dtype
    if d is dt.bool_:
        raise cuda_unsupported(anchor, "bool operands (cast to an integer or float type first)")
    t_el = scalar.ctype(d)
    acc_t = t_el if d.is_floating_point else "long long"
    k = mod.kernel(group, [*group.inputs, written(group, fused)])
    t = k.index_t
    k.line(f"__shared__ {t_el} As[{BK}][{BM + 1}];  // As[k][m]: +1 keeps the transposed stores conflict-free")
    k.line(f"__shared__ {t_el} Bs[{BK}][{BN + 1}];")
    k.line("const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;")
    k.line(f"const {t} m0 = ({t})blockIdx.y * {BM}, n0 = ({t})blockIdx.x * {BN};")
    batch = prologue(k)
    k.line(f"{acc_t} acc[{TM}][{TM}];")
    k.line("#pragma unroll")
    with k.block(f"for (int i = 0; i < {TM}; ++i)"):
        k.line("#pragma unroll")
        k.line(f"for (int j = 0; j < {TM}; ++j) acc[i][j] = 0;")
    with k.block(f"for ({t} k0 = 0; k0 < {kdim}; k0 += {BK})"):
        _stage(k, "As[kk][mm]", f"const int mm = e / {BK}, kk = e % {BK};", f"m0 + mm < {m}",
               lambda: load_a(k, batch, "(m0 + mm)", "(k0 + kk)"), kdim, t_el)
        _stage(k, "Bs[kk][nn]", f"const int kk = e / {BN}, nn = e % {BN};", f"n0 + nn < {n}",
               lambda: load_b(k, batch, "(k0 + kk)", "(n0 + nn)"), kdim, t_el)
        k.line("__syncthreads();")
        k.line("#pragma unroll")
        with k.block(f"for (int kk = 0; kk < {BK}; ++kk)"):
            k.line(f"{t_el} a[{TM}], b[{TM}];")
            k.line("#pragma unroll")
            k.line(f"for (int i = 0; i < {TM}; ++i) {{ a[i] = As[kk][ty + 16 * i]; b[i] = Bs[kk][tx + 16 * i]; }}")
            k.line("#pragma unroll")
            with k.block(f"for (int i = 0; i < {TM}; ++i)"):
                k.line("#pragma unroll")
                if d.is_floating_point:
                    k.line(f"for (int j = 0; j < {TM}; ++j) acc[i][j] += a[i] * b[j];")
                else:
                    k.line(f"for (int j = 0; j < {TM}; ++j) acc[i][j] = (long long)((unsigned long long)acc[i][j] + "
                           "(unsigned long long)a[i] * (unsigned long long)b[j]);")
        k.line("__syncthreads();")
    k.line("#pragma unroll")
    with k.block(f"for (int i = 0; i < {TM}; ++i)"):
        k.line("#pragma unroll")
        with k.block(f"for (int j = 0; j < {TM}; ++j)"):
            k.line(f"const {t} m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;")
            with k.block(f"if (m < {m} && n < {n})"):
                acc = k.let(t_el, "acc[i][j]" if d.is_floating_point else f"({t_el})acc[i][j]", "c")
                store_result(k, group, position(k, batch, "m", "n"), acc, fused)
    grid = (-(-n // BN), -(-m // BM), batches)
    k.finish(grid, (THREADS, 1, 1), comment=comment)


def _stage(k: Kernel, slot: str, split: str, in_range: str, load: Callable[[], str], kdim: int, t_el: str) -> None:
    """One operand's tile (BK x 64 elements) into shared memory, zeros outside the matrix."""
    assert BM == BN, "one loop bound serves both tiles"
    with k.block(f"for (int e = threadIdx.x; e < {BK * BM}; e += {THREADS})"):
        k.line(split)
        k.line(f"{t_el} v = 0;")
        with k.block(f"if ({in_range} && k0 + kk < {kdim})"):
            k.line(f"v = {load()};")
        k.line(f"{slot} = v;")


def emit_matmul(mod, group: Group) -> None:
    with_epilogue(mod, group, _emit_matmul)


def _emit_matmul(mod, group: Group, fused: bool) -> None:
    mm = group.anchor
    a, b = mm.inputs
    *batch_shape, m, kdim = a.type.shape
    n = b.type.shape[-1]
    batches = math.prod(batch_shape)
    if batches > 65535:
        raise cuda_unsupported(mm, f"{batches} batches (a grid's z dimension holds 65535)")

    def prologue(k: Kernel) -> list[str]:
        return unflatten(k, "blockIdx.z", tuple(batch_shape)) if batch_shape else []

    def operand(node):
        return lambda k, bd, r, c: k.value(node, Index(k, node.type.shape, dims=[*bd, r, c]))

    def position(k, bd, r, c):
        return Index(k, mm.type.shape, dims=[*bd, r, c])

    shape = "x".join(map(str, (*batch_shape, m, kdim))) + " @ " + f"{kdim}x{n}"
    emit_tiled(mod, group, fused, m=m, n=n, kdim=kdim, batches=batches, load_a=operand(a), load_b=operand(b),
               position=position, prologue=prologue, comment=f": {shape}")
