"""relu's backward fused into max_pool_grad (cleanup.relu_into_max_pool_grad, the `relu` attr):
the rewrite keeps every value (interpreter before and after), the kernels with relu=True equal
the numpy kernel on tiles and on the general scan, one and two threads, and the rewrite leaves
alone what it must not change. End to end: relu + max-pool gradients compiled equal torch's."""

import numpy as np
import pytest
import torch
from llvm_helpers import assert_match, values
from test_cuda_pooling import check
from test_llvm_pooling import window

import graphtorch
import graphtorch.nn.functional as F
from graphtorch.compiler import cleanup, interpreter
from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.cuda.hostcheck import available
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.ir import Graph

RNG = np.random.default_rng(17)
SHAPE = (2, 3, 9, 13)
TILES = window(SHAPE[2:], (2, 2), (2, 2))
OVERLAPPING = window(SHAPE[2:], (3, 3), (2, 2), (1, 1))


def _full(g: Graph, value, d=dt.float32, shape=SHAPE):
    return g.call("full", [], {"shape": shape, "value": value, "dtype": d})


def relu_pool_backward(attrs: dict, *, fill=0.0, threshold=0.0, grad_is_output=False, other_mask=False) -> Graph:
    """where(le(y, threshold), fill, max_pool_grad(y, g)): relu's backward after the pool's."""
    g = Graph()
    y = g.input("y", TensorType(SHAPE, dt.float32))
    gy = g.input("g", TensorType((*SHAPE[:2], *attrs["out"]), dt.float32))
    pool_grad = g.call("max_pool_grad", [y, gy], attrs)
    masked = g.call("neg", [y]) if other_mask else y
    out = g.call("where", [g.call("le", [masked, _full(g, threshold)]), _full(g, fill), pool_grad])
    g.outputs = [out, pool_grad] if grad_is_output else [out]
    return g


def run_both(before: Graph, after: Graph) -> None:
    y = values(SHAPE, dt.float32, RNG)
    y.flat[::5] = 0.0  # zeros and -0.0 at window maxima: the mask is x <= 0
    y.flat[1::7] = -0.0
    gy = values(before.inputs[1].type.shape, dt.float32, RNG)
    for got, want in zip(interpreter.run(after, [y, gy]), interpreter.run(before, [y, gy])):
        assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("attrs", [TILES, OVERLAPPING], ids=["tiles", "overlapping"])
def test_the_where_joins_the_pool_gradient_and_values_stay(attrs):
    g = relu_pool_backward(attrs)
    out = cleanup.relu_into_max_pool_grad(g)
    assert [n.target for n in out.nodes if n.op == "call"] == ["max_pool_grad"]
    assert out.outputs[0].attrs["relu"] is True
    run_both(g, out)
    assert cleanup.relu_into_max_pool_grad(out) is out  # nothing left to rewrite


@pytest.mark.parametrize("why", [dict(fill=-0.0), dict(fill=1.0), dict(threshold=0.5), dict(grad_is_output=True),
                                 dict(other_mask=True)], ids=str)
def test_the_rewrite_leaves_other_masks_alone(why):
    g = relu_pool_backward(TILES, **why)
    assert cleanup.relu_into_max_pool_grad(g) is g


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("attrs", [TILES, OVERLAPPING], ids=["tiles", "overlapping"])
@pytest.mark.parametrize("d", [dt.float32, dt.float64, dt.int32])
def test_kernels_with_relu_equal_the_numpy_kernel(attrs, d, threads):
    g = Graph()
    y = g.input("y", TensorType(SHAPE, d))
    gy = g.input("g", TensorType((*SHAPE[:2], *attrs["out"]), d))
    g.outputs = [g.call("max_pool_grad", [y, gy], dict(attrs, relu=True))]
    x = values(SHAPE, d, RNG)
    x.flat[::4] = 0
    assert_match(g, x, values(gy.type.shape, d, RNG), num_threads=threads)


@pytest.mark.parametrize("pool", [lambda f, a: f.max_pool2d(a, 2), lambda f, a: f.max_pool2d(a, 3, 2, 1),
                                  lambda f, a: f.max_pool2d(a, (2, 3), ceil_mode=True)], ids=["2x2", "3x3s2p1", "2x3ceil"])
def test_relu_then_max_pool_gradients_compiled_equal_torch(pool):
    a = np.random.default_rng(3).standard_normal((2, 3, 11, 14))
    a[0, 0, :2] = 0.0  # relu's kink: the gradient at 0 is 0, as torch's threshold_backward

    def loss(f, x):
        return (pool(f, f.relu(x * 1.5)) * 2.0).sum()

    x = graphtorch.tensor(a, requires_grad=True)
    step = graphtorch.compile(lambda t: loss(F, t))
    for _ in range(2):  # the first call runs eagerly, the second compiled
        x.grad = None
        step(x).backward()
    t = torch.tensor(a, requires_grad=True)
    loss(torch.nn.functional, t).backward()
    np.testing.assert_array_equal(x.grad.numpy(), t.grad.numpy())


@pytest.mark.skipif(not available(), reason="g++ is needed to run the emitted kernels on the CPU")
@pytest.mark.parametrize("attrs", [TILES, OVERLAPPING], ids=["tiles", "overlapping"])
def test_cuda_kernel_with_relu_equals_the_numpy_kernel(attrs):
    g = Graph()
    y = g.input("y", TensorType(SHAPE, dt.float32))
    gy = g.input("g", TensorType((*SHAPE[:2], *attrs["out"]), dt.float32))
    g.outputs = [g.call("max_pool_grad", [y, gy], dict(attrs, relu=True))]
    x = values(SHAPE, dt.float32, RNG, specials=False)
    x.flat[::4] = 0.0
    check(g, [x, values(gy.type.shape, dt.float32, RNG, specials=False)])
