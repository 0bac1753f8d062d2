"""Conv1d, ConvTranspose1d/2d against torch: outputs, gradients, reprs, output_size; finite
differences in float64; errors; compiled equals eager."""

import numpy as np
import pytest
from conftest import assert_same, gradcheck, raises_like, randn
from nn_helpers import check_module, copy_weights

import graphtorch as gt
import graphtorch.nn as nn
import graphtorch.nn.functional as F

torch = pytest.importorskip("torch")


def both(name, *args, **kwargs):
    return getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)


def ids(kwargs):
    return ",".join(f"{a}={b}" for a, b in kwargs.items())


CONV1D = [
    dict(in_channels=3, out_channels=4, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=2, dilation=2, groups=2),
    dict(in_channels=3, out_channels=2, kernel_size=4, padding="same", bias=False),
    dict(in_channels=3, out_channels=2, kernel_size=3, padding=2, padding_mode="reflect"),
    dict(in_channels=3, out_channels=2, kernel_size=3, padding=1, padding_mode="circular"),
]


@pytest.mark.parametrize("kwargs", CONV1D, ids=ids)
def test_conv1d(kwargs):
    g, t = both("Conv1d", **kwargs)
    assert repr(g) == repr(t) and list(g.state_dict()) == list(t.state_dict())
    check_module(g, t, randn(2, kwargs["in_channels"], 9))
    check_module(g, t, randn(kwargs["in_channels"], 9, seed=1))  # unbatched


TRANSPOSED = [
    dict(in_channels=3, out_channels=4, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, output_padding=1, groups=2),
    dict(in_channels=3, out_channels=2, kernel_size=(3, 2), stride=(2, 3), padding=(0, 1), output_padding=(1, 2)),
    dict(in_channels=2, out_channels=4, kernel_size=3, padding=2, dilation=2, bias=False),
    dict(in_channels=4, out_channels=4, kernel_size=2, stride=3, output_padding=1, dilation=2, groups=4),
]


@pytest.mark.parametrize("kwargs", TRANSPOSED, ids=ids)
def test_conv_transpose2d(kwargs):
    g, t = both("ConvTranspose2d", **kwargs)
    assert repr(g) == repr(t) and list(g.state_dict()) == list(t.state_dict())
    assert g.weight.shape == t.weight.shape
    check_module(g, t, randn(2, kwargs["in_channels"], 5, 4))


@pytest.mark.parametrize("kwargs", [dict(in_channels=3, out_channels=4, kernel_size=3),
                                    dict(in_channels=4, out_channels=2, kernel_size=4, stride=2, padding=1,
                                         output_padding=1, groups=2, dilation=1)], ids=ids)
def test_conv_transpose1d(kwargs):
    g, t = both("ConvTranspose1d", **kwargs)
    assert repr(g) == repr(t)
    check_module(g, t, randn(2, kwargs["in_channels"], 6))
    check_module(g, t, randn(kwargs["in_channels"], 6, seed=2))


def test_conv_transpose_output_size():
    g, t = both("ConvTranspose2d", 2, 3, 3, stride=2, padding=1)
    copy_weights(g, t)
    x = randn(1, 2, 4, 5)
    for size in ((7, 9), (8, 10), [1, 3, 8, 9]):
        assert_same(g(gt.tensor(x), output_size=size).detach(), t(torch.tensor(x), output_size=size).detach(),
                    rtol=1e-5, atol=1e-6)
    raises_like(lambda: t(torch.tensor(x), output_size=(10, 9)), lambda: g(gt.tensor(x), output_size=(10, 9)),
                match="requested an output size of")


def test_conv_transpose_inverts_the_shape_of_a_strided_conv():
    conv, up = nn.Conv2d(3, 5, 3, stride=2, padding=1), nn.ConvTranspose2d(5, 3, 3, stride=2, padding=1,
                                                                          output_padding=1)
    assert up(conv(gt.zeros(1, 3, 8, 6))).shape == (1, 3, 8, 6)


