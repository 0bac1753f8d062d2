"""LinearLR, SequentialLR, OneCycleLR and ReduceLROnPlateau against torch's, value for value
(learning rates and cycled momentum), state_dict round trips and errors."""

from __future__ import annotations

import numpy as np
import pytest
from optim_helpers import make_params

import graphtorch.optim as gto
from graphtorch.optim import lr_scheduler as gsched

torch = pytest.importorskip("torch", reason="torch is the test oracle for the optimizers")


def _optimizers(kind: str = "SGD", **kwargs):
    tp, gp = make_params([(2,), (3,)], np.float32)
    groups = lambda ps: [{"params": ps[:1]}, {"params": ps[1:], "lr": 0.03}]  # noqa: E731
    return getattr(torch.optim, kind)(groups(tp), lr=0.1, **kwargs), getattr(gto, kind)(groups(gp), lr=0.1, **kwargs)


def _momenta(opt) -> list:
    return [g.get("betas", (g.get("momentum"),))[0] for g in opt.param_groups]


def _run(sched, opt, epochs: int, metrics=None) -> list:
    out = [(sched.get_last_lr(), _momenta(opt))]
    for i in range(epochs):
        opt.step()
        sched.step() if metrics is None else sched.step(metrics[i])
        out.append((sched.get_last_lr(), _momenta(opt)))
        assert out[-1][0] == [g["lr"] for g in opt.param_groups]
    return out


CASES = [
    ("LinearLR", dict(), "SGD", {}),
    ("LinearLR", dict(start_factor=0.1, end_factor=0.7, total_iters=9), "SGD", {}),
    ("OneCycleLR", dict(max_lr=0.5, total_steps=30), "SGD", dict(momentum=0.9)),
    ("OneCycleLR", dict(max_lr=[0.5, 0.2], epochs=5, steps_per_epoch=6, anneal_strategy="linear", pct_start=0.4),
     "AdamW", {}),
    ("OneCycleLR", dict(max_lr=0.3, total_steps=31, three_phase=True, div_factor=10.0, final_div_factor=100.0),
     "SGD", dict(momentum=0.9)),
    ("OneCycleLR", dict(max_lr=0.3, total_steps=30, cycle_momentum=False), "RMSprop", {}),
]


@pytest.mark.parametrize("name,kwargs,kind,opt_kwargs", CASES, ids=lambda v: str(v)[:40])
def test_schedule_equals_torch(name, kwargs, kind, opt_kwargs):
    topt, gopt = _optimizers(kind, **opt_kwargs)
    tsched, sched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs), getattr(gsched, name)(gopt, **kwargs)
    epochs = kwargs.get("total_steps", 30) - 1 if name == "OneCycleLR" else 15
    assert _run(sched, gopt, epochs) == _run(tsched, topt, epochs)


def test_one_cycle_past_the_end_and_bad_arguments():
    topt, gopt = _optimizers("SGD", momentum=0.9)
    sched = gsched.OneCycleLR(gopt, max_lr=0.1, total_steps=3)
    for _ in range(3):
        gopt.step()
        sched.step()
    with pytest.raises(ValueError, match="Tried to step 4 times. The specified number of total steps is 3"):
        sched.step()
    for kwargs, match in [(dict(max_lr=0.1), "You must define either total_steps"),
                          (dict(max_lr=0.1, total_steps=0), "Expected positive integer total_steps"),
                          (dict(max_lr=0.1, total_steps=5, pct_start=1.5), "Expected float between 0 and 1"),
                          (dict(max_lr=0.1, total_steps=5, anneal_strategy="exp"), "anneal_strategy must be one")]:
        with pytest.raises(ValueError, match=match):
            gsched.OneCycleLR(_optimizers()[1], **kwargs)
    with pytest.raises(ValueError, match="optimizer must support momentum"):
        gsched.OneCycleLR(_optimizers("Adagrad")[1], max_lr=0.1, total_steps=5)


