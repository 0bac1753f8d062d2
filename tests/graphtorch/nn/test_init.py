"""nn.init: in place under no_grad, the distributions' bounds and moments, torch's gains and fans."""

import math

import numpy as np
import pytest

import graphtorch as gt
import graphtorch.nn as nn
from graphtorch.nn import init

torch = pytest.importorskip("torch")


def test_gain_and_fans_match_torch():
    for args in [("linear",), ("relu",), ("tanh",), ("leaky_relu",), ("leaky_relu", 0.2), ("selu",), ("sigmoid",)]:
        assert init.calculate_gain(*args) == torch.nn.init.calculate_gain(*args)
    for shape in [(5, 3), (4, 3, 2, 5)]:
        assert init._calculate_fan_in_and_fan_out(gt.empty(*shape)) == \
            torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(*shape))
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.kaiming_uniform_(gt.empty(3))
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_normal_(gt.empty(3, 3), mode="fan_avg")


def test_in_place_on_parameters_returns_the_tensor():
    p = nn.Parameter(gt.empty(200, 100))
    for fn, kwargs in [(init.uniform_, dict(a=-2, b=3)), (init.normal_, dict(mean=1, std=2)),
                       (init.xavier_uniform_, {}), (init.xavier_normal_, dict(gain=2)),
                       (init.kaiming_uniform_, dict(a=math.sqrt(5))), (init.kaiming_normal_, dict(mode="fan_out"))]:
        assert fn(p, **kwargs) is p and p.is_leaf and p.grad_fn is None
    assert init.constant_(p, 0.5) is p and (p == 0.5).all()
    assert (init.zeros_(p) == 0).all() and (init.ones_(p) == 1).all()
    e = init.eye_(gt.empty(3, 4))
    assert e.tolist() == np.eye(3, 4).tolist()


def test_distribution_bounds_and_moments():
    w = gt.empty(400, 300)
    bound = math.sqrt(6 / 700)
    init.xavier_uniform_(w)
    a = w.numpy()
    assert a.max() <= bound and a.min() >= -bound and abs(a.std() - bound / math.sqrt(3)) < 0.01 * bound
    init.kaiming_normal_(w, nonlinearity="relu")
    assert abs(w.numpy().std() - math.sqrt(2 / 300)) < 0.02 * math.sqrt(2 / 300)
    init.normal_(w, 3.0, 0.5)
    assert abs(w.numpy().mean() - 3.0) < 0.01 and abs(w.numpy().std() - 0.5) < 0.01


def test_default_layer_init_bounds_follow_torch():
    lin = nn.Linear(50, 20)
    bound = 1 / math.sqrt(50)
    for p in lin.parameters():
        assert np.abs(p.detach().numpy()).max() <= bound
    assert np.abs(lin.weight.detach().numpy()).max() > 0.8 * bound
    conv = nn.Conv2d(4, 8, 3)
    assert np.abs(conv.weight.detach().numpy()).max() <= 1 / math.sqrt(36)
    gt.manual_seed(5)
    a = nn.Linear(3, 3).weight.detach().numpy().copy()
    gt.manual_seed(5)
    assert (nn.Linear(3, 3).weight.detach().numpy() == a).all()
