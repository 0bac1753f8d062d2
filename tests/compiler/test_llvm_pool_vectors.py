"""The vectorized pooling kernels (compiler/llvm/pool_vectors.py) against the numpy kernels, bit
for bit: the tile kernel's whole blocks of lanes and masked row tails (odd widths, a row shorter
than one vector), rows and columns outside every tile, 2x2, 3x3 and 2x3 tiles; the vector blocks
in the interior of overlapping, padded, dilated and gapped windows (borders scalar), for max
values, indices and gradients and for float averages; float32, float64 and integers,
NaN/inf/-0.0 and ties, batch 1, one and two threads."""

import numpy as np
import pytest
from compiler_helpers import conv_bias, f32, relu
from llvm_helpers import assert_match, values
from test_llvm_pooling import graph, window

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.fusion import fuse, single_groups
from graphtorch.compiler.ir import Graph
from graphtorch.compiler.llvm import pool_vectors
from graphtorch.compiler.llvm.module import PARALLEL_WORK, work

RNG = np.random.default_rng(13)

# (N, C, H, W), kernel: 2x2 with 14 and 5 outputs a row (LeNet), 8 (one whole f32 vector), 17 (two
# blocks and a tail); odd sizes leave a row or column outside every tile; 3x3, 2x3, 1x1 tiles
TILES = [
    ((2, 3, 28, 28), (2, 2)), ((1, 16, 10, 10), (2, 2)), ((2, 2, 16, 16), (2, 2)), ((1, 2, 5, 35), (2, 2)),
    ((3, 1, 7, 9), (2, 2)), ((1, 2, 9, 11), (3, 3)), ((2, 1, 7, 13), (2, 3)), ((1, 1, 3, 3), (1, 1)),
    ((1, 2, 2, 2), (2, 2)), ((1, 2, 17, 70), (8, 8)), ((2, 1, 5, 41), (1, 4)),
]
PRIMITIVES = ("max_pool", "max_pool_index", "max_pool_grad")


def tile_graph(prim, shape, kernel, d=dt.float32):
    g = graph(prim, shape, window(shape[2:], kernel, kernel), d)
    x = g.inputs[0]
    assert pool_vectors.vectorizable(g.outputs[0], x), "the tile kernel must be the one under test"
    return g


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape,kernel", TILES, ids=str)
def test_tiles_equal_the_numpy_scan(shape, kernel, threads):
    for prim in PRIMITIVES:
        g = tile_graph(prim, shape, kernel)
        assert_match(g, *[values(n.type.shape, dt.float32, RNG) for n in g.inputs], num_threads=threads)


@pytest.mark.parametrize("d", [dt.float64, dt.int32, dt.int64, dt.uint8, dt.int16], ids=str)
@pytest.mark.parametrize("shape,kernel", [((2, 3, 13, 22), (2, 2)), ((1, 2, 9, 11), (3, 3)), ((1, 1, 9, 37), (4, 4))],
                         ids=str)
def test_tiles_of_other_dtypes(shape, kernel, d):
    for prim in PRIMITIVES:
        g = tile_graph(prim, shape, kernel, d)
        assert_match(g, *[values(n.type.shape, d, RNG) for n in g.inputs], num_threads=2)


def test_ties_nan_and_zero_signs_follow_the_scan_rule():
    """Ties pick the first maximum, NaN wins (the last NaN), -0.0 against 0.0 is a tie, and a
    -0.0 gradient lands as 0.0."""
    shape = (1, 1, 4, 20)
    x = np.zeros(shape, np.float32)
    x[0, 0, 0, 0::4] = -0.0
    x[0, 0, 1, 1::4] = np.nan
    x[0, 0, 0, 2::5] = np.nan
    x[0, 0, 2:, :] = RNG.integers(0, 2, (2, 20)).astype(np.float32)
    g = -np.zeros((1, 1, 2, 10), np.float32)
    g[0, 0, 1, ::3] = RNG.standard_normal(4)
    for prim in PRIMITIVES:
        tg = tile_graph(prim, shape, (2, 2))
        assert_match(tg, *([x, g] if prim == "max_pool_grad" else [x]), num_threads=1)


def test_overlapping_or_padded_windows_take_the_scan():
    shape = (1, 1, 9, 9)
    for attrs in (window((9, 9), (3, 3), (2, 2)), window((9, 9), (2, 2), (2, 2), (1, 1)),
                  window((9, 9), (2, 2), (2, 2), dilation=(2, 2))):
        g = graph("max_pool", shape, attrs)
        assert not pool_vectors.vectorizable(g.outputs[0], g.inputs[0])


