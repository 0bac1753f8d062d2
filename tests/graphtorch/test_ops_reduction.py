"""Reductions against torch: dim/keepdim, values, dtypes, gradients (ties included), softmax."""

import numpy as np
import pytest
from conftest import assert_same, compare, raises_like, randn

import graphtorch as gt

DIMS = [None, 0, 1, -1, (0, 2), (-1, 0)]


@pytest.mark.parametrize("name", ["sum", "mean", "prod", "std", "var", "norm", "amax", "amin", "logsumexp"])
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("keepdim", [False, True])
def test_reductions_with_dim_and_keepdim(torch, name, dim, keepdim):
    a = randn(3, 5, 7, seed=11)
    if dim is None and name in ("amax", "amin", "logsumexp"):
        dim = () if name != "logsumexp" else (0, 1, 2)
    if dim is None:
        compare(lambda L, x: getattr(x, name)(), a, rtol=1e-5, atol=1e-6)
        return
    if name == "norm":
        compare(lambda L, x: x.norm(dim=dim, keepdim=keepdim), a, rtol=1e-5)
    elif name == "prod" and isinstance(dim, tuple):  # torch.prod takes one dim
        compare(lambda L, x: x.prod(dim[0], keepdim=keepdim), a, rtol=1e-5, atol=1e-6)
    else:
        compare(lambda L, x: getattr(x, name)(dim, keepdim=keepdim), a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn", [lambda x: x.t().sum(0), lambda x: x[:, ::2].mean(1), lambda x: x.t()[1:].std(0)])
def test_reductions_of_non_contiguous_inputs(torch, fn):
    compare(lambda L, x: fn(x), randn(5, 7), rtol=1e-5)


@pytest.mark.parametrize("kw", [dict(unbiased=False), dict(correction=0), dict(correction=2), dict(unbiased=True)])
def test_std_var_corrections(torch, kw):
    a = randn(4, 6, seed=3)
    compare(lambda L, x: x.var(1, **kw), a, rtol=1e-5)
    compare(lambda L, x: x.std(**kw), a, rtol=1e-5)
    compare(lambda L, x: L.std(x, 0, keepdim=True, **kw), a, rtol=1e-5)


@pytest.mark.parametrize("p", [1, 2, 3, float("inf"), "fro", 0.5])
def test_norm_orders(torch, p):
    a = randn(4, 6, seed=4) + 0.01
    compare(lambda L, x: x.norm(p), a, rtol=1e-5)
    compare(lambda L, x: x.norm(p, dim=1), a, rtol=1e-5)


@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_min_with_dim_return_values_and_indices(torch, name, dim, keepdim):
    a = randn(3, 5, 7, seed=12)
    got, want = compare(lambda L, x: getattr(x, name)(dim, keepdim=keepdim), a)
    assert type(got).__name__ == type(want).__name__ == f"{name}"
    assert_same(got.values, want.values)
    assert_same(got.indices, want.indices)
    values, indices = got
    assert values is got[0] and indices is got[1]


def test_max_min_full_reduction_and_ties(torch):
    a = np.array([[1.0, 3.0, 3.0], [0.0, 3.0, -1.0]])
    compare(lambda L, x: x.max(), a)
    compare(lambda L, x: x.min(), a)
    compare(lambda L, x: x.amax(1), a)
    compare(lambda L, x: x.max(1), a)  # first index wins; the gradient goes to that one element
    compare(lambda L, x: x.max(0), np.array([1, 5, 2]), grad=False)
    compare(lambda L, x: L.max(x, x.flip(0)), a)


@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_argmax_argmin(torch, name):
    a = np.array([[1.0, 3.0, 3.0, np.nan], [0.0, -2.0, -2.0, 5.0], [4.0, 4.0, 1.0, 0.0]])
    for dim in [None, 0, 1, -1]:
        compare(lambda L, x, dim=dim: getattr(x, name)(dim), a, grad=False)
        compare(lambda L, x, dim=dim: getattr(L, name)(x, dim, keepdim=True), a, grad=False)
    compare(lambda L, x: getattr(x, name)(), np.array([[3, 1], [7, 7]]), grad=False)


@pytest.mark.parametrize("dtype", [np.bool_, np.int32, np.uint8, np.float64])
def test_any_all(torch, dtype):
    a = np.array([[0, 1, 2], [0, 0, 0], [1, 1, 1]]).astype(dtype)
    for dim in [None, 0, 1]:
        for name in ["any", "all"]:
            if dim is None:
                compare(lambda L, x, name=name: getattr(x, name)(), a, grad=False)
            else:
                compare(lambda L, x, name=name, dim=dim: getattr(x, name)(dim, keepdim=True), a, grad=False)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cumsum(torch, dim):
    compare(lambda L, x: x.cumsum(dim), randn(3, 5, 7)[0], rtol=1e-5)
    compare(lambda L, x: L.cumsum(x, dim), np.arange(12).reshape(3, 4), grad=False)
    compare(lambda L, x: L.cumsum(x, dim), np.ones((2, 3), np.bool_), grad=False)


def test_sum_with_dtype_and_empty(torch):
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    compare(lambda L, x: x.sum(dtype=L.float64), a, grad=False)
    compare(lambda L, x: x.sum(1), np.zeros((2, 0), np.float32), grad=False)
    compare(lambda L, x: x.mean(1), np.zeros((2, 0), np.float32), grad=False)
    compare(lambda L, x: x.prod(), np.zeros((0,), np.float32), grad=False)
    compare(lambda L, x: x.sum(), np.array(2.5, np.float32))
    compare(lambda L, x: x.mean(0), np.array(2.5, np.float32))


def test_prod_with_zeros(torch):
    compare(lambda L, x: x.prod(1), np.array([[1.0, 2.0, 3.0], [2.0, 0.5, 4.0]]))
    compare(lambda L, x: x.prod(), np.array([2.0, 3.0, 4.0]))


def test_reduction_errors(torch):
    raises_like(lambda: torch.tensor([1, 2]).mean(), lambda: gt.tensor([1, 2]).mean())
    raises_like(lambda: torch.ones(2, 3).sum(2), lambda: gt.ones(2, 3).sum(2))
    raises_like(lambda: torch.ones(0).max(), lambda: gt.ones(0).max())


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax(torch, name, dim):
    a = randn(3, 5, 7, seed=13) * 4
    compare(lambda L, x: getattr(x, name)(dim), a, rtol=1e-5, atol=1e-6)
    compare(lambda L, x: getattr(L, name)(x.transpose(0, 2), dim), a, rtol=1e-5, atol=1e-6)
    big = np.array([[1000.0, 0.0, -1000.0], [1.0, 1.0, 1.0]], np.float32)
    compare(lambda L, x: getattr(x, name)(dim=-1), big, rtol=1e-5, atol=1e-6)
    compare(lambda L, x: getattr(x, name)(-1, dtype=L.float64), big, rtol=1e-12)


def test_count_nonzero_and_var_mean(torch):
    a = np.array([[0, 1.5, 0], [2, 0, 3]], np.float32)
    compare(lambda L, x: L.count_nonzero(x), a, grad=False)
    compare(lambda L, x: L.count_nonzero(x, 1), a, grad=False)
    compare(lambda L, x: L.var_mean(x, 1), a, grad=False, rtol=1e-6)
    compare(lambda L, x: L.std_mean(x, 0), a, grad=False, rtol=1e-6)
