"""conv2d as an implicit GEMM: the tiled GEMM of gemm.py reading im2col's matrix without building it.

Per convolution group g (blockIdx.z): C (N*OH*OW x O/G) = A (N*OH*OW x C/G*KH*KW) @ B (C/G*KH*KW x O/G),
A(m, k) = x[n, g*C/G + c, oh*s - p + kh*d, ow*s - p + kw*d] (0 in the zero padding),
B(k, o) = w[g*O/G + o, c, kh, kw], and C(m, o) is out[n, g*O/G + o, oh, ow], where the group's
epilogue (bias, relu) is applied before the store.
"""

from __future__ import annotations

from ..ir import Group
from . import scalar
from .epilogue import with_epilogue
from .gemm import emit_tiled
from .index import Index, unflatten
from .kernel import Kernel


def emit_conv2d(mod, group: Group) -> None:
    with_epilogue(mod, group, _emit_conv)


def _emit_conv(mod, group: Group, fused: bool) -> None:
    conv = group.anchor
    x, w = conv.inputs
    a = conv.attrs
    n, c, h, wd = x.type.shape
    o, cg, kh, kw = w.type.shape
    _, _, oh, ow = conv.type.shape
    g = a["groups"]
    og = o // g
    (s0, s1), (p0, p1), (d0, d1) = a["stride"], a["padding"], a["dilation"]

    def window(k: Kernel, row: str) -> list[str]:  # m -> (n, oh, ow)
        return unflatten(k, k.let(k.index_t, row, "m"), (n, oh, ow))

    def taps(k: Kernel, col: str) -> list[str]:  # k -> (c, kh, kw)
        return unflatten(k, k.let(k.index_t, col, "kx"), (cg, kh, kw))

    def load_a(k: Kernel, grp: str, row: str, col: str) -> str:
        img, y, xx = window(k, row)
        ch, i, j = taps(k, col)
        hi = k.let(k.index_t, f"{y} * {s0} - {p0} + {i} * {d0}", "h")
        wi = k.let(k.index_t, f"{xx} * {s1} - {p1} + {j} * {d1}", "w")
        v = k.fresh("xv")
        k.line(f"{scalar.ctype(x.type.dtype)} {v} = 0;")
        with k.block(f"if ({hi} >= 0 && {hi} < {h} && {wi} >= 0 && {wi} < {wd})"):
            k.line(f"{v} = {k.value(x, Index(k, x.type.shape, dims=[img, f'({grp} * {cg} + {ch})', hi, wi]))};")
        return v

    def load_b(k: Kernel, grp: str, row: str, col: str) -> str:
        ch, i, j = taps(k, row)
        return k.value(w, Index(k, w.type.shape, dims=[f"({grp} * {og} + {col})", ch, i, j]))

    def position(k: Kernel, grp: str, row: str, col: str) -> Index:
        img, y, xx = window(k, row)
        return Index(k, conv.type.shape, dims=[img, f"({grp} * {og} + {col})", y, xx])

    def prologue(k: Kernel) -> str:
        return k.let(k.index_t, f"({k.index_t})blockIdx.z", "grp")

    emit_tiled(mod, group, fused, m=n * oh * ow, n=og, kdim=cg * kh * kw, batches=g, load_a=load_a, load_b=load_b,
               position=position, prologue=prologue,
               comment=f": implicit GEMM {n * oh * ow}x{cg * kh * kw} @ {cg * kh * kw}x{og}, {g} group(s)")
