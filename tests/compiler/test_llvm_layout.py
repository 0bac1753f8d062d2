"""Injective primitives as single groups: bit-exact with the numpy kernels; gather bounds."""

import numpy as np
import pytest
from llvm_helpers import assert_match, compiled, values

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.ir import Graph

RNG = np.random.default_rng(10)


def one(prim, in_shape, d, attrs):
    g = Graph()
    x = g.input("x", TensorType(in_shape, d))
    g.outputs = [g.call(prim, [x], attrs)]
    return g, values(in_shape, d, RNG)


@pytest.mark.parametrize("d", [dt.float32, dt.float64, dt.int64, dt.bool_])
@pytest.mark.parametrize("prim, shape, attrs", [
    ("expand", (3, 1, 7), {"shape": (2, 3, 5, 7)}),
    ("expand", (), {"shape": (4, 3)}),
    ("expand", (1,), {"shape": (0, 5)}),
    ("reshape", (3, 5, 7), {"shape": (7, 15)}),
    ("reshape", (3, 5, 7), {"shape": (105,)}),
    ("permute", (3, 5, 7), {"dims": (2, 0, 1)}),
    ("slice", (3, 5, 7), {"starts": (1, 0, 1), "stops": (3, 5, 7), "steps": (1, 2, 3)}),
    ("slice", (3, 5, 7), {"starts": (0, 2, 0), "stops": (3, 2, 7), "steps": (1, 1, 1)}),
    ("pad", (3, 5, 7), {"pads": ((0, 0), (1, 2), (3, 0)), "value": 1.5}),
    ("pad", (0, 2), {"pads": ((1, 1), (0, 1)), "value": -1}),
    ("unfold", (2, 3, 7, 6), {"kernel": (3, 2), "stride": (2, 1), "dilation": (1, 2)}),
])
def test_layout_ops(prim, shape, attrs, d):
    g, x = one(prim, shape, d, attrs)
    assert_match(g, x)


def test_permute_then_expand_fused_with_math():
    """A fused elementwise group through permute and expand (index mapping both ways)."""
    from graphtorch.compiler.ir import Group
    g = Graph()
    x = g.input("x", TensorType((7, 3), dt.float32))
    b = g.input("b", TensorType((3,), dt.float32))
    p = g.call("permute", [x], {"dims": (1, 0)})
    e = g.call("expand", [b], {"shape": (7, 3)})
    pe = g.call("permute", [e], {"dims": (1, 0)})
    y = g.call("maximum", [g.call("mul", [p, pe]), g.call("exp", [p])])
    g.outputs = [y]
    nodes = [n for n in g.nodes if n.op == "call"]
    groups = [Group(0, "elementwise", nodes, [x, b], [y])]
    assert_match(g, values((7, 3), dt.float32, RNG), values((3,), dt.float32, RNG), groups=groups, rtol=1e-6)


@pytest.mark.parametrize("dim", [0, 1, 2])
def test_concat(dim):
    g = Graph()
    shapes = [(3, 5, 7), (3, 5, 7), (3, 5, 7)]
    shapes = [tuple(s if k != dim else [2, 0, 4][j] for k, s in enumerate(sh)) for j, sh in enumerate(shapes)]
    xs = [g.input(f"x{j}", TensorType(s, dt.float64)) for j, s in enumerate(shapes)]
    g.outputs = [g.call("concat", xs, {"dim": dim})]
    assert_match(g, *[values(s, dt.float64, RNG) for s in shapes])


def gather_graph(xshape, ishape, dim):
    g = Graph()
    x = g.input("x", TensorType(xshape, dt.float32))
    i = g.input("i", TensorType(ishape, dt.int64))
    g.outputs = [g.call("gather", [x, i], {"dim": dim})]
    return g


@pytest.mark.parametrize("dim", [0, 1])
def test_gather(dim):
    g = gather_graph((4, 6), (3, 5), dim)
    n = (4, 6)[dim]
    idx = RNG.integers(-n, n, (3, 5)).astype(np.int64)  # negative indices count from the end
    assert_match(g, values((4, 6), dt.float32, RNG), idx)


@pytest.mark.parametrize("bad", [3, -4, 1 << 40])
def test_gather_out_of_bounds_raises(bad):
    from graphtorch.compiler.llvm import build, single_groups
    g = gather_graph((3, 2), (2, 2), 0)
    exe = build(g, single_groups(g), cache=False)
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    idx = np.array([[0, 1], [bad, 2]], np.int64)
    with pytest.raises(IndexError, match=f"index {bad} is out of bounds for dimension 0 with size 3"):
        exe(x, idx)
    ok = np.array([[0, 1], [2, -1]], np.int64)  # the error does not stick to the next call
    np.testing.assert_array_equal(exe(x, ok)[0], np.take_along_axis(x[:, :2], ok, 0))


def test_gather_error_matches_the_kernel_message():
    g = gather_graph((3,), (2,), 0)
    idx = np.array([1, 5], np.int64)
    with pytest.raises(IndexError) as kernel_error:
        g.nodes[-1].prim.kernel(np.zeros(3, np.float32), idx, dim=0)
    with pytest.raises(IndexError) as native_error:
        compiled(g, np.zeros(3, np.float32), idx)
    assert str(native_error.value) == str(kernel_error.value)
