"""The row kernels, `softmax` (softmax / log_softmax over the last dim), `layer_norm` and
`layer_norm_grad`, on the
LLVM backend (1 and 2 threads) and as CUDA C in the emulator, against their numpy kernels: odd
row lengths, one-element and empty rows, rows longer than a warp's stride, NaN and -inf entries."""

from __future__ import annotations

import numpy as np
import pytest
from llvm_helpers import compiled, interpret

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.cuda import emit
from graphtorch.compiler.cuda.hostcheck import HostModule, available
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.fusion import fuse
from graphtorch.compiler.ir import Graph

SHAPES = [(3, 7), (2, 5, 65), (4, 1), (2, 0), (3, 300)]


def softmax_graph(shape, dtype) -> Graph:
    """softmax, log_softmax, layer_norm (weight, bias) and its two layer_norm_grad rows of one input."""
    g = Graph()
    x = g.input("x", TensorType(shape, dtype))
    w, b = g.input("clean_w", TensorType(shape[-1:], dtype)), g.input("clean_b", TensorType(shape[-1:], dtype))
    g.outputs = [g.call("softmax", [x], {"log": log}) for log in (False, True)]
    g.outputs.append(g.call("layer_norm", [x, w, b], {"eps": 1e-5}))
    dout = g.call("sin", [x])  # an output gradient for layer_norm_grad
    g.outputs += [g.call("layer_norm_grad", [x, w, dout], {"eps": 1e-5, "wrt": wrt}) for wrt in ("x", "w")]
    return g


def _inputs(shape, dtype, seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4 + 1).astype(dtype.np)
    if x.size > 4:  # a NaN row, a row with -inf entries, a row of -inf
        x.reshape(-1, shape[-1])[0, 1] = np.nan
        x.reshape(-1, shape[-1])[1, ::2] = -np.inf
        x.reshape(-1, shape[-1])[-1] = -np.inf
    return [x, *(rng.standard_normal(shape[-1:]).astype(dtype.np) for _ in range(2))]


@pytest.mark.parametrize("dtype", [dt.float32, dt.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_llvm_equals_the_numpy_kernel(shape, dtype, threads):
    g = softmax_graph(shape, dtype)
    xs = _inputs(shape, dtype)
    tol = 1e-5 if dtype is dt.float32 else 1e-13
    for got, want in zip(compiled(g, *xs, groups=fuse(g).groups, num_threads=threads), interpret(g, *xs)):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, equal_nan=True)


@pytest.mark.skipif(not available(), reason="g++ is needed to run the emitted kernels on the CPU")
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_cuda_in_the_emulator_equals_the_numpy_kernel(shape):
    g = softmax_graph(shape, dt.float32)
    xs = _inputs(shape, dt.float32)
    module = emit(g, fuse(g).groups)
    assert "__shfl_xor_sync" in module.source and "__syncthreads" not in module.source
    for got, want in zip(HostModule(module).run(xs), interpret(g, *xs)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("log", [False, True])
def test_signed_zeros_and_nan_rows_are_bit_exact(log):
    """The row's max is llvm.maximum (it vectorizes), which orders -0.0 below 0.0 where numpy's
    tie rule keeps the second operand: neither exp(x - m) nor (x - m) - log(total), numpy's order,
    can tell the two apart, so rows of signed zeros (and a NaN, a -inf beside them) give numpy's
    bits, the sign of zero included."""
    g = Graph()
    x = g.input("x", TensorType((5, 2), dt.float64))
    g.outputs = [g.call("softmax", [x], {"log": log})]
    xs = np.array([[0.0, -0.0], [-0.0, 0.0], [-0.0, -0.0], [-0.0, np.nan], [-np.inf, -0.0]])
    got, want = compiled(g, xs, groups=fuse(g).groups)[0], interpret(g, xs)[0]
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))
    one = g.input("one", TensorType((3, 1), dt.float64))  # one-element rows: log_softmax is x - x - 0
    g.outputs = [g.call("softmax", [one], {"log": log})]
    col = np.array([[0.0], [-0.0], [np.inf]])
    got, want = compiled(g, xs, col, groups=fuse(g).groups)[0], interpret(g, xs, col)[0]
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))
