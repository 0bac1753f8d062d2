"""Hand-built graphs for the compiler tests, written the way the user-level ops decompose
(linear = matmul with a permuted weight + expanded bias, relu = where(x <= 0, 0, x),
max_pool2d = pad -> unfold -> reshape -> max), and random inputs for them."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.ir import Graph, Node


def f32(*shape: int) -> TensorType:
    return TensorType(tuple(shape), dt.float32)


def scalar(g: Graph, value, like: Node, loc=None, origin=None) -> Node:
    """A full scalar expanded to `like`'s shape, as user-level ops broadcast Python numbers."""
    s = g.call("full", [], dict(shape=(), value=value, dtype=like.type.dtype), loc, origin)
    return g.call("expand", [s], dict(shape=like.type.shape), loc, origin)


def relu(g: Graph, x: Node, loc=None) -> Node:
    zero = scalar(g, 0.0, x, loc, "relu")
    return g.call("where", [g.call("le", [x, zero], loc=loc, origin="relu"), zero, x], loc=loc, origin="relu")


def linear(g: Graph, x: Node, w: Node, b: Node, loc=None) -> Node:
    wt = g.call("permute", [w], dict(dims=(1, 0)), loc, "linear")
    y = g.call("matmul", [x, wt], loc=loc, origin="linear")
    bias = g.call("expand", [b], dict(shape=y.type.shape), loc, "linear")
    return g.call("add", [y, bias], loc=loc, origin="linear")


def conv_bias(g: Graph, x: Node, w: Node, b: Node, padding=(0, 0), loc=None) -> Node:
    y = g.call("conv2d", [x, w], dict(stride=(1, 1), padding=padding, dilation=(1, 1), groups=1), loc, "conv2d")
    c = b.type.shape[0]
    bias = g.call("expand", [g.call("reshape", [b], dict(shape=(1, c, 1, 1)), loc, "conv2d")],
                  dict(shape=y.type.shape), loc, "conv2d")
    return g.call("add", [y, bias], loc=loc, origin="conv2d")


def max_pool2d(g: Graph, x: Node, k: int = 2, loc=None) -> Node:
    n, c, h, w = x.type.shape
    p = g.call("pad", [x], dict(pads=((0, 0), (0, 0), (0, 0), (0, 0)), value=float("-inf")), loc, "max_pool2d")
    win = g.call("unfold", [p], dict(kernel=(k, k), stride=(k, k), dilation=(1, 1)), loc, "max_pool2d")
    flat = g.call("reshape", [win], dict(shape=win.type.shape[:4] + (k * k,)), loc, "max_pool2d")
    return g.call("max", [flat], dict(dims=(4,), keepdim=False), loc, "max_pool2d")


def lenet(batch: int = 3) -> Graph:
    """conv(1->4, 5x5, pad 2)+relu, pool, conv(4->6, 3x3)+relu, pool, flatten, linear+relu, linear."""
    g = Graph()
    x = g.input("x", f32(batch, 1, 12, 12))
    w1, b1 = g.input("conv1.weight", f32(4, 1, 5, 5)), g.input("conv1.bias", f32(4))
    w2, b2 = g.input("conv2.weight", f32(6, 4, 3, 3)), g.input("conv2.bias", f32(6))
    w3, b3 = g.input("fc1.weight", f32(10, 24)), g.input("fc1.bias", f32(10))
    w4, b4 = g.input("fc2.weight", f32(5, 10)), g.input("fc2.bias", f32(5))
    h = max_pool2d(g, relu(g, conv_bias(g, x, w1, b1, (2, 2), "lenet.py:12"), "lenet.py:12"), loc="lenet.py:13")
    h = max_pool2d(g, relu(g, conv_bias(g, h, w2, b2, loc="lenet.py:14"), "lenet.py:14"), loc="lenet.py:15")
    h = g.call("reshape", [h], dict(shape=(batch, 24)), "lenet.py:16", "flatten")
    h = relu(g, linear(g, h, w3, b3, "lenet.py:17"), "lenet.py:17")
    g.outputs = [linear(g, h, w4, b4, "lenet.py:18")]
    return g


def sin_mlp(batch: int = 5) -> Graph:
    """sin(x) -> linear+relu -> linear+relu -> linear: the regression MLP of the seeds."""
    g = Graph()
    x = g.input("x", f32(batch, 3))
    params = [(g.input(f"fc{i}.weight", f32(o, k)), g.input(f"fc{i}.bias", f32(o)))
              for i, (o, k) in enumerate([(7, 3), (9, 7), (2, 9)])]
    h = g.call("sin", [x], loc="mlp.py:5", origin="sin")
    for i, (w, b) in enumerate(params):
        h = linear(g, h, w, b, f"mlp.py:{6 + i}")
        if i < 2:
            h = relu(g, h, f"mlp.py:{6 + i}")
    g.outputs = [h]
    return g


