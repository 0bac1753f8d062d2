"""Pooling (the windowed-reduction primitives, compiler/pooling.py) against torch in eager mode:
values, return_indices, gradients (ties and NaN included), double backward, integer dtypes,
float64 finite differences and the errors for bad arguments. Compiled runs are in
tests/compiler/test_llvm_pooling.py and tests/compiler/test_cuda_pooling.py."""

import numpy as np
import pytest
from conftest import compare, gradcheck, raises_like, randn

import graphtorch as gt
import graphtorch.nn.functional as F

torch = pytest.importorskip("torch")

# (input shape, kwargs): kernels 1-7, strides, padding, dilation, ceil_mode, odd sizes, 1-64 channels
MAX_2D = [
    ((2, 3, 8, 8), dict(kernel_size=2)),
    ((1, 1, 7, 9), dict(kernel_size=1)),
    ((2, 4, 9, 11), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 10, 7), dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1))),
    ((2, 3, 11, 13), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)),
    ((1, 5, 13, 12), dict(kernel_size=5, stride=1, padding=2, dilation=1)),
    ((1, 2, 15, 16), dict(kernel_size=7, stride=2, padding=3, ceil_mode=True)),
    ((1, 3, 17, 9), dict(kernel_size=(6, 3), stride=(4, 2), padding=(3, 1), dilation=(1, 2), ceil_mode=True)),
    ((2, 64, 6, 6), dict(kernel_size=2, stride=2)),
    ((3, 5, 5), dict(kernel_size=3, stride=2, ceil_mode=True)),  # unbatched
]

AVG_2D = [
    ((2, 3, 8, 8), dict(kernel_size=2)),
    ((1, 1, 7, 9), dict(kernel_size=1, stride=2)),
    ((2, 4, 9, 11), dict(kernel_size=3, stride=2, padding=1)),
    ((2, 4, 9, 11), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ((1, 2, 11, 13), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)),
    ((1, 2, 11, 13), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True, count_include_pad=False)),
    ((1, 3, 15, 16), dict(kernel_size=(7, 5), stride=(2, 1), padding=(3, 2), divisor_override=5)),
    ((2, 64, 6, 7), dict(kernel_size=(2, 3), stride=1, ceil_mode=True)),
    ((3, 9, 6), dict(kernel_size=2, stride=1, padding=1, divisor_override=-3)),  # unbatched
]


@pytest.mark.parametrize("shape,kwargs", MAX_2D, ids=str)
def test_max_pool2d_values_indices_and_gradients(shape, kwargs):
    compare(lambda lib, x: lib.nn.functional.max_pool2d(x, **kwargs, return_indices=True), randn(*shape))


@pytest.mark.parametrize("shape,kwargs", AVG_2D, ids=str)
def test_avg_pool2d_values_and_gradients(shape, kwargs):
    compare(lambda lib, x: lib.nn.functional.avg_pool2d(x, **kwargs), randn(*shape), rtol=1e-5)


MAX_1D = [dict(kernel_size=3), dict(kernel_size=4, stride=3, padding=2, dilation=1, ceil_mode=True),
          dict(kernel_size=2, dilation=3)]


@pytest.mark.parametrize("kwargs", MAX_1D)
def test_max_pool1d(kwargs):
    compare(lambda lib, x: lib.nn.functional.max_pool1d(x, **kwargs, return_indices=True), randn(2, 5, 13))


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True,
                                                                count_include_pad=False)])
def test_avg_pool1d(kwargs):
    compare(lambda lib, x: lib.nn.functional.avg_pool1d(x, **kwargs), randn(2, 5, 13), rtol=1e-5)


@pytest.mark.parametrize("shape,out", [((2, 3, 7, 10), (3, 4)), ((1, 2, 5, 5), (5, 5)), ((1, 2, 4, 6), (6, 9)),
                                       ((2, 3, 9, 8), 1), ((3, 6, 7), (None, 2))], ids=str)
def test_adaptive_pools_2d(shape, out):
    x = randn(*shape)
    compare(lambda lib, a: lib.nn.functional.adaptive_avg_pool2d(a, out), x, rtol=1e-5)
    compare(lambda lib, a: lib.nn.functional.adaptive_max_pool2d(a, out, return_indices=True), x)


