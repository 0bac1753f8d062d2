"""The static memory plan: lifetimes, reuse, in-place, and that plans run correctly."""

import numpy as np
from llvm_helpers import assert_match, values

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.ir import Graph
from graphtorch.compiler.llvm import single_groups
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