def logistic_regression(batch: int = 6, features: int = 5) -> Graph:
    """sigmoid(x @ w^T + b), then mean(-(y log p + (1-y) log(1-p))) with the constants as fulls."""
    g = Graph()
    x, y = g.input("x", f32(batch, features)), g.input("y", f32(batch, 1))
    w, b = g.input("weight", f32(1, features)), g.input("bias", f32(1))
    p = g.call("sigmoid", [linear(g, x, w, b, "logreg.py:8")], loc="logreg.py:9", origin="sigmoid")
    one = scalar(g, 1.0, p, "logreg.py:10", "bce")
    t1 = g.call("mul", [y, g.call("log", [p], loc="logreg.py:10", origin="bce")], loc="logreg.py:10", origin="bce")
    q = g.call("sub", [one, p], loc="logreg.py:10", origin="bce")
    r = g.call("sub", [one, y], loc="logreg.py:10", origin="bce")
    t2 = g.call("mul", [r, g.call("log", [q], loc="logreg.py:10", origin="bce")], loc="logreg.py:10", origin="bce")
    s = g.call("neg", [g.call("add", [t1, t2], loc="logreg.py:10", origin="bce")], loc="logreg.py:10", origin="bce")
    total = g.call("sum", [s], dict(dims=(0, 1), keepdim=False), "logreg.py:11", "mean")
    g.outputs = [g.call("mul", [total, scalar(g, 1.0 / (batch), total, "logreg.py:11", "mean")],
                        loc="logreg.py:11", origin="mean"), p]
    return g


def random_inputs(graph: Graph, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for n in graph.inputs:
        t = n.type
        if t.dtype.is_floating_point:
            out.append((rng.standard_normal(t.shape) * 0.5).astype(t.dtype.np))
        elif t.dtype is dt.bool_:
            out.append(rng.random(t.shape) < 0.5)
        else:
            out.append(rng.integers(-5, 6, t.shape).astype(t.dtype.np))
    return out


SIZES = (1, 3, 5, 7)
STEPS = ("unary", "binary", "scalar", "transpose", "reshape", "reduce", "matmul", "relu")


def _splat(g: Graph, value: float, like: Node) -> Node:
    s = g.call("full", [], dict(shape=(), value=value, dtype=like.type.dtype))
    return g.call("expand", [s], dict(shape=like.type.shape))


@st.composite
def random_graphs(draw) -> Graph:
    """Random chains of elementwise, layout, reduction and matmul nodes over small odd shapes."""
    d = draw(st.sampled_from([dt.float32, dt.float64]))
    g = Graph()
    x = g.input("x", TensorType((draw(st.sampled_from(SIZES)), draw(st.sampled_from(SIZES))), d))
    pool = [x]
    for k in range(draw(st.integers(1, 12))):
        step = draw(st.sampled_from(STEPS))
        a, b = x.type.shape
        if step == "unary":
            x = g.call(draw(st.sampled_from(["neg", "tanh", "sin", "abs", "sigmoid", "copy"])), [x])
        elif step == "binary":
            same = [p for p in pool if p.type == x.type]
            x = g.call(draw(st.sampled_from(["add", "mul", "sub", "maximum"])), [x, draw(st.sampled_from(same))])
        elif step == "scalar":
            op = draw(st.sampled_from(["add", "mul", "sub", "div"]))
            s = _splat(g, draw(st.sampled_from([0.0, 1.0, 2.0, 0.5])), x)
            x = g.call(op, [s, x] if draw(st.booleans()) and op in ("add", "mul") else [x, s])
        elif step == "transpose":
            x = g.call("permute", [x], dict(dims=(1, 0)))
        elif step == "reshape":
            x = g.call("reshape", [g.call("reshape", [x], dict(shape=(a * b,)))], dict(shape=(b, a)))
        elif step == "reduce":
            r = g.call(draw(st.sampled_from(["sum", "max"])), [x], dict(dims=(1,), keepdim=True))
            x = g.call(draw(st.sampled_from(["sub", "add"])), [x, g.call("expand", [r], dict(shape=(a, b)))])
        elif step == "matmul":
            w = g.input(f"w{k}", TensorType((draw(st.sampled_from(SIZES)), b), d))
            x = g.call("matmul", [x, g.call("permute", [w], dict(dims=(1, 0)))])
            if draw(st.booleans()):
                bias = g.input(f"b{k}", TensorType((x.type.shape[1],), d))
                x = g.call("add", [x, g.call("expand", [bias], dict(shape=x.type.shape))])
        else:
            zero = _splat(g, 0.0, x)
            x = g.call("where", [g.call("le", [x, zero]), zero, x])
        pool.append(x)
    extra = draw(st.sampled_from(pool))
    total = g.call("sum", [x], dict(dims=(0, 1), keepdim=False))
    g.outputs = [x, total] + ([extra] if extra.op == "call" else [])
    return g
