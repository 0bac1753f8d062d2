"""Every layer against torch with the same weights: outputs, input and parameter gradients."""

import numpy as np
import pytest
from conftest import assert_same, raises_like, randn
from nn_helpers import check_module, copy_weights

import graphtorch as gt
import graphtorch.nn as nn
import graphtorch.nn.functional as F

torch = pytest.importorskip("torch")


def both(name, *args, **kwargs):
    return getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 5), (5,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(shape, bias):
    check_module(*both("Linear", 5, 3, bias=bias), randn(*shape))


def test_linear_grad_fn_names_follow_torch():
    lin = nn.Linear(4, 2)
    x = gt.randn(3, 4, requires_grad=True)
    assert lin(x).grad_fn.name() == "AddmmBackward0"
    assert F.linear(x, lin.weight).grad_fn.name() == "MmBackward0"
    assert lin(gt.randn(2, 3, 4)).grad_fn.name() == "ViewBackward0"


def test_linear_float64():
    g, t = both("Linear", 6, 4)
    check_module(g.double(), t.double(), randn(3, 6, dtype=np.float64), rtol=1e-12, atol=1e-12)


CONVS = [
    dict(in_channels=3, out_channels=4, kernel_size=3),
    dict(in_channels=3, out_channels=2, kernel_size=3, stride=2, padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2),
    dict(in_channels=3, out_channels=4, kernel_size=4, padding="same"),
    dict(in_channels=3, out_channels=4, kernel_size=3, padding="same", dilation=2, bias=False),
    dict(in_channels=3, out_channels=3, kernel_size=3, padding="valid", groups=3),
    dict(in_channels=3, out_channels=2, kernel_size=3, padding=2, padding_mode="reflect"),
    dict(in_channels=3, out_channels=2, kernel_size=3, padding=(1, 2), padding_mode="replicate"),
    dict(in_channels=3, out_channels=2, kernel_size=3, stride=2, padding=1, padding_mode="circular"),
    dict(in_channels=3, out_channels=2, kernel_size=4, padding="same", padding_mode="reflect"),
]


@pytest.mark.parametrize("kwargs", CONVS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_conv2d(kwargs):
    g, t = both("Conv2d", **kwargs)
    assert repr(g) == repr(t)
    check_module(g, t, randn(2, kwargs["in_channels"], 7, 8))


def test_conv2d_unbatched_and_float64():
    g, t = both("Conv2d", 2, 3, 3, padding=1)
    check_module(g, t, randn(2, 5, 5))
    g, t = both("Conv2d", 2, 3, 3, padding=1)
    check_module(g.double(), t.double(), randn(1, 2, 5, 6, dtype=np.float64), rtol=1e-12, atol=1e-12)


def test_conv2d_errors():
    w = randn(2, 3, 3, 3)
    raises_like(lambda: torch.nn.functional.conv2d(torch.zeros(2, 3), torch.tensor(w)),
                lambda: F.conv2d(gt.zeros(2, 3), gt.tensor(w)))
    raises_like(lambda: torch.nn.functional.conv2d(torch.zeros(1, 3, 5, 5), torch.tensor(w), stride=2, padding="same"),
                lambda: F.conv2d(gt.zeros(1, 3, 5, 5), gt.tensor(w), stride=2, padding="same"))
    # (messages that print a set are compared up to the set, whose order varies with the hash seed)
    for kwargs, match in [(dict(groups=0), None), (dict(groups=2), None), (dict(padding="same", stride=2), None),
                          (dict(padding="full"), "Invalid padding string 'full'"),
                          (dict(padding_mode="zero"), "padding_mode must be one of")]:
        raises_like(lambda k=kwargs: torch.nn.Conv2d(3, 4, 3, **k), lambda k=kwargs: nn.Conv2d(3, 4, 3, **k), match)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 1), dilation=(2, 1)),
    dict(kernel_size=3, stride=3, padding=1, ceil_mode=True), dict(kernel_size=2, stride=1, dilation=2),
])
def test_max_pool2d_values_indices_and_gradient(kwargs):
    g, t = both("MaxPool2d", return_indices=True, **kwargs)
    assert repr(g) == repr(t)
    x = randn(2, 3, 7, 8)
    gx, tx = gt.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    (gv, gi), (tv, ti) = g(gx), t(tx)
    assert_same(gv, tv)
    assert_same(gi, ti)
    assert gv.grad_fn.name() == "MaxPool2DWithIndicesBackward0"
    v = randn(*tv.shape, seed=5)
    (gv * gt.tensor(v)).sum().backward()
    (tv * torch.tensor(v)).sum().backward()
    assert_same(gx.grad, tx.grad, rtol=1e-6, atol=1e-6)


