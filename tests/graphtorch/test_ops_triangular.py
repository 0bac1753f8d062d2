"""tril/triu against torch: values, dtypes, gradients (and float64 finite differences), errors,
the in-place forms, and compiled (interpreter and llvm) equal to eager."""

import numpy as np
import pytest
from conftest import assert_same, compare, gradcheck, raises_like, randn

import graphtorch as gt


@pytest.mark.parametrize("name", ["tril", "triu"])
@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (5, 3), (2, 3, 4), (2, 1, 3, 3), (0, 3)])
@pytest.mark.parametrize("diagonal", [0, 1, -1, 2, -4, 7])
def test_values_and_gradients_match_torch(torch, name, shape, diagonal):
    compare(lambda L, t: getattr(L, name)(t, diagonal), randn(*shape))
    compare(lambda L, t: getattr(t, name)(diagonal=diagonal), randn(*shape))


@pytest.mark.parametrize("name", ["tril", "triu"])
def test_grad_fn_name_and_finite_differences(name):
    x = gt.tensor(randn(3, 4, dtype=np.float64), requires_grad=True)
    assert type(getattr(x, name)()).__name__ == "Tensor"
    assert getattr(x, name)().grad_fn.name() == name.capitalize() + "Backward0"
    gradcheck(lambda a: getattr(gt, name)(a, 1), [randn(2, 3, 4, dtype=np.float64)])


@pytest.mark.parametrize("name", ["tril", "triu"])
@pytest.mark.parametrize("dtype", ["int64", "int32", "bool", "float64"])
def test_dtypes_are_kept(torch, name, dtype):
    data = (randn(3, 4) * 3).astype(dtype)
    g, t = getattr(gt, name)(gt.tensor(data), 1), getattr(torch, name)(torch.tensor(data), 1)
    assert_same(g, t)


@pytest.mark.parametrize("name", ["tril", "triu"])
def test_in_place_forms(torch, name):
    g, t = gt.tensor(randn(3, 4)), torch.tensor(randn(3, 4))
    assert getattr(g, name + "_")(-1) is g
    getattr(t, name + "_")(-1)
    assert_same(g, t)
    compare(lambda L, x: getattr(x * 1, name + "_")(1), randn(4, 3))  # through autograd


@pytest.mark.parametrize("name", ["tril", "triu"])
@pytest.mark.parametrize("shape", [(3,), ()])
def test_fewer_than_two_dims_is_refused_like_torch(torch, name, shape):
    raises_like(lambda: getattr(torch, name)(torch.ones(shape)), lambda: getattr(gt, name)(gt.ones(shape)))
    raises_like(lambda: getattr(torch.ones(shape), name + "_")(), lambda: getattr(gt.ones(shape), name + "_")())


def _compiled(fn, backend, *args):
    compiled = gt.compile(fn, backend=backend)
    compiled(*args)  # a function's first call runs eagerly
    return compiled(*args)


@pytest.mark.parametrize("backend", ["interpreter", "llvm"])
def test_compiled_equals_eager_with_gradients(backend):
    def fn(a):
        return (a.tril(1) * 2 + gt.triu(a, -1).exp()).sum(-1)

    a = gt.tensor(randn(2, 3, 5), requires_grad=True)
    want, got = fn(a), _compiled(fn, backend, a)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-6)
    grads = [gt.autograd.grad(out.sum(), [a])[0] for out in (want, got)]
    np.testing.assert_allclose(grads[1].numpy(), grads[0].numpy(), rtol=1e-6)


@pytest.mark.parametrize("offset", [0, 1, -1, 3, -2, 9])
@pytest.mark.parametrize("dims", [(0, 1), (1, 2), (2, 0), (-1, -2)])
def test_diagonal_matches_torch(torch, offset, dims):
    compare(lambda L, t: L.diagonal(t, offset, *dims), randn(3, 4, 5))
    compare(lambda L, t: t.diagonal(offset=offset, dim1=dims[0], dim2=dims[1]), randn(4, 3, 5))


@pytest.mark.parametrize("offset", [0, 2, -3])
def test_diag_matches_torch_both_ways(torch, offset):
    compare(lambda L, t: L.diag(t, offset), randn(4))
    compare(lambda L, t: t.diag(offset), randn(3, 5))
    assert_same(gt.diag(gt.arange(3), offset), torch.diag(torch.arange(3), offset))
    gradcheck(lambda v: gt.diag(v, offset) * 3, [randn(4, dtype=np.float64)])
    gradcheck(lambda m: gt.diagonal(m, offset, 1, 0), [randn(3, 5, dtype=np.float64)])


def test_diag_and_diagonal_errors_match_torch(torch):
    raises_like(lambda: torch.diag(torch.ones(2, 2, 2)), lambda: gt.diag(gt.ones(2, 2, 2)))
    raises_like(lambda: torch.diagonal(torch.ones(3, 4), 0, 0, 0), lambda: gt.diagonal(gt.ones(3, 4), 0, 0, 0))
    raises_like(lambda: torch.diagonal(torch.ones(3), 0, 0, 1), lambda: gt.diagonal(gt.ones(3), 0, 0, 1))


@pytest.mark.parametrize("shifts, dims", [(1, 0), (-2, 1), ((1, -2), (0, 2)), (7, None), (0, 1), (13, -1)])
def test_roll_matches_torch(torch, shifts, dims):
    compare(lambda L, t: L.roll(t, shifts, dims), randn(3, 4, 5))
    gradcheck(lambda a: gt.roll(a, shifts, dims), [randn(3, 4, 5, dtype=np.float64)])


def test_roll_errors_match_torch(torch):
    raises_like(lambda: torch.roll(torch.ones(3, 4), (1, 2), (0,)), lambda: gt.roll(gt.ones(3, 4), (1, 2), (0,)))
    raises_like(lambda: torch.roll(torch.ones(3, 4), (1, 2)), lambda: gt.roll(gt.ones(3, 4), (1, 2)))


@pytest.mark.parametrize("backend", ["interpreter", "llvm"])
def test_diagonal_diag_roll_compiled_equal_eager(backend):
    def fn(a):
        return gt.diag(a.diagonal(1, 0, 2).sum(0))[:, :3] + a.roll((2, -1), (0, 1)).sum(2) + gt.diag(a[0, 0], -1)[:4, :3]

    a = gt.tensor(randn(4, 3, 5), requires_grad=True)
    want, got = fn(a), _compiled(fn, backend, a)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-6)
    grads = [gt.autograd.grad(out.sum(), [a])[0] for out in (want, got)]
    np.testing.assert_allclose(grads[1].numpy(), grads[0].numpy(), rtol=1e-6)
