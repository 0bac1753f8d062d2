"""ELU, Hardtanh, Hardswish, Mish, PReLU, GLU, CosineSimilarity, SmoothL1Loss, HuberLoss, KLDivLoss
against torch: values, gradients, reprs, errors; float64 finite differences; compiled equals eager."""

import numpy as np
import pytest
from conftest import assert_same, compare, gradcheck, raises_like, randn
from nn_helpers import check_module

import graphtorch as gt
import graphtorch.nn as nn
import graphtorch.nn.functional as F

torch = pytest.importorskip("torch")


def both(name, *args, **kwargs):
    return getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)


def spread(*shape, seed=0):
    """Values on both sides of every kink (0, +-1, +-3), none exactly on one."""
    return (randn(*shape, seed=seed) * 3).astype(np.float32)


ACTIVATIONS = [
    ("ELU", (), {}), ("ELU", (0.5,), {}), ("Hardtanh", (), {}), ("Hardtanh", (-2.0, 0.5), {}), ("Hardswish", (), {}),
    ("Mish", (), {}), ("PReLU", (), {}), ("PReLU", (3,), dict(init=0.1)), ("GLU", (), {}), ("GLU", (1,), {}),
]


@pytest.mark.parametrize("name,args,kwargs", ACTIVATIONS, ids=lambda v: str(v))
def test_activation_modules(name, args, kwargs):
    g, t = both(name, *args, **kwargs)
    assert repr(g) == repr(t)
    check_module(g, t, spread(2, 4, 6) if name == "GLU" else spread(2, 3, 4))


@pytest.mark.parametrize("fn", ["elu", "hardtanh", "hardswish", "mish"])
def test_activation_inplace_and_float64(fn):
    compare(lambda lib, x: getattr(lib.nn.functional, fn)(x), spread(5, 4).astype(np.float64), rtol=1e-12,
            atol=1e-12)
    got, want = gt.tensor(spread(6)), torch.tensor(spread(6))
    getattr(F, fn)(got, inplace=True)
    getattr(torch.nn.functional, fn)(want, inplace=True)
    assert_same(got, want, rtol=1e-6, atol=1e-7)


def test_activation_gradcheck():
    x = np.random.default_rng(0).standard_normal((3, 4)) * 3
    for fn in (F.elu, lambda a: F.elu(a, 0.3), F.hardswish, F.mish, lambda a: F.hardtanh(a, -2.0, 2.0),
               lambda a: F.glu(a, 1)):
        gradcheck(fn, [x])
    gradcheck(lambda a, w: F.prelu(a, w), [x, np.array([0.2, -0.5, 0.7, 1.5])])
    gradcheck(lambda a, b: F.cosine_similarity(a, b, dim=1), [x, x[::-1].copy() + 0.1])


def test_activation_errors_like_torch():
    raises_like(lambda: torch.nn.functional.glu(torch.zeros(2, 5)), lambda: F.glu(gt.zeros(2, 5)))
    raises_like(lambda: torch.nn.functional.prelu(torch.zeros(2, 5), torch.ones(3)),
                lambda: F.prelu(gt.zeros(2, 5), gt.ones(3)))
    raises_like(lambda: torch.nn.Hardtanh(1.0, -1.0), lambda: nn.Hardtanh(1.0, -1.0))


@pytest.mark.parametrize("dim", [1, -1, 0])
def test_cosine_similarity(dim):
    g, t = both("CosineSimilarity", dim=dim)
    a, b = randn(3, 4, 5), randn(3, 4, 5, seed=1)
    compare(lambda lib, x, y: (g if lib is gt else t)(x, y), a, b, rtol=1e-5, atol=1e-6)
    compare(lambda lib, x, y: lib.nn.functional.cosine_similarity(x, y, dim=dim, eps=0.5), a * 0.01, b, rtol=1e-5,
            atol=1e-6)
    compare(lambda lib, x: lib.nn.functional.cosine_similarity(x, x * 0), a)  # a zero side: eps keeps it finite


LOSSES = [
    ("SmoothL1Loss", {}), ("SmoothL1Loss", dict(beta=0.5, reduction="sum")), ("SmoothL1Loss", dict(beta=0.0)),
    ("HuberLoss", {}), ("HuberLoss", dict(delta=2.0, reduction="none")),
]


@pytest.mark.parametrize("name,kwargs", LOSSES, ids=lambda v: str(v))
def test_regression_losses(name, kwargs):
    g, t = both(name, **kwargs)
    compare(lambda lib, x, y: (g if lib is gt else t)(x, y), spread(4, 5), spread(4, 5, seed=1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["batchmean", "sum", "none", "mean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    logp = np.log(np.random.default_rng(0).dirichlet(np.ones(5), 4)).astype(np.float32)
    target = np.random.default_rng(1).dirichlet(np.ones(5), 4).astype(np.float32)
    if log_target:
        target = np.log(target + 0.01).astype(np.float32)
    g, t = both("KLDivLoss", reduction=reduction, log_target=log_target)
    with pytest.warns(UserWarning) if reduction == "mean" else _no_warning():
        compare(lambda lib, x, y: (g if lib is gt else t)(x, y), logp, target, rtol=1e-5, atol=1e-6)
    if not log_target:  # t log t at t = 0 is 0 (torch's target gradient there is NaN: not compared)
        target[0, 1] = 0.0
        with pytest.warns(UserWarning) if reduction == "mean" else _no_warning():
            compare(lambda lib, x: (g if lib is gt else t)(x, lib.tensor(target)), logp, rtol=1e-5, atol=1e-6)


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_loss_gradcheck_and_errors():
    x, y = np.random.default_rng(0).standard_normal((3, 4)) * 2, np.random.default_rng(1).standard_normal((3, 4))
    gradcheck(lambda a, b: F.smooth_l1_loss(a, b, beta=0.7), [x, y])
    gradcheck(lambda a, b: F.huber_loss(a, b, delta=1.5), [x, y])
    target = np.random.default_rng(2).dirichlet(np.ones(4), 3)
    gradcheck(lambda a, b: F.kl_div(a, b, reduction="batchmean"), [x, target])
    raises_like(lambda: torch.nn.functional.smooth_l1_loss(torch.zeros(2), torch.zeros(2), beta=-1.0),
                lambda: F.smooth_l1_loss(gt.zeros(2), gt.zeros(2), beta=-1.0))
    raises_like(lambda: torch.nn.functional.huber_loss(torch.zeros(2), torch.zeros(2), delta=0.0),
                lambda: F.huber_loss(gt.zeros(2), gt.zeros(2), delta=0.0))


def test_compiled_equals_eager():
    prelu, glu = nn.PReLU(4), nn.GLU(1)

    def fn(x, y):
        act = F.elu(x) + F.hardtanh(x) + F.hardswish(x) + F.mish(x) + prelu(x) + glu(x).repeat(1, 2)
        return (F.smooth_l1_loss(act, y) + F.huber_loss(act, y, delta=0.5)
                + F.kl_div(act.log_softmax(1), y.softmax(1), reduction="batchmean")
                + F.cosine_similarity(act, y).sum())

    x, y = gt.tensor(spread(3, 4)), gt.tensor(spread(3, 4, seed=1))
    compiled = gt.compile(fn)
    compiled(x, y)
    assert_same(compiled(x, y), fn(x, y), rtol=1e-5, atol=1e-6)
    assert len(compiled.entries) == 1
