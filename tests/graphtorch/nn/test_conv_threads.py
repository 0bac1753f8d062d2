"""Compiled conv2d forward and both gradients at one and two threads on the kernels that split
images into work items (conv_direct.py, conv_transposed.py through conv.TileQueue): small
batches cut into channel chunks or position parts, against torch."""

import numpy as np
import pytest
from conftest import assert_same

import graphtorch as gt
from graphtorch.compiler import conv_lowering

torch = pytest.importorskip("torch", reason="torch is the oracle")


@pytest.fixture
def threads():
    before = gt.get_num_threads()
    yield gt.set_num_threads
    gt.set_num_threads(before)


@pytest.mark.parametrize("lowering", ["transposed", "direct"])
@pytest.mark.parametrize("shape,kwargs", [
    ((1, 16, 16, 16), dict(in_channels=16, out_channels=16, kernel_size=3, padding=1, bias=False)),  # ResNet conv, batch 1
    ((3, 6, 9, 7), dict(in_channels=6, out_channels=10, kernel_size=3, padding=1)),  # batch 3, 10 channels
    ((5, 4, 8, 8), dict(in_channels=4, out_channels=6, kernel_size=5, padding=2, groups=2)),
])
@pytest.mark.parametrize("n", [1, 2])
def test_split_conv_equals_torch(monkeypatch, threads, lowering, shape, kwargs, n):
    monkeypatch.setenv(conv_lowering.FORCE_ENV, lowering)
    threads(n)
    t_conv = torch.nn.Conv2d(**kwargs)
    g_conv = gt.nn.Conv2d(**kwargs)
    g_conv.load_state_dict({k: gt.tensor(v.detach().numpy().copy()) for k, v in t_conv.state_dict().items()})
    compiled = gt.compile(lambda a: gt.relu(g_conv(a)))
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(np.float32)
    for _ in range(2):  # the first call runs eagerly, the second the compiled graph
        gx, tx = gt.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        got, want = compiled(gx), torch.relu(t_conv(tx))
        assert_same(got, want, rtol=1e-4, atol=1e-5, what="output")
        v = rng.standard_normal(tuple(want.shape)).astype(np.float32)
        (got * gt.tensor(v)).sum().backward()
        (want * torch.tensor(v)).sum().backward()
        assert_same(gx.grad, tx.grad, rtol=1e-4, atol=1e-4, what="input gradient")
        assert_same(g_conv.weight.grad, t_conv.weight.grad, rtol=1e-4, atol=1e-4, what="weight gradient")
        g_conv.zero_grad()
        t_conv.zero_grad()
