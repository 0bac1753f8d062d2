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
from graphtorch.compiler.llvm.elementwise import pad_column_breaks


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
    assert pad_column_breaks(g.nodes, g.outputs[0]) == [3, 6]
    g = gates_graph(2, 3, [(1, 1)])
    assert pad_column_breaks(g.nodes, g.outputs[0]) == [1, 4]


def test_each_piece_reads_one_gate_and_vectorizes():
    """Four gates: each sigmoid is evaluated in its own column piece only (4 inlined exps, not 16),
    and no piece tests whether a column is inside a pad (`icmp sge`) or reads a clamped index."""
    g = gates_graph(32, 64, [(0, 192), (64, 128), (128, 64), (192, 0)])
    ir_text = build(g, fuse(g).groups, cache=False).artifacts["llvm_ir"]
    assert "icmp sge" not in ir_text
    assert ir_text.count("call float @\"llvm.roundeven.f32\"") == 4, "a pad outside its piece computed its input"
    optimized = build(g, fuse(g).groups, cache=False).artifacts["llvm_ir_optimized"]
    assert "x float>" in optimized
