"""Multi-output elementwise groups (compiler/sibling_fusion.py): which groups merge, what the dump
shows, and that both backends compute every output as the interpreter does: the LLVM backend as
one loop, the CUDA emitter (run in the CPU emulator) as one kernel per output."""

from __future__ import annotations

import numpy as np
import pytest
from compiler_helpers import f32, relu, scalar
from llvm_helpers import assert_match, interpret, values

from graphtorch.compiler import interpreter
from graphtorch.compiler.cuda import emit
from graphtorch.compiler.cuda.hostcheck import HostModule, available
from graphtorch.compiler.fusion import check_plan, format_group, fuse
from graphtorch.compiler.ir import Graph
from graphtorch.compiler.llvm import build
from graphtorch.compiler.memory_plan import plan_memory
from graphtorch.compiler.sibling_fusion import one_output_per_group

SIGMOID_TANH_TOL = dict(rtol=4e-6, atol=1e-37)  # vecmath.py's float32 sigmoid/tanh: 2.5 ulp


def lstm_cell_graph(batch: int = 5, hidden: int = 7) -> Graph:
    """One LSTM step from its gates (batch, 4 * hidden) and the previous cell: the gates, c and h
    are all read later (saved for the backward), as in a training step."""
    g = Graph()
    gates, c0 = g.input("gates", f32(batch, 4 * hidden)), g.input("c0", f32(batch, hidden))

    def gate(k: int, fn: str):
        piece = g.call("slice", [gates], {"starts": (0, k * hidden), "stops": (batch, (k + 1) * hidden),
                                          "steps": (1, 1)})
        return g.call(fn, [piece])

    i, f, cand, o = gate(0, "sigmoid"), gate(1, "sigmoid"), gate(2, "tanh"), gate(3, "sigmoid")
    c = g.call("add", [g.call("mul", [f, c0]), g.call("mul", [i, cand])])
    h = g.call("mul", [o, g.call("tanh", [c])])
    g.outputs = [i, f, cand, o, c, h]
    return g


def chain_graph() -> Graph:
    """a = sigmoid(x); b = a * y; both graph outputs: one output feeds the other."""
    g = Graph()
    x, y = g.input("x", f32(4, 33)), g.input("y", f32(4, 33))
    a = g.call("sigmoid", [x])
    g.outputs = [a, g.call("mul", [a, y])]
    return g


def broadcast_graph() -> Graph:
    """a = x + expand(bias); relu(a) and a * x both outputs, plus a bool mask of a's sign."""
    g = Graph()
    x, bias = g.input("x", f32(6, 5)), g.input("bias", f32(5))
    a = g.call("add", [x, g.call("expand", [bias], {"shape": (6, 5)})])
    g.outputs = [relu(g, a), g.call("mul", [a, x]), g.call("gt", [a, scalar(g, 0.0, a)])]
    return g


