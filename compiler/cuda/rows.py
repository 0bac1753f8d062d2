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
    """layer_norm: (x - mean) * rstd * w + b;  layer_norm_grad wrt x: rstd (g w - mean(g w) -
    xhat mean(g w xhat)), wrt w: g xhat."""
    x, w, third = node.inputs
    d, n = node.type.dtype, node.type.shape[-1]
    rows = node.type.numel // n if n else 0
    k = mod.kernel(group, [x, w, third, node])
    t, it, xs, ws, out = scalar.ctype(d), k.index_t, k.ptr(x), k.ptr(w), k.ptr(node)
    lanes, lit = f"({it} j = lane; j < {n}; j += {WARP})", lambda v: scalar.literal(d, v)  # noqa: E731
    warps = f"(({it})gridDim.x * blockDim.x / {WARP})"
    with k.block(f"for ({it} r = (({it})blockIdx.x * blockDim.x + threadIdx.x) / {WARP}; r < {rows}; r += {warps})"):
        k.line(f"const {it} lane = threadIdx.x % {WARP}, base = r * {n};")
        _row_mean(k, t, "mean", f"{xs}[base + j]", lanes, lit(float(n)))
        _row_mean(k, t, "var", f"({xs}[base + j] - mean) * ({xs}[base + j] - mean)", lanes, lit(float(n)))
        sqrt = scalar.emit("sqrt", [f"var + {lit(node.attrs['eps'])}"], d, d, {})
        k.line(f"const {t} rstd = {lit(1.0)} / {sqrt};")
        xhat = f"(({xs}[base + j] - mean) * rstd)"
        third_at = f"{k.ptr(third)}[base + j]"
        if node.target == "layer_norm":
            k.line(f"for {lanes} {out}[base + j] = {xhat} * {ws}[j] + {k.ptr(third)}[j];")
        elif node.attrs["wrt"] == "w":
            k.line(f"for {lanes} {out}[base + j] = {third_at} * {xhat};")
        else:
            gw = f"({third_at} * {ws}[j])"
            _row_mean(k, t, "mean_gw", gw, lanes, lit(float(n)))
            _row_mean(k, t, "mean_gw_xhat", f"{gw} * {xhat}", lanes, lit(float(n)))
            k.line(f"for {lanes} {out}[base + j] = rstd * ({gw} - mean_gw - {xhat} * mean_gw_xhat);")
    k.finish(grid_1d(rows * WARP), (BLOCK, 1, 1), cooperative=False)


def _row_mean(k, t: str, name: str, value: str, lanes: str, n: str) -> None:
    """Declares `name` = the row's mean of value(j), the same in every lane."""
    k.line(f"{t} {name} = 0;")
    k.line(f"for {lanes} {name} += {value};")
    _all_reduce(k, name, name + " + {}")
    k.line(f"{name} /= {n};")


def _all_reduce(k, var: str, combine: str) -> None:
    """var = the warp's combination of var (every lane gets it)."""
    k.line(f"for (int off = {WARP // 2}; off > 0; off >>= 1) {var} = "
           f"{combine.format(f'__shfl_xor_sync(0xffffffffu, {var}, off)')};")
