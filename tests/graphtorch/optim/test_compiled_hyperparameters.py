"""A whole training step compiled once: lr schedulers and changed hyperparameters never recompile it,
and the parameters and state equal the eager loop's step for step."""

from __future__ import annotations

import numpy as np
import pytest

import graphtorch as gt
import graphtorch.nn as nn
import graphtorch.optim as gto
from graphtorch.optim import lr_scheduler as sched

OPTIMIZERS = {
    "sgd": ("SGD", dict(lr=0.05)),
    "sgd-momentum-dampening-wd": ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-2)),
    "sgd-nesterov-maximize": ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, maximize=True)),
    "adam": ("Adam", dict(lr=0.01)),
    "adam-amsgrad-wd": ("Adam", dict(lr=0.01, betas=(0.8, 0.95), amsgrad=True, weight_decay=0.1)),
    "adamw": ("AdamW", dict(lr=0.01, weight_decay=0.05)),
    "rmsprop-centered-momentum": ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, weight_decay=1e-2)),
    "rmsprop": ("RMSprop", dict(lr=0.01, alpha=0.9)),
    "adagrad": ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=1e-2, initial_accumulator_value=0.1)),
}

SCHEDULERS = {
    "cosine": lambda opt: sched.CosineAnnealingLR(opt, T_max=6),  # reaches lr 0 and back
    "step": lambda opt: sched.StepLR(opt, step_size=2, gamma=0.5),
    "multistep": lambda opt: sched.MultiStepLR(opt, milestones=[2, 5], gamma=0.3),
    "exponential": lambda opt: sched.ExponentialLR(opt, gamma=0.9),
    "lambda": lambda opt: sched.LambdaLR(opt, lambda epoch: 1.0 / (1 + epoch)),
    "linear": lambda opt: sched.LinearLR(opt, start_factor=0.2, total_iters=5),
    "sequential": lambda opt: sched.SequentialLR(opt, [sched.LinearLR(opt, start_factor=0.5, total_iters=3),
                                                       sched.ExponentialLR(opt, gamma=0.8)], milestones=[3]),
    "one-cycle": lambda opt: sched.OneCycleLR(opt, max_lr=0.05, total_steps=12),  # cycles momentum/betas too
    "plateau": lambda opt: _EveryStep(sched.ReduceLROnPlateau(opt, patience=1, factor=0.5)),
}


class _EveryStep:
    """ReduceLROnPlateau fed a loss that never improves: it halves the lr every other step."""

    def __init__(self, scheduler) -> None:
        self.scheduler = scheduler

    def step(self) -> None:
        self.scheduler.step(1.0)


def _data(n: int) -> list:
    rng = np.random.default_rng(3)
    xs = [rng.uniform(-2, 2, (16, 3)).astype(np.float32) for _ in range(n)]
    return [(gt.from_numpy(x), gt.from_numpy(np.sin(x).sum(1, keepdims=True))) for x in xs]


def _run(optimizer: str, make_scheduler, compiled: bool, steps: int = 10, tweak=None):
    """Train a small MLP with the scheduler stepping every iteration; returns the model, the
    optimizer and the compiled step (or None)."""
    gt.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    name, kwargs = OPTIMIZERS[optimizer]
    opt = getattr(gto, name)(model.parameters(), **kwargs)
    scheduler = make_scheduler(opt)
    loss_fn = nn.MSELoss()

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    run = gt.compile(step) if compiled else step
    for i, (x, y) in enumerate(_data(steps)):
        run(x, y)
        scheduler.step()
        if tweak is not None:
            tweak(opt, i)
    return model, opt, (run if compiled else None)


def _assert_same_training(optimizer: str, make_scheduler, tweak=None) -> None:
    eager_model, eager_opt, _ = _run(optimizer, make_scheduler, False, tweak=tweak)
    model, opt, run = _run(optimizer, make_scheduler, True, tweak=tweak)
    assert len(run.entries) == 1, "the compiled step recompiled"
    # atol 4e-6: the compiled float32 tanh is within 2 ulp of numpy's, not bit-equal (docs/architecture.md),
    # and ten steps of centered RMSprop with momentum amplify that to about 1e-6
    for p, e in zip(model.parameters(), eager_model.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), e.detach().numpy(), rtol=1e-5, atol=4e-6)
        for key, value in eager_opt.state[e].items():
            np.testing.assert_allclose(opt.state[p][key].numpy(), value.numpy(), rtol=1e-5, atol=4e-6, err_msg=key)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_cosine_annealing_every_step_never_recompiles(optimizer):
    _assert_same_training(optimizer, SCHEDULERS["cosine"])


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize("optimizer", ["sgd-momentum-dampening-wd", "adam-amsgrad-wd"])
def test_every_scheduler_never_recompiles(optimizer, scheduler):
    _assert_same_training(optimizer, SCHEDULERS[scheduler])


def _change_every_number(opt, i: int) -> None:
    """What a user's own schedule might do: new betas, eps, weight decay, momentum, alpha."""
    for group in opt.param_groups:
        for key in ("momentum", "weight_decay", "eps", "alpha", "dampening", "lr_decay"):
            if isinstance(group.get(key), float) and group[key] != 0:
                group[key] *= 0.95
        if "betas" in group:
            group["betas"] = (group["betas"][0] * 0.99, group["betas"][1])


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_changing_any_nonzero_hyperparameter_never_recompiles(optimizer):
    _assert_same_training(optimizer, SCHEDULERS["exponential"], tweak=_change_every_number)


def test_momentum_from_zero_selects_other_code_and_retraces():
    def start_momentum(opt, i):
        if i == 3:
            opt.param_groups[0]["momentum"] = 0.9

    eager_model, _, _ = _run("sgd", SCHEDULERS["step"], False, tweak=start_momentum)
    model, opt, run = _run("sgd", SCHEDULERS["step"], True, tweak=start_momentum)
    assert len(run.entries) == 1 and len(opt.state) == 4  # retraced in place: one signature, buffers made
    for p, e in zip(model.parameters(), eager_model.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), e.detach().numpy(), rtol=1e-5, atol=1e-6)
