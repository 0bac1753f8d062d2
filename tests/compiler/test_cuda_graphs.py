"""Graphs for the CUDA backend tests (no tests here): every primitive as its own group, the fusion
patterns, and the seed models' forward and backward graphs, written as the user-level ops
decompose. test_cuda_kernels.py runs them on the CPU, test_cuda_compile.py compiles them."""

from __future__ import annotations

import numpy as np
from compiler_helpers import conv_bias, f32, lenet, linear, logistic_regression, max_pool2d, relu, scalar

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.ir import Graph, Group
from graphtorch.compiler.primitives import PRIMITIVES, Kind

DTYPES = (dt.float32, dt.float64, dt.int32, dt.int64, dt.bool_)
UNARY = [n for n, p in PRIMITIVES.items() if p.kind is Kind.ELEMENTWISE and n not in ("full", "iota", "where", "cast")]


def _try(g: Graph, prim: str, inputs, attrs=None):
    """The node, or None where the primitive (its type rule or numpy kernel) does not take these dtypes."""
    try:
        PRIMITIVES[prim].kernel(*(np.ones((1,), i.type.dtype.np) for i in inputs), **(attrs or {}))
        return g.call(prim, inputs, attrs or {}, loc=f"prims.py:{len(g.nodes)}", origin=prim)
    except (RuntimeError, TypeError):
        return None


def elementwise_graph(shape=(3, 37)) -> Graph:
    """Every elementwise primitive on every dtype it takes; casts read `clean` (no NaN/inf: the
    float->int conversion of those differs between x86 and the GPU and is unspecified in numpy)."""
    g = Graph()
    outs = []
    for d in DTYPES:
        a, b = g.input(f"a_{d.short}", TensorType(shape, d)), g.input(f"b_{d.short}", TensorType(shape, d))
        for name in UNARY:
            arity = 1 if name in ("exp", "log", "sqrt", "abs", "sign", "sin", "cos", "tanh", "sigmoid", "erf", "floor",
                                  "ceil", "round", "neg", "logical_not", "copy") else 2
            if name == "pow" and not d.is_floating_point and d is not dt.bool_:  # numpy rejects negative int powers
                outs.append(_try(g, name, [a, g.call("abs", [b])]))
            else:
                outs.append(_try(g, name, [a] if arity == 1 else [a, b]))
        c = g.call("lt", [a, b])
        outs.append(g.call("where", [c, a, b]))
        if d is not dt.bool_:  # numpy's arange has no bool beyond length 2
            outs.append(g.call("iota", [], dict(shape=shape, dim=1, dtype=d)))
        outs.append(g.call("full", [], dict(shape=shape, value=1 if d is dt.bool_ else -3, dtype=d)))
    clean = {d: g.input(f"clean_{d.short}", TensorType(shape, d)) for d in (dt.float32, dt.float64)}
    ints = {d: g.input(f"c_{d.short}", TensorType(shape, d)) for d in (dt.int32, dt.int64, dt.bool_)}
    for src in [*clean.values(), *ints.values()]:
        for d in DTYPES:
            outs.append(g.call("cast", [src], dict(dtype=d)))
    g.outputs = [o for o in outs if o is not None]
    return g


def layout_graph() -> Graph:
    """The injective ops and the opaque ops, each alone (single groups), with thread-per-output reductions."""
    g = Graph()
    x = g.input("x", f32(2, 3, 5, 6))
    y = g.input("y", f32(2, 3, 4, 6))
    idx = g.input("idx", TensorType((2, 3, 5, 2), dt.int64))
    key = g.input("key", TensorType((), dt.int64))
    cols = g.input("cols", f32(2, 3, 2, 3, 2, 2))
    xd = g.input("xd", TensorType((4, 7), dt.float64))
    outs = [
        g.call("expand", [g.call("reshape", [xd], dict(shape=(4, 1, 7)))], dict(shape=(2, 4, 3, 7))),
        g.call("permute", [x], dict(dims=(3, 1, 0, 2))),
        g.call("slice", [x], dict(starts=(0, 1, 1, 0), stops=(2, 3, 5, 6), steps=(1, 1, 2, 3))),
        g.call("pad", [x], dict(pads=((0, 0), (1, 0), (2, 1), (0, 3)), value=-1.5)),
        g.call("concat", [x, y], dict(dim=2)),
        g.call("gather", [x, idx], dict(dim=3)),
        g.call("unfold", [x], dict(kernel=(2, 3), stride=(2, 1), dilation=(1, 2))),
        g.call("fold", [cols], dict(size=(4, 5), stride=(2, 1), dilation=(1, 2))),
        g.call("scatter_add", [y, g.call("slice", [idx], dict(starts=(0, 0, 0, 0), stops=(2, 3, 4, 2), steps=(1, 1, 1, 1))),
                                x], dict(dim=3)),
        g.call("cumsum", [x], dict(dim=2)),
        g.call("cumsum", [xd], dict(dim=0)),
        g.call("rand", [key], dict(shape=(3, 5), dtype=dt.float32)),
        g.call("rand", [key], dict(shape=(7,), dtype=dt.float64)),
    ]
    for prim in ("sum", "prod", "max", "min"):
        outs.append(g.call(prim, [x], dict(dims=(1, 3), keepdim=prim in ("sum", "max"))))
        outs.append(g.call(prim, [xd], dict(dims=(0,), keepdim=False)))
    for prim in ("argmax", "argmin"):
        outs.append(g.call(prim, [x], dict(dim=2, keepdim=True)))
        outs.append(g.call(prim, [xd], dict(dim=1, keepdim=False)))
    b = g.input("flags", TensorType((4, 5), dt.bool_))
    outs += [g.call(p, [b], dict(dims=(1,), keepdim=False)) for p in ("sum", "prod", "max", "min")]
    outs.append(g.call("sum", [g.input("n", TensorType((3, 4), dt.int32))], dict(dims=(0, 1), keepdim=False)))
    g.outputs = outs
    return g


