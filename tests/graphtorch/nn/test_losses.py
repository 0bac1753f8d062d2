"""Losses against torch: every reduction, weights, ignore_index, label smoothing, pos_weight,
probability targets, gradients, grad_fn names and the errors for bad targets."""

import numpy as np
import pytest
from conftest import assert_same, raises_like, randn

import graphtorch as gt
import graphtorch.nn as nn

torch = pytest.importorskip("torch")

REDUCTIONS = ["none", "sum", "mean"]


def run(name, input, target, rtol=1e-5, atol=1e-6, **kwargs):
    """nn.<name>(**kwargs)(input, target) in both libraries: same value, same input gradient."""
    def lib_kwargs(lib):
        return {k: lib.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}

    gx, tx = gt.tensor(input, requires_grad=True), torch.tensor(input, requires_grad=True)
    g = getattr(nn, name)(**lib_kwargs(gt))(gx, gt.tensor(target))
    t = getattr(torch.nn, name)(**lib_kwargs(torch))(tx, torch.tensor(target))
    assert_same(g, t, rtol=rtol, atol=atol, what="loss")
    v = np.random.default_rng(0).standard_normal(tuple(t.shape)).astype(input.dtype)
    (g * gt.tensor(v)).sum().backward()
    (t * torch.tensor(v)).sum().backward()
    assert_same(gx.grad, tx.grad, rtol=rtol * 10, atol=atol * 10, what="input gradient")
    return g, t


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_and_l1(reduction):
    for name in ("MSELoss", "L1Loss"):
        g, t = run(name, randn(4, 5), randn(4, 5, seed=1), reduction=reduction)
        if name == "MSELoss":
            assert g.grad_fn.name() == t.grad_fn.name()


def test_mse_broadcast_warns_and_weighted_functional():
    with pytest.warns(UserWarning, match="Using a target size"):
        g = nn.functional.mse_loss(gt.tensor(randn(3, 1)), gt.tensor(randn(3, seed=1)))
    with pytest.warns(UserWarning, match="Using a target size"):
        t = torch.nn.functional.mse_loss(torch.tensor(randn(3, 1)), torch.tensor(randn(3, seed=1)))
    assert_same(g, t, rtol=1e-6)
    w = np.abs(randn(4, 5, seed=3))
    for reduction in REDUCTIONS:
        for fn in ("mse_loss", "l1_loss"):
            g = getattr(nn.functional, fn)(gt.tensor(randn(4, 5)), gt.tensor(randn(4, 5, seed=1)), reduction=reduction,
                                           weight=gt.tensor(w))
            t = getattr(torch.nn.functional, fn)(torch.tensor(randn(4, 5)), torch.tensor(randn(4, 5, seed=1)),
                                                 reduction=reduction, weight=torch.tensor(w))
            assert_same(g, t, rtol=1e-5)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce(reduction):
    p = 1 / (1 + np.exp(-randn(4, 3)))
    y = (randn(4, 3, seed=2) > 0).astype(np.float32)
    g, t = run("BCELoss", p, y, reduction=reduction)
    assert g.grad_fn.name() == t.grad_fn.name()
    run("BCELoss", p, np.abs(randn(4, 3, seed=5)) % 1, reduction=reduction, weight=np.abs(randn(3, seed=4)))


def test_bce_log_clamp_and_errors():
    g = nn.functional.binary_cross_entropy(gt.tensor([0.0, 1.0]), gt.tensor([1.0, 0.0]))
    assert g.item() == 100.0
    raises_like(lambda: torch.nn.functional.binary_cross_entropy(torch.tensor([1.5]), torch.tensor([1.0])),
                lambda: nn.functional.binary_cross_entropy(gt.tensor([1.5]), gt.tensor([1.0])))
    raises_like(lambda: torch.nn.functional.binary_cross_entropy(torch.rand(3), torch.rand(3, 1)),
                lambda: nn.functional.binary_cross_entropy(gt.rand(3), gt.rand(3, 1)))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits(reduction):
    x = randn(4, 3) * 30  # large logits: the stable form must not overflow
    y = np.abs(randn(4, 3, seed=2)) % 1
    g, t = run("BCEWithLogitsLoss", x, y, reduction=reduction)
    assert g.grad_fn.name() == t.grad_fn.name()
    run("BCEWithLogitsLoss", x, y, reduction=reduction, pos_weight=np.array([0.5, 2.0, 3.0], np.float32),
        weight=np.abs(randn(4, 1, seed=4)))
    raises_like(lambda: torch.nn.BCEWithLogitsLoss()(torch.zeros(3), torch.zeros(3, 1)),
                lambda: nn.BCEWithLogitsLoss()(gt.zeros(3), gt.zeros(3, 1)))


