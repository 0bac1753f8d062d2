"""A concat in an elementwise group runs its loop in pieces split at the part edges (rows for a
concat along a leading dim, columns along the last), so each piece reads one part with no
per-element select. Compiled == interpreter, bit for bit, on every kind of part edge and with
threads whose row ranges cut through the pieces."""

import numpy as np
import pytest
from llvm_helpers import assert_match, values

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.fusion import fuse
from graphtorch.compiler.ir import Graph
from graphtorch.compiler.llvm import build
from graphtorch.compiler.llvm.elementwise import MAX_ROW_PIECES, loop_breaks


def concat_graph(shapes: list[tuple[int, ...]], dim: int, scale: bool = False) -> Graph:
    """concat(x_0, ..., x_k, dim), times an input of the result's shape when `scale`."""
    g = Graph()
    parts = [g.input(f"x{k}", TensorType(s, dt.float32)) for k, s in enumerate(shapes)]
    out = g.call("concat", parts, {"dim": dim})
    if scale:
        out = g.call("mul", [out, g.input("w", TensorType(out.type.shape, dt.float32))])
    g.outputs = [out]
    return g


CASES = {
    "lstm stack, dim 0": ([(32, 16)] * 31, 0),
    "uneven parts and an empty one, dim 0": ([(3, 5), (0, 5), (1, 5), (6, 5)], 0),
    "middle dim, several outer rows": ([(2, 3, 4), (2, 1, 4), (2, 2, 4)], 1),
    "leading dim of 3-d parts": ([(1, 4, 6)] * 5, 0),
    "last dim": ([(4, 3), (4, 1), (4, 5)], 1),
    "parts of one row each": ([(1, 7)] * 9, 0),
}


def _arrays(g: Graph) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [values(i.type.shape, dt.float32, rng) for i in g.inputs]


@pytest.mark.parametrize("scale", [False, True])
@pytest.mark.parametrize("name", sorted(CASES))
def test_split_concat_equals_interpreter(name, scale):
    shapes, dim = CASES[name]
    g = concat_graph(shapes, dim, scale)
    plan = fuse(g)
    assert len(plan.groups) == 1 and plan.groups[0].pattern == "elementwise"
    assert_match(g, *_arrays(g), groups=plan.groups)


@pytest.mark.parametrize("threads", [2, 3])
def test_threads_cut_through_pieces(threads):
    """Rows shared out to threads at places that are not part edges (7 x 13 rows per part)."""
    g = concat_graph([(7, 13, 300)] * 5, 0, scale=True)
    assert_match(g, *_arrays(g), groups=fuse(g).groups, num_threads=threads)


def test_breaks_are_the_part_edges():
    g = concat_graph([(3, 5), (0, 5), (1, 5), (6, 5)], 0)
    assert loop_breaks(g.nodes, g.outputs)[0] == [3, 4]
    assert loop_breaks(g.nodes, g.outputs)[1] == []
    g = concat_graph([(2, 3, 4), (2, 1, 4), (2, 2, 4)], 1)  # rows of (2, 6): parts at 0-3, 3-4, 4-6 per outer
    assert loop_breaks(g.nodes, g.outputs)[0] == [3, 4, 6, 9, 10]
    g = concat_graph([(4, 3), (4, 1), (4, 5)], 1)
    assert loop_breaks(g.nodes, g.outputs)[1] == [3, 4]


def test_too_many_pieces_keep_the_select():
    g = concat_graph([(MAX_ROW_PIECES + 1, 1, 2)] * 2, 1)  # one break per outer row: too many
    assert loop_breaks(g.nodes, g.outputs)[0] == []
    assert_match(g, *_arrays(g), groups=fuse(g).groups)


def test_each_piece_reads_one_part_without_select():
    """31 stacked parts: the unoptimized IR selects nowhere (it selected 30 times per element)."""
    g = concat_graph([(32, 16)] * 31, 0)
    ir_text = build(g, fuse(g).groups, cache=False).artifacts["llvm_ir"]
    kernel = ir_text[ir_text.index("kernel0.elementwise"):]
    assert "select" not in kernel[:kernel.index("\n}\n")]
