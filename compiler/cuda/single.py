"""Groups of one node: the opaque ops' own kernels, and anything else routed to its pattern's emitter.

- fold (the adjoint of unfold, conv's input gradient): a thread per output pixel gathers the
  window taps that cover it, in numpy's (kh, kw) order: no atomics, the same sums bit for bit;
- scatter_add: a copy of the base, then a thread per index adds with atomicAdd (an out-of-bounds
  index sets the error flag and adds nothing);
- cumsum: a thread per line, a serial running sum (numpy's order);
- rand: splitmix64(key + i), bit-exact with primitives.py and the LLVM backend;
- attention, attention_probs, attention_grad (attention.py), softmax and layer_norm (rows.py): row kernels.
"""

from __future__ import annotations

import dataclasses

from .. import dtypes as dt
from ..ir import Group, Node
from ..primitives import Kind
from . import scalar
from .attention import emit_attention, emit_attention_grad, emit_attention_probs
from .elementwise import BLOCK, emit_pointwise, grid_1d
from .index import Index, unflatten
from .kernel import Kernel, cuda_unsupported
from .rows import emit_layer_norm, emit_softmax


def emit_single(mod, group: Group) -> None:
    from . import conv, gemm, pooling, reduction

    node = group.outputs[0]
    kind = node.prim.kind
    if kind in (Kind.ELEMENTWISE, Kind.INJECTIVE):
        emit_pointwise(mod, group, node, group.inputs)
    elif kind in (Kind.REDUCTION, Kind.OUT_FUSABLE):
        anchored = dataclasses.replace(group, anchor=node)
        emit = {"matmul": gemm.emit_matmul, "conv2d": conv.emit_conv2d}.get(node.target, reduction.emit_group)
        emit(mod, anchored)
    elif node.target in _OPAQUE:
        _OPAQUE[node.target](mod, group, node)
    elif node.target in pooling.KERNELS:
        pooling.KERNELS[node.target](mod, group, node)
    else:
        raise cuda_unsupported(node, "no CUDA kernel exists for this primitive yet")


def _simple(mod, group: Group, node: Node, reads: list[Node], n: int, suffix: str = "", var: str = "i"):
    """A grid-stride kernel over n items; the caller writes the body inside `with ... as k`."""
    k = mod.kernel(group, [*reads, node], suffix)

    class _Body:
        def __enter__(self) -> Kernel:
            self.loop = k.grid_stride(n, var)
            self.loop.__enter__()
            return k

        def __exit__(self, *exc) -> None:
            self.loop.__exit__(*exc)
            if exc[0] is None:
                k.finish(grid_1d(n), (BLOCK, 1, 1), cooperative=False)

    return _Body()


def _add(d: dt.DType, a: str, b: str) -> str:
    return scalar.emit("add", [a, b], d, d, {})


def _fold(mod, group: Group, node: Node) -> None:
    (cols,) = node.inputs
    d, a = node.type.dtype, node.attrs
    _, _, oh, ow, kh, kw = cols.type.shape
    (s0, s1), (d0, d1) = a["stride"], a["dilation"]
    with _simple(mod, group, node, [cols], node.type.numel) as k:
        img, ch, y, x = unflatten(k, "i", node.type.shape)
        k.line(f"{scalar.ctype(d)} acc = {scalar.literal(d, 0)};")
        with k.block(f"for (int r = 0; r < {kh}; ++r)"), k.block(f"for (int s = 0; s < {kw}; ++s)"):
            k.line(f"const {k.index_t} ty = {y} - r * {d0}, tx = {x} - s * {d1};")
            k.line(f"if (ty < 0 || tx < 0 || ty % {s0} != 0 || tx % {s1} != 0) continue;")
            k.line(f"const {k.index_t} py = ty / {s0}, px = tx / {s1};")
            k.line(f"if (py >= {oh} || px >= {ow}) continue;")
            v = k.load(cols, Index(k, cols.type.shape, dims=[img, ch, "py", "px", "r", "s"]).flat())
            k.line(f"acc = {_add(d, 'acc', v)};")
        k.store(node, "i", "acc")


_ATOMIC = {"float32": "float", "float64": "double", "int32": "int", "int64": "unsigned long long"}


def _scatter_add(mod, group: Group, node: Node) -> None:
    base, idx, src = node.inputs
    d, dim = node.type.dtype, node.attrs["dim"]
    if d.name not in _ATOMIC:
        raise cuda_unsupported(node, f"atomicAdd has no {d.name} (float32, float64, int32, int64 have one)")
    with _simple(mod, group, node, [base], node.type.numel, "_copy") as k:
        k.store(node, "i", k.load(base, "i"))
    size = base.type.shape[dim]
    with _simple(mod, group, node, [idx, src], idx.type.numel, "_add") as k:
        dims = unflatten(k, "i", idx.type.shape)
        raw = k.load(idx, "i")
        k.line(f"const long long g = {raw} < 0 ? {raw} + {size}LL : {raw};")
        with k.block(f"if ((unsigned long long)g >= {size}ULL)"):
            k.index_error(raw, dim, size)
            k.line("continue;")
        v = k.value(src, Index(k, src.type.shape, dims=dims))
        at = Index(k, node.type.shape, dims=dims[:dim] + [f"({k.index_t})g"] + dims[dim + 1:]).flat()
        t = _ATOMIC[d.name]
        k.line(f"atomicAdd(({t}*)&{k.ptr(node)}[{at}], ({t}){v});")


def _cumsum(mod, group: Group, node: Node) -> None:
    (x,) = node.inputs
    d, dim, shape = node.type.dtype, node.attrs["dim"], node.type.shape
    if not shape:  # a scalar's running sum is itself
        emit_pointwise(mod, group, node, group.inputs)
        return
    size = shape[dim]
    inner = 1
    for s in shape[dim + 1:]:
        inner *= s
    lines = node.type.numel // size if size else 0
    with _simple(mod, group, node, [x], lines, var="line") as k:
        t = k.index_t
        k.line(f"const {t} at0 = line / {inner} * {size * inner} + line % {inner};")
        k.line(f"{scalar.ctype(d)} acc = {scalar.literal(d, 0)};")
        with k.block(f"for ({t} j = 0; j < {size}; ++j)"):
            k.line(f"acc = {_add(d, 'acc', k.load(x, f'at0 + j * {inner}'))};")
            k.store(node, f"at0 + j * {inner}", "acc")


def _rand(mod, group: Group, node: Node) -> None:
    (key,) = node.inputs
    with _simple(mod, group, node, [key], node.type.numel) as k:
        k.line(f"const unsigned long long bits = gt_splitmix64((unsigned long long){k.ptr(key)}[0] + "
               "(unsigned long long)i);")
        if node.type.dtype is dt.float64:
            value = f"(double)(bits >> 11) * {2.0 ** -53!r}"
        else:
            value = f"(float)((double)(bits >> 40) * {2.0 ** -24!r})"
        k.store(node, "i", value)


_OPAQUE = {"fold": _fold, "scatter_add": _scatter_add, "cumsum": _cumsum, "rand": _rand,
           "attention": emit_attention, "attention_probs": emit_attention_probs, "attention_grad": emit_attention_grad,
           "softmax": emit_softmax, "layer_norm": emit_layer_norm, "layer_norm_grad": emit_layer_norm}