def test_sequential_warmup_then_cosine_equals_torch():
    def build(lib, opt):
        s = lib.optim.lr_scheduler if lib is torch else gsched
        return s.SequentialLR(opt, [s.LinearLR(opt, start_factor=0.2, total_iters=4),
                                    s.ExponentialLR(opt, gamma=0.9), s.CosineAnnealingLR(opt, T_max=6)],
                              milestones=[4, 9])
    topt, gopt = _optimizers()
    tsched, sched = build(torch, topt), build(None, gopt)
    assert _run(sched, gopt, 20) == _run(tsched, topt, 20)
    state = sched.state_dict()
    assert state["_milestones"] == [4, 9] and len(state["_schedulers"]) == 3
    expected = _run(sched, gopt, 5)
    _, gopt2 = _optimizers()
    gopt2.load_state_dict(gopt.state_dict())
    resumed = build(None, gopt2)
    resumed.load_state_dict(state)
    for group, saved in zip(gopt2.param_groups, expected[0][0]):
        group["lr"] = saved
    assert _run(resumed, gopt2, 5)[1:] == expected[1:]


def test_sequential_errors():
    _, gopt = _optimizers()
    _, other = _optimizers()
    with pytest.raises(ValueError, match="expects at least one scheduler"):
        gsched.SequentialLR(gopt, [], [])
    with pytest.raises(ValueError, match="number of milestones to be equal to 2"):
        gsched.SequentialLR(gopt, [gsched.StepLR(gopt, 2), gsched.StepLR(gopt, 3)], [2, 4])
    with pytest.raises(ValueError, match="expects all schedulers to belong to the same optimizer"):
        gsched.SequentialLR(gopt, [gsched.StepLR(gopt, 2), gsched.StepLR(other, 3)], [2])
    with pytest.raises(ValueError, match="does not support `ReduceLROnPlateau`"):
        gsched.SequentialLR(gopt, [gsched.StepLR(gopt, 2), gsched.ReduceLROnPlateau(gopt)], [2])


PLATEAU = [
    dict(),
    dict(mode="max", factor=0.5, patience=2, threshold=0.1, threshold_mode="abs", cooldown=2),
    dict(patience=1, min_lr=[0.02, 0.001], factor=0.3),
    dict(patience=0, threshold=0.05, eps=0.05),
]


@pytest.mark.parametrize("kwargs", PLATEAU, ids=str)
def test_reduce_on_plateau_equals_torch(kwargs):
    metrics = list(np.concatenate([np.linspace(1.0, 0.5, 6), np.full(12, 0.5), np.linspace(0.5, 0.2, 5),
                                   np.full(15, 0.2)]) + np.random.default_rng(0).normal(0, 0.01, 38))
    topt, gopt = _optimizers()
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kwargs)
    sched = gsched.ReduceLROnPlateau(gopt, **kwargs)
    assert _run(sched, gopt, 38, metrics) == _run(tsched, topt, 38, metrics)
    assert sched.best == tsched.best and sched.num_bad_epochs == tsched.num_bad_epochs
    state = sched.state_dict()
    again = gsched.ReduceLROnPlateau(_optimizers()[1])
    again.load_state_dict(state)
    assert again.best == sched.best and again._is_better(sched.best - 1, sched.best) == (sched.mode == "min")


def test_reduce_on_plateau_errors():
    with pytest.raises(ValueError, match="Factor should be < 1.0."):
        gsched.ReduceLROnPlateau(_optimizers()[1], factor=1.0)
    with pytest.raises(ValueError, match="mode avg is unknown!"):
        gsched.ReduceLROnPlateau(_optimizers()[1], mode="avg")
    with pytest.raises(ValueError, match="expected 2 min_lrs, got 1"):
        gsched.ReduceLROnPlateau(_optimizers()[1], min_lr=[0.1])
