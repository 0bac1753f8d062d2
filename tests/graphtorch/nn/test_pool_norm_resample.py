"""MaxPool1d, AvgPool1d, AdaptiveAvgPool1d, AdaptiveMaxPool2d, GroupNorm, InstanceNorm1d/2d,
F.interpolate/nn.Upsample, PixelShuffle/PixelUnshuffle against torch: values, gradients, reprs,
running statistics, errors; float64 finite differences; compiled equals eager."""

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


POOLS = [
    ("MaxPool1d", (3,), {}), ("MaxPool1d", (3,), dict(stride=2, padding=1, dilation=2, ceil_mode=True)),
    ("AvgPool1d", (3,), {}), ("AvgPool1d", (4,), dict(stride=2, padding=2, count_include_pad=False, ceil_mode=True)),
    ("AdaptiveAvgPool1d", (4,), {}), ("AdaptiveAvgPool1d", (3,), {}),
    ("AdaptiveMaxPool2d", ((3, 4),), {}), ("AdaptiveMaxPool2d", ((2, None),), {}), ("AdaptiveMaxPool2d", (5,), {}),
]


@pytest.mark.parametrize("name,args,kwargs", POOLS, ids=str)
def test_pools(name, args, kwargs):
    g, t = both(name, *args, **kwargs)
    assert repr(g) == repr(t)
    shape = (2, 3, 6, 10) if name.endswith("2d") else (2, 3, 11)
    check_module(g, t, randn(*shape))
    check_module(g, t, randn(*shape[1:], seed=1))  # unbatched


def test_pool_indices():
    x = randn(2, 3, 12)
    got = F.max_pool1d(gt.tensor(x), 3, 2, 1, return_indices=True)
    want = torch.nn.functional.max_pool1d(torch.tensor(x), 3, 2, 1, return_indices=True)
    for a, b in zip(got, want):
        assert_same(a, b)
    x = randn(2, 3, 6, 8)
    got = F.adaptive_max_pool2d(gt.tensor(x), (3, 2), return_indices=True)
    want = torch.nn.functional.adaptive_max_pool2d(torch.tensor(x), (3, 2), return_indices=True)
    for a, b in zip(got, want):
        assert_same(a, b)


@pytest.mark.parametrize("kwargs", [dict(num_groups=2, num_channels=4), dict(num_groups=3, num_channels=6, eps=1e-3),
                                    dict(num_groups=1, num_channels=4, affine=False),
                                    dict(num_groups=4, num_channels=4, bias=False)], ids=str)
def test_group_norm(kwargs):
    g, t = both("GroupNorm", **kwargs)
    assert repr(g) == repr(t) and list(g.state_dict()) == list(t.state_dict())
    with torch.no_grad():  # non-trivial affine parameters, the same whatever ran before
        for k, p in enumerate(t.parameters()):
            p.copy_(torch.from_numpy(randn(*p.shape, seed=10 + k)))
    check_module(g, t, randn(2, kwargs["num_channels"], 3, 5))
    if kwargs["num_channels"] > kwargs["num_groups"]:  # 2-D input: a group of one value is all rounding noise
        check_module(g, t, randn(3, kwargs["num_channels"], seed=1), atol=1e-5)


@pytest.mark.parametrize("name,shape", [("InstanceNorm2d", (2, 3, 4, 5)), ("InstanceNorm1d", (2, 3, 7))])
@pytest.mark.parametrize("kwargs", [dict(), dict(affine=True), dict(affine=True, track_running_stats=True),
                                    dict(track_running_stats=True, momentum=0.3)], ids=str)
def test_instance_norm(name, shape, kwargs):
    g, t = both(name, 3, **kwargs)
    assert repr(g) == repr(t) and list(g.state_dict()) == list(t.state_dict())
    check_module(g, t, randn(*shape))
    check_module(g, t, randn(*shape[1:], seed=1))  # unbatched
    if kwargs.get("track_running_stats"):
        assert_same(g.running_mean, t.running_mean, rtol=1e-5, atol=1e-6)
        assert_same(g.running_var, t.running_var, rtol=1e-5, atol=1e-6)
        g.eval(), t.eval()
        check_module(g, t, randn(*shape, seed=2))


def test_norm_errors_like_torch():
    raises_like(lambda: torch.nn.GroupNorm(3, 4), lambda: nn.GroupNorm(3, 4))
    raises_like(lambda: torch.nn.functional.group_norm(torch.zeros(2, 3, 4), 2),
                lambda: F.group_norm(gt.zeros(2, 3, 4), 2))
    raises_like(lambda: torch.nn.InstanceNorm2d(3)(torch.zeros(3, 4)), lambda: nn.InstanceNorm2d(3)(gt.zeros(3, 4)))
    raises_like(lambda: torch.nn.InstanceNorm2d(3, affine=True)(torch.zeros(1, 2, 4, 4)),
                lambda: nn.InstanceNorm2d(3, affine=True)(gt.zeros(1, 2, 4, 4)))
    raises_like(lambda: torch.nn.functional.instance_norm(torch.zeros(2, 3, 1)),
                lambda: F.instance_norm(gt.zeros(2, 3, 1)))