def test_max_pool2d_ties_send_gradient_to_one_element():
    x = np.ones((1, 1, 4, 4), np.float32)
    gx, tx = gt.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    F.max_pool2d(gx, 2).sum().backward()
    torch.nn.functional.max_pool2d(tx, 2).sum().backward()
    assert_same(gx.grad, tx.grad)


@pytest.mark.parametrize("size,kwargs", [
    (5, dict(kernel_size=2, ceil_mode=True)), (6, dict(kernel_size=3, stride=2, ceil_mode=True, padding=1)),
    (7, dict(kernel_size=3, stride=2, ceil_mode=True)), (4, dict(kernel_size=2, stride=2, ceil_mode=True, padding=1)),
])
def test_pool_ceil_mode_shapes(size, kwargs):
    x = randn(1, 2, size, size)
    for name in ("max_pool2d", "avg_pool2d"):
        assert tuple(getattr(F, name)(gt.tensor(x), **kwargs).shape) == \
            tuple(getattr(torch.nn.functional, name)(torch.tensor(x), **kwargs).shape)


def test_max_pool2d_errors_and_unbatched():
    raises_like(lambda: torch.nn.functional.max_pool2d(torch.zeros(1, 1, 4, 4), 2, padding=2),
                lambda: F.max_pool2d(gt.zeros(1, 1, 4, 4), 2, padding=2))
    check_module(*both("MaxPool2d", 2), randn(3, 6, 6))


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=(2, 3), stride=(1, 2), divisor_override=5),
])
def test_avg_pool2d(kwargs):
    g, t = both("AvgPool2d", **kwargs)
    assert repr(g) == repr(t)
    got, _ = check_module(g, t, randn(2, 3, 7, 8))
    assert got.grad_fn.name() == "AvgPool2DBackward0"


@pytest.mark.parametrize("out", [(1, 1), (2, 4), (3, 5), 4, (None, 3), (7, 8)])
def test_adaptive_avg_pool2d(out):
    g, t = both("AdaptiveAvgPool2d", out)
    assert repr(g) == repr(t)
    got, _ = check_module(g, t, randn(2, 3, 7, 8))
    assert got.grad_fn.name() == "AdaptiveAvgPool2DBackward0"


@pytest.mark.parametrize("name,shape", [("BatchNorm1d", (6, 4)), ("BatchNorm1d", (5, 4, 3)), ("BatchNorm2d", (3, 4, 5, 2))])
@pytest.mark.parametrize("kwargs", [dict(), dict(momentum=None), dict(affine=False), dict(momentum=0.3, eps=1e-3),
                                    dict(track_running_stats=False)])
def test_batch_norm_training_running_stats_and_eval(name, shape, kwargs):
    g, t = both(name, 4, **kwargs)
    assert repr(g) == repr(t)
    copy_weights(g, t)
    with torch.no_grad():  # non-trivial affine parameters
        for p in t.parameters():
            p.copy_(torch.tensor(randn(*p.shape, seed=9)))
    for step in range(3):
        x = randn(*shape, seed=step) * (step + 1) + step
        got, want = check_module(g, t, x)
        assert got.grad_fn.name() == "NativeBatchNormBackward0"
        for (n, gb), (_, tb) in zip(g.named_buffers(), t.named_buffers()):
            assert_same(gb, tb, rtol=1e-5, atol=1e-6, what=n)
    g.eval(), t.eval()
    check_module(g, t, randn(*shape, seed=7))


def test_batch_norm_errors():
    raises_like(lambda: torch.nn.BatchNorm2d(3)(torch.zeros(3, 3, 3)), lambda: nn.BatchNorm2d(3)(gt.zeros(3, 3, 3)))
    raises_like(lambda: torch.nn.BatchNorm1d(3)(torch.zeros(1, 3)), lambda: nn.BatchNorm1d(3)(gt.zeros(1, 3)))