def test_adaptive_avg_pool1d_uneven_windows():
    compare(lambda lib, a: lib.nn.functional.adaptive_avg_pool1d(a, 4), randn(2, 3, 11), rtol=1e-5)


def test_max_pool_ties_go_to_the_first_maximum():
    x = np.random.default_rng(3).integers(0, 3, (2, 3, 9, 9)).astype(np.float32)  # many equal values per window
    compare(lambda lib, a: lib.nn.functional.max_pool2d(a, 3, stride=1, padding=1, return_indices=True), x, rtol=0,
            atol=0)
    compare(lambda lib, a: lib.nn.functional.max_pool2d(a, 2, return_indices=True), x, rtol=0, atol=0)


def test_max_pool_nan_wins_and_the_last_nan_takes_the_gradient():
    x = randn(1, 2, 6, 6)
    x[0, 0, 1, 1] = x[0, 0, 1, 0] = x[0, 1, 5, 5] = np.nan
    compare(lambda lib, a: lib.nn.functional.max_pool2d(a, 2, return_indices=True), x)
    compare(lambda lib, a: lib.nn.functional.max_pool2d(a, 3, stride=1, padding=1, return_indices=True), x)


def test_windows_of_minus_infinity_pick_their_first_element_inside():
    x = np.full((1, 1, 3, 4), -np.inf, np.float32)
    compare(lambda lib, a: lib.nn.functional.max_pool2d(a, 3, stride=1, padding=1, return_indices=True), x)


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8"])
def test_integer_pooling(dtype):
    x = np.random.default_rng(0).integers(0 if dtype == "uint8" else -50, 50, (2, 3, 7, 7)).astype(dtype)
    compare(lambda lib, a: lib.nn.functional.max_pool2d(a, 3, stride=2, padding=1, return_indices=True), x, grad=False)
    if dtype == "int64":
        compare(lambda lib, a: lib.nn.functional.avg_pool2d(a, 2, ceil_mode=True), x, grad=False)


def test_float64_finite_differences():
    x = np.random.default_rng(0).standard_normal((1, 2, 7, 6))  # distinct values: max is differentiable there
    gradcheck(lambda a: F.max_pool2d(a, 3, stride=2, padding=1, dilation=1, ceil_mode=True), [x])
    gradcheck(lambda a: F.adaptive_max_pool2d(a, (3, 4)), [x])
    gradcheck(lambda a: F.avg_pool2d(a, 3, stride=2, padding=1, count_include_pad=False, ceil_mode=True), [x])
    gradcheck(lambda a: F.adaptive_avg_pool2d(a, (4, 5)), [x])


@pytest.mark.parametrize("op", ["max", "avg", "adaptive_max"])
def test_double_backward_matches_torch(op):
    fns = {"max": lambda lib, a: lib.nn.functional.max_pool2d(a, 3, stride=2, padding=1),
           "avg": lambda lib, a: lib.nn.functional.avg_pool2d(a, 3, stride=2, padding=1, count_include_pad=False),
           "adaptive_max": lambda lib, a: lib.nn.functional.adaptive_max_pool2d(a, (2, 3))}
    x, v = randn(2, 3, 7, 7, dtype=np.float64), randn(2, 3, 7, 7, dtype=np.float64, seed=1)
    grads = []
    for lib in (gt, torch):
        a = lib.tensor(x, requires_grad=True)
        out = fns[op](lib, a)
        w = lib.tensor(np.linspace(-1, 1, out.numel()).reshape(tuple(out.shape)), requires_grad=True)
        (ga,) = lib.autograd.grad((out * w).sum(), a, create_graph=True)
        (ga * lib.tensor(v)).sum().backward()
        grads.append((ga.detach().numpy() if lib is torch else ga._data, w.grad.numpy() if lib is torch else w.grad._data))
    for mine, theirs in zip(*grads):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-12)


def test_double_backward_of_a_window_with_no_tap_inside_is_zero():
    """Dilation 5 over 4 elements with padding 1: the one window's taps (-1 and 4) both miss the
    input, so no input gradient depends on its output gradient (its argmax index is -1)."""
    x = gt.tensor([[[1.0, 2.0, 3.0, 4.0]]], dtype=gt.float64, requires_grad=True)
    y = F.max_pool1d(x, 2, stride=1, padding=1, dilation=5)
    gy = gt.ones_like(y).requires_grad_()
    (gx,) = gt.autograd.grad(y, x, gy, create_graph=True)
    (ggy,) = gt.autograd.grad((gx * gt.tensor([[[5.0, 6.0, 7.0, 8.0]]], dtype=gt.float64)).sum(), gy)
    assert y.item() == -np.inf and gx.abs().sum().item() == 0 and ggy.item() == 0