def gather_graph() -> Graph:
    g = Graph()
    x, idx = g.input("x", f32(3, 4)), g.input("idx", TensorType((3, 2), dt.int64))
    g.outputs = [g.call("gather", [x, idx], dict(dim=1), loc="model.py:7")]
    return g


def fused_pointwise_graph() -> Graph:
    """Patterns the CPU check can run: an elementwise chain with broadcast, a reduction with a
    prologue and an epilogue (mean of squares), max-pool-like pad+unfold+max."""
    g = Graph()
    x, b = g.input("x", f32(2, 3, 8, 8)), g.input("b", f32(3))
    bias = g.call("expand", [g.call("reshape", [b], dict(shape=(1, 3, 1, 1)))], dict(shape=x.type.shape))
    h = relu(g, g.call("mul", [g.call("add", [x, bias]), g.call("tanh", [x])]), "model.py:3")
    sq = g.call("mul", [h, h])
    s = g.call("sum", [sq], dict(dims=(2, 3), keepdim=True), "model.py:4", "mean")
    mean = g.call("mul", [s, scalar(g, 1 / 64, s)], loc="model.py:4", origin="mean")
    pooled = max_pool2d(g, h, 2, "model.py:5")
    g.outputs = [mean, pooled]
    return g


def split_epilogue_graph() -> tuple[Graph, list[Group]]:
    """A reduction group whose epilogue needs the anchor at another position (a permute of a
    square result): the anchor kernel cannot apply it, so the group runs as two kernels."""
    g = Graph()
    x = g.input("x", f32(3, 8, 8))
    m = g.call("sum", [g.call("mul", [x, x])], dict(dims=(0,), keepdim=False), "model.py:6")
    t = g.call("permute", [m], dict(dims=(1, 0)), "model.py:6")
    root = g.call("sub", [m, t], loc="model.py:6", origin="antisymmetric part")
    g.outputs = [root]
    nodes = g.nodes[1:]
    return g, [Group(0, "reduction", nodes, [x], [root], anchor=m)]


def fused_gemm_graph() -> Graph:
    """matmul + bias + relu (f32 and f64, batched), conv2d + bias + relu, grouped strided conv, int matmul,
    long reductions (a block per output) with prologue and epilogue."""
    g = Graph()
    x, w, b = g.input("x", f32(70, 33)), g.input("w", f32(20, 33)), g.input("b", f32(20))
    xd, wd = g.input("xd", TensorType((2, 5, 9), dt.float64)), g.input("wd", TensorType((2, 9, 4), dt.float64))
    img, k, kb = g.input("img", f32(2, 4, 11, 11)), g.input("k", f32(6, 2, 3, 3)), g.input("kb", f32(6))
    ia, ib = g.input("ia", TensorType((5, 6), dt.int64)), g.input("ib", TensorType((6, 3), dt.int32))
    big = g.input("big", f32(3, 500))
    conv = g.call("conv2d", [img, k], dict(stride=(2, 1), padding=(1, 2), dilation=(1, 1), groups=2))
    kbias = g.call("expand", [g.call("reshape", [kb], dict(shape=(1, 6, 1, 1)))], dict(shape=conv.type.shape))
    e = g.call("exp", [big])
    g.outputs = [
        relu(g, linear(g, x, w, b, "model.py:10"), "model.py:10"),
        g.call("tanh", [g.call("matmul", [xd, wd])]),
        relu(g, g.call("add", [conv, kbias]), "model.py:11"),
        relu(g, conv_bias(g, img, g.input("k2", f32(5, 4, 3, 3)), g.input("kb2", f32(5)), (1, 1), "model.py:12")),
        g.call("matmul", [ia, g.call("cast", [ib], dict(dtype=dt.int64))]),
        g.call("log", [g.call("sum", [e], dict(dims=(1,), keepdim=True))], loc="model.py:13", origin="logsumexp"),
        g.call("argmax", [big], dict(dim=1, keepdim=False)),
        g.call("min", [g.call("permute", [big], dict(dims=(1, 0)))], dict(dims=(0,), keepdim=False)),
    ]
    return g


