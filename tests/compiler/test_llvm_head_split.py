"""The backward of an attention's q, k, v split: d(qkv) = pad(dq) + pad(dk) + pad(dv), each part
the per-head gradient permuted back from (b, heads, t, e) and reshaped to (b, t, heads * e), the
sum reshaped to (b * t, 3 * c) for the input projection's GEMM. The elementwise kernel splits its
column loop at the pad edges behind that reshape, and maps each reshape by runs of dims, so no
piece evaluates another piece's gradient and no element divides by the whole row.
Compiled == interpreter, bit for bit, on odd shapes."""

import numpy as np
import pytest
from llvm_helpers import assert_match, values

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.fusion import fuse
from graphtorch.compiler.ir import Graph
from graphtorch.compiler.llvm import build
from graphtorch.compiler.llvm.elementwise import loop_breaks
from graphtorch.compiler.llvm.index import reshape_runs


def qkv_grad_graph(b: int, t: int, heads: int, e: int, parts: int = 3) -> Graph:
    """sum_k pad(reshape(permute(g_k))) over the last dim, reshaped to (b * t, parts * c)."""
    g, c = Graph(), heads * e
    total = None
    for k in range(parts):
        grad = g.input(f"d{k}", TensorType((b, heads, t, e), dt.float32))
        rows = g.call("reshape", [g.call("permute", [grad], {"dims": (0, 2, 1, 3)})], {"shape": (b, t, c)})
        padded = g.call("pad", [rows], {"pads": ((0, 0), (0, 0), (k * c, (parts - 1 - k) * c)), "value": 0.0})
        total = padded if total is None else g.call("add", [total, padded])
    g.outputs = [g.call("reshape", [total], {"shape": (b * t, parts * c)})]
    return g


SHAPES = {"gpt": (16, 32, 4, 16), "odd": (3, 5, 3, 7), "one head": (2, 3, 1, 5), "one row": (1, 1, 2, 3),
          "odd heads of 9": (2, 5, 3, 9), "heads of 8": (3, 2, 5, 8)}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_qkv_grad_equals_interpreter(name):
    g = qkv_grad_graph(*SHAPES[name])
    rng = np.random.default_rng(1)
    arrays = [values(i.type.shape, dt.float32, rng) for i in g.inputs]
    plan = fuse(g)
    assert len(plan.groups) == 1 and plan.groups[0].pattern == "elementwise"
    assert_match(g, *arrays, groups=plan.groups)


def test_pads_behind_a_reshape_keeping_the_last_dim_split_the_loop():
    g = qkv_grad_graph(2, 3, 2, 5)  # heads of 5 columns: too narrow to split at
    assert loop_breaks(g.nodes, g.outputs)[1] == [10, 20]
    g = qkv_grad_graph(2, 3, 2, 9)  # heads of 9: each piece is one head of one of q, k, v
    assert loop_breaks(g.nodes, g.outputs)[1] == [9, 18, 27, 36, 45]


def test_the_gpt_shape_reads_each_head_contiguously():
    """Split at every head edge (16 columns), no piece gathers: the loads are vectors."""
    g = qkv_grad_graph(16, 32, 4, 16)
    assert loop_breaks(g.nodes, g.outputs)[1] == list(range(16, 192, 16))
    optimized = build(g, fuse(g).groups, cache=False).artifacts["llvm_ir_optimized"]
    assert "masked.gather" not in optimized and "load <" in optimized


@pytest.mark.parametrize("b, t, heads, e", [(2, 5, 3, 9), (16, 32, 4, 16), (1, 3, 2, 3)])
def test_head_merge_as_an_elementwise_root_equals_interpreter(b, t, heads, e):
    """(b, h, t, e) -> permute -> reshape (b, t, h*e) -> neg: the root splits its columns at the
    head edges (heads of at least 8), each piece reading one head."""
    g = Graph()
    x = g.input("x", TensorType((b, heads, t, e), dt.float32))
    merged = g.call("reshape", [g.call("permute", [x], {"dims": (0, 2, 1, 3)})], {"shape": (b, t, heads * e)})
    g.outputs = [g.call("neg", [merged])]
    edges = list(range(e, heads * e, e)) if e >= 8 else []
    assert loop_breaks(g.nodes, g.outputs)[1] == edges
    assert_match(g, values(x.type.shape, dt.float32, np.random.default_rng(4)), groups=fuse(g).groups)


def test_a_reshape_merging_the_last_dims_splits_at_its_rows_not_at_the_pads_behind_it():
    """(b, t, 3c) -> (b, t * 3c): a column of the root is no column of the pads, but each piece
    of 3c columns is one t (the head-merge rule: constant leading digits per piece)."""
    g = qkv_grad_graph(2, 3, 2, 5)
    root = g.outputs[0]
    g.outputs = [g.call("reshape", [root.inputs[0]], {"shape": (2, 3 * 30)})]
    assert loop_breaks(g.nodes, g.outputs)[1] == [30, 60]
    arrays = [values(i.type.shape, dt.float32, np.random.default_rng(2)) for i in g.inputs]
    assert_match(g, *arrays, groups=fuse(g).groups)


def test_no_piece_tests_pad_bounds_or_divides_by_the_row():
    """Each piece reads its own gradient: no bounds test (`icmp sge`), and the only divisions are
    the row's (hoisted out of the column loop) and the head split's, by the head size."""
    g = qkv_grad_graph(3, 5, 3, 7)
    ir_text = build(g, fuse(g).groups, cache=False).artifacts["llvm_ir"]
    assert "icmp sge" not in ir_text
    lines = [line for line in ir_text.splitlines() if " udiv " in line or " urem " in line]
    divisors = {line.rsplit(",", 1)[1].strip() for line in lines}
    constants = {d for d in divisors if d.isdigit()}  # (the threads' share divides by a variable)
    assert constants <= {"5", "3", "7"}, constants  # t and b for the row; e for the head; never 63 or 21


@pytest.mark.parametrize("shape, to, runs", [
    ((16, 32, 64), (16, 32, 4, 16), [((0, 1), (0, 1)), ((1, 2), (1, 2)), ((2, 3), (2, 4))]),
    ((2, 3), (3, 2), [((0, 2), (0, 2))]),
    ((4, 1, 4), (4, 4), [((0, 1), (0, 1)), ((1, 3), (1, 2))]),
    ((2,), (2, 1), [((0, 1), (0, 1)), ((1, 1), (1, 2))]),
    ((6, 5), (30,), [((0, 2), (0, 1))]),
    ((), (1, 1), [((0, 0), (0, 1)), ((0, 0), (1, 2))]),
])
def test_reshape_runs_pair_dims_with_equal_products(shape, to, runs):
    assert reshape_runs(shape, to) == runs


@pytest.mark.parametrize("shape, to", [((6, 5), (3, 2, 5)), ((2, 1, 6), (4, 3)), ((4, 3), (2, 1, 6)), ((1,), ())])
def test_permute_of_a_reshape_equals_interpreter(shape, to):
    """permute(reshape(x)): the permute hands the reshape a multi-index, mapped run by run."""
    g = Graph()
    x = g.input("x", TensorType(shape, dt.float64))
    flipped = g.call("permute", [g.call("reshape", [x], {"shape": to})], {"dims": tuple(range(len(to) - 1, -1, -1))})
    g.outputs = [g.call("neg", [flipped])]
    assert_match(g, values(shape, dt.float64, np.random.default_rng(3)), groups=fuse(g).groups)