def test_max_pool_grad_fn_name():
    x = gt.tensor(randn(1, 1, 4, 4), requires_grad=True)
    assert F.max_pool2d(x, 2).grad_fn.name() == "MaxPool2DWithIndicesBackward0"
    assert F.avg_pool2d(x, 2).grad_fn.name() == "AvgPool2DBackward0"


BAD = [
    ("max_pool2d", (2, 3), dict(kernel_size=2)),
    ("max_pool2d", (1, 1, 4, 4), dict(kernel_size=2, padding=2)),
    ("max_pool2d", (1, 1, 4, 4), dict(kernel_size=0)),
    ("max_pool2d", (1, 1, 3, 3), dict(kernel_size=5)),
    ("max_pool2d", (1, 1, 4, 4), dict(kernel_size=2, stride=0)),
    ("avg_pool2d", (1, 1, 4, 4), dict(kernel_size=2, padding=2)),
    ("avg_pool2d", (1, 1, 4, 4), dict(kernel_size=2, divisor_override=0)),
    ("avg_pool2d", (1, 1, 2, 2), dict(kernel_size=3)),
    ("max_pool1d", (4,), dict(kernel_size=2)),
    ("avg_pool1d", (1, 1, 2, 2, 2), dict(kernel_size=2)),
    ("adaptive_avg_pool2d", (2, 3), dict(output_size=2)),
    ("adaptive_max_pool2d", (2, 3), dict(output_size=2)),
    ("adaptive_avg_pool2d", (1, 2, 3), dict(output_size=-1)),
]


@pytest.mark.parametrize("name,shape,kwargs", BAD, ids=str)
def test_bad_arguments_raise_like_torch(name, shape, kwargs):
    x = randn(*shape)
    raises_like(lambda: getattr(torch.nn.functional, name)(torch.tensor(x), **kwargs),
                lambda: getattr(F, name)(gt.tensor(x), **kwargs))


def test_zero_sized_adaptive_output_is_empty():
    compare(lambda lib, a: lib.nn.functional.adaptive_avg_pool2d(a, (0, 2)), randn(1, 2, 4, 4), grad=False)
BAD += [("max_pool2d", (1, 1, 4, 4), dict(kernel_size=0, stride=1)),
        ("max_pool2d", (1, 1, 4, 4), dict(kernel_size=2, dilation=0)),
        ("avg_pool2d", (1, 1, 4, 4), dict(kernel_size=2, stride=-1))]


COMPILED = [("max_pool2d", MAX_2D[2]), ("max_pool2d", MAX_2D[7]), ("max_pool2d", MAX_2D[8]),
            ("avg_pool2d", AVG_2D[5]), ("avg_pool2d", AVG_2D[6]), ("max_pool1d", ((2, 5, 13), MAX_1D[1])),
            ("adaptive_max_pool2d", ((2, 3, 7, 10), dict(output_size=(3, 4)))),
            ("adaptive_avg_pool2d", ((1, 2, 4, 6), dict(output_size=(6, 9))))]


@pytest.mark.parametrize("name,case", COMPILED, ids=str)
def test_compiled_equals_eager_forward_and_backward(name, case):
    """The LLVM kernels (tests/compiler/test_llvm_pooling.py checks them bit for bit) through the user API."""
    shape, kwargs = case
    fn = getattr(F, name)
    x = gt.tensor(randn(*shape), requires_grad=True)
    v = gt.tensor(randn(*fn(x.detach(), **kwargs).shape, seed=4))
    eager_out = fn(x, **kwargs)
    (eager_grad,) = gt.autograd.grad((eager_out * v).sum(), x)
    compiled = gt.compile(lambda a: fn(a, **kwargs) * v)
    for _ in range(2):  # the first call runs eagerly
        out = compiled(x)
    (grad,) = gt.autograd.grad(out.sum(), x)
    np.testing.assert_array_equal(out.detach().numpy(), (eager_out * v).detach().numpy())
    np.testing.assert_array_equal(grad.numpy(), eager_grad.numpy())
