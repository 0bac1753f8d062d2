"""Random graphs: optimize + fuse + run group by group == the plain interpreter on the graph as built."""

from __future__ import annotations

import numpy as np
from compiler_helpers import random_inputs
from hypothesis import given, settings
from hypothesis import strategies as st

from graphtorch.compiler import cleanup, interpreter
from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.fusion import check_plan, fuse
from graphtorch.compiler.ir import Graph, Node

SIZES = (1, 3, 5, 7)
STEPS = ("unary", "binary", "scalar", "transpose", "reshape", "reduce", "matmul", "relu")


def _splat(g: Graph, value: float, like: Node) -> Node:
    s = g.call("full", [], dict(shape=(), value=value, dtype=like.type.dtype))
    return g.call("expand", [s], dict(shape=like.type.shape))


@st.composite
def graphs(draw) -> Graph:
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


@settings(max_examples=40, deadline=None)
@given(graphs(), st.integers(0, 2**16))
def test_optimize_fuse_run_groups_equals_interpreter(g, seed):
    xs = random_inputs(g, seed)
    want = interpreter.run(g, xs)
    opt = cleanup.optimize(g)
    plan = fuse(opt)
    check_plan(opt, plan.groups)
    got = interpreter.run_groups(opt, plan.groups, xs)
    tol = 1e-5 if g.inputs[0].type.dtype is dt.float32 else 1e-12
    for a, b in zip(want, got):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol, equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(graphs())
def test_fusion_is_deterministic_and_groups_are_small_enough(g):
    opt = cleanup.optimize(g)
    a, b = fuse(opt), fuse(opt)
    assert str(a) == str(b)
    assert all(len(grp.nodes) <= 64 and grp.outputs == [grp.nodes[-1]] for grp in a.groups)
    anchors = [grp.anchor for grp in a.groups if grp.anchor is not None]
    assert len(anchors) == sum(n.prim.kind.value in ("reduction", "out-fusable") for n in opt.nodes if n.op == "call")
