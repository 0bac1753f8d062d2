"""sort/topk/kthvalue/median, cumprod/cummax/cummin, roll/diag/diagonal, einsum and torch.linalg
against torch: values, indices, dtypes, gradients, errors; gradients by float64 finite differences."""

import numpy as np
import pytest
from conftest import assert_same, compare, gradcheck, raises_like, randn

import graphtorch as gt


def _distinct(*shape, seed=0):
    """Values without ties, so every index torch picks is the only right one."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n).reshape(shape) / n - 0.5).astype(np.float64)


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("descending", [False, True])
def test_sort_and_argsort(torch, dim, descending):
    compare(lambda L, x: tuple(L.sort(x, dim, descending)), _distinct(4, 5))
    compare(lambda L, x: L.argsort(x, dim, descending), _distinct(4, 5), grad=False)


def test_sort_is_stable_puts_nan_last_and_keeps_ties_in_order(torch):
    x = np.array([[2.0, 1.0, np.nan, 1.0, 2.0, -np.inf]])
    for descending in (False, True):
        got, want = gt.sort(gt.tensor(x), descending=descending), torch.sort(torch.tensor(x), descending=descending,
                                                                           stable=True)
        assert_same(got.values, want.values)
        assert_same(got.indices, want.indices)
    x = np.array([3, 1, 2, 1, 3])
    assert_same(gt.tensor(x).sort(stable=True).indices, torch.tensor(x).sort(stable=True).indices)
    assert repr(gt.sort(gt.tensor([2.0, 1.0]))).startswith("torch.return_types.sort(\nvalues=tensor([1., 2.])")


@pytest.mark.parametrize("largest", [True, False])
def test_topk(torch, largest):
    compare(lambda L, x: tuple(L.topk(x, 3, 1, largest)), _distinct(4, 6))
    compare(lambda L, x: tuple(x.topk(2, dim=0, largest=largest)), _distinct(4, 6))
    raises_like(lambda: torch.topk(torch.ones(3), 4), lambda: gt.topk(gt.ones(3), 4))


def test_kthvalue_and_median(torch):
    compare(lambda L, x: tuple(L.kthvalue(x, 2, 1)), _distinct(3, 5))
    compare(lambda L, x: tuple(L.kthvalue(x, 3, 0, keepdim=True)), _distinct(3, 5))
    compare(lambda L, x: tuple(L.median(x, 1)), _distinct(3, 5))
    compare(lambda L, x: tuple(x.median(0, keepdim=True)), _distinct(4, 5))
    compare(lambda L, x: L.median(x), _distinct(4, 5))
    raises_like(lambda: torch.kthvalue(torch.ones(3), 4), lambda: gt.kthvalue(gt.ones(3), 4))


@pytest.mark.parametrize("dim", [0, 1])
def test_cumprod_with_zeros_and_its_gradient(torch, dim):
    x = randn(4, 5, dtype=np.float64)
    x[1, 2] = x[2, 0] = x[3, 3] = 0.0  # the gradient must stay exact where the product is zero
    compare(lambda L, t: L.cumprod(t, dim), x)
    compare(lambda L, t: t.cumprod(dim), np.arange(1, 7).reshape(2, 3), grad=False)  # ints: int64
    gradcheck(lambda t: gt.cumprod(t, dim), [x])


@pytest.mark.parametrize("name", ["cummax", "cummin"])
def test_cummax_cummin(torch, name):
    compare(lambda L, x: tuple(getattr(L, name)(x, 1)), _distinct(3, 6))
    ties = np.array([[1.0, 3.0, 3.0, 2.0, np.nan, 5.0, np.nan], [0.0, 0.0, -1.0, -1.0, 4.0, 4.0, 4.0]])
    got, want = getattr(gt, name)(gt.tensor(ties), 1), getattr(torch, name)(torch.tensor(ties), 1)
    assert_same(got.values, want.values)
    assert_same(got.indices, want.indices)


@pytest.mark.parametrize("shifts,dims", [(2, 1), (-7, 0), ((1, -2), (0, 2)), (3, None), (0, 1)])
def test_roll(torch, shifts, dims):
    compare(lambda L, x: L.roll(x, shifts, dims), randn(3, 4, 5))
    raises_like(lambda: torch.roll(torch.ones(2, 2), (1, 1), 0), lambda: gt.roll(gt.ones(2, 2), (1, 1), 0))


@pytest.mark.parametrize("offset", [-3, -1, 0, 2, 7])
def test_diagonal_and_diag(torch, offset):
    compare(lambda L, x: L.diagonal(x, offset, 1, 2), randn(2, 4, 5))
    compare(lambda L, x: x.diagonal(offset, 2, 0), randn(2, 4, 5))
    compare(lambda L, x: L.diag(x, offset), randn(4, 3))
    compare(lambda L, x: L.diag(x, offset), randn(4))
    raises_like(lambda: torch.diag(torch.ones(2, 2, 2)), lambda: gt.diag(gt.ones(2, 2, 2)))


@pytest.mark.parametrize("equation,shapes", [
    ("ij,jk->ik", [(3, 4), (4, 5)]), ("ij,jk", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("ii->i", [(4, 4)]), ("ii", [(4, 4)]), ("i,j->ij", [(3,), (4,)]), ("ij->", [(3, 4)]), ("ij->ji", [(3, 4)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]), ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("ijk,jil->kl", [(2, 3, 4), (3, 2, 5)]), ("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 5)]), ("iij->j", [(3, 3, 2)]),
])
def test_einsum(torch, equation, shapes):
    arrays = [randn(*s, seed=k, dtype=np.float64) for k, s in enumerate(shapes)]
    compare(lambda L, *xs: L.einsum(equation, *xs), *arrays, rtol=1e-10, atol=1e-12)
    compare(lambda L, *xs: L.einsum(equation, list(xs)), *arrays, rtol=1e-10, atol=1e-12)


def test_einsum_errors(torch):
    raises_like(lambda: torch.einsum("ij,jk", torch.ones(2, 2)), lambda: gt.einsum("ij,jk", gt.ones(2, 2)))
    raises_like(lambda: torch.einsum("ijk", torch.ones(2, 2)), lambda: gt.einsum("ijk", gt.ones(2, 2)),
                match="einsum(): the number of subscripts in the equation (3) does not match the number of dimensions")


def _spd(n, batch=(), seed=0):
    a = randn(*batch, n, n, seed=seed, dtype=np.float64)
    return a @ np.swapaxes(a, -1, -2) + n * np.eye(n)


@pytest.mark.parametrize("ord", [2, 1, 0, 3.5, float("inf"), float("-inf")])
def test_vector_norm(torch, ord):
    x = randn(3, 4, dtype=np.float64)
    compare(lambda L, t: L.linalg.vector_norm(t, ord), x, grad=ord != 0)
    compare(lambda L, t: L.linalg.vector_norm(t, ord, dim=1, keepdim=True), x, grad=ord != 0)


@pytest.mark.parametrize("ord", ["fro", 1, -1, float("inf"), float("-inf")])
def test_matrix_norm_and_norm(torch, ord):
    compare(lambda L, t: L.linalg.matrix_norm(t, ord), randn(2, 3, 4, dtype=np.float64))
    compare(lambda L, t: L.linalg.norm(t, ord, dim=(0, 1)), randn(3, 4, dtype=np.float64))
    compare(lambda L, t: L.linalg.norm(t), randn(3, 4, dtype=np.float64))


def test_det_slogdet_logdet_inv_solve(torch):
    a = randn(2, 3, 3, dtype=np.float64) + 2 * np.eye(3)
    compare(lambda L, t: L.linalg.det(t), a, rtol=1e-10, atol=1e-12)
    compare(lambda L, t: tuple(L.linalg.slogdet(t)), a, rtol=1e-10, atol=1e-12, grad=False)
    compare(lambda L, t: L.linalg.slogdet(t).logabsdet, a, rtol=1e-10, atol=1e-12)
    compare(lambda L, t: L.logdet(t), _spd(3), rtol=1e-10, atol=1e-12)
    compare(lambda L, t: L.linalg.inv(t), a, rtol=1e-10, atol=1e-12)
    compare(lambda L, t, b: L.linalg.solve(t, b), a, randn(2, 3, 2, dtype=np.float64), rtol=1e-9, atol=1e-12)
    compare(lambda L, t, b: L.linalg.solve(t, b), a[0], randn(3, dtype=np.float64), rtol=1e-9, atol=1e-12)
    raises_like(lambda: torch.linalg.det(torch.ones(2, 3)), lambda: gt.linalg.det(gt.ones(2, 3)))


def test_cholesky(torch):
    compare(lambda L, t: L.linalg.cholesky(t), _spd(4, (2,)), rtol=1e-9, atol=1e-12, grad=False)
    compare(lambda L, t: L.linalg.cholesky(t, upper=True), _spd(3), rtol=1e-9, atol=1e-12, grad=False)
    with pytest.raises(RuntimeError, match="the input is not positive-definite"):  # torch's LinAlgError is one
        gt.linalg.cholesky(-gt.eye(2))


def test_linalg_gradients_by_finite_differences():
    a = randn(2, 3, 3, dtype=np.float64) + 2 * np.eye(3)
    gradcheck(lambda t: gt.linalg.det(t), [a])
    gradcheck(lambda t: gt.linalg.slogdet(t).logabsdet, [a])
    gradcheck(lambda t: gt.linalg.solve(t, gt.tensor(np.ones((2, 3, 2)))), [a])
    # a symmetric function of x, so the gradient of the lower-triangle reader is well defined
    gradcheck(lambda t: gt.linalg.cholesky(t @ t.transpose(-1, -2) + gt.eye(3) * 3), [randn(3, 3, dtype=np.float64)])
    gradcheck(lambda t: gt.sort(t, 1).values * gt.topk(t, 2, 0).values.sum(), [_distinct(3, 4)])
    gradcheck(lambda t: gt.cummax(t, 1).values + gt.einsum("ij,kj->ik", t, t)[:, :1], [_distinct(3, 4)])
