"""Helpers for the LLVM backend tests: build graphs of one primitive, run them compiled and with
the numpy kernels (the oracle), compare."""

from __future__ import annotations

import numpy as np

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.ir import Graph
from graphtorch.compiler.llvm import build, single_groups

SPECIALS = [0.0, -0.0, 1.0, -1.0, 0.5, 1.5, 2.5, -2.5, np.inf, -np.inf, np.nan, 1e-30, 3.0, -7.25]


def interpret(graph: Graph, *arrays: np.ndarray) -> list[np.ndarray]:
    env = dict(zip(graph.inputs, arrays))
    with np.errstate(all="ignore"):
        for n in graph.nodes:
            if n.op == "constant":
                env[n] = n.value
            elif n.op == "call":
                env[n] = np.asarray(n.prim.kernel(*(env[i] for i in n.inputs), **n.attrs))
    return [env[o] for o in graph.outputs]


def compiled(graph: Graph, *arrays: np.ndarray, groups=None, **kw) -> list[np.ndarray]:
    kw.setdefault("cache", False)
    exe = build(graph, groups if groups is not None else single_groups(graph), **kw)
    return exe(*arrays)


def assert_match(graph: Graph, *arrays: np.ndarray, rtol: float = 0.0, atol: float = 0.0, groups=None, **kw):
    """compiled == interpreter: dtype, shape, values (bit-exact unless rtol/atol), NaN where NaN."""
    got = compiled(graph, *arrays, groups=groups, **kw)
    want = interpret(graph, *arrays)
    for k, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype, f"output {k}: dtype {g.dtype} != {w.dtype}"
        assert g.shape == w.shape, f"output {k}: shape {g.shape} != {w.shape}"
        if rtol or atol:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"output {k}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"output {k}")
            if g.dtype.kind == "f":  # the sign of zero too (NaN's sign bit is no part of its value)
                zeros = w == 0
                assert np.array_equal(np.signbit(g[zeros]), np.signbit(w[zeros])), f"output {k}: signs of zeros differ"
    return got


def values(shape, d: dt.DType, rng: np.random.Generator, specials: bool = True) -> np.ndarray:
    """Random values of dtype d, with the float corner cases (NaN, inf, -0.0, halves) mixed in."""
    n = int(np.prod(shape))
    if d is dt.bool_:
        return rng.random(shape) < 0.5
    if d.is_floating_point:
        a = rng.standard_normal(n) * 3
        if specials and n:
            k = min(n, len(SPECIALS))
            a[rng.choice(n, k, replace=False)] = SPECIALS[:k]
        return a.astype(d.np).reshape(shape)
    info = np.iinfo(d.np)
    lo, hi = max(info.min, -50), min(info.max, 50)
    return rng.integers(lo, hi + 1, n).astype(d.np).reshape(shape)


def unary_graph(prim: str, shape, d: dt.DType, **attrs) -> Graph:
    g = Graph()
    x = g.input("x", TensorType(tuple(shape), d))
    g.outputs = [g.call(prim, [x], attrs)]
    return g


def binary_graph(prim: str, shape, d: dt.DType) -> Graph:
    g = Graph()
    a, b = g.input("a", TensorType(tuple(shape), d)), g.input("b", TensorType(tuple(shape), d))
    g.outputs = [g.call(prim, [a, b])]
    return g
