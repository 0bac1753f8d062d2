"""torch.linalg (norm, vector_norm, matrix_norm, inv, solve) against torch: values, gradients
(and float64 finite differences), errors, and compiled (interpreter, llvm) equal to eager."""

import math

import numpy as np
import pytest
from conftest import compare, gradcheck, raises_like, randn

import graphtorch as gt

INF = math.inf


@pytest.mark.parametrize("ord", [2, 1, INF, -INF, 0, 3, 0.5])
@pytest.mark.parametrize("dim", [None, 1, (0, 2), -1])
def test_vector_norm_matches_torch(torch, ord, dim):
    compare(lambda L, t: L.linalg.vector_norm(t, ord, dim), randn(3, 4, 5), rtol=1e-5, atol=1e-6)
    compare(lambda L, t: L.linalg.vector_norm(t, ord, dim, keepdim=True), randn(3, 4, 5), rtol=1e-5, atol=1e-6)


def test_two_norm_gradient_at_zero_is_zero_like_torch(torch):
    compare(lambda L, t: L.linalg.vector_norm(t, dim=1), np.zeros((2, 3), np.float32))
    gradcheck(lambda a: gt.linalg.vector_norm(a, 2, 1), [randn(3, 4, dtype=np.float64)])
    gradcheck(lambda a: gt.linalg.vector_norm(a, 3, None), [randn(3, 4, dtype=np.float64)])


@pytest.mark.parametrize("ord", ["fro", 1, -1, INF, -INF])
@pytest.mark.parametrize("dim", [(-2, -1), (0, 2), (2, 1)])
def test_matrix_norm_matches_torch(torch, ord, dim):
    compare(lambda L, t: L.linalg.matrix_norm(t, ord, dim), randn(3, 4, 5), rtol=1e-5, atol=1e-6)
    compare(lambda L, t: L.linalg.matrix_norm(t, ord, dim, keepdim=True), randn(3, 4, 5), rtol=1e-5, atol=1e-6)
    gradcheck(lambda a: gt.linalg.matrix_norm(a, ord, dim), [randn(3, 4, 5, dtype=np.float64)])


@pytest.mark.parametrize("ord, dim", [(None, None), (None, 1), (1, 0), ("fro", None), (INF, (0, 1)), (-1, None)])
def test_norm_dispatches_like_torch(torch, ord, dim):
    compare(lambda L, t: L.linalg.norm(t, ord, dim), randn(3, 4), rtol=1e-5, atol=1e-6)


def test_norm_errors_match_torch(torch):
    raises_like(lambda: torch.linalg.norm(torch.ones(3, 4), "fro", 1), lambda: gt.linalg.norm(gt.ones(3, 4), "fro", 1))
    raises_like(lambda: torch.linalg.norm(torch.ones(2, 3, 4), 2), lambda: gt.linalg.norm(gt.ones(2, 3, 4), 2))
    raises_like(lambda: torch.linalg.matrix_norm(torch.ones(3)), lambda: gt.linalg.matrix_norm(gt.ones(3)))
    raises_like(lambda: torch.linalg.vector_norm(torch.arange(3)), lambda: gt.linalg.vector_norm(gt.arange(3)))


def _well_conditioned(*shape, seed=0):
    return randn(*shape, dtype=np.float64, seed=seed) + 4 * np.eye(shape[-1])


def test_inv_matches_torch_with_gradients(torch):
    compare(lambda L, a: L.linalg.inv(a), _well_conditioned(2, 3, 3), rtol=1e-10, atol=1e-12)
    gradcheck(gt.linalg.inv, [_well_conditioned(2, 3, 3)])
    raises_like(lambda: torch.linalg.inv(torch.ones(2, 3)), lambda: gt.linalg.inv(gt.ones(2, 3)))
    raises_like(lambda: torch.linalg.inv(torch.ones(3, 3, dtype=torch.long)),
                lambda: gt.linalg.inv(gt.ones(3, 3, dtype=gt.long)))


@pytest.mark.parametrize("a_shape, b_shape", [((3, 3), (3,)), ((3, 3), (3, 2)), ((2, 3, 3), (2, 3)),
                                              ((2, 3, 3), (2, 3, 4)), ((2, 3, 3), (3, 4))])
def test_solve_matches_torch_with_gradients(torch, a_shape, b_shape):
    a, b = _well_conditioned(*a_shape), randn(*b_shape, dtype=np.float64, seed=1)
    compare(lambda L, x, y: L.linalg.solve(x, y), a, b, rtol=1e-10, atol=1e-12)
    gradcheck(gt.linalg.solve, [a, b])


def test_solve_right_and_errors_match_torch(torch):
    a, b = _well_conditioned(3, 3), randn(2, 3, dtype=np.float64, seed=1)
    compare(lambda L, x, y: L.linalg.solve(x, y, left=False), a, b, rtol=1e-10, atol=1e-12)
    raises_like(lambda: torch.linalg.solve(torch.ones(2, 3), torch.ones(2)),
                lambda: gt.linalg.solve(gt.ones(2, 3), gt.ones(2)))
    raises_like(lambda: torch.linalg.solve(torch.ones(3, 3), torch.ones(2)),
                lambda: gt.linalg.solve(gt.ones(3, 3), gt.ones(2)))
    raises_like(lambda: torch.linalg.solve(torch.ones(3, 3), torch.ones(3, dtype=torch.float64)),
                lambda: gt.linalg.solve(gt.ones(3, 3), gt.ones(3, dtype=gt.float64)))


@pytest.mark.parametrize("backend", ["interpreter", "llvm"])
def test_norms_compiled_equal_eager(backend):
    def fn(a):
        return (gt.linalg.vector_norm(a, dim=-1) + gt.linalg.matrix_norm(a, 1).unsqueeze(-1)
                + gt.linalg.norm(a, INF, 2))

    a = gt.tensor(randn(2, 3, 5), requires_grad=True)
    compiled = gt.compile(fn, backend=backend)
    compiled(a)  # a function's first call runs eagerly
    want, got = fn(a), compiled(a)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-6)
    grads = [gt.autograd.grad(out.sum(), [a])[0] for out in (want, got)]
    np.testing.assert_allclose(grads[1].numpy(), grads[0].numpy(), rtol=1e-6)
