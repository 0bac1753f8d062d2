"""conv2d + bias + relu + max_pool fused into one "conv2d_pool" group (compiler/conv_pool.py) in
inference: the grouping and its refusals, the dump line, and the fused kernel on the LLVM backend
(each conv lowering forced, batches cut into several chunks) and the CUDA emulation, against the
interpreter; a compiled model equals eager with and without gradients."""

import numpy as np
import pytest
from compiler_helpers import conv_bias, f32, relu
from llvm_helpers import assert_match, interpret

import graphtorch as gt
import graphtorch.nn as nn
from graphtorch.compiler import conv_lowering
from graphtorch.compiler.conv_pool import chunk_size
from graphtorch.compiler.cuda import emit
from graphtorch.compiler.cuda.hostcheck import HostModule, available
from graphtorch.compiler.fusion import format_group, fuse
from graphtorch.compiler.ir import Graph

POOL = dict(out=(14, 14), kernel=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(1, 1), adaptive=False)


def conv_relu_pool(batch=6, extra_reader=False) -> Graph:
    """conv 3->4 5x5 padding 1 on 30x30 (a 4x28x28 activation, 12.5 KiB per image), relu, 3x3/2 max pool."""
    g = Graph()
    x = g.input("x", f32(batch, 3, 30, 30))
    w, b = g.input("w", f32(4, 3, 5, 5)), g.input("b", f32(4))
    act = relu(g, conv_bias(g, x, w, b, (1, 1), "net.py:3"), "net.py:3")
    pool = g.call("max_pool", [act], POOL, "net.py:4", "max_pool2d")
    g.outputs = [pool, g.call("neg", [act])] if extra_reader else [pool]
    return g


def inputs(g: Graph, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n.type.shape).astype(np.float32) for n in g.inputs]


def test_the_pool_joins_the_conv_group_and_the_dump_says_so():
    plan = fuse(conv_relu_pool())
    assert [g.pattern for g in plan.groups] == ["conv2d_pool"]
    text = format_group(plan.groups[0])
    assert "conv2d + bias + relu + max_pool2d" in text and "max_pool over chunks of" in text
    assert not [r for r in plan.rejections if r.consumer.target == "max_pool"]


def test_an_activation_read_elsewhere_is_not_fused_and_the_reason_is_recorded():
    plan = fuse(conv_relu_pool(extra_reader=True))
    assert "conv2d_pool" not in [g.pattern for g in plan.groups]
    assert any("read elsewhere" in str(r) for r in plan.rejections)


@pytest.mark.parametrize("lowering", ["im2col", "wide", "direct", "dot"])
def test_fused_kernel_equals_the_interpreter_for_every_conv_lowering(lowering, monkeypatch):
    monkeypatch.setenv(conv_lowering.FORCE_ENV, lowering)
    g = conv_relu_pool(batch=26)  # 26 images of 12.5 KiB: chunks of 2 (13 chunks)
    groups = fuse(g).groups
    assert chunk_size(groups[0]) == 2
    for threads in (1, 2):
        assert_match(g, *inputs(g), groups=groups, num_threads=threads, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not available(), reason="g++ is needed to run the emitted kernels on the CPU")
def test_fused_group_on_the_cuda_emulation():
    g = conv_relu_pool(batch=2)
    xs = inputs(g, 1)
    (got,) = HostModule(emit(g, fuse(g).groups)).run(xs)
    np.testing.assert_allclose(got, interpret(g, *xs)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("grad", [False, True])
def test_compiled_model_equals_eager(grad):
    model = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 5 * 5, 10))
    x = gt.tensor(np.random.default_rng(2).standard_normal((9, 1, 32, 32)).astype(np.float32))
    compiled = gt.compile(model)
    with gt.set_grad_enabled(grad):
        want, got = model(x), compiled(x)
        got = compiled(x)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-5)
    if grad:
        got.sum().backward()
        w_grad = model[0].weight.grad.numpy().copy()
        model.zero_grad()
        want.sum().backward()
        np.testing.assert_allclose(w_grad, model[0].weight.grad.numpy(), rtol=1e-4, atol=1e-4)
