"""Random graphs compiled to native code equal the interpreter on the graph as built."""

from __future__ import annotations

import numpy as np
from compiler_helpers import random_graphs, random_inputs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler import interpreter, llvm
from graphtorch.compiler.pipeline import run_pipeline


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs(), st.integers(0, 2**16))
def test_compiled_random_graph_equals_interpreter(g, seed):
    xs = random_inputs(g, seed)
    want = interpreter.run(g, xs)
    artifacts = run_pipeline(g)
    got = llvm.build(artifacts.optimized, artifacts.fusion.groups)(*xs)
    tol = 1e-5 if g.inputs[0].type.dtype is dt.float32 else 1e-12
    for a, b in zip(want, got):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol, equal_nan=True)
