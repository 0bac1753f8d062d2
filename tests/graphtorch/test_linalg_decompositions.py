"""torch.linalg.qr, svd, svdvals and the singular-value matrix norms (2, -2, 'nuc') against torch:
values, gradients, float64 finite differences, errors, and compiled (interpreter, llvm) equal to eager.
U and Vh are unique only up to the sign of each column/row, so they are compared through sign-free
functions (|U|, U diag(S) Vh)."""

import math

import numpy as np
import pytest
from conftest import compare, gradcheck, raises_like, randn

import graphtorch as gt

SHAPES = [(5, 3), (3, 3), (3, 5), (2, 4, 3), (2, 3, 4)]


def _a(shape, seed=0):
    return randn(*shape, dtype=np.float64, seed=seed)


# complete mode with more rows than columns has no derivative (test_qr_errors_match_torch)
@pytest.mark.parametrize("shape, mode", [(s, m) for s in SHAPES for m in ("reduced", "complete")
                                         if m == "reduced" or s[-2] <= s[-1]])
@pytest.mark.parametrize("part", [0, 1])
def test_qr_matches_torch_with_gradients(torch, shape, mode, part):
    compare(lambda L, a: L.linalg.qr(a, mode)[part], _a(shape), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_qr_complete_and_r_modes_match_torch(torch, shape):
    compare(lambda L, a: L.linalg.qr(a, "complete"), _a(shape), rtol=1e-10, atol=1e-12, grad=False)
    q, r = gt.linalg.qr(gt.tensor(_a(shape)), mode="r")
    want = torch.linalg.qr(torch.tensor(_a(shape)), mode="r")
    assert tuple(q.shape) == tuple(want.Q.shape) == (0,)
    np.testing.assert_allclose(r.numpy(), want.R.numpy(), rtol=1e-10, atol=1e-12)


def test_qr_float32_empty_and_result_type(torch):
    compare(lambda L, a: L.linalg.qr(a), randn(2, 6, 4), rtol=1e-5, atol=1e-5)
    for shape in [(0, 3), (3, 0), (2, 0, 3)]:
        got, want = gt.linalg.qr(gt.zeros(*shape)), torch.linalg.qr(torch.zeros(*shape))
        assert [tuple(t.shape) for t in got] == [tuple(t.shape) for t in want]
    result = gt.linalg.qr(gt.tensor(_a((3, 2))))
    assert result.Q is result[0] and result.R is result[1]


def test_qr_errors_match_torch(torch):
    raises_like(lambda: torch.linalg.qr(torch.ones(3)), lambda: gt.linalg.qr(gt.ones(3)))
    raises_like(lambda: torch.linalg.qr(torch.ones(3, 3), mode="foo"), lambda: gt.linalg.qr(gt.ones(3, 3), mode="foo"))
    raises_like(lambda: torch.linalg.qr(torch.ones(3, 3, dtype=torch.long)),
                lambda: gt.linalg.qr(gt.ones(3, 3, dtype=gt.long)))
    for mode, shape, part in [("r", (4, 3), 1), ("complete", (5, 3), 0), ("complete", (5, 3), 1)]:
        def backward(L, mode=mode, shape=shape, part=part):
            a = L.tensor(_a(shape), requires_grad=True)
            L.linalg.qr(a, mode=mode)[part].sum().backward()
        raises_like(lambda: backward(torch), lambda: backward(gt))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("full", [False, True])
def test_svd_matches_torch_with_gradients(torch, shape, full):
    k = min(shape[-2:])
    compare(lambda L, a: L.linalg.svd(a, full)[1], _a(shape), rtol=1e-10, atol=1e-12)
    compare(lambda L, a: L.linalg.svd(a, full)[0][..., :k].abs(), _a(shape), rtol=1e-10, atol=1e-12)
    compare(lambda L, a: L.linalg.svd(a, full)[2][..., :k, :].abs(), _a(shape), rtol=1e-10, atol=1e-12)
    u, s, vh = gt.linalg.svd(gt.tensor(_a(shape)), full)
    want = [tuple(t.shape) for t in torch.linalg.svd(torch.tensor(_a(shape)), full)]
    assert [tuple(u.shape), tuple(s.shape), tuple(vh.shape)] == want
    rebuilt = (u[..., :k] * s.unsqueeze(-2)) @ vh[..., :k, :]
    np.testing.assert_allclose(rebuilt.numpy(), _a(shape), atol=1e-12)


def test_svd_reconstruction_gradient_and_svdvals(torch):
    compare(lambda L, a: (lambda u, s, vh: (u * s.unsqueeze(-2)) @ vh)(*L.linalg.svd(a, False)), _a((2, 4, 3)),
            rtol=1e-10, atol=1e-12)
    compare(lambda L, a: L.linalg.svdvals(a), _a((2, 3, 5)), rtol=1e-10, atol=1e-12)
    compare(lambda L, a: L.linalg.svdvals(a), randn(4, 4), rtol=1e-5, atol=1e-5)
    assert gt.linalg.svdvals(gt.zeros(0, 3)).shape == torch.linalg.svdvals(torch.zeros(0, 3)).shape


def test_svd_errors_match_torch(torch):
    raises_like(lambda: torch.linalg.svd(torch.ones(3)), lambda: gt.linalg.svd(gt.ones(3)))
    raises_like(lambda: torch.linalg.svdvals(torch.ones(3)), lambda: gt.linalg.svdvals(gt.ones(3)))
    raises_like(lambda: torch.linalg.svd(torch.ones(3, 3, dtype=torch.long)),
                lambda: gt.linalg.svd(gt.ones(3, 3, dtype=gt.long)))


@pytest.mark.parametrize("ord", ["nuc", 2, -2])
@pytest.mark.parametrize("dim", [(-2, -1), (0, 2), (2, 1)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_spectral_matrix_norms_match_torch(torch, ord, dim, keepdim):
    compare(lambda L, t: L.linalg.matrix_norm(t, ord, dim, keepdim), randn(3, 4, 5), rtol=1e-5, atol=1e-5)
    gradcheck(lambda a: gt.linalg.matrix_norm(a, ord, dim, keepdim), [_a((3, 4, 5))])


@pytest.mark.parametrize("ord, dim", [("nuc", None), (2, None), (-2, None), (2, (0, 1)), ("nuc", (1, 0))])
def test_norm_dispatches_spectral_like_torch(torch, ord, dim):
    compare(lambda L, t: L.linalg.norm(t, ord, dim), randn(3, 4), rtol=1e-5, atol=1e-5)
    compare(lambda L, t: L.linalg.norm(t, ord, (0, 2)), randn(3, 2, 4), rtol=1e-5, atol=1e-5)


def test_spectral_norm_errors_and_dtype_match_torch(torch):
    raises_like(lambda: torch.linalg.matrix_norm(torch.ones(3), 2), lambda: gt.linalg.matrix_norm(gt.ones(3), 2))
    raises_like(lambda: torch.linalg.matrix_norm(torch.ones(3, 3), "nuc", dim=(0, 0)),
                lambda: gt.linalg.matrix_norm(gt.ones(3, 3), "nuc", dim=(0, 0)))
    raises_like(lambda: torch.linalg.matrix_norm(torch.ones(3, 3), 3), lambda: gt.linalg.matrix_norm(gt.ones(3, 3), 3))
    raises_like(lambda: torch.linalg.norm(torch.ones(3), "nuc"), lambda: gt.linalg.norm(gt.ones(3), "nuc"))
    compare(lambda L, t: L.linalg.matrix_norm(t, 2, dtype=L.float64), randn(3, 3), rtol=1e-6, atol=1e-6)


def test_decomposition_gradients_by_finite_differences():
    for shape in [(4, 3), (3, 5), (2, 3, 3)]:
        gradcheck(lambda t: gt.linalg.qr(t)[0], [_a(shape)])
        gradcheck(lambda t: gt.linalg.qr(t)[1], [_a(shape)])
        gradcheck(lambda t: (lambda u, s, vh: (u * s.unsqueeze(-2)) @ vh + u.abs().sum())(*gt.linalg.svd(t, False)),
                  [_a(shape)])
    gradcheck(lambda t: gt.linalg.norm(t, "nuc") + gt.linalg.norm(t, 2) * gt.linalg.norm(t, -2), [_a((3, 4))])


@pytest.mark.parametrize("backend", ["interpreter", "llvm"])
def test_decompositions_compiled_equal_eager(backend):
    def fn(a):
        q, r = gt.linalg.qr(a)
        u, s, vh = gt.linalg.svd(a, full_matrices=False)
        return (q.sum(-1) + r.sum(-2)[..., :1] + (u * u).sum(-1) + s.sum(-1, keepdim=True)
                + gt.linalg.matrix_norm(a, "nuc").unsqueeze(-1) + gt.linalg.norm(a, 2, (-2, -1)).unsqueeze(-1)
                + gt.linalg.matrix_norm(a, -2).unsqueeze(-1) + (vh * vh).sum(-2)[..., :1])

    a = gt.tensor(_a((2, 4, 3)), requires_grad=True)
    compiled = gt.compile(fn, backend=backend)
    compiled(a)  # a function's first call runs eagerly
    want, got = fn(a), compiled(a)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-12, atol=1e-12)
    grads = [gt.autograd.grad(out.sum(), [a])[0] for out in (want, got)]
    np.testing.assert_allclose(grads[1].numpy(), grads[0].numpy(), rtol=1e-10, atol=1e-12)
    assert not math.isnan(float(grads[1].sum()))