@pytest.mark.parametrize("normalized,kwargs", [((5,), {}), ((4, 5), {}), (5, dict(elementwise_affine=False)),
                                               ((5,), dict(bias=False, eps=1e-3))])
def test_layer_norm(normalized, kwargs):
    g, t = both("LayerNorm", normalized, **kwargs)
    assert repr(g) == repr(t)
    with torch.no_grad():
        for p in t.parameters():
            p.copy_(torch.tensor(randn(*p.shape, seed=4)))
    got, _ = check_module(g, t, randn(3, 4, 5) * 3 + 1)
    assert got.grad_fn.name() == "NativeLayerNormBackward0"
    raises_like(lambda: torch.nn.functional.layer_norm(torch.zeros(2, 3), (4,)),
                lambda: F.layer_norm(gt.zeros(2, 3), (4,)))


def test_embedding_lookup_padding_idx_and_errors():
    g, t = both("Embedding", 6, 3, padding_idx=1)
    assert repr(g) == repr(t)
    assert (g.weight[1] == 0).all()
    idx = np.array([[1, 0, 5], [1, 2, 2]], np.int64)
    copy_weights(g, t)
    got, want = g(gt.tensor(idx)), t(torch.tensor(idx))
    assert_same(got, want)
    v = randn(*want.shape)
    (got * gt.tensor(v)).sum().backward()
    (want * torch.tensor(v)).sum().backward()
    assert_same(g.weight.grad, t.weight.grad, rtol=1e-6)
    assert got.grad_fn.name() == "EmbeddingBackward0"
    raises_like(lambda: t(torch.tensor([6])), lambda: g(gt.tensor([6])))
    raises_like(lambda: t(torch.tensor([1.0])), lambda: g(gt.tensor([1.0])))
    frozen = nn.Embedding.from_pretrained(gt.tensor(randn(4, 2)))
    assert not frozen.weight.requires_grad and frozen(gt.tensor([3])).shape == (1, 2)


@pytest.mark.parametrize("name,args", [
    ("ReLU", ()), ("LeakyReLU", (0.2,)), ("Sigmoid", ()), ("Tanh", ()), ("GELU", ()), ("GELU", ("tanh",)),
    ("Softmax", (1,)), ("LogSoftmax", (-1,)), ("SiLU", ()), ("Softplus", (2.0, 3.0)), ("Identity", ()),
    ("Flatten", ()), ("Flatten", (0, 1)), ("Unflatten", (1, (2, 2))),
])
def test_activations_and_reshapes(name, args):
    g, t = both(name, *args)
    assert repr(g) == repr(t)
    x = randn(3, 4, 2) * 3
    x[0, 0, 0] = 0.0
    got, want = check_module(g, t, x)
    if want.grad_fn is not None and name not in ("Flatten", "Unflatten", "Identity"):
        assert got.grad_fn.name() == want.grad_fn.name()


def test_inplace_relu_and_leaky_relu():
    for g_fn, t_fn in [(lambda x: F.relu(x, inplace=True), lambda x: torch.nn.functional.relu(x, inplace=True)),
                       (lambda x: F.leaky_relu(x, 0.1, True), lambda x: torch.nn.functional.leaky_relu(x, 0.1, True))]:
        x = randn(5, 4)
        gx, tx = gt.tensor(x), torch.tensor(x)
        assert g_fn(gx) is gx
        t_fn(tx)
        assert_same(gx, tx)


def test_softmax_without_dim_warns():
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        F.softmax(gt.randn(2, 3))


def test_dropout_train_statistics_scaling_and_eval_identity():
    d = nn.Dropout(0.25)
    assert repr(d) == repr(torch.nn.Dropout(0.25))
    x = gt.ones(200, 500, requires_grad=True)
    y = d(x)
    kept = (y != 0).float().mean().item()
    assert abs(kept - 0.75) < 0.01
    assert np.allclose(y.detach().numpy()[y.detach().numpy() != 0], 1 / 0.75)
    y.sum().backward()
    assert_same(x.grad, torch.tensor(y.detach().numpy()))  # d(x * mask / (1-p)) / dx = mask / (1-p)
    d.eval()
    assert d(x) is x
    assert (F.dropout(gt.ones(10), p=1.0) == 0).all()
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, but got 1.5"):
        nn.Dropout(1.5)