TARGETS = np.array([1, 0, 4, 2, 4, 3], np.int64)
WEIGHT = np.array([0.5, 1.0, 2.0, 1.5, 0.25], np.float32)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kwargs", [dict(), dict(weight=WEIGHT), dict(ignore_index=4), dict(weight=WEIGHT, ignore_index=0)])
def test_nll_and_cross_entropy(reduction, kwargs):
    x = randn(6, 5)
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    g, t = run("NLLLoss", logp, TARGETS, reduction=reduction, **kwargs)
    assert g.grad_fn.name() == t.grad_fn.name() == "NllLossBackward0"
    g, t = run("CrossEntropyLoss", x, TARGETS, reduction=reduction, **kwargs)
    assert g.grad_fn.name() == t.grad_fn.name()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kwargs", [dict(), dict(weight=WEIGHT), dict(ignore_index=2), dict(weight=WEIGHT, ignore_index=4)])
def test_cross_entropy_label_smoothing(reduction, kwargs):
    run("CrossEntropyLoss", randn(6, 5), TARGETS, reduction=reduction, label_smoothing=0.2, **kwargs)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probability_targets(reduction):
    probs = np.exp(randn(6, 5, seed=3))
    probs /= probs.sum(1, keepdims=True)
    run("CrossEntropyLoss", randn(6, 5), probs, reduction=reduction)
    run("CrossEntropyLoss", randn(6, 5), probs, reduction=reduction, weight=WEIGHT, label_smoothing=0.1)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_spatial_and_unbatched_class_losses(reduction):
    target = np.random.default_rng(1).integers(0, 3, (2, 4, 5)).astype(np.int64)
    target[0, 0, 0] = -100
    g, t = run("CrossEntropyLoss", randn(2, 3, 4, 5), target, reduction=reduction, weight=WEIGHT[:3])
    logp = np.log(np.exp(randn(2, 3, 4, 5)) / np.exp(randn(2, 3, 4, 5)).sum(1, keepdims=True))
    g, t = run("NLLLoss", logp, target, reduction=reduction)
    assert g.grad_fn.name() == t.grad_fn.name() == "NllLoss2DBackward0"
    run("CrossEntropyLoss", randn(5), np.array(3, np.int64), reduction=reduction, label_smoothing=0.1)


def test_all_targets_ignored_gives_nan_mean():
    g = nn.CrossEntropyLoss(ignore_index=1)(gt.randn(2, 3), gt.tensor([1, 1]))
    t = torch.nn.CrossEntropyLoss(ignore_index=1)(torch.randn(2, 3), torch.tensor([1, 1]))
    assert np.isnan(g.item()) and np.isnan(t.item())


@pytest.mark.parametrize("make", [
    lambda lib: lib.nn.functional.nll_loss(lib.zeros(3, 5), lib.tensor([1, 2, 3, 4])),
    lambda lib: lib.nn.functional.cross_entropy(lib.zeros(3, 5), lib.tensor([1, 2, 5])),
    lambda lib: lib.nn.functional.cross_entropy(lib.zeros(3, 5), lib.tensor([1, 2, -1])),
    lambda lib: lib.nn.functional.cross_entropy(lib.zeros(3, 5), lib.tensor([1, 2, 3], dtype=lib.int32)),
    lambda lib: lib.nn.functional.cross_entropy(lib.zeros(3, 5), lib.tensor([1.0, 2.0, 3.0])),
    lambda lib: lib.nn.functional.nll_loss(lib.zeros(2, 3, 4), lib.zeros(2, 5, dtype=lib.int64)),
    lambda lib: lib.nn.functional.mse_loss(lib.zeros(2), lib.zeros(2), reduction="foo"),
    lambda lib: lib.nn.functional.cross_entropy(lib.zeros(3, 5), lib.tensor([1, 2, 3]), label_smoothing=1.5),
], ids=["batch", "target5", "target-1", "int32", "float", "spatial", "reduction", "smoothing"])
def test_target_errors_like_torch(make):
    raises_like(lambda: make(torch), lambda: make(gt))


def test_loss_modules_hold_weights_as_buffers_and_legacy_args():
    g = nn.CrossEntropyLoss(weight=gt.tensor(WEIGHT))
    t = torch.nn.CrossEntropyLoss(weight=torch.tensor(WEIGHT))
    assert list(g.state_dict()) == list(t.state_dict()) == ["weight"]
    assert list(nn.BCEWithLogitsLoss(pos_weight=gt.ones(2)).state_dict()) == ["pos_weight"]
    with pytest.warns(UserWarning, match="reduction='sum'"):
        assert nn.MSELoss(size_average=False).reduction == "sum"
    with pytest.warns(UserWarning):
        assert nn.L1Loss(reduce=False).reduction == "none"