def _inputs(graph: Graph, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [values(n.type.shape, n.type.dtype, rng) for n in graph.inputs]


def _multi(plan) -> list:
    return [grp for grp in plan.groups if len(grp.outputs) > 1]


def test_lstm_step_is_one_kernel_with_every_saved_value_an_output():
    g = lstm_cell_graph()
    plan = fuse(g)
    assert len(plan.groups) == 1
    (grp,) = plan.groups
    assert grp.pattern == "elementwise" and set(grp.outputs) == set(g.outputs)
    assert fuse(g, multi_output=False).groups.__len__() > 1


@pytest.mark.parametrize("make", [lstm_cell_graph, chain_graph, broadcast_graph])
def test_llvm_equals_interpreter(make):
    g = make()
    plan = fuse(g)
    assert _multi(plan), "the test must exercise a multi-output group"
    assert_match(g, *_inputs(g), groups=plan.groups, **SIGMOID_TANH_TOL)


def test_llvm_flat_loop_split_over_threads():
    """A flat elementwise group big enough to run on several threads: each writes its share of every output."""
    g = Graph()
    x, y = g.input("x", f32(300, 700)), g.input("y", f32(300, 700))
    a = g.call("mul", [x, y])
    g.outputs = [a, g.call("add", [a, x]), g.call("neg", [y])]
    plan = fuse(g)
    assert [len(grp.outputs) for grp in plan.groups] == [3]
    assert_match(g, *_inputs(g), groups=plan.groups, num_threads=2)


def test_the_dump_names_every_output():
    g = chain_graph()
    (grp,) = fuse(g).groups
    a, b = g.outputs
    assert f"outputs ({a.name}, {b.name})" in format_group(grp)
    assert f"outputs ({a.name}, {b.name})" in str(fuse(g))


def test_other_shapes_and_unrelated_groups_stay_apart():
    g = Graph()
    x, y = g.input("x", f32(4, 6)), g.input("y", f32(4, 6))
    z = g.input("z", f32(6, 4))
    a = g.call("sigmoid", [x])
    b = g.call("permute", [g.call("exp", [x])], {"dims": (1, 0)})  # reads x, other shape
    c = g.call("neg", [y])  # same shape, shares nothing with a
    d = g.call("abs", [z])
    g.outputs = [a, b, c, d]
    assert not _multi(fuse(g))


def test_a_group_read_in_between_is_not_moved_past_its_reader():
    """p = exp(x); q = sum(p) (a reduction between); r = p * sigmoid(x) would move p after q."""
    g = Graph()
    x = g.input("x", f32(3, 8))
    p = g.call("exp", [x])
    q = g.call("sum", [p], {"dims": (1,), "keepdim": True})  # its own (reduction) kernel
    r = g.call("mul", [g.call("sigmoid", [x]), g.call("expand", [q], {"shape": (3, 8)})])
    g.outputs = [p, r]
    plan = fuse(g)
    check_plan(g, plan.groups)
    owner = {n: k for k, grp in enumerate(plan.groups) for n in grp.nodes}
    assert owner[p] < owner[q] < owner[r] and not _multi(plan)
    got = interpreter.run_groups(g, plan.groups, _inputs(g))
    for w, v in zip(interpret(g, *_inputs(g)), got):
        np.testing.assert_allclose(v, w, rtol=1e-6)


def test_each_output_may_overwrite_one_dying_input():
    """x and y die in the group: the memory plan writes the two outputs over them, and computing
    every output before storing any keeps the result right."""
    g = Graph()
    x0, y0, w = g.input("x0", f32(8, 16)), g.input("y0", f32(8, 16)), g.input("w", f32(16, 16))
    x, y = g.call("matmul", [x0, w]), g.call("matmul", [y0, w])  # in the arena, dying at the merged group
    s = g.call("add", [x, y])
    d = g.call("sub", [y, x])
    u, v = g.call("mul", [s, d]), g.call("add", [s, d])  # in the arena: read by the matmuls below
    g.outputs = [g.call("matmul", [u, w]), g.call("matmul", [v, w])]
    plan = fuse(g)
    multi = _multi(plan)
    assert multi
    memory = plan_memory(g, plan.groups)
    assert set(memory.inplace) == {u, v} and set(memory.inplace.values()) == {x, y}
    assert_match(g, *_inputs(g), groups=plan.groups, rtol=1e-6, atol=1e-30)


def test_split_for_one_output_per_kernel_keeps_the_values():
    g = lstm_cell_graph()
    groups = one_output_per_group(fuse(g).groups)  # shared members recomputed: in several groups
    assert [len(grp.outputs) for grp in groups] == [1] * len(g.outputs)
    xs = _inputs(g)
    for w, v in zip(interpreter.run(g, xs), interpreter.run_groups(g, groups, xs)):
        np.testing.assert_array_equal(v, w)


def test_dedup_tells_apart_groups_with_other_outputs():
    """Two groups with the same members but different members written are different kernels."""
    g = Graph()
    x, y = g.input("x", f32(4, 4)), g.input("y", f32(4, 4))
    a1 = g.call("exp", [x])
    b1 = g.call("mul", [a1, x])
    a2 = g.call("exp", [y])
    b2 = g.call("mul", [a2, y])
    g.outputs = [a1, b1, b2, g.call("neg", [a2])]
    assert_match(g, *_inputs(g), groups=fuse(g).groups, rtol=1e-6, atol=1e-30)


@pytest.mark.skipif(not available(), reason="g++ is needed to run the emitted CUDA C on the CPU")
@pytest.mark.parametrize("make", [lstm_cell_graph, chain_graph, broadcast_graph])
def test_cuda_emits_one_kernel_per_output(make):
    g = make()
    plan = fuse(g)
    module = emit(g, plan.groups)
    assert len(module.launches) == len(one_output_per_group(plan.groups))
    rng = np.random.default_rng(1)
    xs = [(rng.standard_normal(n.type.shape) * 2).astype(np.float32) for n in g.inputs]
    for o, got, want in zip(g.outputs, HostModule(module).run(xs), interpret(g, *xs)):
        assert got.dtype == want.dtype and got.shape == want.shape, o.name
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=o.name)


