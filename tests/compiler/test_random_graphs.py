"""Random graphs: optimize + fuse + run group by group == the plain interpreter on the graph as built."""

from __future__ import annotations

import numpy as np
from compiler_helpers import random_graphs, random_inputs
from hypothesis import given, settings
from hypothesis import strategies as st

from graphtorch.compiler import cleanup, interpreter
from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.fusion import check_plan, fuse


@settings(max_examples=40, deadline=None)
@given(random_graphs(), st.integers(0, 2**16))
def test_optimize_fuse_run_groups_equals_interpreter(g, seed):
    xs = random_inputs(g, seed)
    want = interpreter.run(g, xs)
    opt = cleanup.optimize(g)
    plan = fuse(opt)
    check_plan(opt, plan.groups)
    got = interpreter.run_groups(opt, plan.groups, xs)
    tol = 1e-5 if g.inputs[0].type.dtype is dt.float32 else 1e-12
    for a, b in zip(want, got):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol, equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(random_graphs())
def test_fusion_is_deterministic_and_groups_are_small_enough(g):
    opt = cleanup.optimize(g)
    a, b = fuse(opt), fuse(opt)
    assert str(a) == str(b)
    assert all(len(grp.nodes) <= 64 and grp.outputs[-1] is grp.nodes[-1] for grp in a.groups)
    assert all(len(grp.outputs) == 1 for grp in a.groups if grp.pattern != "elementwise")
    anchors = [grp.anchor for grp in a.groups if grp.anchor is not None]
    assert len(anchors) == sum(n.prim.kind.value in ("reduction", "out-fusable") for n in opt.nodes if n.op == "call")