INTERPOLATE = [
    ((1, 2, 5, 7), dict(scale_factor=2)),
    ((1, 2, 5, 7), dict(size=(8, 3))),
    ((1, 2, 5, 7), dict(scale_factor=(1.5, 0.7))),
    ((2, 3, 9), dict(size=4)),
    ((1, 2, 3, 4, 5), dict(scale_factor=2)),
    ((1, 2, 5, 7), dict(size=(8, 11), mode="bilinear")),
    ((1, 2, 5, 7), dict(size=(3, 11), mode="bilinear", align_corners=True)),
    ((1, 2, 5, 7), dict(scale_factor=2.5, mode="bilinear")),
    ((1, 2, 5, 7), dict(scale_factor=1.7, mode="bilinear", recompute_scale_factor=True)),
    ((2, 3, 6), dict(size=13, mode="linear", align_corners=True)),
    ((1, 1, 3, 4, 2), dict(size=(5, 2, 3), mode="trilinear")),
]


@pytest.mark.parametrize("shape,kwargs", INTERPOLATE, ids=str)
def test_interpolate(shape, kwargs):
    compare(lambda lib, x: lib.nn.functional.interpolate(x, **kwargs), randn(*shape), rtol=1e-5, atol=1e-6)


def test_upsample_module_and_grad_fn_names():
    for kwargs in (dict(scale_factor=2), dict(size=(3, 4), mode="bilinear", align_corners=True),
                   dict(scale_factor=(2, 3))):
        g, t = both("Upsample", **kwargs)
        assert repr(g) == repr(t)
        check_module(g, t, randn(2, 3, 4, 5))
    x = gt.zeros(1, 1, 2, 2, requires_grad=True)
    assert F.interpolate(x, scale_factor=2, mode="bilinear").grad_fn.name() == "UpsampleBilinear2DBackward0"
    assert F.interpolate(x, scale_factor=2).grad_fn.name() == "UpsampleNearest2DBackward0"


def test_interpolate_errors_like_torch():
    x4 = (torch.zeros(1, 1, 4, 4), gt.zeros(1, 1, 4, 4))
    cases = [dict(), dict(size=2, scale_factor=2), dict(size=2, align_corners=True), dict(size=(2, 2, 2))]
    for kwargs in cases:
        raises_like(lambda k=kwargs: torch.nn.functional.interpolate(x4[0], **k),
                    lambda k=kwargs: F.interpolate(x4[1], **k))
    raises_like(lambda: torch.nn.functional.interpolate(torch.zeros(1, 1, 4), size=3, mode="bilinear"),
                lambda: F.interpolate(gt.zeros(1, 1, 4), size=3, mode="bilinear"))


@pytest.mark.parametrize("shape,r", [((2, 8, 3, 4), 2), ((18, 2, 3), 3), ((2, 2, 4, 3, 2), 1)])
def test_pixel_shuffle(shape, r):
    g, t = both("PixelShuffle", r)
    assert repr(g) == repr(t)
    check_module(g, t, randn(*shape))
    g, t = both("PixelUnshuffle", r)
    check_module(g, t, randn(*shape[:-3], shape[-3] // (r * r), shape[-2] * r, shape[-1] * r))
    raises_like(lambda: torch.nn.functional.pixel_shuffle(torch.zeros(1, 3, 2, 2), 2),
                lambda: F.pixel_shuffle(gt.zeros(1, 3, 2, 2), 2))
    raises_like(lambda: torch.nn.functional.pixel_unshuffle(torch.zeros(1, 3, 3, 2), 2),
                lambda: F.pixel_unshuffle(gt.zeros(1, 3, 3, 2), 2))


def test_gradcheck():
    rng = np.random.default_rng(0)
    x4, x3 = rng.standard_normal((1, 2, 4, 5)), rng.standard_normal((2, 2, 7))
    gradcheck(lambda a: F.interpolate(a, size=(6, 3), mode="bilinear"), [x4])
    gradcheck(lambda a: F.interpolate(a, scale_factor=2, mode="bilinear", align_corners=True), [x4])
    gradcheck(lambda a: F.interpolate(a, size=(7, 9)), [x4])
    gradcheck(lambda a, w, b: F.group_norm(a, 2, w, b), [x4.repeat(2, 1), rng.standard_normal(4),
                                                         rng.standard_normal(4)])
    gradcheck(lambda a, w: F.instance_norm(a, weight=w), [x4, rng.standard_normal(2)])
    gradcheck(lambda a: F.adaptive_max_pool2d(a, (3, 2)), [x4])
    gradcheck(lambda a: F.max_pool1d(a, 3, 2, padding=1) + F.avg_pool1d(a, 3, 2, padding=1), [x3])
    gradcheck(lambda a: F.adaptive_avg_pool1d(a, 3), [x3])
    gradcheck(lambda a: F.pixel_shuffle(a, 2), [rng.standard_normal((1, 4, 2, 3))])


def test_compiled_equals_eager():
    gn, inorm = nn.GroupNorm(2, 4), nn.InstanceNorm2d(4, affine=True)

    def fn(x):
        up = F.interpolate(gn(x), scale_factor=2, mode="bilinear") + F.interpolate(inorm(x), scale_factor=2)
        pooled = F.adaptive_max_pool2d(up, (3, 5)).flatten(2)
        return (F.max_pool1d(pooled, 2) + F.avg_pool1d(pooled, 2)).sum(-1) + F.pixel_shuffle(up, 2).mean((2, 3))[:, :1]

    x = gt.tensor(randn(2, 4, 5, 6), requires_grad=True)
    eager = fn(x)
    eager.sum().backward()
    eager_grad, x.grad = x.grad, None
    compiled = gt.compile(fn)
    compiled(x)
    x.grad = None
    got = compiled(x)
    got.sum().backward()
    assert len(compiled.entries) == 1
    assert_same(got, eager, rtol=1e-5, atol=1e-5)
    assert_same(x.grad, eager_grad, rtol=1e-5, atol=1e-5)
