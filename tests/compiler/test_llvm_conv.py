"""conv2d groups (compiler/llvm/conv.py) against the numpy kernel in primitives.py."""

import numpy as np
import pytest
from llvm_helpers import compiled, interpret

from graphtorch.compiler import conv_lowering
from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.ir import Graph, Group


def conv_graph(x_shape, w_shape, *, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
               bias_relu=True, d=dt.float32):
    """conv2d, then (optionally) + bias[o] and relu, all in one "conv2d" group."""
    g = Graph()
    x, w = g.input("x", TensorType(x_shape, d)), g.input("w", TensorType(w_shape, d))
    conv = g.call("conv2d", [x, w], {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups})
    y = conv
    if bias_relu:
        bias = g.input("b", TensorType((w_shape[0],), d))
        per_channel = g.call("reshape", [bias], {"shape": (w_shape[0], 1, 1)})
        y = g.call("add", [conv, g.call("expand", [per_channel], {"shape": conv.type.shape})])
        y = g.call("maximum", [y, g.call("full", [], {"shape": conv.type.shape, "value": 0.0, "dtype": d})])
    g.outputs = [y]
    calls = [n for n in g.nodes if n.op == "call"]
    group = Group(0, "conv2d", calls, [n for n in g.nodes if n.op == "input"], [y], conv)
    return g, [group]


def check(x_shape, w_shape, num_threads=1, seed=0, nan=False, **kw):
    g, groups = conv_graph(x_shape, w_shape, **kw)
    d = g.inputs[0].type.dtype.np
    rng = np.random.default_rng(seed)
    args = [rng.standard_normal(i.type.shape).astype(d) for i in g.inputs]
    if nan:
        args[0][0, 0, 1, 1] = np.nan
    (got,) = compiled(g, *args, groups=groups, num_threads=num_threads)
    (want,) = interpret(g, *args)
    assert got.shape == want.shape and got.dtype == want.dtype
    depth = np.prod(w_shape[1:])
    tol = 1e-5 if d == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.sqrt(depth), equal_nan=nan)
    return got


CASES = [
    dict(x_shape=(1, 1, 8, 8), w_shape=(1, 1, 3, 3)),
    dict(x_shape=(3, 3, 13, 11), w_shape=(7, 3, 3, 3)),  # odd sizes, batch 3
    dict(x_shape=(2, 4, 9, 10), w_shape=(5, 4, 3, 2), stride=(2, 3), padding=(1, 2)),
    dict(x_shape=(1, 3, 12, 12), w_shape=(6, 3, 3, 3), dilation=(2, 3), padding=(2, 1)),
    dict(x_shape=(3, 6, 7, 9), w_shape=(9, 2, 3, 3), groups=3, padding=(1, 1)),
    dict(x_shape=(2, 8, 6, 6), w_shape=(8, 1, 3, 3), groups=8, padding=(1, 1)),  # depthwise
    dict(x_shape=(3, 17, 5, 7), w_shape=(19, 17, 1, 1)),  # 1x1: the GEMM reads x in place
    dict(x_shape=(2, 6, 5, 7), w_shape=(4, 3, 1, 1), groups=2),  # 1x1 in place, per group
    dict(x_shape=(2, 5, 9, 7), w_shape=(4, 5, 1, 1), stride=(2, 2), padding=(1, 0)),  # 1x1 through im2col
    dict(x_shape=(1, 8, 40, 40), w_shape=(16, 8, 1, 1)),  # 1x1 in place, two column chunks
    dict(x_shape=(1, 1, 32, 32), w_shape=(6, 1, 5, 5)),  # LeNet's first layer, batch 1
    dict(x_shape=(2, 16, 5, 5), w_shape=(120, 16, 5, 5)),  # a 1x1 output, K = 400
    dict(x_shape=(1, 2, 40, 40), w_shape=(3, 2, 3, 3), padding=(1, 1)),  # 1600 positions: two column chunks
    dict(x_shape=(1, 32, 40, 40), w_shape=(4, 32, 3, 3), padding=(1, 1)),  # two channel chunks summed
    dict(x_shape=(2, 3, 12, 12), w_shape=(4, 3, 9, 8), padding=(1, 1)),  # kernel rows longer than output rows
    dict(x_shape=(1, 4, 260, 260), w_shape=(2, 4, 3, 3), padding=(1, 1)),  # padded plane over budget: im2col pads
    dict(x_shape=(3, 16, 10, 10), w_shape=(6, 16, 5, 5), padding=(4, 4)),  # LeNet's input gradient: wide rows
    dict(x_shape=(1, 600, 40, 40), w_shape=(4, 600, 1, 1)),  # 1x1 in place, three channel chunks
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['x_shape']}*{c['w_shape']}")
def test_conv_bias_relu_matches_numpy(case):
    got = check(**case)
    assert (got >= 0).all()


@pytest.mark.parametrize("case", CASES[1:3], ids=lambda c: f"{c['x_shape']}*{c['w_shape']}")
def test_conv_without_epilogue(case):
    check(**case, bias_relu=False)


