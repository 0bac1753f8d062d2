"""CUDA kernels of the pooling primitives; compiler/pooling.py defines what they compute.

The forward kernels (max_pool, max_pool_index, avg_pool) run a thread per output, scanning its
window in tap order with torch's rule. The gradients run a thread per input element and gather:
it visits the outputs whose windows cover it in row-major order (a regular window's taps in
reverse, an adaptive window's output range), and for max_pool_grad rescans each such window to
see whether this element is its argmax. No atomics, and every element adds its terms in the order
the numpy kernel does, so the sums are the same.
"""

from __future__ import annotations

from ..ir import Group, Node
from ..pooling import Axis, axes
from . import scalar
from .index import unflatten
from .kernel import Kernel, cuda_unsupported
from .single import _simple


def _window(k: Kernel, axis: Axis, o: str, name: str) -> tuple[str, str]:
    """C names of (first position, number of taps) of output `o`'s window along `axis`."""
    t = k.index_t
    if not axis.adaptive:
        return k.let(t, f"{o} * {axis.stride} - {axis.padding}", f"{name}s"), str(axis.kernel)
    start = k.let(t, f"{o} * {axis.size} / {axis.out}", f"{name}s")
    return start, k.let(t, f"(({o} + 1) * {axis.size} + {axis.out - 1}) / {axis.out} - {start}", f"{name}n")


def _scan(k: Kernel, x: Node, base: str, ah: Axis, aw: Axis, oh: str, ow: str, body) -> tuple:
    """Loops over the taps inside the input of output (oh, ow)'s window; body(pos) writes the inner
    statement with `pos` = h * W + w. Returns the windows ((start, taps) per dim)."""
    t = k.index_t
    rows, cols = _window(k, ah, oh, "r"), _window(k, aw, ow, "c")
    with k.block(f"for ({t} ti = 0; ti < {rows[1]}; ++ti)"):
        k.line(f"const {t} h = {rows[0]} + ti * {ah.step};")
        k.line(f"if (h < 0 || h >= {ah.size}) continue;")
        with k.block(f"for ({t} tj = 0; tj < {cols[1]}; ++tj)"):
            k.line(f"const {t} w = {cols[0]} + tj * {aw.step};")
            k.line(f"if (w < 0 || w >= {aw.size}) continue;")
            body(f"h * {aw.size} + w")
    return rows, cols


def _argmax(k: Kernel, x: Node, base: str, ah: Axis, aw: Axis, oh: str, ow: str) -> None:
    """`best` and `arg` (-1: no tap inside) of the window by torch's rule: greater, or NaN, wins."""
    d = x.type.dtype
    k.line(f"{scalar.ctype(d)} best = {scalar.literal(d, float('-inf') if d.is_floating_point else _lowest(d))};")
    k.line("long long arg = -1;")

    def body(pos):
        k.line(f"const {scalar.ctype(d)} v = {k.ptr(x)}[{base} + {pos}];")
        with k.block("if (v > best || v != v || arg < 0)"):
            k.line(f"best = v; arg = {pos};")

    _scan(k, x, base, ah, aw, oh, ow, body)


def _lowest(d) -> int:
    return -(1 << (8 * d.itemsize - 1)) if d.is_signed else 0


def _output_thread(k: Kernel, node: Node) -> tuple[str, str, str]:
    """(input plane base, oh, ow) of output element i."""
    plane, oh, ow = unflatten(k, "i", (node.type.numel // max(node.type.shape[2] * node.type.shape[3], 1),
                                       *node.type.shape[2:]))
    h, w = node.inputs[0].type.shape[2:]
    return k.let(k.index_t, f"{plane} * {h * w}", "base"), oh, ow


def _max_forward(mod, group: Group, node: Node) -> None:
    x = node.inputs[0]
    ah, aw = axes(node.attrs, x.type.shape[2:])
    with _simple(mod, group, node, [x], node.type.numel) as k:
        base, oh, ow = _output_thread(k, node)
        _argmax(k, x, base, ah, aw, oh, ow)
        k.store(node, "i", "best" if node.target == "max_pool" else "arg")


def _divisor(k: Kernel, attrs: dict, ah: Axis, aw: Axis, rows, cols) -> str:
    """pooling.divisors at one output, from its windows."""
    if attrs["divisor"]:
        return f"{attrs['divisor']}LL"
    counts = []
    for axis, (start, taps) in ((ah, rows), (aw, cols)):
        end = f"({start} + {taps})"
        if attrs["count_include_pad"] and not axis.adaptive:
            counts.append(f"({_min(end, axis.size + axis.padding)} - {start})")
        else:
            counts.append(_max(f"{_min(end, axis.size)} - {_max(start, 0)}", 1))
    return k.let("long long", f"{counts[0]} * {counts[1]}", "div")


def _min(a, b) -> str:
    return f"(({a}) < ({b}) ? (long long)({a}) : (long long)({b}))"


def _max(a, b) -> str:
    return f"(({a}) > ({b}) ? (long long)({a}) : (long long)({b}))"


