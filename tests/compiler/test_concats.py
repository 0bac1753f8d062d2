"""pad_sums and concat_runs (compiler/concats.py): the rewrites keep results and do their job."""

from __future__ import annotations

import numpy as np
from compiler_helpers import f32, random_inputs

from graphtorch.compiler import cleanup, interpreter
from graphtorch.compiler.concats import concat_runs, pad_sums
from graphtorch.compiler.ir import Graph
from graphtorch.compiler.verify import verify


def _same_results(before: Graph, after: Graph) -> None:
    verify(after, "optimized")
    xs = random_inputs(before, 0)
    for a, b in zip(interpreter.run(before, xs), interpreter.run(after, xs)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def _count(g: Graph, target: str) -> int:
    return sum(n.target == target for n in g.nodes)


def _pad_sum(windows: list[tuple[int, int]], dims: tuple[int, ...] = (0, 0, 0), extra: bool = True) -> Graph:
    """x's gradient through slices x[lo:hi] as backpropagation writes it: a sum of zero pads."""
    g = Graph()
    total = g.input("rest", f32(6, 3)) if extra else None
    for k, ((lo, hi), dim) in enumerate(zip(windows, dims)):
        shape = (hi - lo, 3) if dim == 0 else (6, hi - lo)
        pads = ((lo, 6 - hi), (0, 0)) if dim == 0 else ((0, 0), (lo, 3 - hi))
        pad = g.call("pad", [g.input(f"part{k}", f32(*shape))], dict(pads=pads, value=0.0))
        total = pad if total is None else g.call("add", [total, pad])
    g.outputs = [total]
    return g


def test_a_sum_of_disjoint_pads_is_a_concat_with_zeros_in_the_gaps():
    g = _pad_sum([(0, 1), (2, 4), (4, 5)])  # rows 1 and 5 are nobody's
    out = cleanup.dce(pad_sums(g))  # the pads stay until dead code goes
    (cat,) = [n for n in out.nodes if n.target == "concat"]
    assert _count(out, "pad") == 0 and [p.type.shape[0] for p in cat.inputs] == [1, 1, 2, 1, 1]
    assert _count(out, "add") == 1  # the leaf that is not a pad, added once
    _same_results(g, out)


def test_pads_in_any_order_along_the_last_dim():
    g = _pad_sum([(2, 3), (0, 2)], dims=(1, 1), extra=False)
    out = cleanup.dce(pad_sums(g))
    assert _count(out, "pad") == 0 and _count(out, "add") == 0 and _count(out, "concat") == 1
    _same_results(g, out)


def test_overlapping_or_crossed_pads_stay_a_sum():
    for windows, dims in (([(0, 3), (2, 4)], (0, 0)), ([(0, 2), (0, 2)], (0, 1))):
        g = _pad_sum(windows, dims)
        assert pad_sums(g) is g


def test_a_pad_read_elsewhere_is_not_taken():
    g = _pad_sum([(0, 2), (2, 4), (4, 6)])
    shared = next(n for n in g.nodes if n.target == "pad")
    g.outputs.append(g.call("exp", [shared]))
    out = cleanup.dce(pad_sums(g))
    (cat,) = [n for n in out.nodes if n.target == "concat"]
    assert _count(out, "pad") == 1 and len(cat.inputs) == 3  # the shared pad's rows are zeros in the concat
    _same_results(g, out)


def _stacks(longer_first: bool) -> Graph:
    """A layer's stacked output (steps 0..3) and matmul_sums' stack of steps 0..2 of the same parts."""
    g = Graph()
    hs = [g.call("exp", [g.input(f"h{t}", f32(2, 3))]) for t in range(4)]

    def longer():
        return g.call("concat", [g.call("reshape", [h], dict(shape=(1, 2, 3))) for h in hs], dict(dim=0))

    def shorter():
        return g.call("concat", hs[:3], dict(dim=0))

    first, second = (longer(), shorter()) if longer_first else (shorter(), longer())
    w = g.input("w", f32(3, 5))
    small = first if not longer_first else second
    g.outputs = [g.call("matmul", [small, w]), g.call("neg", [first if longer_first else second])]
    return g


def test_a_concat_of_a_run_of_another_concats_parts_is_a_slice_of_it():
    for longer_first in (True, False):  # the longer concat after the shorter: the readers move after it
        g = _stacks(longer_first)
        out = cleanup.dce(concat_runs(g))
        (cat,) = [n for n in out.nodes if n.target == "concat"]
        assert cat.type.shape == (4, 2, 3) and _count(out, "slice") == 1
        (mm,) = [n for n in out.nodes if n.target == "matmul"]
        assert mm.inputs[0].target == "slice" and mm.inputs[0].type.shape == (6, 3)
        _same_results(g, out)


def test_parts_out_of_order_are_not_a_run():
    g = _stacks(True)
    small = next(n for n in g.nodes if n.target == "concat" and n.type.shape == (6, 3))
    small.inputs.reverse()
    assert concat_runs(g) is g


def test_optimize_turns_an_lstm_gradient_into_concats():
    """A compiled LSTM step: the input projection's gradient is a concat (not a sum of 32 pads), and
    the recurrent weight gradient's stacked operands are slices of the stacked gradients and outputs."""
    import graphtorch as torch

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, 2)
    x = torch.randn(5, 2, 3)

    def loss(x):
        out, _ = lstm(x)
        return out.pow(2).sum()

    traced = torch.compile(lambda x: torch.autograd.grad(loss(x), list(lstm.parameters())))
    traced(x)
    traced(x)  # the first call runs eagerly; the second traces
    graph = next(iter(traced.entries.values())).forward.artifacts.optimized
    assert _count(graph, "pad") == 0
    stacked = [n for n in graph.nodes if n.target == "matmul" and n.inputs[1].target == "slice"]
    assert len(stacked) >= 2
    assert cleanup.optimize(graph).equals(graph)


def _bias_gradient(stacked_too: bool) -> Graph:
    """An LSTM bias's gradient, sum_t dgates_t.sum(0), next to the stacked dgates another gradient reads."""
    g = Graph()
    parts = [g.call("exp", [g.input(f"d{t}", f32(2, 3))]) for t in range(4)]
    if stacked_too:
        stacked = g.call("concat", [g.call("reshape", [p], dict(shape=(1, 2, 3))) for p in parts], dict(dim=0))
    total = None
    for p in reversed(parts):  # backpropagation visits the steps last to first
        s = g.call("reshape", [g.call("sum", [p], dict(dims=(0,), keepdim=True))], dict(shape=(3,)))
        total = s if total is None else g.call("add", [total, s])
    g.outputs = [g.call("neg", [stacked if stacked_too else parts[0]]), total]
    return g


def test_a_sum_of_each_parts_column_sums_is_the_column_sum_of_their_concat():
    g = _bias_gradient(True)
    out = cleanup.optimize(g)
    (s,) = [n for n in out.nodes if n.target == "sum"]
    assert s.inputs[0].type.shape == (8, 3) and _count(out, "add") == 0
    _same_results(g, out)
    assert _count(cleanup.optimize(_bias_gradient(False)), "sum") == 4  # no concat of the parts: the sums stay