def test_dropout_mask_reproducible_under_manual_seed():
    gt.manual_seed(123)
    a = F.dropout(gt.ones(50))
    gt.manual_seed(123)
    b = F.dropout(gt.ones(50))
    c = F.dropout(gt.ones(50))
    assert (a == b).all() and not (b == c).all()


def test_pad_modes_against_torch():
    x = randn(2, 3, 4, 5)
    for pad, mode, kw in [((1, 2), "constant", dict(value=1.5)), ((1, 2, 0, 3), "constant", {}),
                          ((-1, 1, 2, -2), "constant", {}), ((1, 2, 3, 0), "reflect", {}),
                          ((2, 2, 1, 3), "replicate", {}), ((1, 2, 3, 4), "circular", {}), ((3, 1), "reflect", {})]:
        x_ = x[0] if mode != "constant" and len(pad) == 2 else x
        _pad_pair(x_, pad, mode, kw)
    raises_like(lambda: torch.nn.functional.pad(torch.zeros(1, 1, 3, 3), (3, 3, 0, 0), mode="reflect"),
                lambda: F.pad(gt.zeros(1, 1, 3, 3), (3, 3, 0, 0), mode="reflect"), match="Padding size should be less")
    raises_like(lambda: torch.nn.functional.pad(torch.zeros(1, 1, 3, 3), (1, 1), mode="reflect"),
                lambda: F.pad(gt.zeros(1, 1, 3, 3), (1, 1), mode="reflect"))


def _pad_pair(x, pad, mode, kw):
    gx, tx = gt.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    got, want = F.pad(gx, pad, mode, **kw), torch.nn.functional.pad(tx, pad, mode, **kw)
    assert_same(got, want)
    if mode in ("reflect", "replicate"):
        assert got.grad_fn.name() == want.grad_fn.name()
    v = randn(*want.shape, seed=2)
    (got * gt.tensor(v)).sum().backward()
    (want * torch.tensor(v)).sum().backward()
    assert_same(gx.grad, tx.grad, rtol=1e-6, atol=1e-6)


def test_unfold_im2col_and_one_hot():
    x = randn(2, 3, 6, 5)
    gx, tx = gt.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    kw = dict(kernel_size=(2, 3), dilation=(1, 2), padding=1, stride=(2, 1))
    got, want = F.unfold(gx, **kw), torch.nn.functional.unfold(tx, **kw)
    assert_same(got, want)
    got.sum().backward()
    want.sum().backward()
    assert_same(gx.grad, tx.grad)
    t = np.array([0, 3, 1], np.int64)
    assert_same(F.one_hot(gt.tensor(t), 5), torch.nn.functional.one_hot(torch.tensor(t), 5))
    raises_like(lambda: torch.nn.functional.one_hot(torch.tensor([3]), 2), lambda: F.one_hot(gt.tensor([3]), 2))


def test_lenet_forward_backward_matches_torch():
    class LeNet:
        def __init__(self, lib):
            n = lib.nn
            self.m = n.Sequential(n.Conv2d(1, 6, 5, padding=2), n.ReLU(), n.MaxPool2d(2), n.Conv2d(6, 16, 5), n.ReLU(),
                                  n.MaxPool2d(2), n.Flatten(), n.Linear(400, 120), n.ReLU(), n.Linear(120, 84),
                                  n.ReLU(), n.Linear(84, 10))

    g, t = LeNet(gt).m, LeNet(torch).m
    got, want = check_module(g, t, randn(4, 1, 28, 28), rtol=1e-4, atol=1e-5)
    loss_g = F.cross_entropy(got.detach(), gt.tensor([1, 2, 3, 4]))
    loss_t = torch.nn.functional.cross_entropy(want.detach(), torch.tensor([1, 2, 3, 4]))
    assert_same(loss_g, loss_t, rtol=1e-5)


def test_max_pool2d_without_grad_equals_torch_including_nan(torch):
    x = np.random.default_rng(3).standard_normal((2, 3, 9, 8)).astype(np.float32)
    x[0, 1, 2, 3] = np.nan
    with gt.no_grad():  # the plain max-reduction path: no indices, no gradient
        got = gt.nn.functional.max_pool2d(gt.from_numpy(x), 3, stride=2, padding=1, ceil_mode=True)
    want = torch.nn.functional.max_pool2d(torch.from_numpy(x), 3, stride=2, padding=1, ceil_mode=True)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
