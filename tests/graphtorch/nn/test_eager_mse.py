"""mse_loss's one-op eager path (nn/_eager_mse.py): values, gradients, grad_fn, double backward and
in-place errors as torch's; a float64 finite-difference check; traced and compiled it is the
composed form, equal to eager."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_same, gradcheck, loss_eager_then_compiled, pair, randn

import graphtorch as gt
import graphtorch.nn.functional as F

torch = pytest.importorskip("torch", reason="torch is the test oracle for the losses")

TOL = {np.float32: dict(rtol=1e-6, atol=1e-7), np.float64: dict(rtol=1e-12, atol=1e-14)}


@pytest.mark.parametrize("shape", [(4, 3), (7,), ()])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("np_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("grads", [(True, False), (True, True), (False, True)])
def test_values_gradients_and_grad_fn_match_torch(shape, reduction, np_dtype, grads):
    (gx, tx), (gy, ty) = pair(randn(*shape, dtype=np_dtype), torch, grads[0]), \
        pair(randn(*shape, dtype=np_dtype, seed=1), torch, grads[1])
    g, t = F.mse_loss(gx, gy, reduction=reduction), torch.nn.functional.mse_loss(tx, ty, reduction=reduction)
    assert_same(g, t, **TOL[np_dtype], what="loss")
    assert g.grad_fn.name() == t.grad_fn.name() == "MseLossBackward0"
    g.backward(gt.tensor(np.asarray(1.5, np_dtype)))
    t.backward(torch.tensor(1.5, dtype=t.dtype))
    for gv, tv in ((gx, tx), (gy, ty)):
        if tv.requires_grad:
            assert_same(gv.grad, tv.grad, **TOL[np_dtype], what="grad")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_finite_differences_float64(reduction):
    gradcheck(lambda x, y: F.mse_loss(x, y, reduction=reduction), [randn(3, 4, dtype=np.float64),
                                                                   randn(3, 4, dtype=np.float64, seed=2)])


def test_double_backward_matches_torch():
    (gx, tx), (gy, ty) = pair(randn(5, dtype=np.float64), torch, True), pair(randn(5, dtype=np.float64, seed=1), torch)
    (gg,) = gt.autograd.grad(F.mse_loss(gx, gy), [gx], create_graph=True)
    (tg,) = torch.autograd.grad(torch.nn.functional.mse_loss(tx, ty), [tx], create_graph=True)
    assert_same(gg, tg, rtol=1e-12)
    (gg * gg).sum().backward()
    (tg * tg).sum().backward()
    assert_same(gx.grad, tx.grad, rtol=1e-12)


def test_an_input_modified_in_place_after_the_loss_is_torchs_error():
    x = gt.tensor(randn(3), requires_grad=True)
    y = x * 2
    loss = F.mse_loss(y, gt.zeros(3))
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_compiled_equals_eager():
    model = gt.nn.Linear(3, 1)
    x, y = gt.tensor(randn(8, 3)), gt.tensor(randn(8, 1, seed=1))
    results = loss_eager_then_compiled(model, lambda x, y: F.mse_loss(model(x), y), x, y)
    assert results[0][2] == "MseLossBackward0" and results[2][2] == "CompiledFunctionBackward"
    np.testing.assert_allclose(results[2][0], results[0][0], rtol=1e-6)
    np.testing.assert_allclose(results[2][1], results[0][1], rtol=1e-5, atol=1e-6)