def test_gradcheck():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((1, 4, 3, 3)), rng.standard_normal((4, 1, 2, 3)), rng.standard_normal(2)
    gradcheck(lambda a, k, c: F.conv_transpose2d(a, k, c, stride=2, padding=(1, 0), output_padding=1, groups=2),
              [x, w, b])
    gradcheck(lambda a, k: F.conv1d(a, k, stride=2, dilation=2), [rng.standard_normal((2, 2, 7)),
                                                                  rng.standard_normal((3, 2, 2))])
    gradcheck(lambda a, k: F.conv_transpose1d(a, k, stride=3), [rng.standard_normal((1, 2, 4)),
                                                               rng.standard_normal((2, 3, 2))])


def test_errors_like_torch():
    raises_like(lambda: torch.nn.functional.conv1d(torch.zeros(1, 1, 1, 5), torch.zeros(1, 1, 3)),
                lambda: F.conv1d(gt.zeros(1, 1, 1, 5), gt.zeros(1, 1, 3)))
    raises_like(lambda: torch.nn.functional.conv_transpose2d(torch.zeros(1, 3, 4, 4), torch.zeros(2, 3, 3, 3)),
                lambda: F.conv_transpose2d(gt.zeros(1, 3, 4, 4), gt.zeros(2, 3, 3, 3)))
    raises_like(lambda: torch.nn.functional.conv_transpose2d(torch.zeros(1, 2, 4, 4), torch.zeros(2, 3, 3, 3),
                                                             stride=2, output_padding=2),
                lambda: F.conv_transpose2d(gt.zeros(1, 2, 4, 4), gt.zeros(2, 3, 3, 3), stride=2, output_padding=2))
    raises_like(lambda: torch.nn.ConvTranspose2d(2, 3, 3, padding_mode="reflect"),
                lambda: nn.ConvTranspose2d(2, 3, 3, padding_mode="reflect"))
    raises_like(lambda: torch.nn.Conv1d(3, 4, 3, groups=2), lambda: nn.Conv1d(3, 4, 3, groups=2))
    raises_like(lambda: torch.nn.ConvTranspose2d(2, 3, 3, padding="same")(torch.zeros(1, 2, 4, 4)),
                lambda: nn.ConvTranspose2d(2, 3, 3, padding="same")(gt.zeros(1, 2, 4, 4)))


def test_compiled_equals_eager_with_backward():
    gt.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.ConvTranspose1d(4, 2, 4, stride=2, padding=1))
    up = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, groups=1)
    x1, x2 = gt.tensor(randn(2, 2, 7)), gt.tensor(randn(2, 3, 4, 5, seed=1))

    def loss_and_grads(f1, f2):
        for p in [*model.parameters(), *up.parameters()]:
            p.grad = None
        loss = f1(x1).square().sum() + f2(x2).tanh().sum()
        loss.backward()
        return loss, [p.grad.clone() for p in [*model.parameters(), *up.parameters()]]

    eager, eager_grads = loss_and_grads(model, up)
    compiled, compiled_grads = loss_and_grads(gt.compile(model), gt.compile(up))
    assert_same(compiled, eager, rtol=1e-5, atol=1e-5)
    for a, b in zip(compiled_grads, eager_grads):
        assert_same(a, b, rtol=1e-5, atol=1e-5)


def test_init_bounds_follow_torch_fan_in():
    gt.manual_seed(0)
    up = nn.ConvTranspose2d(8, 4, 3, groups=2)  # torch's fan_in: weight.size(1) * k * k = 2 * 9
    bound = 1 / np.sqrt(2 * 9)
    for p in (up.weight, up.bias):
        values = np.abs(p.detach().numpy())
        assert values.max() <= bound and values.max() > 0.8 * bound
    conv = nn.Conv1d(3, 5, 4)
    assert np.abs(conv.weight.detach().numpy()).max() <= 1 / np.sqrt(12)
