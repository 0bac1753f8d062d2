"""The pooling kernels (compiler/llvm/pooling.py) against the numpy kernels, bit for bit: every
primitive on fast-path and border windows, adaptive windows, NaN/inf/-0.0 inputs, integer
dtypes, one and two threads, and a window larger than the fast path unrolls."""

import numpy as np
import pytest
from llvm_helpers import assert_match, values

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.ir import Graph
from graphtorch.compiler.pooling import Axis

RNG = np.random.default_rng(7)


def window(size, kernel, stride, padding=(0, 0), dilation=(1, 1), ceil_mode=False, adaptive_out=None) -> dict:
    """Pooling attrs for a (H, W) input; the output size by torch's rule (or adaptive_out)."""
    if adaptive_out is not None:
        return dict(out=adaptive_out, kernel=(0, 0), stride=(0, 0), padding=(0, 0), dilation=(1, 1), adaptive=True)
    out = []
    for n, k, s, p, d in zip(size, kernel, stride, padding, dilation):
        o = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
        out.append(o - 1 if ceil_mode and (o - 1) * s >= n + p else o)
    return dict(out=tuple(out), kernel=kernel, stride=stride, padding=padding, dilation=dilation, adaptive=False)


# (N, C, H, W), attrs: the fast path with borders, dilation, ceil_mode, no interior at all, adaptive, 8x8 (> 64 taps)
WINDOWS = [
    ((2, 3, 8, 8), window((8, 8), (2, 2), (2, 2))),
    ((1, 4, 11, 9), window((11, 9), (3, 3), (2, 2), (1, 1), ceil_mode=True)),
    ((2, 2, 10, 13), window((10, 13), (3, 2), (1, 3), (1, 1), (2, 3))),
    ((1, 3, 5, 4), window((5, 4), (5, 4), (1, 1), (2, 2))),
    ((2, 3, 7, 10), window((7, 10), None, None, adaptive_out=(3, 4))),
    ((1, 2, 4, 5), window((4, 5), None, None, adaptive_out=(6, 7))),
    ((1, 2, 17, 9), window((17, 9), (8, 8), (3, 1), (4, 4))),
]


def graph(prim: str, shape, attrs: dict, d=dt.float32) -> Graph:
    g = Graph()
    x = g.input("x", TensorType(shape, d))
    out_shape = (*shape[:2], *attrs["out"])
    if prim == "max_pool_grad":
        gy = g.input("g", TensorType(out_shape, d))
        g.outputs = [g.call(prim, [x, gy], attrs)]
    elif prim == "avg_pool_grad":
        g = Graph()
        gy = g.input("g", TensorType(out_shape, d))
        g.outputs = [g.call(prim, [gy], dict(attrs, size=shape[2:]))]
    else:
        g.outputs = [g.call(prim, [x], attrs)]
    return g


def inputs(g: Graph, d, specials=True) -> list[np.ndarray]:
    return [values(n.type.shape, d, RNG, specials=specials) for n in g.inputs]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape,attrs", WINDOWS, ids=str)
def test_max_pool_values_indices_and_gradient(shape, attrs, threads):
    for prim in ("max_pool", "max_pool_index", "max_pool_grad"):
        g = graph(prim, shape, attrs)
        assert_match(g, *inputs(g, dt.float32), num_threads=threads)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("include_pad,divisor", [(True, 0), (False, 0), (True, 3)])
@pytest.mark.parametrize("shape,attrs", [w for w in WINDOWS if w[1]["dilation"] == (1, 1)], ids=str)
def test_avg_pool_and_gradient(shape, attrs, include_pad, divisor, threads):
    attrs = dict(attrs, count_include_pad=include_pad, divisor=divisor)
    for prim in ("avg_pool", "avg_pool_grad"):
        g = graph(prim, shape, attrs)
        assert_match(g, *inputs(g, dt.float32, specials=False), num_threads=threads)


@pytest.mark.parametrize("attrs", [window((9, 9), (3, 3), (1, 1), (1, 1)), window((9, 9), (2, 2), (2, 2)),
                                   window((9, 9), (2, 3), (3, 3), (1, 0), ceil_mode=True)], ids=str)
def test_ties_nan_and_negative_zero_follow_the_numpy_scan(attrs):
    """Overlapping windows scatter; disjoint ones store each tap's element after the scan."""
    shape = (2, 3, 9, 9)
    x = RNG.integers(0, 3, shape).astype(np.float32)
    x[0, 0, 4, 4] = x[0, 0, 4, 5] = x[1, 2, 0, 0] = np.nan
    x[1, 1] = -np.inf
    for prim in ("max_pool", "max_pool_index", "max_pool_grad"):
        g = graph(prim, shape, attrs)
        gy = inputs(g, dt.float32)[1:]
        if gy:
            gy[0].flat[::3] = -0.0
        assert_match(g, x, *gy)


@pytest.mark.parametrize("d", [dt.float64, dt.int64, dt.int32, dt.uint8, dt.int8])
def test_dtypes(d):
    shape, attrs = WINDOWS[1]
    for prim in ("max_pool", "max_pool_index", "max_pool_grad"):
        g = graph(prim, shape, attrs, d)
        assert_match(g, *inputs(g, d))
    if d.is_signed or d.is_floating_point:
        for divisor in (0, -3):
            g = graph("avg_pool", shape, dict(attrs, count_include_pad=False, divisor=divisor), d)
            assert_match(g, *inputs(g, d, specials=False))


def test_axis_inside_is_exactly_the_windows_with_every_tap_inside():
    for size, k, s, p, d in [(8, 2, 2, 0, 1), (11, 3, 2, 1, 1), (13, 2, 3, 1, 3), (4, 5, 1, 2, 1), (9, 3, 1, 1, 2)]:
        out = window((size, size), (k, k), (s, s), (p, p), (d, d), ceil_mode=True)["out"][0]
        axis = Axis(size, out, k, s, p, d, adaptive=False)
        pos, inside = axis.positions()
        lo, hi = axis.inside()
        assert [o for o in range(out) if inside[o].all()] == list(range(lo, hi))
