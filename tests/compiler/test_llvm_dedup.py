"""Identical kernels compile once (compiler/llvm/dedup.py): the groups of repeated blocks share one
LLVM function, each still has a function under its own name, and the results equal the interpreter."""

from __future__ import annotations

import numpy as np
from llvm_helpers import interpret

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.fusion import fuse
from graphtorch.compiler.ir import Graph
from graphtorch.compiler.llvm import build
from graphtorch.compiler.llvm.module import kernel_name


def _blocks(n: int, scales: list[float]) -> Graph:
    """n repeated blocks y = relu(x @ w_k) * s_k + x, one weight each."""
    g = Graph()
    x = g.input("x", TensorType((8, 16), dt.float32))
    for k in range(n):
        w = g.input(f"w{k}", TensorType((16, 16), dt.float32))
        h = g.call("maximum", [g.call("matmul", [x, w]), g.constant(np.zeros((8, 16), np.float32))])
        x = g.call("add", [g.call("mul", [h, g.constant(np.full((8, 16), scales[k], np.float32))]), x])
    g.outputs = [x]
    return g


def _defined_kernels(exe) -> list[str]:
    return [line for line in exe.native.ir_text.splitlines() if line.startswith("define") and "noinline" in line
            and '@"kernel' in line]


def test_repeated_blocks_share_their_kernels_and_equal_the_interpreter():
    g = _blocks(4, [0.5, 2.0, 3.0, 0.25])  # scales are constants: arguments, not code
    groups = fuse(g).groups
    exe = build(g, groups, cache=False)
    distinct = _defined_kernels(exe)
    assert len(groups) >= 4 and len(distinct) < len(groups)
    for gr in groups:  # every group keeps a function under its name (reports find code by it)
        assert f'@"{kernel_name(gr)}"(' in exe.native.ir_text
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(n.type.shape).astype(np.float32) for n in g.inputs]
    np.testing.assert_allclose(exe(*inputs)[0], interpret(g, *inputs)[0], rtol=1e-5, atol=1e-5)


def test_kernels_that_differ_in_a_shape_or_an_attribute_are_not_shared():
    g = Graph()
    a, b = g.input("a", TensorType((4, 6), dt.float32)), g.input("b", TensorType((4, 7), dt.float32))
    sums = [g.call("sum", [g.call("exp", [a])], {"dims": (0,), "keepdim": False}),
            g.call("sum", [g.call("exp", [a])], {"dims": (1,), "keepdim": False}),
            g.call("sum", [g.call("exp", [b])], {"dims": (1,), "keepdim": False}),
            g.call("sum", [g.call("exp", [b])], {"dims": (1,), "keepdim": False})]  # the only repeat
    g.outputs = sums
    exe = build(g, fuse(g).groups, cache=False)
    assert len(_defined_kernels(exe)) == 3
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal(n.type.shape).astype(np.float32) for n in g.inputs]
    for got, want in zip(exe(*inputs), interpret(g, *inputs)):
        np.testing.assert_allclose(got, want, rtol=1e-5)
