"""The static memory plan: lifetimes, reuse, in-place, and that plans run correctly."""

import numpy as np
from llvm_helpers import assert_match, values

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.ir import Graph
from graphtorch.compiler.llvm import build, single_groups
from graphtorch.compiler.memory_plan import plan_memory


def chain(n_ops=6, shape=(64, 33)):
    g = Graph()
    x = g.input("x", TensorType(shape, dt.float32))
    v = x
    for k in range(n_ops):
        v = g.call("exp" if k % 2 else "neg", [v])
    g.outputs = [v]
    return g


def test_a_chain_reuses_one_buffer_in_place():
    g = chain()
    plan = plan_memory(g, single_groups(g))
    nbytes = 64 * 33 * 4
    assert plan.arena_bytes == -(-nbytes // 64) * 64  # every intermediate in the same block
    assert len(plan.inplace) == 4  # neg(x) reads an input, the last op writes the output
    assert plan.peak_bytes == plan.arena_bytes


def test_live_values_never_share_memory():
    g = Graph()
    x = g.input("x", TensorType((10, 7), dt.float64))
    a = g.call("exp", [x])
    b = g.call("permute", [a], {"dims": (1, 0)})  # injective: not in place
    c = g.call("sin", [x])
    d = g.call("add", [g.call("permute", [b], {"dims": (1, 0)}), c])
    g.outputs = [g.call("neg", [d])]
    groups = single_groups(g)
    plan = plan_memory(g, groups)
    for u in plan.offsets:
        for v in plan.offsets:
            if u is v or plan.inplace.get(u) is v or plan.inplace.get(v) is u:
                continue
            (s1, e1), (s2, e2) = plan.intervals[u], plan.intervals[v]
            if s1 <= e2 and s2 <= e1:
                lo1, lo2 = plan.offsets[u], plan.offsets[v]
                assert lo1 + plan.sizes[u] <= lo2 or lo2 + plan.sizes[v] <= lo1, f"{u} and {v} overlap"
    assert_match(g, values((10, 7), dt.float64, np.random.default_rng(0)), rtol=1e-13)


def test_in_place_chain_computes_the_right_values():
    g = chain()
    assert_match(g, values((64, 33), dt.float32, np.random.default_rng(1)), rtol=1e-6)


def _sgd_like():
    """w' = w - 0.1 * g and m' = 0.9 * m + g; the update also reads w at another step when asked."""
    g = Graph()
    w, grad, m = (g.input(n, TensorType((8, 16), dt.float32)) for n in ("w", "g", "m"))
    lr = g.call("full", [], {"shape": (8, 16), "value": 0.1, "dtype": dt.float32})
    w_new = g.call("sub", [w, g.call("mul", [lr, grad])])
    m_new = g.call("add", [g.call("mul", [g.call("full", [], {"shape": (8, 16), "value": 0.9, "dtype": dt.float32}), m]), grad])
    total = g.call("sum", [w], {"dims": (0, 1), "keepdim": False})  # a reader of w outside the update
    g.outputs = [total, w_new, m_new]
    return g


def test_donated_inputs_are_written_over_only_when_safe():
    from graphtorch.compiler.fusion import fuse
    from graphtorch.compiler.llvm import build

    g = _sgd_like()
    groups = fuse(g).groups
    plan = plan_memory(g, groups, donate=[(g.outputs[1], g.inputs[0]), (g.outputs[2], g.inputs[2])])
    w_group = next(k for k, gr in enumerate(groups) if gr.outputs[0] is g.outputs[1])
    sum_group = next(k for k, gr in enumerate(groups) if gr.outputs[0] is g.outputs[0])
    assert plan.donated[g.outputs[2]] is g.inputs[2]  # m is read by its update alone
    assert (g.outputs[1] in plan.donated) == (sum_group < w_group)  # w only if sum(w) ran first
    assert "is written over input %m" in plan.report()
    rng = np.random.default_rng(0)
    w, grad, m = (rng.standard_normal((8, 16)).astype(np.float32) for _ in range(3))
    want_w, want_m = w - np.float32(0.1) * grad, np.float32(0.9) * m + grad
    exe = build(g, groups, cache=False, donate=[(1, 0), (2, 2)])
    m_in, w_in = m.copy(), w.copy()
    total, w_out, m_out = exe(w_in, grad, m_in)
    assert m_out is m_in  # the new m is the caller's array, updated in place
    np.testing.assert_allclose(m_in, want_m, rtol=1e-6, atol=1e-6)  # (an FMA rounds once)
    np.testing.assert_allclose(w_out, want_w, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(total, w.sum(), rtol=1e-5)  # sum read the old w, whatever the order


def test_no_donation_for_a_non_elementwise_or_reshaped_update():
    g = Graph()
    x = g.input("x", TensorType((4, 6), dt.float32))
    t = g.call("permute", [g.call("exp", [x])], {"dims": (1, 0)})
    s = g.call("sum", [x], {"dims": (1,), "keepdim": True})
    g.outputs = [t, g.call("expand", [s], {"shape": (4, 6)})]
    plan = plan_memory(g, single_groups(g), donate=[(g.outputs[0], x), (g.outputs[1], x)])
    assert plan.donated == {}


def test_a_run_time_scalar_broadcast_inside_the_update_still_donates():
    """x + expand(cast(2 * s)) * x, fused into one kernel: the expand reads a scalar computed in the
    kernel, not x, so x may be written over (an optimizer step with a lifted learning rate)."""
    from graphtorch.compiler.fusion import fuse
    from graphtorch.compiler.llvm import build

    g = Graph()
    x = g.input("x", TensorType((8, 16), dt.float32))
    s = g.input("s", TensorType((), dt.float64))
    scale = g.call("expand", [g.call("cast", [g.call("add", [s, s])], {"dtype": dt.float32})], {"shape": (8, 16)})
    g.outputs = [g.call("add", [x, g.call("mul", [scale, x])])]
    groups = fuse(g).groups
    kernel = next(gr for gr in groups if gr.outputs[0] is g.outputs[0])
    assert {"expand", "cast"} <= {n.target for n in kernel.nodes}  # the scalar is computed in the kernel
    assert plan_memory(g, groups, donate=[(g.outputs[0], x)]).donated == {g.outputs[0]: x}
    data = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    x_in = data.copy()
    (out,) = build(g, groups, cache=False, donate=[(0, 0)])(x_in, np.array(0.25))
    assert out is x_in
    np.testing.assert_allclose(out, data + np.float32(0.5) * data, rtol=1e-6)


def test_a_reshape_kernel_of_an_arena_value_is_a_view():
    """exp(x) reshaped and read by two kernels (as the GPT's layer_norm_grad reads a GEMM's output):
    the reshape is the same bytes at the same offset, no kernel, and exp(x) is not overwritten
    while the view is read (the neg that reads exp(x) last cannot write over it in place)."""
    g = Graph()
    x = g.input("x", TensorType((6, 8), dt.float32))
    e = g.call("exp", [x])
    r = g.call("reshape", [e], {"shape": (2, 3, 8)})
    n = g.call("neg", [e])
    g.outputs = [g.call("add", [g.call("abs", [r]), r]), g.call("mul", [n, n])]
    groups = single_groups(g)
    plan = plan_memory(g, groups)
    assert plan.views == {r: e} and plan.offsets[r] == plan.offsets[e]
    assert plan.intervals[e][1] >= plan.intervals[r][1] and n not in plan.inplace
    assert "(a view of %1)" in plan.report()
    exe_groups = [grp for grp in groups if grp.outputs[0] is not r]
    assert build(g, groups, cache=False).groups == exe_groups  # no kernel for the view
    assert_match(g, values((6, 8), dt.float32, np.random.default_rng(2)), rtol=1e-6)


def test_a_reshape_of_a_graph_input_or_into_a_graph_output_stays_a_kernel():
    g = Graph()
    x = g.input("x", TensorType((6, 8), dt.float32))
    e = g.call("exp", [x])
    g.outputs = [g.call("reshape", [e], {"shape": (48,)}), g.call("neg", [g.call("reshape", [x], {"shape": (48,)})])]
    assert plan_memory(g, single_groups(g)).views == {}
