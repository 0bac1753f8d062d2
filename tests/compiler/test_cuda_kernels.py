"""The emitted CUDA C is right, checked without a GPU: every kernel (elementwise, reductions of
both shapes, the tiled GEMM and implicit-GEMM conv, the opaque ops) runs on the CPU through
hostcheck's emulator (g++, fibers for a block's threads, real barriers, shuffles, shared memory
with a race detector) and is compared with the numpy kernels. Test-only edits of the emitted text
show that a broken tile index and a missing barrier are caught."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from compiler_helpers import f32
from llvm_helpers import interpret, values
from test_cuda_graphs import (
    SEED_GRAPHS,
    elementwise_graph,
    fused_gemm_graph,
    fused_pointwise_graph,
    gather_graph,
    layout_graph,
    split_epilogue_graph,
)

from graphtorch.compiler.cuda import emit
from graphtorch.compiler.cuda.hostcheck import EmulationError, HostModule, available
from graphtorch.compiler.fusion import fuse, single_groups
from graphtorch.compiler.ir import Graph

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


# ---------------------------------------------------------------- cooperative kernels


def _check(graph, groups, seed=0, tol=1e-4):
    """Run the emitted module in the emulator; every output equals the interpreter's (float sums in
    another order: a tolerance)."""
    module = emit(graph, groups)
    assert any(la.cooperative for la in module.launches), "the test must exercise cooperative kernels"
    xs = _inputs(graph, seed)
    for o, g, w in zip(graph.outputs, HostModule(module).run(xs), interpret(graph, *xs)):
        assert g.dtype == w.dtype and g.shape == w.shape, o.name
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=f"{o.name} ({o.target})")
    return module, xs


def _inputs(graph, seed):
    rng = np.random.default_rng(seed)
    out = []
    for n in graph.inputs:
        t = n.type
        if t.dtype.is_floating_point:
            out.append((rng.standard_normal(t.shape) * 0.5).astype(t.dtype.np))
        else:
            out.append(rng.integers(-3, 4, t.shape).astype(t.dtype.np))
    return out


def test_gemm_conv_and_block_reductions_fused_and_alone():
    g = fused_gemm_graph()
    _check(g, fuse(g).groups)
    _check(g, single_groups(g), seed=1)


@pytest.mark.parametrize("name", sorted(SEED_GRAPHS))
def test_seed_graphs_forward_and_backward(name):
    g = SEED_GRAPHS[name]()
    _check(g, fuse(g).groups)


def gemm_graph() -> Graph:
    """A GEMM of 2 x 3 tiles with K = 40 (two and a half steps of 16): every edge of the tiling."""
    g = Graph()
    a, b = g.input("a", f32(130, 40)), g.input("b", f32(40, 70))
    g.outputs = [g.call("matmul", [a, b])]
    return g


def test_gemm_over_several_tiles():
    g = gemm_graph()
    module, _ = _check(g, fuse(g).groups)
    assert module.launches[0].grid == (2, 3, 1)


def test_block_reduction_with_fewer_blocks_than_outputs():
    """A block loops over several outputs (the grid is capped on a GPU): launched with 1 block here,
    the shared-memory reuse between outputs is exercised, and the results are unchanged."""
    g = fused_gemm_graph()
    module = emit(g, fuse(g).groups)
    module.launches = [dataclasses.replace(la, grid=(1, 1, 1)) if "reduction" in la.kernel else la
                       for la in module.launches]
    xs = _inputs(g, 2)
    xs[-3][1, 7] = np.nan  # argmax over a block: the first NaN wins
    for o, got, want in zip(g.outputs, HostModule(module).run(xs), interpret(g, *xs)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=o.name)


def _edited(module, old: str, new: str, kernel: str):
    """The module with one test-only edit of its emitted text inside `kernel`."""
    at = module.source.index(f" {kernel}(")
    body = module.source[at:]
    assert old in body, f"{old!r} is not in {kernel}"
    return dataclasses.replace(module, source=module.source[:at] + body.replace(old, new, 1))


def test_a_broken_tile_index_gives_wrong_results():
    g = gemm_graph()
    module = emit(g, fuse(g).groups)
    kernel = module.launches[0].kernel
    broken = _edited(module, "b[i] = Bs[kk][tx + 16 * i]", "b[i] = Bs[kk][ty + 16 * i]", kernel)
    xs = _inputs(g, 0)
    want = interpret(g, *xs)[0]
    np.testing.assert_allclose(HostModule(module).run(xs)[0], want, rtol=1e-4, atol=1e-4)
    assert not np.allclose(HostModule(broken).run(xs)[0], want, rtol=1e-2, atol=1e-2)


def test_a_missing_bounds_check_in_the_gemm_is_a_fault():
    g = gemm_graph()
    module = emit(g, fuse(g).groups)
    kernel = module.launches[0].kernel
    broken = _edited(module, "if (m < 130 && n < 70)", "if (m < 192 && n < 70)", kernel)  # the tiles overhang
    with pytest.raises(EmulationError) as e:
        HostModule(broken).run(_inputs(g, 0))
    found = re.search(r"global memory out of bounds: thread \(\d+,0,0\) accesses b_\w+\[(\d+)\], outside its 9100 "
                      r"elements\n  line \d+: b_\w+\[\w+\] = c\d+;$", str(e.value))
    assert found and int(found.group(1)) >= 9100, str(e.value)


def test_a_missing_barrier_in_the_gemm_is_reported_as_a_race():
    g = gemm_graph()
    module = emit(g, fuse(g).groups)
    kernel = module.launches[0].kernel
    # the barrier that ends a K step: without it the next step's stores overwrite a tile still being read
    broken = _edited(module, "    __syncthreads();\n  }\n", "  }\n", kernel)
    with pytest.raises(EmulationError) as e:
        HostModule(broken).run(_inputs(g, 0))
    assert e.value.kernel == kernel
    assert "shared-memory race: thread (1,0,0) reads As[0][0], which thread (0,0,0) wrote at line" in str(e.value)
    assert str(e.value).endswith("a[i] = As[kk][ty + 16 * i]; b[i] = Bs[kk][tx + 16 * i]; }")


def test_a_missing_barrier_in_a_block_reduction_is_reported():
    g = fused_gemm_graph()
    module = emit(g, fuse(g).groups)
    kernel = next(la.kernel for la in module.launches if "reduction" in la.kernel)
    module.launches = [dataclasses.replace(la, grid=(1, 1, 1)) for la in module.launches]
    # the barrier after the last warp's read: the next output's partial sums overwrite s_acc too early
    trailing = _edited(module, "    __syncthreads();  // s_acc is reused by the next output\n", "", kernel)
    with pytest.raises(EmulationError, match=r"shared-memory race: thread \(\d+,0,0\) writes s_acc\[\d\], which "
                                             r"thread \(\d+,0,0\) read at line \d+"):
        HostModule(trailing).run(_inputs(g, 0))
    # the barrier between the warps' stores and the first warp's reads
    middle = _edited(module, "    __syncthreads();\n    if (warp == 0)", "    if (warp == 0)", kernel)
    with pytest.raises(EmulationError, match=r"uninitialized shared memory: thread \(1,0,0\) reads s_acc\[1\]"):
        HostModule(middle).run(_inputs(g, 0))


def traced_norms_graph() -> Graph:
    """softmax, log_softmax and layer_norm over rows of 300 and 200, as the tracer decomposes them."""
    import graphtorch as gt
    import graphtorch.nn.functional as F
    from graphtorch.tracer import Tracer, tracing

    tracer = Tracer()
    with tracing(tracer):
        x = tracer.input("x", gt.zeros(6, 300))
        w, b = tracer.input("w", gt.zeros(200)), tracer.input("b", gt.zeros(200))
        outs = [F.softmax(x, -1), x.log_softmax(1), F.layer_norm(x[:, 50:250], (200,), w, b)]
        tracer.graph.outputs = [tracer.value_of(o) for o in outs]
    return tracer.graph


def test_softmax_and_layer_norm_patterns_fused():
    g = traced_norms_graph()
    groups = fuse(g).groups
    # softmax, log_softmax and layer_norm: one row kernel each (a warp per row), no reduction chain
    assert sum(gr.pattern == "reduction" for gr in groups) == 0
    assert sorted(gr.outputs[0].target for gr in groups if gr.pattern == "single") == ["layer_norm", "softmax", "softmax"]
    xs = _inputs(g, 0)
    for o, got, want in zip(g.outputs, HostModule(emit(g, groups)).run(xs), interpret(g, *xs)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"{o.name} ({o.target})")


def test_a_reshape_view_of_an_arena_value_runs_in_place():
    """The memory plan gives a kernel that only reshapes an arena value the value's own bytes (a
    view): the CUDA backend still launches the reshape, which then copies each element onto itself,
    and the value is not overwritten while the view is read."""
    g = Graph()
    x = g.input("x", f32(6, 8))
    e = g.call("exp", [x])
    r = g.call("reshape", [e], {"shape": (2, 3, 8)})
    n = g.call("neg", [e])
    g.outputs = [g.call("add", [g.call("abs", [r]), r]), g.call("mul", [n, n])]
    module = emit(g, single_groups(g))
    xs = inputs_for(g, seed=6, specials=False)
    assert_close(HostModule(module).run(xs), interpret(g, *xs), g)
