"""Reductions as single groups and fused with prologues/epilogues, against the numpy kernels."""

import numpy as np
import pytest
from llvm_helpers import assert_match, values

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.ir import Graph, Group

RNG = np.random.default_rng(20)
DIMS = [((2,), False), ((0,), True), ((0, 2), False), ((0, 1, 2), True), ((1,), False)]


def reduce_graph(prim, shape, d, **attrs):
    g = Graph()
    x = g.input("x", TensorType(shape, d))
    g.outputs = [g.call(prim, [x], attrs)]
    return g


@pytest.mark.parametrize("dims, keepdim", DIMS)
@pytest.mark.parametrize("d", [dt.float32, dt.float64])
@pytest.mark.parametrize("prim", ["sum", "prod", "max", "min"])
def test_float_reductions(prim, d, dims, keepdim):
    x = values((3, 5, 7), d, RNG, specials=False)
    if prim == "prod":
        x = (1 + 0.1 * x).astype(d.np)  # no overflow to inf
    tol = {"rtol": 1e-5 if d is dt.float32 else 1e-13, "atol": 1e-6} if prim in ("sum", "prod") else {}
    assert_match(reduce_graph(prim, (3, 5, 7), d, dims=dims, keepdim=keepdim), x, **tol)


@pytest.mark.parametrize("prim", ["max", "min", "sum"])
def test_nan_propagates(prim):
    x = values((4, 9), dt.float32, RNG, specials=False)
    x[1, 3] = np.nan
    x[2, 0] = np.inf
    x[3, 8] = -np.inf
    for dims in [(1,), (0,)]:
        assert_match(reduce_graph(prim, (4, 9), dt.float32, dims=dims, keepdim=False), x, rtol=1e-5)


@pytest.mark.parametrize("d", [dt.int64, dt.int32, dt.int8, dt.uint8, dt.bool_])
@pytest.mark.parametrize("prim", ["sum", "prod", "max", "min"])
def test_int_reductions(prim, d):
    x = values((3, 5, 7), d, RNG)
    for dims in [(2,), (0, 1)]:
        assert_match(reduce_graph(prim, (3, 5, 7), d, dims=dims, keepdim=False), x)


@pytest.mark.parametrize("prim", ["argmax", "argmin"])
@pytest.mark.parametrize("d", [dt.float32, dt.float64, dt.int64, dt.uint8])
def test_argreductions(prim, d):
    x = values((4, 6, 5), d, RNG, specials=False)
    x[0, :, 0] = x[0, 0, 0]  # ties: the first wins
    if d.is_floating_point:
        x[1, 2, 1] = x[1, 4, 1] = np.nan  # the first NaN wins
        x[2, :, 2] = -np.inf
    for dim in range(3):
        for keepdim in (False, True):
            assert_match(reduce_graph(prim, (4, 6, 5), d, dim=dim, keepdim=keepdim), x)


def test_zero_size_and_scalar():
    assert_match(reduce_graph("sum", (3, 0), dt.float32, dims=(1,), keepdim=False), np.zeros((3, 0), np.float32))
    assert_match(reduce_graph("prod", (0, 4), dt.float64, dims=(0,), keepdim=True), np.zeros((0, 4)))
    assert_match(reduce_graph("sum", (), dt.float32, dims=(), keepdim=False), np.array(-0.0, np.float32))
    assert_match(reduce_graph("argmax", (), dt.float32, dim=0, keepdim=False), np.array(2.0, np.float32))
    x = np.array([-0.0, -0.0], np.float32)
    assert_match(reduce_graph("sum", (2,), dt.float32, dims=(0,), keepdim=False), x)


def fused(g, nodes, anchor):
    return [Group(0, "reduction", nodes, list(dict.fromkeys(i for n in nodes for i in n.inputs if i not in nodes)),
                  [nodes[-1]], anchor)]


def test_mean_of_squares_prologue_epilogue():
    """sum(x * x) * (1/n) in one kernel: prologue mul, epilogue mul by an expanded constant."""
    g = Graph()
    x = g.input("x", TensorType((6, 33), dt.float32))
    sq = g.call("mul", [x, x])
    s = g.call("sum", [sq], {"dims": (1,), "keepdim": False})
    c = g.constant(np.array(1 / 33, np.float32))
    m = g.call("mul", [s, g.call("expand", [c], {"shape": (6,)})])
    g.outputs = [m]
    nodes = [n for n in g.nodes if n.op == "call"]
    assert_match(g, values((6, 33), dt.float32, RNG), groups=fused(g, nodes, s), rtol=1e-6)


def test_softmax_denominator_with_broadcast_prologue():
    """sum(exp(x - expand(max))) over the last dim, the max coming from another group."""
    g = Graph()
    x = g.input("x", TensorType((5, 17), dt.float64))
    mx = g.call("max", [x], {"dims": (1,), "keepdim": True})
    e = g.call("exp", [g.call("sub", [x, g.call("expand", [mx], {"shape": (5, 17)})])])
    s = g.call("sum", [e], {"dims": (1,), "keepdim": True})
    g.outputs = [s]
    nodes = [n for n in g.nodes if n.op == "call"][1:]
    groups = [Group(0, "single", [mx], [x], [mx], mx)] + [Group(1, "reduction", nodes, [x, mx], [s], s)]
    assert_match(g, values((5, 17), dt.float64, RNG), groups=groups, rtol=1e-13)


def test_epilogue_through_an_injective_op():
    """reshape(sum) * y: the anchor's positions move, so the kernel runs in two phases."""
    g = Graph()
    x = g.input("x", TensorType((4, 6, 5), dt.float32))
    y = g.input("y", TensorType((6, 4), dt.float32))
    s = g.call("sum", [x], {"dims": (2,), "keepdim": False})
    r = g.call("reshape", [g.call("permute", [s], {"dims": (1, 0)})], {"shape": (6, 4)})
    out = g.call("add", [r, y])
    g.outputs = [out]
    nodes = [n for n in g.nodes if n.op == "call"]
    assert_match(g, values((4, 6, 5), dt.float32, RNG), values((6, 4), dt.float32, RNG),
                 groups=fused(g, nodes, s), rtol=1e-5, atol=1e-6)


def test_argmax_with_epilogue_cast():
    g = Graph()
    x = g.input("x", TensorType((3, 8), dt.float32))
    a = g.call("argmax", [x], {"dim": 1, "keepdim": False})
    c = g.call("cast", [a], {"dtype": dt.float32})
    g.outputs = [c]
    assert_match(g, values((3, 8), dt.float32, RNG), groups=fused(g, [a, c], a))


@pytest.mark.parametrize("prim", ["sum", "max"])
def test_column_reduction_with_prologue_and_epilogue(prim):
    """Leading dims reduced (a bias gradient): rows accumulate into the output row; the prologue
    reads through a permute and the epilogue scales, over an output width not a multiple of 16."""
    g = Graph()
    x = g.input("x", TensorType((3, 50, 37), dt.float32))
    p = g.call("neg", [g.call("permute", [x], {"dims": (2, 0, 1)})])  # (37, 3, 50)
    s = g.call(prim, [p], {"dims": (1, 0), "keepdim": True})
    c = g.constant(np.array(0.5, np.float32))
    m = g.call("mul", [s, g.call("expand", [c], {"shape": (1, 1, 50)})])
    g.outputs = [m]
    nodes = [n for n in g.nodes if n.op == "call"]
    assert_match(g, values((3, 50, 37), dt.float32, RNG, specials=False), groups=fused(g, nodes, s), rtol=1e-5, atol=1e-6)
