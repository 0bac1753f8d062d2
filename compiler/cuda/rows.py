"""Row kernels over the last dim as CUDA C, a warp per row: softmax / log_softmax (the `softmax`
primitive: the max, the sum of exp(x - max), the result) and layer_norm (the mean, the variance
of x - mean, the result). The 32 lanes stride over the row; each sum or max is combined by xor
shuffles, so every lane ends with the row's value (no shared memory, no barrier). All lanes of a
warp take the same rows, so the shuffles always have the full warp.
"""

from __future__ import annotations

import math

from ..ir import Group, Node
from . import scalar
from .elementwise import BLOCK, grid_1d

WARP = 32


def emit_softmax(mod, group: Group, node: Node) -> None:
    (x,) = node.inputs
    d, n = node.type.dtype, node.type.shape[-1]
    rows = node.type.numel // n if n else 0
    k = mod.kernel(group, [x, node])
    t, it, xs, out = scalar.ctype(d), k.index_t, k.ptr(x), k.ptr(node)
    exp = lambda v: scalar.emit("exp", [v], d, d, {})  # noqa: E731
    warps = f"(({it})gridDim.x * blockDim.x / {WARP})"
    with k.block(f"for ({it} r = (({it})blockIdx.x * blockDim.x + threadIdx.x) / {WARP}; r < {rows}; r += {warps})"):
        k.line(f"const {it} lane = threadIdx.x % {WARP}, base = r * {n};")
        k.line(f"{t} m = {scalar.literal(d, -math.inf)}, total = {scalar.literal(d, 0.0)};")
        k.line(f"for ({it} j = lane; j < {n}; j += {WARP}) m = gt_max(m, {xs}[base + j]);")
        _all_reduce(k, "m", "gt_max(m, {})")
        k.line(f"for ({it} j = lane; j < {n}; j += {WARP}) total += {exp(f'{xs}[base + j] - m')};")
        _all_reduce(k, "total", "total + {}")
        if node.attrs["log"]:
            k.line(f"const {t} shift = m + {scalar.emit('log', ['total'], d, d, {})};")
            k.line(f"for ({it} j = lane; j < {n}; j += {WARP}) {out}[base + j] = {xs}[base + j] - shift;")
        else:
            k.line(f"for ({it} j = lane; j < {n}; j += {WARP}) {out}[base + j] = {exp(f'{xs}[base + j] - m')} / total;")
    k.finish(grid_1d(rows * WARP), (BLOCK, 1, 1), cooperative=False)


def emit_layer_norm(mod, group: Group, node: Node) -> None:
    x, w, bias = node.inputs
    d, n = node.type.dtype, node.type.shape[-1]
    rows = node.type.numel // n if n else 0
    k = mod.kernel(group, [x, w, bias, node])
    t, it, xs = scalar.ctype(d), k.index_t, k.ptr(x)
    lanes = f"({it} j = lane; j < {n}; j += {WARP})"
    warps = f"(({it})gridDim.x * blockDim.x / {WARP})"
    with k.block(f"for ({it} r = (({it})blockIdx.x * blockDim.x + threadIdx.x) / {WARP}; r < {rows}; r += {warps})"):
        k.line(f"const {it} lane = threadIdx.x % {WARP}, base = r * {n};")
        k.line(f"{t} mean = {scalar.literal(d, 0.0)}, var = {scalar.literal(d, 0.0)};")
        k.line(f"for {lanes} mean += {xs}[base + j];")
        _all_reduce(k, "mean", "mean + {}")
        k.line(f"mean /= {scalar.literal(d, float(n))};")
        k.line(f"for {lanes} var += ({xs}[base + j] - mean) * ({xs}[base + j] - mean);")
        _all_reduce(k, "var", "var + {}")
        sqrt = scalar.emit("sqrt", [f"var / {scalar.literal(d, float(n))} + {scalar.literal(d, node.attrs['eps'])}"],
                           d, d, {})
        k.line(f"const {t} rstd = {scalar.literal(d, 1.0)} / {sqrt};")
        k.line(f"for {lanes} {k.ptr(node)}[base + j] = ({xs}[base + j] - mean) * rstd * {k.ptr(w)}[j] + {k.ptr(bias)}[j];")
    k.finish(grid_1d(rows * WARP), (BLOCK, 1, 1), cooperative=False)


def _all_reduce(k, var: str, combine: str) -> None:
    """var = the warp's combination of var (every lane gets it)."""
    k.line(f"for (int off = {WARP // 2}; off > 0; off >>= 1) {var} = "
           f"{combine.format(f'__shfl_xor_sync(0xffffffffu, {var}, off)')};")
