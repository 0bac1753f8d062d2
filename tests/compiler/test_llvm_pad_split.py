"""A concat written as a sum of pads along the last dim (what autograd makes of the LSTM's four
gate gradients) runs its column loop in pieces split at the pad edges: each piece reads only the
pad inside it. Compiled == interpreter, bit for bit, on every kind of pad edge."""

import numpy as np
import pytest
from llvm_helpers import assert_match, values

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.fusion import fuse
from graphtorch.compiler.ir import Graph
from graphtorch.compiler.llvm import build
from graphtorch.compiler.llvm.elementwise import loop_breaks


def gates_graph(rows: int, width: int, pads: list[tuple[int, int]], value: float = 0.0) -> Graph:
    """sum_k pad(sigmoid(x_k) * y_k) for inputs of (rows, width) padded by pads[k] on the last dim."""
    g = Graph()
    total = None
    for k, (lo, hi) in enumerate(pads):
        x = g.input(f"x{k}", TensorType((rows, width), dt.float32))
        y = g.input(f"y{k}", TensorType((rows, width), dt.float32))
        gate = g.call("mul", [g.call("sigmoid", [x]), y])
        padded = g.call("pad", [gate], {"pads": ((0, 0), (lo, hi)), "value": value})
        total = padded if total is None else g.call("add", [total, padded])
    g.outputs = [total]
    return g


CASES = {
    "four gates": (7, 9, [(0, 27), (9, 18), (18, 9), (27, 0)]),
    "overlapping and gaps": (3, 5, [(0, 6), (2, 4), (6, 0)]),  # two pads share columns 2-4; 5 is padding only
    "nonzero pad value": (2, 4, [(0, 4), (4, 0)]),
    "one pad": (5, 3, [(2, 1)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_split_columns_equal_interpreter(name):
    rows, width, pads = CASES[name]
    value = 1.5 if name == "nonzero pad value" else 0.0
    g = gates_graph(rows, width, pads, value)
    rng = np.random.default_rng(0)
    arrays = [values((rows, width), dt.float32, rng) for _ in g.inputs]
    plan = fuse(g)
    assert len(plan.groups) == 1 and plan.groups[0].pattern == "elementwise"
    assert_match(g, *arrays, groups=plan.groups, rtol=2e-6, atol=1e-37)  # sigmoid: vecmath.py's bound


def test_breaks_are_the_pad_edges_inside_the_row():
    g = gates_graph(2, 3, [(0, 6), (3, 3), (6, 0)])
    assert loop_breaks(g.nodes, g.outputs)[1] == [3, 6]
    g = gates_graph(2, 3, [(1, 1)])
    assert loop_breaks(g.nodes, g.outputs)[1] == [1, 4]


def test_each_piece_reads_one_gate_and_vectorizes():
    """Four gates: each sigmoid is evaluated in its own column piece only (4 inlined exps, not 16),
    and no piece tests whether a column is inside a pad (`icmp sge`) or reads a clamped index."""
    g = gates_graph(32, 64, [(0, 192), (64, 128), (128, 64), (192, 0)])
    ir_text = build(g, fuse(g).groups, cache=False).artifacts["llvm_ir"]
    assert "icmp sge" not in ir_text
    assert ir_text.count("call float @\"llvm.roundeven.f32\"") == 4, "a pad outside its piece computed its input"
    optimized = build(g, fuse(g).groups, cache=False).artifacts["llvm_ir_optimized"]
    assert "x float>" in optimized


def time_steps_graph(steps: int, batch: int, width: int, value: float = 0.0) -> Graph:
    """sum_t pad(x_t * y_t) along dim 0, each (1, batch, width) piece placed at step t: what autograd
    makes of the gradient of a tensor sliced into time steps (an LSTM's input projection)."""
    g = Graph()
    total = None
    for t in range(steps):
        x = g.input(f"x{t}", TensorType((1, batch, width), dt.float32))
        y = g.input(f"y{t}", TensorType((1, batch, width), dt.float32))
        padded = g.call("pad", [g.call("mul", [x, y])], {"pads": ((t, steps - 1 - t), (0, 0), (0, 0)), "value": value})
        total = padded if total is None else g.call("add", [total, padded])
    g.outputs = [total]
    return g


@pytest.mark.parametrize("value", [0.0, -2.0])
@pytest.mark.parametrize("threads", [1, 2])
def test_pads_along_a_leading_dim_split_rows(value, threads):
    """Two threads: 8 x 128 x 130 is enough work to share, cut at rows that are not step edges."""
    shape = (6, 5, 7) if threads == 1 else (8, 128, 130)
    g = time_steps_graph(*shape, value)
    if threads == 1:
        assert loop_breaks(g.nodes, g.outputs) == ([5, 10, 15, 20, 25], [])
    rng = np.random.default_rng(1)
    arrays = [values((1, *shape[1:]), dt.float32, rng) for _ in g.inputs]
    # a piece adds its one product to five pad values that fast-math folds into one constant first
    tol = dict(rtol=1e-6, atol=1e-6) if value else {}
    assert_match(g, *arrays, groups=fuse(g).groups, num_threads=threads, **tol)


def test_pads_along_a_middle_dim_with_outer_rows():
    """pad on dim 1 of (2, 4, 3): each outer block has its own padding rows."""
    g = Graph()
    x = g.input("x", TensorType((2, 2, 3), dt.float32))
    g.outputs = [g.call("pad", [g.call("neg", [x])], {"pads": ((0, 0), (1, 1), (0, 0)), "value": 0.5})]
    assert loop_breaks(g.nodes, g.outputs)[0] == [1, 3, 4, 5, 7]
    assert_match(g, values((2, 2, 3), dt.float32, np.random.default_rng(2)), groups=fuse(g).groups)


def test_each_time_step_piece_reads_one_step():
    """32 steps: no piece tests whether a row is inside a pad (the kernel took ~40 us, one check per step)."""
    g = time_steps_graph(32, 32, 64)
    ir_text = build(g, fuse(g).groups, cache=False).artifacts["llvm_ir"]
    assert "icmp sge" not in ir_text
