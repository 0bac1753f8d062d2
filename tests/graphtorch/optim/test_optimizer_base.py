"""Optimizer's bookkeeping against torch: groups, errors, repr, zero_grad, state_dict round trips."""

from __future__ import annotations

import numpy as np
import pytest
from optim_helpers import DTYPES, assert_close, assert_same_state, make_pair, make_params, set_grads

import graphtorch as gt
import graphtorch.optim as gto

torch = pytest.importorskip("torch", reason="torch is the test oracle for the optimizers")

TOL = DTYPES["float32"][1]
ALL = [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(amsgrad=True)), ("AdamW", {}),
       ("RMSprop", dict(momentum=0.5, centered=True)), ("Adagrad", dict(lr_decay=0.1))]


def _steps(tp, gp, topt, gopt, n, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        set_grads(tp, gp, rng)
        if topt is not None:
            topt.step()
        gopt.step()


@pytest.mark.parametrize("name,kwargs", ALL)
def test_repr_and_param_groups_equal_torch(name, kwargs):
    tp, gp, topt, gopt = make_pair(name, kwargs)
    assert repr(gopt) == repr(topt)
    assert [{k: v for k, v in g.items() if k != "params"} for g in gopt.param_groups] == \
           [{k: v for k, v in g.items() if k != "params"} for g in topt.param_groups]


@pytest.mark.parametrize("name,kwargs", ALL)
def test_state_dict_has_torchs_layout(name, kwargs):
    tp, gp, topt, gopt = make_pair(name, kwargs)
    _steps(tp, gp, topt, gopt, 2, seed=0)
    tsd, gsd = topt.state_dict(), gopt.state_dict()
    assert gsd["param_groups"] == tsd["param_groups"]
    assert list(gsd["state"]) == list(tsd["state"]) == [0, 1, 2]
    for i, tstate in tsd["state"].items():
        assert list(gsd["state"][i]) == list(tstate)
        for key, value in tstate.items():
            assert_close(gsd["state"][i][key], value, TOL, f"state {i} {key}")


@pytest.mark.parametrize("name,kwargs", ALL)
def test_state_dict_round_trip_then_steps_equal_continuing(name, kwargs):
    tp, gp, topt, gopt = make_pair(name, kwargs)
    _steps(tp, gp, topt, gopt, 4, seed=0)
    # a fresh optimizer with other hyperparameters over copies of the parameters
    copies = [gt.tensor(p.detach().numpy().copy(), requires_grad=True) for p in gp]
    restored = getattr(gto, name)(copies, lr=0.5)
    restored.load_state_dict(gopt.state_dict())
    assert restored.param_groups[0]["lr"] == gopt.param_groups[0]["lr"]
    assert restored.param_groups[0]["params"][0] is copies[0]
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(4):
        set_grads(tp, gp, rng_a)
        set_grads(tp, copies, rng_b)
        topt.step()
        gopt.step()
        restored.step()
    for a, b in zip(copies, gp):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())
    assert_same_state(restored, topt, copies, tp, TOL)


def test_loaded_state_is_a_copy_cast_to_the_param_dtype():
    tp, gp64 = make_params([(3,)], np.float64)
    src = gto.Adam(gp64, lr=0.1)
    gp64[0].grad = gt.tensor([1.0, -2.0, 0.5], dtype=gt.float64)
    src.step()
    p32 = gt.tensor([0.0, 0.0, 0.0], requires_grad=True)
    dst = gto.Adam([p32])
    dst.load_state_dict(src.state_dict())
    state, saved = dst.state[p32], src.state[gp64[0]]
    assert state["exp_avg"].dtype is gt.float32 and state["exp_avg_sq"].dtype is gt.float32
    assert state["step"].dtype is gt.float32  # the counter keeps its dtype
    assert state["step"] is not saved["step"]
    saved["exp_avg"].add_(1.0)  # the loaded copy does not follow the source
    np.testing.assert_allclose(state["exp_avg"].numpy(), [0.1, -0.2, 0.05], rtol=1e-6)


