"""Learning-rate schedules against torch's, value for value over 35 epochs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from optim_helpers import make_params

import graphtorch.optim as gto
from graphtorch.optim import lr_scheduler as gsched

torch = pytest.importorskip("torch", reason="torch is the test oracle for the optimizers")

EPOCHS = 35
SCHEDULERS = [
    ("StepLR", dict(step_size=7)),
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[5, 12, 12, 30], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=10)),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01)),
    ("LambdaLR", dict(lr_lambda=lambda epoch: 0.95**epoch)),
    ("LambdaLR", dict(lr_lambda=[lambda epoch: 1 / (epoch + 1), lambda epoch: min(1.0, (epoch + 1) / 5)])),
]
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(SCHEDULERS)]


def _pair(name, kwargs):
    """An SGD with two param groups (lr 0.1 and 0.03) and the scheduler, in torch and graphtorch."""
    tp, gp = make_params([(2,), (3,)], np.float32)
    groups = lambda ps: [{"params": ps[:1]}, {"params": ps[1:], "lr": 0.03}]
    topt, gopt = torch.optim.SGD(groups(tp), lr=0.1), gto.SGD(groups(gp), lr=0.1)
    return (getattr(torch.optim.lr_scheduler, name)(topt, **kwargs), getattr(gsched, name)(gopt, **kwargs),
            topt, gopt)


def _run(sched, opt, epochs):
    lrs = [sched.get_last_lr()]
    for _ in range(epochs):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr())
        assert lrs[-1] == [g["lr"] for g in opt.param_groups]
    return lrs


@pytest.mark.parametrize("name,kwargs", SCHEDULERS, ids=IDS)
def test_lr_sequence_equals_torch(name, kwargs):
    tsched, gsched_, topt, gopt = _pair(name, kwargs)
    assert [g["initial_lr"] for g in gopt.param_groups] == [0.1, 0.03] == gsched_.base_lrs
    assert _run(gsched_, gopt, EPOCHS) == _run(tsched, topt, EPOCHS)
    assert gsched_.last_epoch == tsched.last_epoch == EPOCHS


@pytest.mark.parametrize("name,kwargs", SCHEDULERS[:6], ids=IDS[:6])
def test_state_dict_resume_continues_the_same_schedule(name, kwargs):
    tsched, sched, topt, opt = _pair(name, kwargs)
    _run(sched, opt, 12)
    saved_opt, saved_sched = opt.state_dict(), sched.state_dict()
    assert "optimizer" not in saved_sched and saved_sched["last_epoch"] == 12
    expected = _run(sched, opt, 15)

    _, resumed, _, opt2 = _pair(name, kwargs)
    opt2.load_state_dict(saved_opt)
    resumed.load_state_dict(saved_sched)
    assert _run(resumed, opt2, 15) == expected


def test_closed_form_with_an_epoch_argument_matches_torch():
    tsched, sched, topt, opt = _pair("CosineAnnealingLR", dict(T_max=10, eta_min=0.001))
    for epoch in [3, 8, 15]:
        opt.step()
        topt.step()
        with pytest.warns(UserWarning, match="epoch parameter"):
            sched.step(epoch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tsched.step(epoch)
        assert sched.get_last_lr() == tsched.get_last_lr()


def test_stepping_the_scheduler_before_the_optimizer_warns():
    _, sched, _, _ = _pair("StepLR", dict(step_size=2))
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        sched.step()


def test_resuming_needs_initial_lr():
    _, gp = make_params([(2,)], np.float32)
    with pytest.raises(KeyError, match="initial_lr"):
        gsched.StepLR(gto.SGD(gp, lr=0.1), step_size=2, last_epoch=3)


def test_scheduler_needs_an_optimizer():
    with pytest.raises(TypeError, match="list is not an Optimizer"):
        gsched.ExponentialLR([], gamma=0.9)


@pytest.mark.parametrize("name,kwargs", SCHEDULERS[:6], ids=IDS[:6])
def test_state_dict_has_torchs_keys_and_values(name, kwargs):
    tsched, sched, topt, opt = _pair(name, kwargs)
    _run(tsched, topt, 4)
    _run(sched, opt, 4)
    assert sched.state_dict() == tsched.state_dict()


def test_calling_get_lr_by_hand_warns():
    _, sched, _, _ = _pair("ExponentialLR", dict(gamma=0.5))
    with pytest.warns(UserWarning, match="please use `get_last_lr\\(\\)`"):
        sched.get_lr()
