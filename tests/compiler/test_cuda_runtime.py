"""The GPU runtime: without a GPU (this machine, CI) the answer is a clean "no"; with one, the
compiled seed models agree with the numpy interpreter and a bad gather index raises IndexError."""

from __future__ import annotations

import numpy as np
import pytest
from llvm_helpers import interpret
from test_cuda_graphs import SEED_GRAPHS, fused_gemm_graph, gather_graph, layout_graph

import graphtorch
from graphtorch.compiler.cuda import build
from graphtorch.compiler.errors import GraphtorchCompileError
from graphtorch.compiler.fusion import fuse, single_groups
from graphtorch.runtime import cuda as rt

needs_gpu = pytest.mark.skipif(not rt.is_available(), reason=f"no CUDA GPU here: {rt.why_unavailable()}")


def test_torch_cuda_queries_ask_the_runtime():
    assert graphtorch.cuda.is_available() is rt.is_available()
    assert graphtorch.cuda.device_count() == rt.device_count()


@pytest.mark.skipif(rt.is_available(), reason="checks the behaviour without a GPU")
def test_without_a_gpu_everything_says_no_cleanly():
    assert graphtorch.cuda.is_available() is False and graphtorch.cuda.device_count() == 0
    assert rt.why_unavailable()
    with pytest.raises(rt.CudaError, match="no CUDA device"):
        rt.Device()
    g = gather_graph()
    with pytest.raises(GraphtorchCompileError, match="GT053.*needs a CUDA device") as e:
        build(g, single_groups(g))
    assert "CPU backend" in e.value.hint


def _inputs(graph, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for n in graph.inputs:
        t = n.type
        if t.dtype.is_floating_point:
            out.append((rng.standard_normal(t.shape) * 0.5).astype(t.dtype.np))
        else:
            out.append(rng.integers(0, 3, t.shape).astype(t.dtype.np))
    return out


def _check(graph, groups, seed=0):
    xs = _inputs(graph, seed)
    got = build(graph, groups, cache=False)(*xs)
    for o, g, w in zip(graph.outputs, got, interpret(graph, *xs)):
        assert g.dtype == w.dtype and g.shape == w.shape, o.name
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4, err_msg=f"{o.name} ({o.target})")


@needs_gpu
@pytest.mark.parametrize("name", sorted(SEED_GRAPHS))
def test_seed_graphs_match_the_interpreter_on_the_gpu(name):
    g = SEED_GRAPHS[name]()
    _check(g, fuse(g).groups)


@needs_gpu
def test_gemm_conv_and_block_reductions_on_the_gpu():
    g = fused_gemm_graph()
    _check(g, fuse(g).groups)
    _check(g, single_groups(g))


@needs_gpu
def test_layout_and_opaque_ops_on_the_gpu():
    g = layout_graph()
    _check(g, single_groups(g))


@needs_gpu
def test_gather_out_of_bounds_raises_on_the_gpu():
    g = gather_graph()
    exe = build(g, single_groups(g), cache=False)
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(IndexError, match="index 9 is out of bounds for dimension 1 with size 4"):
        exe(x, np.array([[0, 1], [9, 2], [0, 0]]))
    np.testing.assert_array_equal(exe(x + 1, np.zeros((3, 2), np.int64))[0], np.ones((3, 2)))