def test_load_state_dict_rejects_mismatched_groups():
    _, gp = make_params([(2,), (3,)], np.float32)
    opt = gto.SGD(gp, lr=0.1)
    other = gto.SGD([{"params": gp[:1]}, {"params": gp[1:]}], lr=0.1)
    with pytest.raises(ValueError, match="different number of parameter groups"):
        opt.load_state_dict(other.state_dict())
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        gto.SGD(gp[:1], lr=0.1).load_state_dict(opt.state_dict())


def test_add_param_group_fills_defaults_and_steps_like_torch():
    tp, gp = make_params([(3, 4), (5,), ()], np.float32)
    topt, gopt = torch.optim.Adam(tp[:2], lr=0.01), gto.Adam(gp[:2], lr=0.01)
    _steps(tp[:2], gp[:2], topt, gopt, 2, seed=0)
    topt.add_param_group({"params": tp[2], "lr": 0.1})
    gopt.add_param_group({"params": gp[2], "lr": 0.1})
    added = gopt.param_groups[1]
    assert len(added["params"]) == 1 and added["params"][0] is gp[2]
    assert added["betas"] == (0.9, 0.999) and added["lr"] == 0.1
    _steps(tp, gp, topt, gopt, 3, seed=1)
    assert_same_state(gopt, topt, gp, tp, TOL)
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        gopt.add_param_group({"params": [gp[0]]})


def test_zero_grad_set_to_none_and_in_place():
    _, gp = make_params([(2,), (3,)], np.float32)
    opt = gto.SGD(gp, lr=0.1)
    gp[0].grad = gt.tensor([1.0, 2.0])
    grad = gp[0].grad
    opt.zero_grad(set_to_none=False)
    assert gp[0].grad is grad and gp[0].grad.tolist() == [0.0, 0.0]
    assert gp[1].grad is None
    opt.zero_grad()
    assert gp[0].grad is None


def test_state_is_keyed_by_the_parameter_tensor():
    tp, gp, topt, gopt = make_pair("SGD", dict(lr=0.1, momentum=0.9))
    _steps(tp, gp, None, gopt, 1, seed=0)
    assert set(map(id, gopt.state)) == set(map(id, gp))
    assert "momentum_buffer" in gopt.state[gp[0]]


# ---------------------------------------------------------------- errors, as torch words them


def test_constructor_errors():
    _, gp = make_params([(2,)], np.float32)
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        gto.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="should be an iterable of Tensors or dicts"):
        gto.SGD(gp[0], lr=0.1)
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        gto.SGD([gp[0] * 2], lr=0.1)
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        gto.SGD([{"params": gp}, {"params": gp}], lr=0.1)
    with pytest.raises(TypeError, match="ordered collections"):
        gto.SGD([{"params": set(gp)}], lr=0.1)
    with pytest.raises(TypeError, match="optimizer can only optimize Tensors, but one of the params is"):
        gto.SGD([1.0], lr=0.1)


@pytest.mark.parametrize("make,message", [
    (lambda o, p: o.SGD(p, lr=0.1, nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    (lambda o, p: o.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov momentum requires"),
    (lambda o, p: o.SGD(p, lr=-1.0), "Invalid learning rate: -1.0"),
    (lambda o, p: o.SGD(p, momentum=-0.5), "Invalid momentum value: -0.5"),
    (lambda o, p: o.Adam(p, betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    (lambda o, p: o.Adam(p, betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
    (lambda o, p: o.AdamW(p, eps=-1e-8), "Invalid epsilon value: -1e-08"),
    (lambda o, p: o.Adam(p, weight_decay=-1), "Invalid weight_decay value: -1"),
    (lambda o, p: o.RMSprop(p, alpha=-0.9), "Invalid alpha value: -0.9"),
    (lambda o, p: o.Adagrad(p, lr_decay=-1), "Invalid lr_decay value: -1"),
])
def test_hyperparameter_errors_read_like_torch(make, message):
    tp, gp = make_params([(2,)], np.float32)
    with pytest.raises(ValueError) as gerr:
        make(gto, gp)
    with pytest.raises(ValueError) as terr:
        make(torch.optim, tp)
    assert message in str(gerr.value) and str(gerr.value) == str(terr.value)


def test_unsupported_modes_say_so():
    _, gp = make_params([(2,)], np.float32)
    with pytest.raises(NotImplementedError, match="capturable=True"):
        gto.Adam(gp, capturable=True)