def _divide(d, total: str, div: str) -> str:
    if d.is_floating_point:
        return f"({total} / ({scalar.ctype(d)}){div})"
    return f"({scalar.ctype(d)})((long long){total} / {div})"  # C's integer division in 64 bits, as pooling._divide


def _avg_forward(mod, group: Group, node: Node) -> None:
    x, d = node.inputs[0], node.type.dtype
    ah, aw = axes(node.attrs, x.type.shape[2:])
    with _simple(mod, group, node, [x], node.type.numel) as k:
        base, oh, ow = _output_thread(k, node)
        k.line(f"{scalar.ctype(d)} total = {scalar.literal(d, 0)};")
        add = scalar.emit("add", ["total", "v"], d, d, {})
        rows, cols = _scan(k, x, base, ah, aw, oh, ow,
                           lambda pos: k.line(f"const {scalar.ctype(d)} v = {k.ptr(x)}[{base} + {pos}]; total = {add};"))
        k.store(node, "i", _divide(d, "total", _divisor(k, node.attrs, ah, aw, rows, cols)))


# ---------------------------------------------------------------- gradients: a thread per input element


def _covering(k: Kernel, axis: Axis, pos: str, name: str, body) -> None:
    """Loop `name` over the outputs whose windows hold input position `pos`, ascending."""
    t = k.index_t
    if axis.adaptive:
        lo = f"{pos} * {axis.out} / {axis.size}"
        hi = f"(({pos} + 1) * {axis.out} - 1) / {axis.size}"
        with k.block(f"for ({t} {name} = {lo}; {name} <= {hi}; ++{name})"):
            body()
        return
    with k.block(f"for ({t} tap{name} = {axis.kernel - 1}; tap{name} >= 0; --tap{name})"):
        k.line(f"const {t} at{name} = {pos} + {axis.padding} - tap{name} * {axis.dilation};")
        k.line(f"if (at{name} < 0 || at{name} % {axis.stride} != 0) continue;")
        k.line(f"const {t} {name} = at{name} / {axis.stride};")
        k.line(f"if ({name} >= {axis.out}) continue;")
        body()


def _grad(mod, group: Group, node: Node) -> None:
    d = node.type.dtype
    g = node.inputs[-1]
    ah, aw = axes(node.attrs, node.type.shape[2:])
    plane_out = ah.out * aw.out
    with _simple(mod, group, node, list(node.inputs), node.type.numel) as k:
        plane, h, w = unflatten(k, "i", (node.type.numel // max(ah.size * aw.size, 1), ah.size, aw.size))
        base = k.let(k.index_t, f"{plane} * {ah.size * aw.size}", "base")
        gbase = k.let(k.index_t, f"{plane} * {plane_out}", "gbase")
        k.line(f"{scalar.ctype(d)} acc = {scalar.literal(d, 0)};")
        add = scalar.emit("add", ["acc", "share"], d, d, {})

        def each_output():
            k.line(f"const {scalar.ctype(d)} gy = {k.ptr(g)}[{gbase} + oh * {aw.out} + ow];")
            if node.target == "max_pool_grad":
                with k.block(""):
                    _argmax(k, node.inputs[0], base, ah, aw, "oh", "ow")
                    with k.block(f"if (arg == {h} * {aw.size} + {w})"):
                        k.line(f"const {scalar.ctype(d)} share = gy; acc = {add};")
            else:
                rows, cols = _window(k, ah, "oh", "r"), _window(k, aw, "ow", "c")
                div = _divisor(k, node.attrs, ah, aw, rows, cols)
                k.line(f"const {scalar.ctype(d)} share = {_divide(d, 'gy', div)}; acc = {add};")

        _covering(k, ah, h, "oh", lambda: _covering(k, aw, w, "ow", each_output))
        if node.attrs.get("relu"):  # relu's backward fused in (compiler/pooling.py)
            k.line(f"if ({k.ptr(node.inputs[0])}[i] <= {scalar.literal(d, 0)}) acc = {scalar.literal(d, 0)};")
        k.store(node, "i", "acc")


def _checked(emit):
    def run(mod, group: Group, node: Node) -> None:
        if node.type.dtype.name in ("bool", "float16"):
            raise cuda_unsupported(node, f"pooling has no {node.type.dtype.name} kernel")
        emit(mod, group, node)
    return run


def emit_conv_pool(mod, group: Group) -> None:
    """A "conv2d_pool" group (compiler/conv_pool.py): the conv kernel (epilogue included) into a
    scratch buffer, then the max_pool kernel from it."""
    from .conv import emit_conv2d

    pool = group.outputs[0]
    act = pool.inputs[0]
    emit_conv2d(mod, Group(group.id, "conv2d", group.nodes[:-1], group.inputs, [act], group.anchor))
    KERNELS["max_pool"](mod, Group(group.id, "single", [pool], [act], [pool]), pool)


KERNELS = {"max_pool": _checked(_max_forward), "max_pool_index": _checked(_max_forward),
           "avg_pool": _checked(_avg_forward), "max_pool_grad": _checked(_grad), "avg_pool_grad": _checked(_grad)}
