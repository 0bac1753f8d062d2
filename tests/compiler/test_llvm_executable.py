"""The Executable: guards, outputs, threads, the disk cache, dumps, memory over many calls."""

import resource
import time

import numpy as np
import pytest
from llvm_helpers import interpret, values

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.errors import GraphtorchCompileError
from graphtorch.compiler.fusion import fuse
from graphtorch.compiler.ir import Graph, make_group
from graphtorch.compiler.llvm import build, single_groups
from graphtorch.compiler.llvm.module import (
    COST,
    HELPER_COST,
    PARALLEL_WORK,
    PARTS,
    UNROLLED_COST_FACTOR,
    serial_kernels,
    split,
    wants_unroll,
    work,
)
from graphtorch.runtime import get_num_threads, set_num_threads


def small_graph(shape=(3, 5)):
    g = Graph()
    a, b = g.input("a", TensorType(shape, dt.float32)), g.input("b", TensorType(shape, dt.float32))
    g.outputs = [g.call("maximum", [g.call("mul", [a, b]), b]), a]
    return g


def test_guards_name_the_input():
    g = small_graph()
    exe = build(g, single_groups(g), cache=False)
    x = np.ones((3, 5), np.float32)
    with pytest.raises(ValueError, match=r"input 1 \(b\) has shape \(3, 4\), expected \(3, 5\)"):
        exe(x, np.ones((3, 4), np.float32))
    with pytest.raises(TypeError, match=r"input 0 \(a\) has dtype float64, expected float32"):
        exe(np.ones((3, 5)), x)
    with pytest.raises(TypeError, match="expects 2 inputs, got 1"):
        exe(x)


def test_non_contiguous_inputs_are_copied():
    g = small_graph((5, 3))
    exe = build(g, single_groups(g), cache=False)
    a = values((3, 5), dt.float32, np.random.default_rng(0), specials=False).T
    b = np.ones((5, 3), np.float32)
    got = exe(a, b)
    for x, y in zip(got, interpret(g, a, b)):
        np.testing.assert_array_equal(x, y)


def test_results_are_never_overwritten_by_the_next_call():
    g = small_graph()
    exe = build(g, single_groups(g), cache=False)
    first = exe(np.full((3, 5), 2, np.float32), np.ones((3, 5), np.float32))
    exe(np.full((3, 5), 7, np.float32), np.ones((3, 5), np.float32))
    assert (first[0] == 2).all() and (first[1] == 2).all()


def test_fused_plan_from_the_fusion_pass_matches_the_interpreter():
    g = Graph()
    x = g.input("x", TensorType((6, 9), dt.float32))
    bias = g.input("bias", TensorType((9,), dt.float32))
    h = g.call("add", [x, g.call("expand", [bias], {"shape": (6, 9)})])
    e = g.call("exp", [g.call("sub", [h, g.call("expand", [g.call("max", [h], {"dims": (1,), "keepdim": True})],
                                                        {"shape": (6, 9)})])])
    s = g.call("sum", [e], {"dims": (1,), "keepdim": True})
    g.outputs = [g.call("div", [e, g.call("expand", [s], {"shape": (6, 9)})])]
    rng = np.random.default_rng(1)
    args = values((6, 9), dt.float32, rng, specials=False), values((9,), dt.float32, rng, specials=False)
    plan = fuse(g)
    assert any(len(gr.nodes) > 1 for gr in plan.groups)
    got = build(g, plan.groups, cache=False)(*args)
    np.testing.assert_allclose(got[0], interpret(g, *args)[0], rtol=2e-6)


