"""Every optimizer, option by option, against torch: parameters and state after each step."""

from __future__ import annotations

import numpy as np
import pytest
from optim_helpers import DTYPES, assert_close, assert_same_state, make_pair, set_grads

import graphtorch as gt
import graphtorch.optim as gto

torch = pytest.importorskip("torch", reason="torch is the test oracle for the optimizers")

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.5, maximize=True)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.02, amsgrad=True, maximize=True, weight_decay=0.05)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict()),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01, betas=(0.3, 0.5), maximize=True)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.005, centered=True, momentum=0.5, maximize=True, eps=1e-4)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.5, eps=1e-6, maximize=True)),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for name, kw in CASES]


@pytest.mark.parametrize("foreach", [None, False], ids=["native", "numpy"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_steps_match_torch(name, kwargs, dtype, foreach):
    np_dtype, tol = DTYPES[dtype]
    tp, gp, topt, gopt = make_pair(name, dict(kwargs, foreach=foreach), np_dtype=np_dtype)
    rng = np.random.default_rng(1)
    for _ in range(12):
        set_grads(tp, gp, rng)
        topt.step()
        gopt.step()
        assert_same_state(gopt, topt, gp, tp, tol)


def test_step_count_is_a_float32_scalar_tensor():
    tp, gp, topt, gopt = make_pair("Adam", {}, np_dtype=np.float64)
    set_grads(tp, gp, np.random.default_rng(0))
    gopt.step()
    gopt.step()
    step = gopt.state[gp[0]]["step"]
    assert step.dtype is gt.float32 and step.shape == () and step.item() == 2.0


def test_step_count_follows_a_float64_default_dtype_as_torch():
    tp, gp, topt, gopt = make_pair("RMSprop", {}, shapes=[(2,)])
    set_grads(tp, gp, np.random.default_rng(0))
    gt.set_default_dtype(gt.float64)
    torch.set_default_dtype(torch.float64)
    try:
        gopt.step()
        topt.step()
    finally:
        gt.set_default_dtype(gt.float32)
        torch.set_default_dtype(torch.float32)
    assert gopt.state[gp[0]]["step"].dtype is gt.float64
    assert str(topt.state[tp[0]]["step"].dtype) == "torch.float64"


def test_params_without_grad_are_skipped_and_get_no_state():
    tp, gp, topt, gopt = make_pair("Adam", dict(lr=0.1))
    rng = np.random.default_rng(2)
    for _ in range(3):
        set_grads(tp, gp, rng)
        tp[1].grad = gp[1].grad = None
        topt.step()
        gopt.step()
    assert gp[1] not in gopt.state
    assert_same_state(gopt, topt, gp, tp, DTYPES["float32"][1])


def test_plain_sgd_keeps_no_state():
    tp, gp, topt, gopt = make_pair("SGD", dict(lr=0.1))
    set_grads(tp, gp, np.random.default_rng(0))
    gopt.step()
    assert gopt.state_dict()["state"] == {} == topt.state_dict()["state"]


def test_param_groups_with_their_own_hyperparameters():
    tp, gp = make_pair("SGD", {})[:2]
    groups = lambda ps: [{"params": ps[:2], "lr": 0.1, "momentum": 0.9}, {"params": ps[2:]}]
    topt, gopt = torch.optim.SGD(groups(tp), lr=0.01), gto.SGD(groups(gp), lr=0.01)
    assert gopt.param_groups[1]["lr"] == 0.01 and gopt.param_groups[1]["momentum"] == 0
    rng = np.random.default_rng(3)
    for _ in range(5):
        set_grads(tp, gp, rng)
        topt.step()
        gopt.step()
    assert_same_state(gopt, topt, gp, tp, DTYPES["float32"][1])


# ---------------------------------------------------------------- with real gradients


def _mlp_loss(lib, params, x, y):
    w1, b1, w2 = params
    hidden = lib.tanh(x @ w1 + b1)
    return ((hidden @ w2 - y) ** 2).mean()


@pytest.mark.parametrize("name,kwargs", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                         ("Adam", dict(lr=0.01, amsgrad=True)), ("AdamW", dict(lr=0.01)),
                                         ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
                                         ("Adagrad", dict(lr=0.1, lr_decay=0.01))])
def test_training_a_two_layer_model_matches_torch(name, kwargs):
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((16, 3)), rng.standard_normal((16, 2))
    tp, gp, topt, gopt = make_pair(name, kwargs, shapes=[(3, 8), (8,), (8, 2)], np_dtype=np.float64)
    tx, ty, gx, gy = torch.tensor(x), torch.tensor(y), gt.tensor(x), gt.tensor(y)
    losses = []
    for _ in range(10):
        topt.zero_grad()
        gopt.zero_grad()
        _mlp_loss(torch, tp, tx, ty).backward()
        loss = _mlp_loss(gt, gp, gx, gy)
        loss.backward()
        topt.step()
        gopt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]  # it trains
    assert_same_state(gopt, topt, gp, tp, dict(rtol=1e-10, atol=1e-12))


def test_closure_is_evaluated_with_grad_enabled_and_its_loss_returned():
    tp, gp, topt, gopt = make_pair("SGD", dict(lr=0.1), shapes=[(4,)], np_dtype=np.float64)

    def closure(lib, params, opt):
        def run():
            opt.zero_grad()
            loss = (params[0] ** 2).sum()
            loss.backward()
            return loss
        return run

    for _ in range(3):
        with gt.no_grad():
            gloss = gopt.step(closure(gt, gp, gopt))
        with torch.no_grad():
            tloss = topt.step(closure(torch, tp, topt))
        assert gloss.item() == pytest.approx(tloss.item(), rel=1e-14)
    assert_close(gp[0], tp[0], dict(rtol=1e-14, atol=0))


def test_update_does_not_record_autograd_history():
    gp = [gt.tensor([1.0, 2.0], requires_grad=True)]
    opt = gto.Adam(gp, lr=0.1)
    gp[0].grad = gt.tensor([0.5, -0.5])
    opt.step()
    assert gp[0].is_leaf and gp[0].requires_grad and gp[0].grad_fn is None
    assert all(v.grad_fn is None and not v.requires_grad for v in opt.state[gp[0]].values())
