"""The blocked (FlashAttention-2) attention kernels of compiler/llvm/flash.py against the numpy
kernels: lengths around the 64-row block (1, 7, 63, 65, 130), more queries than keys and fewer,
head sizes that are not a multiple of the vector width (1, 5, 33) and ones whose rows are whole
GEMM panels (16, 32), causal or not, broadcast and full masks with -inf entries and rows masked
whole, at 1 and 2 threads, in float64 and float32."""

from __future__ import annotations

import numpy as np
import pytest
from llvm_helpers import compiled, interpret
from test_attention_kernels import attention_graph, inputs

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.fusion import fuse
from graphtorch.compiler.llvm import flash

# (batch dims, Tq, Tk, D, Dv, bias shape, causal)
ODD = [
    ((2,), 65, 65, 5, 33, (1, 1, 1), True),  # a query block of one row past the first block
    ((1, 2), 130, 130, 33, 5, (1, 1, 130, 130), True),  # three blocks, a full mask
    ((3,), 130, 65, 1, 1, (3, 130, 1), True),  # more queries than keys: the last rows see all
    ((2,), 65, 130, 16, 32, (1, 1, 130), True),  # keys past the last query get no gradient
    ((2,), 7, 130, 32, 16, (2, 7, 130), False),  # one short query block over three key blocks
    ((1,), 63, 1, 5, 5, (1, 63, 1), False),
    ((), 1, 65, 4, 4, (1, 65), True),
    ((), 70, 257, 256, 8, (1, 1), True),  # K of a head over PACKED_HEAD_BYTES: packed per block
]


assert 257 * 256 * 8 > flash.PACKED_HEAD_BYTES >= 130 * 33 * 8  # the last case alone takes the per-block packing


@pytest.mark.parametrize("case", ODD, ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_blocked_kernels_equal_the_numpy_kernels_float64(case, threads):
    g = attention_graph(*case)
    xs = inputs(g, seed=4)
    want = interpret(g, *xs)
    for name, got, ref in zip(("out", "dq", "dk", "dv", "dkv"), compiled(g, *xs, groups=fuse(g).groups, num_threads=threads), want):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("case", ODD[:4], ids=str)
def test_blocked_kernels_float32(case):
    """float32: the GEMMs add in another order and exp is vecmath's (1 ulp): a relative 1e-4 of the
    largest value, over sums of up to 130 products."""
    g = attention_graph(*case, dtype=dt.float32)
    xs = inputs(g, seed=6)
    for name, got, ref in zip(("out", "dq", "dk", "dv", "dkv"), compiled(g, *xs, groups=fuse(g).groups, num_threads=2),
                              interpret(g, *xs)):
        assert got.dtype == np.float32
        finite = np.isfinite(ref)
        np.testing.assert_array_equal(np.isfinite(got), finite, err_msg=name)
        np.testing.assert_allclose(got[finite], ref[finite], rtol=1e-4, atol=1e-4 * np.abs(ref[finite]).max(), err_msg=name)


def test_results_do_not_depend_on_the_thread_count():
    """Each thread owns whole blocks and sums them in one order: 1 and 2 threads agree bit for bit."""
    g = attention_graph((2, 3), 130, 130, 8, 8, (1, 1, 1, 1), True, dtype=dt.float32)
    xs = inputs(g, seed=7)
    one, two = (compiled(g, *xs, groups=fuse(g).groups, num_threads=n) for n in (1, 2))
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_a_row_masked_whole_in_a_later_block_gives_nan_when_asked():
    """masked_rows="nan": the row masked whole sits in the second query block; its NaN reaches its
    output and dq, and every key's dv (each key meets that row), as numpy's does."""
    g = attention_graph((2,), 70, 70, 4, 4, (1, 70, 70), False, masked_rows="nan")
    xs = inputs(g, seed=2)
    xs[3][..., 66, :] = -np.inf
    want = interpret(g, *xs)
    assert np.isnan(want[0][:, 66]).all() and np.isnan(want[3]).all()
    for got, ref in zip(compiled(g, *xs, groups=fuse(g).groups), want):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12, equal_nan=True)