def test_build_runs_the_lstm_step_as_one_kernel():
    g = lstm_cell_graph(32, 64)
    exe = build(g, fuse(g).groups, cache=False)
    assert exe.artifacts["llvm_ir"].count("define internal void @\"kernel") == 1
    want = interpret(g, *_inputs(g))
    for w, v in zip(want, exe(*_inputs(g))):  # c adds two products of rounded gates: an absolute tolerance
        np.testing.assert_allclose(v, w, rtol=4e-6, atol=1e-6)


def test_report_counts_the_bytes_of_every_output():
    from graphtorch.compiler.report import group_cost

    g = chain_graph()
    (grp,) = fuse(g).groups
    assert group_cost(grp) == (None, 4 * 4 * 33 * 4)  # x and y read, a and b written


def adam_like_graph(params: int = 2) -> Graph:
    """Adam's update for `params` same-shape parameters: m, v, then p, each a graph output; the
    broadcast hyperparameters are shared by all parameters, so each broadcast is a group of its own."""
    g = Graph()
    beta1, beta2, eps = (g.input(name, f32()) for name in ("beta1", "beta2", "eps"))
    b1, b2, e = (g.call("expand", [s], {"shape": (4, 6)}) for s in (beta1, beta2, eps))
    outputs = []
    for k in range(params):
        p, grad, m, v = (g.input(f"{name}{k}", f32(4, 6)) for name in ("p", "grad", "m", "v"))
        m2 = g.call("add", [m, g.call("mul", [g.call("sub", [grad, m]), b1])])
        v2 = g.call("add", [g.call("mul", [v, b2]), g.call("mul", [grad, grad])])
        p2 = g.call("sub", [p, g.call("div", [m2, g.call("add", [g.call("sqrt", [v2]), e])])])
        outputs += [m2, v2, p2]
    g.outputs = outputs
    return g


def test_a_merged_group_merges_again_with_earlier_partners():
    """The broadcasts, m's, v's and p's kernels of both parameters chain into one kernel: after a
    merge, the merged group looks for a partner again (it stopped at three kernels before)."""
    g = adam_like_graph()
    plan = fuse(g)
    assert len(plan.groups) == 1 and set(plan.groups[0].outputs) == set(g.outputs)
    assert len(fuse(g, multi_output=False).groups) > 4
    assert_match(g, *_inputs(g), groups=plan.groups, rtol=1e-6)


def test_refusals_say_when_sibling_fusion_joined_the_two_after_all():
    plan = fuse(lstm_cell_graph())
    owner = {n: g for g in plan.groups for n in g.nodes}
    joined = [r for r in plan.rejections if r.group is not None and owner.get(r.consumer) is r.group]
    assert joined, "the LSTM cell's one-output refusals are between kernels that sibling fusion merges"
    for r in plan.rejections:
        assert ("sibling fusion then put both in this group" in str(r)) == (r in joined)
    assert "sibling fusion" not in str(fuse(lstm_cell_graph(), multi_output=False))