def test_conv_fp64():
    check((2, 3, 7, 8), (4, 3, 3, 3), padding=(1, 1), d=dt.float64)


def test_conv_relu_keeps_nan():
    got = check((1, 2, 6, 6), (3, 2, 3, 3), nan=True)
    assert np.isnan(got[0, :, :2, :2]).all()  # every window over x[0, 0, 1, 1]
    assert not np.isnan(got[0, :, 3:, 3:]).any()


@pytest.mark.parametrize("x_shape,w_shape", [((1, 16, 50, 50), (32, 16, 3, 3)), ((3, 8, 40, 40), (16, 4, 3, 3))])
def test_conv_one_and_two_threads_identical(x_shape, w_shape):
    # big enough that the executable runs threads; batch 1: the two threads split one image's
    # positions; batch 3: they split the images
    groups = x_shape[1] // w_shape[1]
    one = check(x_shape, w_shape, groups=groups, padding=(1, 1), num_threads=1)
    two = check(x_shape, w_shape, groups=groups, padding=(1, 1), num_threads=2)
    assert np.array_equal(one, two)


WEIGHT_GRADIENT_CASES = [  # x and g of a conv's weight gradient: (x shape, g shape, attrs of the gradient conv)
    ((4, 2, 12, 12), (4, 3, 8, 8), {}),  # LeNet-like: the kernel is g, 8x8, longer than the 5x5 output
    ((3, 2, 11, 13), (3, 4, 5, 6), dict(stride=(1, 2), dilation=(2, 1), padding=(1, 1))),
    ((2, 2, 9, 9), (2, 3, 9, 9), dict(padding=(1, 1))),  # 'same' padding: a 3x3 result, runs cut by padding
    ((2, 3, 7, 7), (1, 4, 5, 5), dict(groups=2)),
]


@pytest.mark.parametrize("x_shape,g_shape,attrs", WEIGHT_GRADIENT_CASES)
def test_conv_reads_a_permuted_weight_in_place(x_shape, g_shape, attrs):
    """conv2d(x^T, g^T) as the conv2d VJP builds a weight gradient: W (g with batch and channels
    swapped) is not dense, so the GEMM runs one channel chunk at a time and sums them."""
    a = dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1) | attrs
    g = Graph()
    x, gout = g.input("x", TensorType(x_shape, dt.float32)), g.input("g", TensorType(g_shape, dt.float32))
    xt = g.call("permute", [x], {"dims": (1, 0, 2, 3)})
    gt = g.call("permute", [gout], {"dims": (1, 0, 2, 3)})
    conv = g.call("conv2d", [xt, gt], a)
    bias = g.call("full", [], {"shape": conv.type.shape, "value": 0.5, "dtype": dt.float32})
    y = g.call("add", [conv, bias])
    g.outputs = [y]
    group = Group(0, "conv2d", [xt, gt, conv, bias, y], [x, gout], [y], conv)
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(i.type.shape).astype(np.float32) for i in g.inputs]
    for threads in (1, 2):
        (got,) = compiled(g, *args, groups=[group], num_threads=threads)
        (want,) = interpret(g, *args)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("lowering", ["direct", "dot", "im2col", "wide", "transposed"])
@pytest.mark.parametrize("case", CASES + [
    dict(x_shape=(2, 3, 9, 11), w_shape=(13, 3, 7, 7), padding=(3, 2)),  # 7x7, three MR row blocks (13 = 2*6 + 1)
    dict(x_shape=(1, 64, 6, 5), w_shape=(64, 64, 3, 3), padding=(1, 1)),  # depth 576: three KC blocks
    dict(x_shape=(2, 4, 7, 7), w_shape=(1, 4, 2, 2), dilation=(3, 2)),  # one output channel
], ids=lambda c: f"{c['x_shape']}*{c['w_shape']}")
def test_each_forced_lowering_matches_numpy(monkeypatch, lowering, case):
    """compiler/conv_lowering.py's candidates, each forced (ignored where it does not apply), on one
    and two threads."""
    monkeypatch.setenv(conv_lowering.FORCE_ENV, lowering)
    for threads in (1, 2):
        assert (check(**case, num_threads=threads) >= 0).all()


@pytest.mark.parametrize("lowering", ["direct", "dot", "transposed"])
def test_plane_lowerings_fp64_and_nan(monkeypatch, lowering):
    monkeypatch.setenv(conv_lowering.FORCE_ENV, lowering)
    check((2, 3, 7, 8), (4, 3, 3, 3), padding=(1, 1), d=dt.float64)
    got = check((1, 2, 6, 6), (3, 2, 3, 3), nan=True)
    assert np.isnan(got[0, :, :2, :2]).all() and not np.isnan(got[0, :, 3:, 3:]).any()


@pytest.mark.parametrize("x_shape,g_shape,attrs", WEIGHT_GRADIENT_CASES)
@pytest.mark.parametrize("lowering", ["direct", "dot", "transposed"])
def test_plane_lowerings_read_a_permuted_weight(monkeypatch, x_shape, g_shape, attrs, lowering):
    monkeypatch.setenv(conv_lowering.FORCE_ENV, lowering)
    test_conv_reads_a_permuted_weight_in_place(x_shape, g_shape, attrs)


