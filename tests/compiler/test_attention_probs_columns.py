"""attention_probs by columns (compiler/llvm/attention.py): for short key rows a query row's
scores are one vector, q's elements times the rows of k^T, copied into scratch once per head and
per thread. Compiled equals the numpy kernel on the GPT's shape, odd shapes, a bias broadcast
over keys, rows masked whole, two threads splitting a head, and on the dot-product path it falls
back to (long key rows, wide k^T)."""

from __future__ import annotations

import numpy as np
import pytest
from llvm_helpers import compiled, interpret

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.fusion import fuse
from graphtorch.compiler.ir import Graph
from graphtorch.compiler.llvm import module
from graphtorch.compiler.llvm.attention import MAX_KT_ELEMENTS, MAX_SCORE_VECTOR


def probs_graph(batch, tq, tk, d, bias_shape, causal, dtype, masked_rows="nan") -> Graph:
    g = Graph()
    t = lambda *s: TensorType(tuple(s), dtype)
    q, k, bias = g.input("q", t(*batch, tq, d)), g.input("k", t(*batch, tk, d)), g.input("bias", t(*bias_shape))
    attrs = {"scale": d ** -0.5, "causal": causal, "masked_rows": masked_rows}
    g.outputs = [g.call("attention_probs", [q, k, bias], attrs)]
    return g


def tril_bias(tq: int, tk: int, dtype) -> np.ndarray:
    """The GPT's mask: 0 on and below the diagonal, -inf above."""
    return np.where(np.tril(np.ones((tq, tk), dtype=bool)), 0.0, -np.inf).astype(dtype)


def check(g: Graph, seed: int = 0, rtol: float = 1e-12, **kw) -> None:
    rng = np.random.default_rng(seed)
    q, k, bias = (rng.standard_normal(n.type.shape).astype(n.type.dtype.np) for n in g.inputs)
    if bias.shape[-1] > 1:
        bias[rng.random(bias.shape) < 0.2] = -np.inf
        bias[..., 0, :] = -np.inf  # the first row masked whole: NaN (masked_rows="nan") or zeros
    got = compiled(g, q, k, bias, groups=fuse(g).groups, **kw)[0]
    want = interpret(g, q, k, bias)[0]
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 1e-3, equal_nan=True)


def test_the_gpt_heads_float32():
    g = probs_graph((4, 4), 32, 32, 16, (1, 1, 32, 32), False, dt.float32)
    rng = np.random.default_rng(1)
    q, k = (rng.standard_normal(n.type.shape).astype(np.float32) for n in g.inputs[:2])
    bias = tril_bias(32, 32, np.float32)[None, None]
    got = compiled(g, q, k, bias, groups=fuse(g).groups)[0]
    want = interpret(g, q, k, bias)[0]
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)  # float32 exp: vecmath.py's bound
    assert (got[..., np.triu_indices(32, 1)[0], np.triu_indices(32, 1)[1]] == 0).all()


@pytest.mark.parametrize("case", [
    ((2, 3), 7, 9, 5, (1, 1, 1, 1), True),  # odd lengths, causal
    ((3,), 13, 5, 3, (3, 13, 5), False),  # a full bias, more queries than keys
    ((2,), 6, 11, 4, (2, 6, 1), False),  # the bias broadcast over keys: one value a row
    ((), 1, 1, 1, (1, 1), False),
    ((2,), 5, MAX_SCORE_VECTOR, 2, (1, 5, MAX_SCORE_VECTOR), True),  # the widest score vector
], ids=str)
@pytest.mark.parametrize("masked_rows", ["zero", "nan"])
def test_by_columns_equals_the_numpy_kernel(case, masked_rows):
    check(probs_graph(*case, dt.float64, masked_rows))


@pytest.mark.parametrize("case", [
    ((2,), 4, MAX_SCORE_VECTOR + 1, 3, (1, 4, MAX_SCORE_VECTOR + 1), False),  # too many keys for one vector
    ((1,), 3, 64, MAX_KT_ELEMENTS // 64 + 1, (1, 3, 64), True),  # k^T too big for the scratch
], ids=str)
def test_dot_product_path_equals_the_numpy_kernel(case):
    check(probs_graph(*case, dt.float64))


def test_two_threads_splitting_heads_mid_way(monkeypatch):
    """3 x 7 rows over 2 threads: the second thread starts inside head 1 and must copy its k^T
    first (every kernel runs threaded with the work threshold at 0)."""
    monkeypatch.setattr(module, "PARALLEL_WORK", 0)
    check(probs_graph((3,), 7, 9, 5, (1, 7, 9), False, dt.float64), seed=4, num_threads=2)


@pytest.mark.parametrize("tk", [9, MAX_SCORE_VECTOR + 1], ids=["by columns", "by keys"])
def test_a_nan_score_makes_its_row_nan_as_numpy(tk):
    """numpy's max propagates NaN, so a row with a NaN score is NaN throughout, even when every
    other key is masked (masked_rows="zero" does not turn it into zeros); other rows are finite."""
    g = probs_graph((2,), 4, tk, 3, (1, 4, tk), False, dt.float64, masked_rows="zero")
    rng = np.random.default_rng(5)
    q, k = (rng.standard_normal(n.type.shape) for n in g.inputs[:2])
    bias = np.zeros((1, 4, tk))
    k[0, 0, 1] = np.nan  # key 0 of head 0: a NaN score in every row of head 0
    bias[0, 2, 1:] = -np.inf  # row 2 sees key 0 only
    got = compiled(g, q, k, bias, groups=fuse(g).groups)[0]
    want = interpret(g, q, k, bias)[0]
    assert np.isnan(want[0]).all() and np.isfinite(want[1]).all()
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