# (N, C, H, W), attrs: interiors of two whole blocks and a masked one, or one masked block, between
# border columns: ResNet's 3x3/2 pad 1, stride 1 (overlap), dilation, gaps (stride > kernel), ceil_mode
WINDOWS = [
    ((2, 3, 20, 45), window((20, 45), (3, 3), (2, 2), (1, 1))),
    ((1, 2, 9, 30), window((9, 30), (3, 3), (1, 1), (1, 1))),
    ((1, 2, 12, 40), window((12, 40), (3, 2), (1, 2), (2, 1), (2, 3))),
    ((2, 1, 11, 50), window((11, 50), (2, 2), (3, 3))),
    ((1, 3, 15, 21), window((15, 21), (3, 3), (2, 2), (1, 1), ceil_mode=True)),
    ((1, 1, 8, 9), window((8, 9), (5, 5), (1, 1), (2, 2))),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape,attrs", WINDOWS, ids=str)
def test_vector_blocks_inside_general_windows(shape, attrs, threads):
    for prim in PRIMITIVES:
        g = graph(prim, shape, attrs)
        assert pool_vectors.vector_windows(g.outputs[0], g.inputs[0])
        assert_match(g, *[values(n.type.shape, dt.float32, RNG) for n in g.inputs], num_threads=threads)


@pytest.mark.parametrize("d", [dt.float64, dt.int32, dt.uint8], ids=str)
def test_vector_blocks_of_other_dtypes(d):
    shape, attrs = WINDOWS[0]
    for prim in PRIMITIVES:
        g = graph(prim, shape, attrs, d)
        assert_match(g, *[values(n.type.shape, d, RNG) for n in g.inputs], num_threads=1)


def test_vector_blocks_keep_ties_and_nan_rules():
    shape, attrs = WINDOWS[1]
    x = RNG.integers(0, 2, shape).astype(np.float32)  # many ties between overlapping windows
    x.flat[::9] = np.nan
    x.flat[1::13] = -0.0
    gy = -np.zeros((*shape[:2], *attrs["out"]), np.float32)  # -0.0 everywhere: 0 + -0.0 sums stay 0.0
    gy.flat[::4] = RNG.standard_normal(gy.flat[::4].shape)
    for prim in PRIMITIVES:
        assert_match(graph(prim, shape, attrs), *([x, gy] if prim == "max_pool_grad" else [x]), num_threads=1)


@pytest.mark.parametrize("d", [dt.float32, dt.float64], ids=str)
@pytest.mark.parametrize("include_pad,divisor", [(True, 0), (False, 0), (False, 5)])
@pytest.mark.parametrize("shape,attrs", [w for w in WINDOWS if w[1]["dilation"] == (1, 1)], ids=str)
def test_vector_blocks_of_float_averages(shape, attrs, include_pad, divisor, d):
    attrs = dict(attrs, count_include_pad=include_pad, divisor=divisor)
    g = graph("avg_pool", shape, attrs, d)
    assert pool_vectors.vector_windows(g.outputs[0], g.inputs[0])
    assert_match(g, values(shape, d, RNG), num_threads=2)


def test_very_wide_strides_stay_scalar():
    attrs = window((4, 200), (2, 2), (1, 20))
    g = graph("max_pool", (1, 1, 4, 200), attrs)
    assert not pool_vectors.vector_windows(g.outputs[0], g.inputs[0])
    assert_match(g, values((1, 1, 4, 200), dt.float32, RNG), num_threads=1)


def test_max_pool_work_puts_lenets_second_pool_on_both_threads():
    g = graph("max_pool", (64, 16, 10, 10), window((10, 10), (2, 2), (2, 2)))
    (group,) = single_groups(g)
    assert work(group) >= PARALLEL_WORK > 64 * 16 * 10 * 10  # more than its elements: it splits


def test_a_conv_pool_group_counts_its_convolution_not_its_pool():
    g = Graph()
    x, w, b = g.input("x", f32(1, 64, 10, 10)), g.input("w", f32(64, 64, 3, 3)), g.input("b", f32(64))
    act = relu(g, conv_bias(g, x, w, b, (1, 1), "net.py:1"), "net.py:1")
    g.outputs = [g.call("max_pool", [act], window((10, 10), (2, 2), (2, 2)))]
    (group,) = fuse(g).groups
    assert group.pattern == "conv2d_pool" and work(group) == 64 * 10 * 10 * (64 * 9) // 16
