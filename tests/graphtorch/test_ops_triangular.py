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