def sin_mlp_1_200_100_1(batch: int = 64) -> Graph:
    """The seed regression MLP: sin data through linear(1,200)+relu, linear(200,100)+relu, linear(100,1)."""
    g = Graph()
    x = g.input("x", f32(batch, 1))
    h = g.call("sin", [x], loc="sin_mlp.py:20", origin="sin")
    for i, (o, k) in enumerate([(200, 1), (100, 200), (1, 100)]):
        h = linear(g, h, g.input(f"fc{i}.weight", f32(o, k)), g.input(f"fc{i}.bias", f32(o)), f"sin_mlp.py:{10 + i}")
        if i < 2:
            h = relu(g, h, f"sin_mlp.py:{10 + i}")
    g.outputs = [h]
    return g


def backward_graph(batch: int = 4) -> Graph:
    """The backward ops of the seeds: linear's grads (matmul with transposes, bias grad = sum over
    the batch), relu's grad, conv's input grad (matmul then fold) and weight grad (unfold then
    matmul), max-pool's grad (scatter_add at the argmax)."""
    g = Graph()
    dy, x, w = g.input("dy", f32(batch, 10)), g.input("x", f32(batch, 24)), g.input("w", f32(10, 24))
    dx = g.call("matmul", [dy, w], loc="linear.py:1")
    dw = g.call("matmul", [g.call("permute", [dy], dict(dims=(1, 0))), x], loc="linear.py:1")
    db = g.call("sum", [dy], dict(dims=(0,), keepdim=False), "linear.py:1")
    drelu = g.call("where", [g.call("le", [x, scalar(g, 0.0, x)]), scalar(g, 0.0, x), dx], loc="relu.py:1")
    # conv 4->6, 3x3 on 8x8: dy (N,6,6,6), input grad through fold, weight grad through unfold
    cdy, cx, cw = g.input("cdy", f32(batch, 6, 6, 6)), g.input("cx", f32(batch, 4, 8, 8)), g.input("cw", f32(6, 4, 3, 3))
    rows = g.call("reshape", [g.call("permute", [cdy], dict(dims=(0, 2, 3, 1)))], dict(shape=(batch * 36, 6)))
    cols = g.call("matmul", [rows, g.call("reshape", [cw], dict(shape=(6, 36)))], loc="conv.py:1")
    cols = g.call("permute", [g.call("reshape", [cols], dict(shape=(batch, 6, 6, 4, 3, 3)))], dict(dims=(0, 3, 1, 2, 4, 5)))
    dcx = g.call("fold", [cols], dict(size=(8, 8), stride=(1, 1), dilation=(1, 1)), "conv.py:1")
    win = g.call("unfold", [cx], dict(kernel=(3, 3), stride=(1, 1), dilation=(1, 1)))
    win = g.call("reshape", [g.call("permute", [win], dict(dims=(0, 2, 3, 1, 4, 5)))], dict(shape=(batch * 36, 36)))
    dcw = g.call("reshape", [g.call("matmul", [g.call("permute", [rows], dict(dims=(1, 0))), win])],
                 dict(shape=(6, 4, 3, 3)), "conv.py:2")
    dcb = g.call("sum", [cdy], dict(dims=(0, 2, 3), keepdim=False), "conv.py:3")
    # max-pool 2x2 grad: the upstream grad added at each window's argmax
    px, pdy = g.input("px", f32(batch, 4, 8, 8)), g.input("pdy", f32(batch, 4, 4, 4))
    wins = g.call("reshape", [g.call("unfold", [px], dict(kernel=(2, 2), stride=(2, 2), dilation=(1, 1)))],
                  dict(shape=(batch, 4, 4, 4, 4)))
    arg = g.call("argmax", [wins], dict(dim=4, keepdim=True))
    zeros = g.call("full", [], dict(shape=(batch, 4, 4, 4, 4), value=0.0, dtype=dt.float32))
    dwin = g.call("scatter_add", [zeros, arg, g.call("reshape", [pdy], dict(shape=(batch, 4, 4, 4, 1)))], dict(dim=4),
                  "pool.py:1")
    dwin = g.call("reshape", [dwin], dict(shape=(batch, 4, 4, 4, 2, 2)))
    dpx = g.call("fold", [dwin], dict(size=(8, 8), stride=(2, 2), dilation=(1, 1)), "pool.py:1")
    g.outputs = [drelu, dw, db, dcx, dcw, dcb, dpx]
    return g


SEED_GRAPHS = {"sin_mlp": sin_mlp_1_200_100_1, "logistic_regression": logistic_regression, "lenet": lenet,
               "backward": backward_graph}