def big_graph(n=1 << 18):
    g = Graph()
    a, b = g.input("a", TensorType((n // 512, 512), dt.float64)), g.input("b", TensorType((512,), dt.float64))
    y = g.call("tanh", [g.call("mul", [a, g.call("expand", [b], {"shape": (n // 512, 512)})])])
    g.outputs = [y, g.call("sum", [y], {"dims": (1,), "keepdim": False}), g.call("cumsum", [y], {"dim": 0})]
    return g


def test_one_and_two_threads_give_identical_results():
    g = big_graph()
    rng = np.random.default_rng(2)
    args = rng.standard_normal((512, 512)), rng.standard_normal(512)
    saved = get_num_threads()
    try:
        set_num_threads(1)
        one = build(g, fuse(g).groups, cache=False)(*args)
        set_num_threads(2)
        exe = build(g, fuse(g).groups, cache=False)
        assert exe.parallel  # some kernel is large enough to run on the pool
        for _ in range(3):
            for x, y in zip(one, exe(*args)):
                np.testing.assert_array_equal(x, y)
    finally:
        set_num_threads(saved)


def test_disk_cache_hit_and_corrupt_entry(tmp_path, monkeypatch):
    from graphtorch.runtime import default_cache
    monkeypatch.setenv("GRAPHTORCH_CACHE_DIR", str(tmp_path))
    g = small_graph()
    x = np.ones((3, 5), np.float32)
    first = build(g, single_groups(g))
    assert not first.from_cache
    second = build(g, single_groups(g))
    assert second.from_cache and default_cache().hits == 1
    np.testing.assert_array_equal(second(x, x)[0], first(x, x)[0])
    (entry,) = tmp_path.glob("*.gto")
    entry.write_bytes(entry.read_bytes()[:-100])  # truncated
    third = build(g, single_groups(g))
    assert not third.from_cache and default_cache().rejected == 1
    np.testing.assert_array_equal(third(x, x)[0], first(x, x)[0])
    assert build(g, single_groups(g)).from_cache  # rebuilt and stored again


def test_dump_and_artifacts(tmp_path):
    g = small_graph()
    exe = build(g, single_groups(g), name="small", dump=tmp_path, cache=False)
    assert "define void @\"run\"" in exe.artifacts["llvm_ir"]
    assert "vmaxps" in exe.artifacts["asm"] or "maxps" in exe.artifacts["asm"] or "cmp" in exe.artifacts["asm"]
    assert {p.name for p in tmp_path.iterdir()} == {"small.ll", "small.opt.ll", "small.s", "small.plan.txt"}
    assert exe.plan.peak_bytes >= 0 and "arena" in (tmp_path / "small.plan.txt").read_text()


def test_llvm_failure_is_a_compile_error(monkeypatch):
    from graphtorch.compiler.llvm import executable
    def failing_compile(*args, **kwargs):
        raise executable.JITError("LLVM rejected the generated module", "raw LLVM text")

    monkeypatch.setattr(executable, "compile_ir", failing_compile)
    g = small_graph()
    with pytest.raises(GraphtorchCompileError) as e:
        build(g, single_groups(g), cache=False)
    assert e.value.code == "GT054" and e.value.stage == "lowered" and "raw LLVM text" not in str(e.value)


def test_many_calls_do_not_grow_memory():
    g = small_graph()
    exe = build(g, single_groups(g), cache=False)
    x = np.ones((3, 5), np.float32)
    for _ in range(1000):
        exe(x, x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(10_000):
        exe(x, x)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 2048, f"10,000 calls grew the peak RSS by {grown_kib} KiB"


def _many_kernels_graph():
    """A matmul, 18 distinct reductions and a cumsum: enough LLVM work to split into parallel modules."""
    g = Graph()
    x, w = g.input("x", TensorType((32, 16), dt.float32)), g.input("w", TensorType((16, 32), dt.float32))
    h = g.call("matmul", [x, w])
    outs = []
    for i in range(18):
        e = h
        for _ in range(i // 2 + 1):  # a chain of its own per kernel: identical kernels compile once (dedup.py)
            e = g.call("mul", [e, g.call("exp", [e])]) if i % 2 else g.call("sin", [e])
        outs.append(g.call("sum", [e], {"dims": (i % 2,), "keepdim": False}))
    g.outputs = [*outs, g.call("cumsum", [h], {"dim": 1})]
    return g


def test_a_large_graph_splits_into_parallel_modules_and_still_equals_the_interpreter():
    g = _many_kernels_graph()
    groups = fuse(g).groups
    plan = split(groups)
    part_of, unroll = plan.part_of, plan.unroll
    # PARTS modules of about equal work, and the opaque kernel in one more, unrolled
    assert unroll == [False] * PARTS + [True] and plan.costs[PARTS] == 4 * UNROLLED_COST_FACTOR
    assert {part_of[gr] for gr in groups if gr.pattern == "single"} == {PARTS}
    # the matmul goes first and takes the GEMM helpers, which outweigh all 18 reductions: they
    # are dealt to the other modules (the entry's, part 0, among them: it starts at ENTRY_COST)
    matmul = next(gr for gr in groups if gr.pattern == "matmul")
    assert plan.helper_home == part_of[matmul] and plan.costs[part_of[matmul]] == COST["matmul"] + HELPER_COST
    reductions = {part_of[gr] for gr in groups if gr.pattern == "reduction"}
    assert reductions == set(range(PARTS)) - {part_of[matmul]}
    # the core that compiles part 0 also takes the unrolled module: both count in its load
    load = [plan.costs[k] + (plan.costs[PARTS] if k == 0 else 0) for k in reductions]
    assert max(load) - min(load) <= COST["reduction"]
    exe = build(g, groups, cache=False)
    assert [p.unroll for p in exe.native.parts] == unroll
    assert exe.native.ir_text.count("define void @\"run\"") == 1
    # the GEMM helpers are defined once, in part 1, and the kernels elsewhere call them
    helper_defs = [p for p in exe.native.parts if 'define internal void @"gt_gemm' in p.text
                   or 'define void @"gt_gemm' in p.text]
    assert len(helper_defs) == 1
    rng = np.random.default_rng(1)
    inputs = [values(n.type.shape, n.type.dtype, rng, specials=False) for n in g.inputs]
    for got, want in zip(exe(*inputs), interpret(g, *inputs)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)  # float32 sums in another order


def test_a_small_graph_stays_one_unrolled_module():
    g = small_graph()
    plan = split(single_groups(g))
    assert plan.unroll == [True] and set(plan.part_of.values()) == {0}


def test_small_kernels_run_on_thread_zero_without_barriers_between_them():
    g = _many_kernels_graph()  # 32x32 outputs: every kernel is below PARALLEL_WORK
    groups = fuse(g).groups
    assert all(work(gr) < PARALLEL_WORK for gr in groups)
    saved = get_num_threads()
    try:
        set_num_threads(2)
        exe = build(g, groups, cache=False)
        assert not exe.parallel  # the runtime calls `run` once, on this thread
        entry = exe.native.parts[0].text.split('define void @"run"')[1].split("\n}")[0]
        assert '@"gt.barrier"' not in entry
        bg = big_graph()
        big = build(bg, fuse(bg).groups, cache=False)
        assert big.parallel and '@"gt.barrier"' in big.native.parts[0].text
    finally:
        set_num_threads(saved)


def test_kernel_times_count_every_kernel_when_asked(monkeypatch):
    g = small_graph()
    with pytest.raises(RuntimeError, match="GRAPHTORCH_KERNEL_TIMES=1"):
        build(g, single_groups(g), cache=False, timed=False).kernel_times()
    monkeypatch.setenv("GRAPHTORCH_KERNEL_TIMES", "1")
    exe = build(g, single_groups(g), cache=False)
    x = np.ones((3, 5), np.float32)
    for _ in range(3):
        exe(x, x)
    times = exe.kernel_times()
    assert sorted(gr.id for gr, _ in times) == [gr.id for gr in exe.groups]
    assert all(us > 0 for _, us in times) and times[0][1] >= times[-1][1]
    np.testing.assert_array_equal(exe(x, x)[0], np.maximum(x * x, x))  # timing changes no result


def test_an_input_computed_in_place_is_read_through_the_output_pointer():
    g = Graph()
    a = g.input("a", TensorType((64, 64), dt.float32))
    h = g.call("exp", [a])
    g.outputs = [g.call("sum", [g.call("mul", [g.call("sin", [h]), h])], {"dims": (1,), "keepdim": False})]
    groups = single_groups(g)
    exe = build(g, groups, cache=False)
    mul = next(gr for gr in groups if gr.outputs[0].target == "mul")
    assert "in place of %2" in exe.plan.report()  # sin's bytes become mul's
    header = next(line for line in exe.native.ir_text.split("\n") if f'@"kernel{mul.id}.single"(' in line
                  and line.startswith("define"))
    assert 'ptr %"2"' in header and 'ptr noalias %"3"' in header  # sin's twin argument is unused
    x = np.random.default_rng(3).uniform(-1, 1, (64, 64)).astype(np.float32)
    np.testing.assert_allclose(exe(x)[0], interpret(g, x)[0], rtol=1e-5, atol=1e-4)


def test_only_opaque_kernels_and_short_reductions_get_the_unroller():
    g = Graph()
    x = g.input("x", TensorType((64, 6, 14, 14, 4), dt.float32))
    g.outputs = [g.call("max", [x], {"dims": (4,), "keepdim": False}),  # a 2x2 pooling window
                 g.call("sum", [x], {"dims": (0, 2, 3), "keepdim": False}),  # a bias gradient
                 g.call("exp", [x]), g.call("cumsum", [x], {"dim": 4})]
    kinds = {gr.outputs[0].target: wants_unroll(gr) for gr in fuse(g).groups}
    assert kinds == {"max": True, "sum": False, "exp": False, "cumsum": True}


def test_kernel_times_count_the_wait_for_the_slowest_thread(monkeypatch):
    """A full sum runs on one thread while thread 0 (the timed one) waits at the barrier after it:
    that wait is the sum's time, not nothing."""
    g = Graph()
    a = g.input("a", TensorType((1 << 22,), dt.float32))
    g.outputs = [g.call("mul", [g.call("sum", [a], {"dims": (0,), "keepdim": False}), g.call("sum", [a], {"dims": (0,), "keepdim": False})])]
    monkeypatch.setenv("GRAPHTORCH_KERNEL_TIMES", "1")
    saved = get_num_threads()
    set_num_threads(2)
    try:
        exe = build(g, single_groups(g), cache=False)
        x = np.ones(1 << 22, np.float32)
        exe(x)
        exe.calls, exe._status[:] = 0, 0
        start = time.perf_counter()
        for _ in range(5):
            exe(x)
        wall_us = (time.perf_counter() - start) / 5 * 1e6
        summed = sum(us for gr, us in exe.kernel_times() if gr.outputs[0].target == "sum")
    finally:
        set_num_threads(saved)
    assert exe.parallel and summed > 0.3 * wall_us, (summed, wall_us)


def test_small_elementwise_kernels_between_split_ones_are_split_too():
    """Their barriers are the neighbours' anyway; a longer run, or one with little work, stays on
    thread 0 alone (no barrier between its kernels)."""
    g = Graph()
    a = g.input("a", TensorType((256, 256), dt.float32))

    def kernels(sizes: list[int]) -> list[bool]:
        groups = [make_group(0, [g.call("matmul", [a, a])])]
        for k, size in enumerate(sizes):
            x = g.input(f"x{len(g.nodes)}", TensorType((size, 64), dt.float32))
            groups.append(make_group(k + 1, [g.call("sigmoid", [x])]))
        groups.append(make_group(len(sizes) + 1, [g.call("matmul", [a, a])]))
        return serial_kernels(groups)[1:-1]

    assert kernels([64]) == [False]  # 4096 elements: the LSTM's gate kernel's size
    assert kernels([32, 32]) == [False, False]
    assert kernels([16]) == [True] and kernels([64, 64, 64]) == [True] * 3
