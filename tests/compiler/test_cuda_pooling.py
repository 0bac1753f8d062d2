"""The CUDA pooling kernels (compiler/cuda/pooling.py) run on the CPU through hostcheck's emulator
against the numpy kernels: forward (a thread per output) and gradients (a thread per input
element, gathering in output order), on fast-path, border, dilated and adaptive windows, with
ties, NaN and -inf, and integer dtypes."""

import numpy as np
import pytest
from llvm_helpers import interpret, values
from test_llvm_pooling import WINDOWS, window

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.cuda import emit
from graphtorch.compiler.cuda.hostcheck import HostModule, available
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.fusion import single_groups
from graphtorch.compiler.ir import Graph

pytestmark = pytest.mark.skipif(not available(), reason="g++ is needed to run the emitted kernels on the CPU")


def every_pool(shape, attrs, d=dt.float32, avg=True) -> Graph:
    """One graph with every pooling primitive on one window geometry (one compile for all)."""
    g = Graph()
    x = g.input("x", TensorType(shape, d))
    gy = g.input("g", TensorType((*shape[:2], *attrs["out"]), d))
    outs = [g.call(p, [x], attrs) for p in ("max_pool", "max_pool_index")]
    outs.append(g.call("max_pool_grad", [x, gy], attrs))
    if avg:
        for include_pad, divisor in [(True, 0), (False, 0), (False, 3)]:
            a = dict(attrs, count_include_pad=include_pad, divisor=divisor)
            outs += [g.call("avg_pool", [x], a), g.call("avg_pool_grad", [gy], dict(a, size=shape[2:]))]
    g.outputs = outs
    return g


def check(g: Graph, xs) -> None:
    got, want = HostModule(emit(g, single_groups(g))).run(xs), interpret(g, *xs)
    for o, a, b in zip(g.outputs, got, want):
        assert a.dtype == b.dtype and a.shape == b.shape, o.target
        np.testing.assert_array_equal(a, b, err_msg=f"{o.name} ({o.target})")  # the same sums in the same order


@pytest.mark.parametrize("shape,attrs", WINDOWS[1:-1], ids=str)
def test_every_pooling_kernel(shape, attrs):
    g = every_pool(shape, attrs, avg=attrs["dilation"] == (1, 1))
    rng = np.random.default_rng(3)
    check(g, [values(n.type.shape, dt.float32, rng, specials=False) for n in g.inputs])


def test_ties_nan_and_minus_infinity():
    shape, attrs = (2, 2, 7, 7), window((7, 7), (3, 3), (2, 2), (1, 1))
    rng = np.random.default_rng(4)
    x = rng.integers(0, 3, shape).astype(np.float32)
    x[0, 0, 2, 2] = x[0, 0, 2, 3] = np.nan
    x[1, 1] = -np.inf
    check(every_pool(shape, attrs, avg=False), [x, rng.standard_normal((2, 2, 4, 4)).astype(np.float32)])


@pytest.mark.parametrize("d", [dt.float64, dt.int64, dt.int8])
def test_dtypes(d):
    shape, attrs = WINDOWS[1]
    g = every_pool(shape, attrs, d)
    rng = np.random.default_rng(5)
    check(g, [values(n.type.shape, d, rng, specials=False) for n in g.inputs])
