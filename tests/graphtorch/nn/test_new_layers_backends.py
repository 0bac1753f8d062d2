"""The new layers through every backend: compiled with the interpreter and with LLVM they equal
eager (outputs and gradients); their traced graphs lower to CUDA C (the emitter accepts every
fusion group). Running that CUDA C needs a GPU (tests/compiler/test_cuda_runtime.py covers the
runtime; the fake driver cannot run the cooperative GEMM kernels these models use)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import randn

import graphtorch as gt
import graphtorch.nn as nn
from graphtorch.compiled import flatten, trace
from graphtorch.compiler.cuda import emit
from graphtorch.compiler.fusion import fuse


def encoder_layer():
    return nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, norm_first=True), (2, 5, 8)


def lstm():
    return nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True), (2, 5, 3)


def conv_stack():
    return nn.Sequential(nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1), nn.GroupNorm(3, 3),
                         nn.Upsample(scale_factor=2, mode="bilinear"), nn.Mish(), nn.Conv1d(3, 2, 3)), (1, 2, 1, 5)


MODELS = {"encoder_layer": encoder_layer, "lstm": lstm, "conv_stack": conv_stack}


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _loss_and_grads(model, fn, x):
    model.zero_grad()
    x.grad = None
    out = _first(fn(x))
    out.square().sum().backward()
    return out, [x.grad, *(p.grad for p in model.parameters())]


def _conv_stack_forward(model):
    """The 2-d part, its height averaged away, then the Conv1d."""
    def forward(x):
        return model[4](model[:4](x).mean(2))
    return forward


@pytest.mark.parametrize("backend", ["interpreter", "llvm"])
@pytest.mark.parametrize("name", MODELS)
def test_compiled_equals_eager_with_gradients(name, backend):
    gt.manual_seed(0)
    model, shape = MODELS[name]()
    forward = _conv_stack_forward(model) if name == "conv_stack" else model
    x = gt.tensor(randn(*shape), requires_grad=True)
    want, want_grads = _loss_and_grads(model, forward, x)
    compiled = gt.compile(forward, backend=backend)
    if name == "conv_stack":
        compiled(x)  # a function's first call runs eagerly
    got, got_grads = _loss_and_grads(model, compiled, x)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-5)
    for a, b in zip(got_grads, want_grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_inference_graph_lowers_to_cuda_c(name):
    gt.manual_seed(0)
    model, shape = MODELS[name]()
    model.eval()
    forward = _conv_stack_forward(model) if name == "conv_stack" else model
    flat, spec = flatten(((gt.tensor(randn(*shape)),), {}))
    with gt.no_grad():
        graph = trace(forward, flat, spec, model, name).graph
    groups = fuse(graph).groups
    module = emit(graph, groups)
    assert len(module.launches) >= len(groups)
    assert module.source.count("__global__") >= len(groups)
