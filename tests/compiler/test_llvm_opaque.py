"""Opaque primitives (rand, cumsum, fold, scatter_add) and the fallbacks, as single groups."""

import numpy as np
import pytest
from llvm_helpers import assert_match, compiled, values

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.ir import Graph
from graphtorch.compiler.llvm import build, single_groups

RNG = np.random.default_rng(30)


@pytest.mark.parametrize("d", [dt.float32, dt.float64, dt.float16])
@pytest.mark.parametrize("shape", [(3, 5, 7), (1,), (0,), (), (1000,)])
def test_rand_bit_exact(d, shape):
    g = Graph()
    key = g.input("key", TensorType((), dt.int64))
    g.outputs = [g.call("rand", [key], {"shape": shape, "dtype": d})]
    for k in [0, 12345, -1, np.iinfo(np.int64).max]:
        assert_match(g, np.array(k, np.int64))


@pytest.mark.parametrize("d", [dt.float32, dt.float64, dt.int64, dt.int8, dt.bool_])
@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_cumsum(d, dim):
    g = Graph()
    x = g.input("x", TensorType((3, 5, 7), d))
    g.outputs = [g.call("cumsum", [x], {"dim": dim})]
    assert_match(g, values((3, 5, 7), d, RNG))


def test_cumsum_empty():
    # (a 0-d cumsum is left out: the numpy kernel returns shape (1,) where infer says (): reported)
    for shape in [(0, 4), (4, 0)]:
        g = Graph()
        x = g.input("x", TensorType(shape, dt.float32))
        g.outputs = [g.call("cumsum", [x], {"dim": 0})]
        assert_match(g, values(shape, dt.float32, RNG))


@pytest.mark.parametrize("d", [dt.float32, dt.float64])
def test_fold_is_the_kernel_bit_for_bit(d):
    """fold adds overlapping windows in the kernel's order: exact equality, not allclose."""
    g = Graph()
    cols_shape = (2, 3, 3, 4, 3, 2)  # N, C, OH, OW, KH, KW for a 7x6 image, stride (2, 1), dilation (1, 2)
    x = g.input("cols", TensorType(cols_shape, d))
    g.outputs = [g.call("fold", [x], {"size": (7, 6), "stride": (2, 1), "dilation": (1, 2)})]
    assert_match(g, values(cols_shape, d, RNG, specials=False))


def scatter_graph(dim):
    g = Graph()
    base = g.input("base", TensorType((4, 5), dt.float32))
    idx = g.input("idx", TensorType((3, 4), dt.int64))
    src = g.input("src", TensorType((3, 5), dt.float32))
    g.outputs = [g.call("scatter_add", [base, idx, src], {"dim": dim})]
    return g


@pytest.mark.parametrize("dim", [0, 1])
def test_scatter_add_with_repeats(dim):
    idx = RNG.integers(-(4, 5)[dim], (4, 5)[dim], (3, 4)).astype(np.int64)
    idx[0, 0] = idx[1, 0]  # repeated targets accumulate
    assert_match(scatter_graph(dim), values((4, 5), dt.float32, RNG), idx, values((3, 5), dt.float32, RNG))


@pytest.mark.parametrize("dim", [0, 1, 2])
@pytest.mark.parametrize("spans", [False, True], ids=["smaller-idx", "idx-spans-output"])
def test_scatter_add_two_threads_bit_exact(dim, spans):
    """Threads split the dims before `dim`; many repeats per target still add in np.add.at's order.
    An idx that spans the output but along dim (as max_pool2d's) takes the no-unflatten path."""
    shape = (8, 6, 5)
    idx_shape = tuple(3 if d == dim else n for d, n in enumerate(shape)) if spans else (7, 6, 4)
    g = Graph()
    base = g.input("base", TensorType(shape, dt.float32))
    idx = g.input("idx", TensorType(idx_shape, dt.int64))
    src = g.input("src", TensorType(idx_shape, dt.float32))
    g.outputs = [g.call("scatter_add", [base, idx, src], {"dim": dim})]
    targets = RNG.integers(0, 2, idx_shape).astype(np.int64)  # two targets: long chains of adds
    assert_match(g, values(shape, dt.float32, RNG, specials=False), targets,
                 values(idx_shape, dt.float32, RNG, specials=False), num_threads=2)


def test_scatter_add_out_of_bounds():
    idx = np.zeros((3, 4), np.int64)
    idx[2, 1] = 4
    with pytest.raises(IndexError, match="index 4 is out of bounds for dimension 0 with size 4"):
        compiled(scatter_graph(0), np.zeros((4, 5), np.float32), idx, np.ones((3, 5), np.float32))


def test_matmul_naive_fallback_with_epilogue():
    """The registry's fallback (used when gemm.py is absent) with a bias+relu epilogue."""
    from graphtorch.compiler.ir import Group
    from graphtorch.compiler.llvm.module import LOWERINGS
    from graphtorch.compiler.llvm.opaque import lower_matmul_naive

    g = Graph()
    a = g.input("a", TensorType((2, 5, 3), dt.float32))
    w = g.input("w", TensorType((2, 3, 7), dt.float32))
    bias = g.input("bias", TensorType((7,), dt.float32))
    mm = g.call("matmul", [a, w])
    y = g.call("maximum", [g.call("add", [mm, g.call("expand", [bias], {"shape": (2, 5, 7)})]),
                           g.call("full", [], {"shape": (2, 5, 7), "value": 0.0, "dtype": dt.float32})])
    g.outputs = [y]
    nodes = [n for n in g.nodes if n.op == "call"]
    group = Group(0, "naive_matmul", nodes, [a, w, bias], [y], mm)
    LOWERINGS["naive_matmul"] = lower_matmul_naive
    try:
        assert_match(g, *(values(n.type.shape, dt.float32, RNG, specials=False) for n in (a, w, bias)),
                     groups=[group], rtol=1e-5, atol=1e-6)
    finally:
        del LOWERINGS["naive_matmul"]


def _inverse_graph(shape):
    g = Graph()
    x = g.input("x", TensorType(shape, dt.float32))
    y = g.call("inverse", [x])
    g.outputs = [g.call("add", [y, x])]  # a generated kernel after the host call reads its result
    return g


@pytest.mark.parametrize("threads", [1, 2])
def test_a_primitive_without_a_kernel_runs_its_numpy_kernel_from_native_code(threads):
    a = RNG.standard_normal((4, 3, 3)).astype(np.float32) + 3 * np.eye(3, dtype=np.float32)
    assert_match(_inverse_graph((4, 3, 3)), a, num_threads=threads)
    assert_match(_inverse_graph((0, 3, 3)), np.zeros((0, 3, 3), np.float32))


def test_an_error_in_a_host_call_is_raised_after_the_native_call():
    g = _inverse_graph((2, 2))
    exe = build(g, single_groups(g), cache=False)
    with pytest.raises(RuntimeError, match="singular"):  # the numpy kernel's error, as eager raises it
        exe(np.zeros((2, 2), np.float32))
    np.testing.assert_allclose(exe(np.eye(2, dtype=np.float32) * 2)[0], np.eye(2) * 2.5)  # the status was cleared
    with pytest.raises(IndexError):  # an index error is still an index error
        compiled(_gather_out_of_bounds(), np.zeros(3, np.float32), np.array([5]))


def _gather_out_of_bounds():
    g = Graph()
    x, i = g.input("x", TensorType((3,), dt.float32)), g.input("i", TensorType((1,), dt.int64))
    g.outputs = [g.call("gather", [x, i], {"dim": 0})]
    return g
