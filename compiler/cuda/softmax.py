"""softmax / log_softmax over the last dim (the `softmax` primitive) as CUDA C: a warp per row.
The 32 lanes stride over the row for its max, then for the sum of exp(x - max), each combined by
xor shuffles (every lane ends with the row's value, no shared memory, no barrier), then write the
result. All lanes of a warp take the same rows, so the shuffles always have the full warp.
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


def _all_reduce(k, var: str, combine: str) -> None:
    """var = the warp's combination of var (every lane gets it)."""
    k.line(f"for (int off = {WARP // 2}; off > 0; off >>= 1) {var} = "
           f"{combine.format(f'__shfl_xor_sync(0xffffffffu, {var}, off)')};")
