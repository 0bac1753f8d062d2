"""Optimizers driving graphtorch.nn modules, against the same torch.nn model."""

from __future__ import annotations

import numpy as np
import pytest
from optim_helpers import assert_close

import graphtorch as gt
import graphtorch.nn as gnn
import graphtorch.optim as gto

torch = pytest.importorskip("torch", reason="torch is the test oracle for the optimizers")

CASES = [("SGD", dict(lr=0.1, momentum=0.9, weight_decay=1e-3)), ("Adam", dict(lr=0.01)),
         ("AdamW", dict(lr=0.01, amsgrad=True)), ("RMSprop", dict(lr=0.01, momentum=0.3)),
         ("Adagrad", dict(lr=0.1))]


def _models():
    """The same 3-8-2 MLP in torch and graphtorch (torch's initial weights copied over)."""
    torch.manual_seed(0)
    tmodel = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    gmodel = gnn.Sequential(gnn.Linear(3, 8), gnn.Tanh(), gnn.Linear(8, 2))
    gmodel.load_state_dict({k: gt.tensor(v.detach().numpy().copy()) for k, v in tmodel.state_dict().items()})
    return tmodel, gmodel


@pytest.mark.parametrize("name,kwargs", CASES)
def test_training_an_mlp_matches_torch(name, kwargs):
    tmodel, gmodel = _models()
    topt = getattr(torch.optim, name)(tmodel.parameters(), **kwargs)
    gopt = getattr(gto, name)(gmodel.parameters(), **kwargs)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(10):
        x, y = rng.standard_normal((16, 3)).astype(np.float32), rng.standard_normal((16, 2)).astype(np.float32)
        for model, opt, lib in ((tmodel, topt, torch), (gmodel, gopt, gt)):
            opt.zero_grad()
            loss = ((model(lib.tensor(x)) - lib.tensor(y)) ** 2).mean()
            loss.backward()
            opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for (name_, tp), gp in zip(tmodel.named_parameters(), gmodel.parameters()):
        assert_close(gp, tp, dict(rtol=1e-6, atol=1e-6), name_)
        for key, value in topt.state[tp].items():
            assert_close(gopt.state[gp][key], value, dict(rtol=1e-6, atol=1e-6), f"{name_} {key}")


def test_named_parameters_keep_their_names_in_the_state_dict():
    tmodel, gmodel = _models()
    topt, gopt = torch.optim.SGD(tmodel.named_parameters(), lr=0.1), gto.SGD(gmodel.named_parameters(), lr=0.1)
    assert gopt.state_dict()["param_groups"] == topt.state_dict()["param_groups"]
    assert gopt.param_groups[0]["param_names"] == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_fine_tuning_adds_a_layer_as_a_new_group():
    tmodel, gmodel = _models()
    gopt = gto.Adam(gmodel[0].parameters(), lr=0.01)
    gopt.add_param_group({"params": gmodel[2].parameters(), "lr": 0.001})
    assert [len(g["params"]) for g in gopt.param_groups] == [2, 2]
    loss = gmodel(gt.ones(4, 3)).sum()
    loss.backward()
    before = gmodel[2].weight.detach().clone()
    gopt.step()
    assert not gt.equal(gmodel[2].weight.detach(), before)
