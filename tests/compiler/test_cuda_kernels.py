"""The emitted CUDA C is right, checked without a GPU: the kernels whose threads do not cooperate
(elementwise, thread-per-output reductions, the opaque ops) run on the CPU through hostcheck
(g++ and a small header for CUDA's built-ins) and are compared with the numpy kernels. Cooperative
kernels (tiled GEMM/conv, block reductions) are compiled in test_cuda_compile.py and run on a GPU
in test_cuda_runtime.py."""

from __future__ import annotations

import numpy as np
import pytest
from llvm_helpers import interpret, values
from test_cuda_graphs import (
    elementwise_graph,
    fused_pointwise_graph,
    gather_graph,
    layout_graph,
    split_epilogue_graph,
)

from graphtorch.compiler.cuda import emit
from graphtorch.compiler.cuda.hostcheck import HostModule, available
from graphtorch.compiler.fusion import fuse, single_groups

pytestmark = pytest.mark.skipif(not available(), reason="g++ is needed to run the emitted kernels on the CPU")


def inputs_for(graph, seed=0, specials=True):
    rng = np.random.default_rng(seed)
    out = []
    for n in graph.inputs:
        clean = n.target.startswith("clean") or not specials
        out.append(values(n.type.shape, n.type.dtype, rng, specials=not clean))
    return out


def assert_close(got, want, graph):
    for o, g, w in zip(graph.outputs, got, want):
        what = f"{o.name} = {o.target}({', '.join(i.type.dtype.short for i in o.inputs)})"
        assert g.dtype == w.dtype and g.shape == w.shape, f"{what}: {g.dtype}{g.shape} vs {w.dtype}{w.shape}"
        if g.dtype.kind == "f":  # libm and numpy's own exp/sin/... may differ in the last bit
            tol = 1e-5 if g.dtype == np.float32 else 1e-12
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol, equal_nan=True, err_msg=what)
        else:
            np.testing.assert_array_equal(g, w, err_msg=what)


def test_every_elementwise_primitive_on_every_dtype():
    g = elementwise_graph()
    module = emit(g, single_groups(g))
    xs = inputs_for(g)
    assert_close(HostModule(module).run(xs), interpret(g, *xs), g)


def test_layout_and_opaque_ops_and_short_reductions():
    g = layout_graph()
    module = emit(g, single_groups(g))
    xs = inputs_for(g, seed=1)
    xs[2] = np.random.default_rng(2).integers(-6, 6, xs[2].shape)  # gather/scatter indices, negatives wrap
    xs[3] = np.array(2**63 - 5, np.int64)  # rand's counter wraps around 2**64 inside the tensor
    got, want = HostModule(module).run(xs), interpret(g, *xs)
    assert_close(got, want, g)
    rand_outputs = [k for k, o in enumerate(g.outputs) if o.target == "rand"]
    for k in rand_outputs:  # splitmix64: bit-exact, not merely close
        assert got[k].tobytes() == want[k].tobytes()


def test_nan_propagates_through_max_min_and_wins_argmax():
    g = layout_graph()
    module = emit(g, single_groups(g))
    xs = inputs_for(g, seed=3, specials=False)
    xs[2] = np.zeros_like(xs[2])
    xs[0][0, 1, 2, 3] = np.nan
    xs[0][1, 2, 4, 5] = np.nan
    xs[0][1, 2, 0, 5] = np.nan
    got, want = HostModule(module).run(xs), interpret(g, *xs)
    assert_close(got, want, g)
    maxed = [k for k, o in enumerate(g.outputs) if o.target == "max" and o.inputs[0].name == "%x"][0]
    assert np.isnan(got[maxed]).sum() == 3  # one per window holding a NaN


def test_gather_out_of_bounds_sets_the_error_flag():
    g = gather_graph()
    h = HostModule(emit(g, single_groups(g)))
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(h.run([x, np.array([[0, -1], [3, 2], [-4, 1]])])[0], [[0, 3], [7, 6], [8, 9]])
    with pytest.raises(IndexError, match="index 4 is out of bounds for dimension 1 with size 4"):
        h.run([x, np.array([[0, 1], [4, 2], [0, 0]])])


def test_fused_pointwise_patterns():
    g = fused_pointwise_graph()
    groups = fuse(g).groups
    assert {gr.pattern for gr in groups} == {"elementwise", "reduction"}
    module = emit(g, groups)
    assert len(module.launches) < len(single_groups(g)) // 3, "fusion must save kernels"
    xs = inputs_for(g, seed=4, specials=False)
    assert_close(HostModule(module).run(xs), interpret(g, *xs), g)


def test_epilogue_needing_another_position_splits_into_two_kernels():
    g, groups = split_epilogue_graph()
    module = emit(g, groups)
    assert [la.kernel.endswith("_epilogue") for la in module.launches] == [False, True]
    xs = inputs_for(g, seed=5, specials=False)
    got = HostModule(module).run(xs)
    assert_close(got, interpret(g, *xs), g)
    assert np.abs(got[0]).max() > 0  # not trivially zero: m - m^T of a random m


def test_source_names_the_nodes_and_user_lines():
    g = fused_pointwise_graph()
    src = emit(g, fuse(g).groups).source
    assert "# model.py:4  [mean]" in src
    assert "max(" in src and "# model.py:5  [max_pool2d]" in src
    assert "fmaxf" not in src and "fmax(" not in src  # NaN must propagate: gt_max, never fmax
