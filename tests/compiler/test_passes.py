"""The `optimized` stage: each pass keeps results (interpreter before == after) and does its job."""

from __future__ import annotations

import numpy as np
import pytest
from compiler_helpers import f32, lenet, logistic_regression, random_inputs, scalar, sin_mlp

from graphtorch.compiler import cleanup, interpreter
from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.errors import GraphtorchCompileError
from graphtorch.compiler.ir import Graph
from graphtorch.compiler.verify import verify, verify_rewrite

MODELS = [lenet, sin_mlp, logistic_regression]
PASSES = cleanup.PASSES + [("optimize", cleanup.optimize)]


def assert_same_results(before: Graph, after: Graph, seed: int = 0) -> None:
    xs = random_inputs(before, seed)
    for a, b in zip(interpreter.run(before, xs), interpreter.run(after, xs)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("make", MODELS)
@pytest.mark.parametrize("name, p", PASSES, ids=[n for n, _ in PASSES])
def test_pass_keeps_results_and_calling_convention(make, name, p):
    g = make()
    out = p(g)
    verify_rewrite(name, g, out)
    assert_same_results(g, out)
    assert make().equals(g)  # the input graph is not changed


def _count(g: Graph, target: str) -> int:
    return sum(n.target == target for n in g.nodes)


def test_dce_drops_dead_calls_but_keeps_unused_inputs():
    g = Graph()
    x, unused = g.input("x", f32(3)), g.input("unused", f32(2))
    g.call("exp", [x])
    g.constant(np.ones(3, np.float32))
    g.outputs = [g.call("neg", [x])]
    out = cleanup.dce(g)
    assert [n.target for n in out.nodes] == ["x", "unused", "neg"]
    assert out.inputs[1].type == unused.type


def test_cse_merges_same_calls_and_equal_constants_but_never_rand():
    g = Graph()
    x = g.input("x", f32(3))
    key = g.input("key", TensorType((), dt.int64))
    c1, c2 = g.constant(np.arange(3, dtype=np.float32)), g.constant(np.arange(3, dtype=np.float32))
    a, b = g.call("add", [x, c1]), g.call("add", [x, c2])
    r1, r2 = (g.call("rand", [key], dict(shape=(3,), dtype=dt.float32)) for _ in range(2))
    p1, p2 = (g.call("permute", [g.call("reshape", [x], dict(shape=(1, 3)))], dict(dims=d)) for d in [(1, 0), (1, 0)])
    g.outputs = [g.call("mul", [a, b]), g.call("sub", [r1, r2]), g.call("add", [p1, p2])]
    out = cleanup.optimize(g)
    assert _count(out, "add") == 2 and _count(out, "constant") == 1 and _count(out, "rand") == 2
    assert _count(out, "permute") == 1 and _count(out, "reshape") == 1
    assert_same_results(g, out)


def test_cse_distinguishes_attribute_types_and_signed_zeros():
    g = Graph()
    x = g.input("x", f32(3))
    pads = [g.call("pad", [x], dict(pads=((1, 1),), value=v)) for v in (0.0, -0.0, 0.0)]
    g.outputs = pads
    out = cleanup.cse(g)
    assert _count(out, "pad") == 2
    assert out.outputs[0] is out.outputs[2] and out.outputs[0] is not out.outputs[1]


def test_constant_folding_small_results_and_splats():
    g = Graph()
    x = g.input("x", f32(2, 3))
    c = g.constant(np.array([1.0, 2.0, 3.0], np.float32))
    e = g.call("exp", [g.call("expand", [c], dict(shape=(2, 3)))], loc="f.py:3", origin="exp")
    big = g.call("expand", [g.call("full", [], dict(shape=(), value=2.0, dtype=dt.float32))], dict(shape=(100, 100)))
    half = g.call("div", [g.call("full", [], dict(shape=(100, 100), value=1.0, dtype=dt.float32)), big])
    s = g.call("sum", [half], dict(dims=(0, 1), keepdim=False))
    g.outputs = [g.call("mul", [x, e]), s]
    out = cleanup.optimize(g)
    folded = next(n for n in out.nodes if n.op == "constant" and n.type.shape == (2, 3))
    np.testing.assert_allclose(folded.value, np.exp([[1, 2, 3]] * 2).astype(np.float32))
    assert folded.loc == "f.py:3" and folded.origin == "exp"
    fulls = [n for n in out.nodes if n.target == "full"]
    assert [(n.type.shape, n.attrs["value"]) for n in fulls] == [((), 5000.0)]  # 1/2 splat, summed, folded
    assert out.outputs[1] is fulls[0]  # an output stays a call node: a uniform result is a full
    assert_same_results(g, out)


def test_folding_keeps_rand_sources_and_large_non_uniform_results():
    g = Graph()
    key = g.input("key", TensorType((), dt.int64))
    r = g.call("rand", [g.call("full", [], dict(shape=(), value=7, dtype=dt.int64))], dict(shape=(3,), dtype=dt.float32))
    io = g.call("iota", [], dict(shape=(80, 80), dim=1, dtype=dt.float32))
    g.outputs = [r, g.call("neg", [io]), g.call("exp", [g.call("cast", [key], dict(dtype=dt.float32))])]
    out = cleanup.optimize(g)
    assert [n.target for n in out.nodes if n.op == "call"] == ["full", "rand", "iota", "neg", "cast", "exp"]


@pytest.mark.parametrize("op, left, right, expect_removed", [
    ("mul", "x", 1.0, True), ("mul", 1.0, "x", True), ("add", "x", 0.0, True), ("add", 0.0, "x", True),
    ("sub", "x", 0.0, True), ("div", "x", 1.0, True), ("sub", 0.0, "x", False), ("div", 1.0, "x", False),
    ("mul", "x", 2.0, False), ("add", "x", 1.0, False),
])
def test_identity_arithmetic(op, left, right, expect_removed):
    g = Graph()
    x = g.input("x", f32(3, 4))
    args = [x if v == "x" else scalar(g, v, x) for v in (left, right)]
    g.outputs = [g.call("exp", [g.call(op, args)])]
    out = cleanup.optimize(g)
    assert (_count(out, op) == 0) == expect_removed
    assert_same_results(g, out)


def test_layout_rules():
    g = Graph()
    x = g.input("x", f32(2, 3, 5))
    p = g.call("permute", [g.call("permute", [x], dict(dims=(1, 2, 0)))], dict(dims=(2, 0, 1)))  # identity
    q = g.call("permute", [g.call("permute", [x], dict(dims=(1, 0, 2)))], dict(dims=(0, 2, 1)))
    r = g.call("reshape", [g.call("reshape", [x], dict(shape=(6, 5)))], dict(shape=(3, 10)))
    same = g.call("reshape", [g.call("expand", [x], dict(shape=(2, 3, 5)))], dict(shape=(2, 3, 5)))
    ex = g.call("expand", [g.call("expand", [g.call("reshape", [x], dict(shape=(1, 30)))], dict(shape=(4, 30)))],
                dict(shape=(2, 4, 30)))
    cast = g.call("cast", [g.call("copy", [x])], dict(dtype=dt.float32))
    nn = g.call("neg", [g.call("neg", [x])])
    pad = g.call("pad", [x], dict(pads=((0, 0),) * 3, value=1.0))
    sl = g.call("slice", [x], dict(starts=(0, 0, 0), stops=(2, 3, 5), steps=(1, 1, 1)))
    outs = [p, q, r, same, ex, cast, nn, pad, sl]
    g.outputs = [g.call("exp", [o]) for o in outs]
    out = cleanup.optimize(g)
    targets = [n.target for n in out.nodes if n.op == "call"]
    assert targets.count("permute") == 1 and out.nodes[targets.index("permute") + 1].attrs["dims"] == (1, 2, 0)
    assert targets.count("reshape") == 2 and targets.count("expand") == 1  # (3, 10) and (1, 30) -> (2, 4, 30)
    assert not {"neg", "cast", "copy", "pad", "slice"} & set(targets)
    assert_same_results(g, out)


def test_transposed_matmul_result_becomes_matmul_of_transposed_operands():
    g = Graph()
    a, b = g.input("a", f32(2, 4, 3)), g.input("b", f32(2, 3, 5))
    swap = dict(dims=(0, 2, 1))
    alone = g.call("permute", [g.call("matmul", [a, b])], swap)
    shared_mm = g.call("matmul", [a, b])
    shared = g.call("permute", [shared_mm], swap)  # the matmul has another user: keep it
    g.outputs = [alone, shared, g.call("exp", [shared_mm])]
    out = cleanup.optimize(g)
    first, second, _ = out.outputs
    assert first.target == "matmul" and [i.target for i in first.inputs] == ["permute", "permute"]
    assert second.target == "permute" and second.inputs[0].target == "matmul"
    assert _count(out, "matmul") == 2
    assert_same_results(g, out)


def test_matmul_by_zeros_folds_and_drops_out_of_its_sum():
    """A recurrent layer's zero initial state: h0 @ W and dgates^T @ h0 vanish, and so does the add."""
    g = Graph()
    h, w, y = g.input("h", f32(4, 3)), g.input("w", f32(3, 5)), g.input("y", f32(4, 5))
    zeros = g.call("full", [], dict(shape=(3, 4), value=0.0, dtype=dt.float32))
    left = g.call("matmul", [g.call("permute", [zeros], dict(dims=(1, 0))), w])  # (4, 3) zeros @ w
    right = g.call("matmul", [h, g.call("expand", [scalar(g, 0.0, w)], dict(shape=(3, 5)))])
    kept = g.call("matmul", [h, w])
    g.outputs = [g.call("exp", [g.call("add", [left, y])]), g.call("add", [kept, right]), right]
    out = cleanup.optimize(g)
    assert _count(out, "matmul") == 1 and _count(out, "add") == 0
    assert out.outputs[2].target == "full" and out.outputs[2].type == right.type  # an output stays a call
    assert_same_results(g, out)


def test_matmul_by_nonzero_splat_is_kept():
    g = Graph()
    h, w = g.input("h", f32(4, 3)), g.input("w", f32(3, 5))
    g.outputs = [g.call("matmul", [h, g.call("expand", [scalar(g, 2.0, w)], dict(shape=(3, 5)))])]
    assert _count(cleanup.optimize(g), "matmul") == 1


def _weight_gradient_sum(steps: int, shared_term: bool = False) -> Graph:
    """sum_t d_t^T @ h_t + bias, as backpropagation through a time loop writes it."""
    g = Graph()
    ds = [g.input(f"d{t}", f32(4, 6)) for t in range(steps)]
    hs = [g.input(f"h{t}", f32(4, 3)) for t in range(steps)]
    total = g.input("bias", f32(6, 3))
    terms = [g.call("matmul", [g.call("permute", [d], dict(dims=(1, 0))), h]) for d, h in zip(ds, hs)]
    for term in terms:
        total = g.call("add", [total, term])
    g.outputs = [total] + ([g.call("exp", [terms[0]])] if shared_term else [])
    return g


def test_sum_of_matmuls_becomes_one_matmul_of_concatenated_operands():
    g = _weight_gradient_sum(5)
    out = cleanup.optimize(g)
    (mm,) = [n for n in out.nodes if n.target == "matmul"]
    assert mm.inputs[0].target == "permute" and mm.inputs[0].inputs[0].target == "concat"
    assert mm.inputs[1].target == "concat" and mm.inputs[1].type.shape == (20, 3)
    assert _count(out, "add") == 1  # the bias, not a matmul, is added once
    assert_same_results(g, out)


@pytest.mark.parametrize("steps, shared, expect", [(2, False, 2), (4, True, 2), (3, True, 3)])
def test_matmul_sums_keep_short_sums_and_shared_terms(steps, shared, expect):
    """Two terms stay (too few to pay for the copies); a term used elsewhere stays its own matmul
    (stacking it would compute it twice), and the rest stack only if three or more are left."""
    g = _weight_gradient_sum(steps, shared)
    out = cleanup.optimize(g)
    assert _count(out, "matmul") == expect
    assert_same_results(g, out)


def test_outputs_stay_call_nodes():
    g = Graph()
    x = g.input("x", f32(3))
    g.outputs = [g.call("copy", [x]), g.call("mul", [x, scalar(g, 1.0, x)]), g.call("neg", [g.constant(np.arange(3.0))])]
    out = cleanup.optimize(g)
    assert all(o.op == "call" for o in out.outputs)
    assert_same_results(g, out)


def test_optimize_reaches_a_fixed_point():
    for make in MODELS:
        once = cleanup.optimize(make())
        assert cleanup.optimize(once).equals(once)


def test_lenet_loses_only_redundant_nodes():
    g = lenet()
    out = cleanup.optimize(g)
    assert _count(out, "pad") == 0 and _count(out, "conv2d") == 2 and _count(out, "matmul") == 2
    assert _count(out, "full") == 6 and _count(out, "expand") == 4  # 3 relu zeros, one per use (split_fills)


def test_check_hook_runs_after_every_pass_and_catches_a_broken_pass():
    calls = []
    cleanup.optimize(sin_mlp(), check=lambda name, before, after: calls.append(name))
    assert calls[:len(cleanup.PASSES)] == [name for name, _ in cleanup.PASSES]

    def breaks_types(g: Graph) -> Graph:
        out = g.copy()
        out.outputs = [out.inputs[0]]
        return out

    with pytest.raises(GraphtorchCompileError, match=r"pass 'bad' changed output 0 from f32\[5,2\] to f32\[5,3\]") as e:
        cleanup.optimize(sin_mlp(), passes=[("bad", breaks_types)],
                         check=lambda name, before, after: verify_rewrite(name, before, after, "optimized"))
    assert e.value.code == "GT030"
    verify(sin_mlp())


def test_split_fills_gives_each_use_its_own_fill_and_keeps_values():
    g = Graph()
    x = g.input("x", TensorType((4, 5), dt.float32))
    zero = g.call("full", [], {"shape": (4, 5), "value": 0.0, "dtype": dt.float32})
    y = g.call("where", [g.call("le", [x, zero]), zero, x])
    g.outputs = [y, zero]  # a fill that is an output stays shared
    assert cleanup.split_fills(g) is g
    g.outputs = [y]
    out = cleanup.split_fills(g)
    fills = [n for n in out.nodes if n.target == "full"]
    assert len(fills) == 2 and all(len(out.users()[f]) == 1 for f in fills)
    a = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(interpreter.run(out, [a])[0], interpreter.run(g, [a])[0])


def _relu_with_backward_mask():
    """y = relu(x) as traced (where(le(x, 0), 0, x)) and a backward where(le(x, 0), 0, g) on the same mask."""
    g = Graph()
    x, grad = g.input("x", TensorType((4, 5), dt.float32)), g.input("g", TensorType((4, 5), dt.float32))
    zero = g.call("full", [], {"shape": (4, 5), "value": 0.0, "dtype": dt.float32})
    mask = g.call("le", [x, zero])
    y = g.call("where", [mask, zero, x])
    g.outputs = [y, g.call("where", [mask, zero, grad])]
    return g


def test_relu_mask_for_the_backward_is_read_from_the_relu_output():
    g = _relu_with_backward_mask()
    out = cleanup.relu_masks_from_outputs(g)
    les = [n for n in out.nodes if n.target == "le"]
    assert len(les) == 2 and les[1].inputs[0] is out.outputs[0]  # le(y, 0) feeds the backward where
    assert out.users()[les[0]] == [out.outputs[0]]  # the forward mask now serves relu alone
    a = np.array([[1.0, -1.0, 0.0, -0.0, np.nan], [np.inf, -np.inf, 1e-38, -1e-38, 3.0]] * 2, np.float32)
    gr = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    for got, want in zip(interpreter.run(out, [a, gr]), interpreter.run(g, [a, gr])):
        np.testing.assert_array_equal(got, want)
    assert cleanup.relu_masks_from_outputs(out) is out  # nothing left to rewrite


def test_relu_mask_rewrite_needs_a_fill_no_greater_than_the_threshold():
    g2 = Graph()
    x = g2.input("x", TensorType((3,), dt.float32))
    mask = g2.call("le", [x, g2.call("full", [], {"shape": (3,), "value": 0.0, "dtype": dt.float32})])
    y = g2.call("where", [mask, g2.call("full", [], {"shape": (3,), "value": 1.0, "dtype": dt.float32}), x])
    g2.outputs = [y, g2.call("logical_not", [mask])]  # le(y, 0) would be wrong here: y = 1 where x <= 0
    assert cleanup.relu_masks_from_outputs(g2) is g2



def test_the_fixed_point_compares_fingerprints_only_of_graphs_with_as_many_nodes(monkeypatch):
    g = Graph()
    x = g.input("x", f32(3))
    g.outputs = [g.call("add", [g.call("sin", [x]), g.call("sin", [x])])]
    calls = []
    real = cleanup.fingerprint
    monkeypatch.setattr(cleanup, "fingerprint", lambda graph: calls.append(graph) or real(graph))
    merged = cleanup.cse(g)
    assert len(merged.nodes) == 3 and not cleanup._same_graph(merged, g) and not calls
    assert cleanup._same_graph(g, g) and len(calls) == 2  # as many nodes: the fingerprints decide
