"""The `fused` stage: the groups of the hand-built models, the vetoes and their reasons, the contract."""

from __future__ import annotations

import numpy as np
import pytest
from compiler_helpers import f32, lenet, linear, logistic_regression, random_inputs, relu, sin_mlp

from graphtorch.compiler import cleanup, interpreter
from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.errors import GraphtorchCompileError
from graphtorch.compiler.fusion import check_plan, fuse, label, make_group
from graphtorch.compiler.ir import Graph

MODELS = [lenet, sin_mlp, logistic_regression]


def plan_of(g: Graph):
    return fuse(cleanup.optimize(g))


def summary(plan) -> list[tuple[str, str]]:
    return [(grp.pattern, label(grp)) for grp in plan.groups]


@pytest.mark.parametrize("make", MODELS)
def test_fused_groups_compute_the_same_values(make):
    g = make()
    opt = cleanup.optimize(g)
    plan = fuse(opt)
    check_plan(opt, plan.groups)
    xs = random_inputs(g)
    for a, b in zip(interpreter.run(g, xs), interpreter.run_groups(opt, plan.groups, xs)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_lenet_groups_conv_and_linear_with_their_epilogues():
    plan = plan_of(lenet())
    assert summary(plan) == [
        ("conv2d", "conv2d + bias + relu"), ("reduction", "max_pool2d"),
        ("conv2d", "conv2d + bias + relu"), ("reduction", "max_pool2d + flatten"),
        ("matmul", "matmul + bias + relu"), ("matmul", "matmul + bias"),
    ]
    conv = plan.groups[0]
    assert conv.anchor.target == "conv2d" and conv.outputs == [conv.nodes[-1]]
    assert conv.nodes[-1].target == "where" and conv.nodes[-1].origin == "relu"  # ends at the relu
    assert [i.name for i in conv.inputs] == ["%x", "%conv1.weight", "%conv1.bias"]
    fc1 = plan.groups[4]
    assert [n.target for n in fc1.nodes][:2] == ["permute", "matmul"]  # W^T: prologue
    assert plan.groups[3].outputs[0] in fc1.inputs  # the pool's kernel writes it flattened (same positions)


def test_lenet_explains_why_pooling_did_not_fuse_into_the_conv():
    plan = plan_of(lenet())
    texts = [str(r) for r in plan.rejections]
    assert any(t.startswith("cannot fuse %") and "(unfold, from max_pool2d at lenet.py:13) into group 0 "
               "(conv2d + bias + relu): an out-fusable group takes only an elementwise epilogue" in t for t in texts), texts
    assert any("into group 4 (matmul + bias + relu): a matmul" in t and "cannot consume another out-fusable group" in t
               for t in texts)
    conv_rejection = next(r for r in plan.rejections if r.group is plan.groups[0])
    assert conv_rejection.producer is plan.groups[0].outputs[0] and conv_rejection.consumer.target == "unfold"
    assert "rejections (5):" in str(plan) and "group 0 [conv2d] conv2d + bias + relu: 8 nodes" in str(plan)


def test_sin_mlp_and_logistic_regression_groups():
    assert summary(plan_of(sin_mlp())) == [("elementwise", "sin"), ("matmul", "matmul + bias + relu"),
                                          ("matmul", "matmul + bias + relu"), ("matmul", "matmul + bias")]
    plan = plan_of(logistic_regression())
    # p is a graph output, so sigmoid cannot join the BCE terms; sum takes them as its prologue, mul as epilogue
    assert summary(plan) == [("matmul", "matmul + bias + sigmoid"), ("reduction", "bce + mean")]
    assert plan.groups[1].anchor.target == "sum" and plan.groups[1].nodes[-1].target == "mul"
    assert any("is a graph output, and a group has one output" in str(r) for r in plan.rejections)


def test_fusion_is_deterministic():
    a, b = plan_of(lenet()), plan_of(lenet())
    assert str(a) == str(b)
    assert [[n.name for n in g.nodes] for g in a.groups] == [[n.name for n in g.nodes] for g in b.groups]


def test_every_call_in_exactly_one_group_in_schedule_order():
    for make in MODELS:
        g = cleanup.optimize(make())
        plan = fuse(g)
        covered = [n for grp in plan.groups for n in grp.nodes]
        assert sorted(map(id, covered)) == sorted(id(n) for n in g.nodes if n.op == "call")
        seen = set(g.inputs) | {n for n in g.nodes if n.op == "constant"}
        for grp in plan.groups:
            assert set(grp.inputs) <= seen
            seen.add(grp.outputs[0])


def test_max_pool_with_indices_fuses_argmax_and_gather():
    g = Graph()
    x = g.input("x", f32(2, 3, 6, 6))
    win = g.call("reshape", [g.call("unfold", [x], dict(kernel=(2, 2), stride=(2, 2), dilation=(1, 1)))],
                 dict(shape=(2, 3, 3, 3, 4)))
    arg = g.call("argmax", [win], dict(dim=4, keepdim=True))
    vals = g.call("gather", [win, arg], dict(dim=4))
    g.outputs = [g.call("exp", [vals])]
    plan = fuse(g)
    assert [grp.pattern for grp in plan.groups] == ["reduction"]
    assert [n.target for n in plan.groups[0].nodes] == ["unfold", "reshape", "argmax", "gather", "exp"]
    xs = random_inputs(g)
    np.testing.assert_array_equal(interpreter.run(g, xs)[0], interpreter.run_groups(g, plan.groups, xs)[0])


def _softmax() -> Graph:
    g = Graph()
    x = g.input("x", f32(4, 7))
    m = g.call("max", [x], dict(dims=(1,), keepdim=True), "sm.py:2", "softmax")
    e = g.call("exp", [g.call("sub", [x, g.call("expand", [m], dict(shape=(4, 7)))])], loc="sm.py:2", origin="softmax")
    s = g.call("sum", [e], dict(dims=(1,), keepdim=True), "sm.py:2", "softmax")
    g.outputs = [g.call("div", [e, g.call("expand", [s], dict(shape=(4, 7)))], loc="sm.py:2", origin="softmax")]
    return g


def test_softmax_splits_where_a_reduction_would_feed_a_reduction():
    g = _softmax()
    plan = fuse(g)
    assert [(grp.pattern, [n.target for n in grp.nodes]) for grp in plan.groups] == [
        ("reduction", ["max"]), ("elementwise", ["expand", "sub", "exp"]), ("reduction", ["sum"]),
        ("elementwise", ["expand", "div"])]
    reasons = " | ".join(str(r) for r in plan.rejections)
    assert "a reduction group takes only an elementwise epilogue over its output shape (and a final reshape), and %2 is expand" in reasons
    assert "%4 (exp, from softmax at sm.py:2) into group" not in reasons
    xs = random_inputs(g)
    np.testing.assert_allclose(interpreter.run(g, xs)[0], interpreter.run_groups(g, plan.groups, xs)[0])


def test_reduction_of_reduction_is_vetoed():
    g = Graph()
    x = g.input("x", f32(3, 5))
    g.outputs = [g.call("sum", [g.call("max", [x], dict(dims=(1,), keepdim=False))], dict(dims=(0,), keepdim=False))]
    plan = fuse(g)
    assert len(plan.groups) == 2 and "a reduction cannot consume another reduction" in str(plan.rejections[0])


def test_elementwise_producer_of_a_matmul_stays_outside():
    g = Graph()
    x, w, b = g.input("x", f32(3, 4)), g.input("w", f32(5, 4)), g.input("b", f32(5))
    g.outputs = [linear(g, g.call("tanh", [x], loc="m.py:1"), w, b, "m.py:2")]
    plan = fuse(g)
    assert [grp.pattern for grp in plan.groups] == ["elementwise", "matmul"]
    assert "a matmul (%5) takes only injective prologues on its operands (a transpose, an expand), and %3 is tanh" \
        in str(plan.rejections[0])


def test_opaque_ops_stand_alone():
    g = Graph()
    key = g.input("key", TensorType((), dt.int64))
    r = g.call("rand", [key], dict(shape=(3, 4), dtype=dt.float32))
    c = g.call("cumsum", [g.call("exp", [r])], dict(dim=1))
    g.outputs = [g.call("neg", [c])]
    plan = fuse(g)
    assert [grp.pattern for grp in plan.groups] == ["single", "elementwise", "single", "elementwise"]
    assert plan.groups[0].anchor is None and plan.groups[0].nodes == [r]
    assert "opaque ops stand alone" in str(plan.rejections[0])


def test_a_value_used_twice_keeps_its_own_kernel():
    g = Graph()
    x = g.input("x", f32(6))
    e = g.call("exp", [x])
    s1 = g.call("sum", [e], dict(dims=(0,), keepdim=False))
    s2 = g.call("max", [e], dict(dims=(0,), keepdim=False))
    g.outputs = [s1, s2]
    plan = fuse(g)
    assert [[n.target for n in grp.nodes] for grp in plan.groups] == [["exp"], ["sum"], ["max"]]
    assert "%1 is used by %2, %3, whose paths reach different outputs" in str(plan.rejections[0])


def test_group_size_cap():
    g = Graph()
    h = g.input("x", f32(4))
    for _ in range(10):
        h = g.call("exp", [h])
    g.outputs = [h]
    plan = fuse(g, max_group_size=4)
    assert [len(grp.nodes) for grp in plan.groups] == [4, 4, 2]
    assert "the group would have 5 nodes, more than the cap of 4" in str(plan.rejections[0])
    assert len(fuse(g).groups) == 1


def test_check_plan_rejects_a_broken_plan():
    g = cleanup.optimize(sin_mlp())
    plan = fuse(g)
    with pytest.raises(GraphtorchCompileError, match="no group computes"):
        check_plan(g, plan.groups[:-1])
    with pytest.raises(GraphtorchCompileError, match="reads from earlier groups"):
        check_plan(g, plan.groups[::-1])
    root_first = plan.groups[1].nodes[::-1]
    bad = plan.groups[:1] + [make_group(1, root_first)] + plan.groups[2:]
    with pytest.raises(GraphtorchCompileError, match="topological order") as e:
        check_plan(g, bad)
    assert e.value.code == "GT031"


def test_run_groups_rejects_a_bad_schedule():
    g = cleanup.optimize(sin_mlp())
    plan = fuse(g)
    with pytest.raises(GraphtorchCompileError, match="no earlier group computes") as e:
        interpreter.run_groups(g, plan.groups[::-1], random_inputs(g))
    assert e.value.code == "GT042"


def test_relu_zero_is_not_shared_across_kernels():
    g = Graph()
    x = g.input("x", f32(3))
    a, b = relu(g, x), relu(g, g.call("exp", [x]))
    g.outputs = [g.call("sum", [a], dict(dims=(0,), keepdim=False)), g.call("max", [b], dict(dims=(0,), keepdim=False))]
    out = cleanup.optimize(g)
    assert sum(n.target == "full" for n in out.nodes) == 4  # CSE leaves sources alone; split_fills: one per use
    assert [grp.pattern for grp in fuse(out).groups] == ["reduction", "reduction"]


def test_fused_dump_names_each_convs_lowering():
    from graphtorch.compiler import conv_lowering, dtypes
    from graphtorch.compiler.dtypes import TensorType
    from graphtorch.compiler.fusion import format_group, fuse
    from graphtorch.compiler.ir import Graph

    g = Graph()
    x = g.input("x", TensorType((2, 3, 9, 9), dtypes.float32))
    w = g.input("w", TensorType((4, 3, 3, 3), dtypes.float32))
    conv = g.call("conv2d", [x, w], {"stride": (2, 2), "padding": (0, 0), "dilation": (1, 2), "groups": 1})
    g.outputs = [conv]
    (group,) = fuse(g).groups
    assert f"lowering: {conv_lowering.choose(conv)}" in format_group(group)
    assert "lowering: im2col (cost per image: im2col " in format_group(group)  # the only one for a strided, dilated conv


def test_a_gemm_reads_a_concatenation_as_its_own_buffer():
    """Stacked weight gradients: the concats are their own kernels (not an element-wise choice of
    source inside the GEMM), and the transpose of one stays in the GEMM, read in place."""
    g = Graph()
    ds, hs = [g.input(f"d{t}", f32(4, 6)) for t in range(3)], [g.input(f"h{t}", f32(4, 3)) for t in range(3)]
    rows = g.call("concat", ds, dict(dim=0))
    left = g.call("permute", [rows], dict(dims=(1, 0)))
    g.outputs = [g.call("matmul", [left, g.call("concat", hs, dict(dim=0))])]
    plan = fuse(g)
    targets = sorted(tuple(n.target for n in grp.nodes) for grp in plan.groups)
    assert targets == [("concat",), ("concat",), ("permute", "matmul")]
    assert any("concat" in r.reason and "read" in r.reason for r in plan.rejections)
    check_plan(g, plan.groups)


def test_concats_along_different_dims_stay_apart():
    """A loop cuts at one concat's part edges: a column concat inside a row concat would make every
    element choose its source, so the inner one is its own kernel (with a reason)."""
    g = Graph()
    a, b, c = (g.input(n, f32(2, 3)) for n in "abc")
    cols = g.call("concat", [g.call("exp", [a]), g.call("exp", [b])], dict(dim=1))  # (2, 6)
    rows = g.call("concat", [cols, g.call("exp", [g.call("concat", [c, c], dict(dim=1))])], dict(dim=0))  # (4, 6)
    g.outputs = [rows]
    plan = fuse(g)
    assert plan.group_of(cols) is not plan.group_of(rows)
    assert any("cut a loop along different dims" in r.reason for r in plan.rejections)