def test_dot_lowering_masks_the_lanes_past_the_kernel_row(monkeypatch):
    """A 1x3 kernel runs in 8-lane vectors: lanes 3..7 read input columns no window uses there.
    An inf in such a column must not turn the window's sum into NaN (0 * inf)."""
    monkeypatch.setenv(conv_lowering.FORCE_ENV, "dot")
    g, groups = conv_graph((1, 1, 1, 12), (1, 1, 1, 3), bias_relu=False)
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 1, 12)
    x[..., 9] = np.inf
    w = np.array([1.0, -2.0, 0.5], np.float32).reshape(1, 1, 1, 3)
    (got,) = compiled(g, x, w, groups=groups)
    (want,) = interpret(g, x, w)
    assert np.isfinite(got[..., :7]).all()
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_dot_lowering_reads_no_lane_past_a_kernel_row(monkeypatch):
    """The dot kernel runs along the flattened kernel (here 1x3: one masked vector). The next
    output channel's kernel row follows in memory: its inf must not reach channel 0 (a lane read
    past the row would make 0 * inf = NaN), nor may an inf input column reach windows without it."""
    monkeypatch.setenv(conv_lowering.FORCE_ENV, "dot")
    g, groups = conv_graph((1, 1, 1, 12), (2, 1, 1, 3), bias_relu=False)
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 1, 12)
    x[..., 9] = np.inf
    w = np.array([[1.0, -2.0, 0.5], [np.inf, 1.0, 1.0]], np.float32).reshape(2, 1, 1, 3)
    (got,) = compiled(g, x, w, groups=groups)
    (want,) = interpret(g, x, w)
    assert np.isfinite(got[0, 0, 0, :7]).all()
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("x_shape,g_shape,attrs", [
    ((70, 1, 9, 9), (70, 5, 3, 3), {}),  # 70 summed channels: 8 chunks of 9, the last ragged
    ((3, 4, 15, 13), (3, 7, 5, 4), dict(stride=(2, 3), padding=(2, 1))),  # a forward stride 2: two row phases
    ((2, 2, 10, 10), (2, 3, 4, 4), dict(dilation=(2, 2), padding=(1, 1))),  # a forward dilation: strided windows
])
@pytest.mark.parametrize("d", [dt.float32, dt.float64])
def test_dot_lowering_weight_gradients(monkeypatch, x_shape, g_shape, attrs, d):
    """Weight gradients (conv2d(x^T, g^T) with stride and dilation exchanged) on the dot kernel:
    chunks of summed channels split over one and two threads, and every stride/dilation phase."""
    monkeypatch.setenv(conv_lowering.FORCE_ENV, "dot")
    a = dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1) | attrs
    a["stride"], a["dilation"] = a["dilation"], a["stride"]
    g = Graph()
    x, gout = g.input("x", TensorType(x_shape, d)), g.input("g", TensorType(g_shape, d))
    conv = g.call("conv2d", [g.call("permute", [x], {"dims": (1, 0, 2, 3)}),
                             g.call("permute", [gout], {"dims": (1, 0, 2, 3)})], a)
    assert conv_lowering.choose(conv).name == "dot"
    g.outputs = [conv]
    group = Group(0, "conv2d", [n for n in g.nodes if n.op == "call"], [x, gout], [conv], conv)
    rng = np.random.default_rng(3)
    args = [rng.standard_normal(i.type.shape).astype(d.np) for i in g.inputs]
    (want,) = interpret(g, *args)
    tol = 1e-4 if d == dt.float32 else 1e-11
    for threads in (1, 2):
        (got,) = compiled(g, *args, groups=[group], num_threads=threads)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((2, 16, 10, 10), (6, 16, 5, 5), dict(padding=(4, 4))),  # LeNet's conv2 input gradient: full padding
    ((1, 3, 7, 9), (2, 3, 3, 4), dict(padding=(1, 3), dilation=(2, 1))),  # two rows of a tile share a plane
    ((2, 4, 6, 5), (4, 2, 2, 3), dict(padding=(0, 1), groups=2)),  # padding 0: every margin is spilled into
])
def test_transposed_lowering_scatters_each_input_into_its_outputs(monkeypatch, x_shape, w_shape, attrs):
    """The scatter kernel against the interpreter at one and two threads, and NaN in one input
    element reaches exactly the outputs whose windows hold it (none through the wide rows' zeros)."""
    monkeypatch.setenv(conv_lowering.FORCE_ENV, "transposed")
    g, groups = conv_graph(x_shape, w_shape, bias_relu=False, **attrs)
    assert conv_lowering.choose(groups[0].anchor).name == "transposed"
    for threads in (1, 2):
        check(x_shape, w_shape, num_threads=threads, bias_relu=False, **attrs)
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal(x_shape).astype(np.float32), rng.standard_normal(w_shape).astype(np.float32)
    x[0, 0, 2, 1] = np.nan
    (got,) = compiled(g, x, w, groups=groups)
    (want,) = interpret(g, x, w)
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.isnan(want).any()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)
