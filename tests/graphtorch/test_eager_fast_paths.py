"""Eager mode's fast paths against torch: type promotion of a tensor with a Python number, the
memoized type rules and the floating-point warnings, the conv2d numpy kernel's two im2col layouts,
and log_softmax, nll_loss (cross_entropy) and linear as one op each.

Each fast path is only a cheaper way to run an op's one definition, so every test compares
values, dtypes and gradients with torch on the cases the fast path takes and on those it leaves."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import compare, gradcheck, loss_eager_then_compiled, raises_like, randn

import graphtorch as gt
from graphtorch import dispatch
from graphtorch.compiler.primitives import _conv2d_one_gemm, _conv2d_per_image

DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("number", [2, -3, 2.5, True, 300])
def test_a_tensor_with_a_python_number_promotes_as_torch(torch, dtype, number):
    g, t = gt.zeros(3, dtype=getattr(gt, dtype)), torch.zeros(3, dtype=getattr(torch, dtype))
    assert str(gt.result_type(g, number)) == str(torch.result_type(t, number))
    if dtype != "bool" or isinstance(number, bool):
        assert str((g + number).dtype) == str((t + number).dtype)
        assert str((number * g).dtype) == str((number * t).dtype)


def test_a_memoized_type_rule_still_refuses_what_it_refused():
    a, b = gt.ones(2), gt.ones(2, dtype=gt.bool)
    a - a  # the float32 rule accepted once
    for _ in range(2):
        with pytest.raises(RuntimeError, match="Subtraction, the `-` operator, with two bool tensors"):
            b - b
        with pytest.raises(RuntimeError, match="not implemented for 'Bool'"):
            dispatch.apply("sub", b, b)


def test_no_floating_point_warnings_forward_or_backward(torch):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's divide/invalid warnings would fail the test
        compare(lambda L, x: x.log() + (x / 0.0) + x.sqrt(), np.array([0.0, 1.0, -1.0, 4.0], np.float32))


CONVS = [  # (input, weight, stride, padding, dilation, groups)
    ((2, 3, 9, 9), (4, 3, 3, 3), 1, 1, 1, 1),  # rows longer than the kernel: one GEMM per image
    ((2, 4, 11, 10), (6, 2, 3, 2), 2, (1, 0), (2, 1), 2),  # strided, dilated, grouped
    ((1, 3, 12, 12), (2, 3, 10, 10), 1, 0, 1, 1),  # a kernel wider than the output: one tall GEMM
    ((3, 6, 8, 8), (6, 2, 7, 7), 1, 1, 1, 3),  # the tall GEMM, grouped
]


@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups", CONVS)
def test_conv2d_both_layouts_match_torch(torch, xs, ws, stride, padding, dilation, groups):
    def conv(lib, x, w):
        return lib.nn.functional.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)

    compare(conv, randn(*xs), randn(*ws, seed=3), rtol=2e-5, atol=2e-5)
    compare(conv, randn(*xs, dtype=np.float64), randn(*ws, dtype=np.float64, seed=3), rtol=1e-12, atol=1e-12)


def test_conv2d_layouts_agree_with_each_other():
    from graphtorch.compiler.primitives import _unfold

    x, w = randn(2, 4, 9, 7), randn(6, 2, 3, 3, seed=1)
    win = _unfold(x, kernel=(3, 3), stride=(1, 2), dilation=(2, 1))
    wm = w.reshape(2, 3, -1)
    np.testing.assert_allclose(_conv2d_per_image(win, wm), _conv2d_one_gemm(win, wm), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- log_softmax and nll_loss as one op each


def _composed(monkeypatch):
    """Make log_softmax and nll_loss take their composed forms (the definitions) eagerly too."""
    from graphtorch.nn import _eager_nll
    from graphtorch.ops import _eager_softmax

    monkeypatch.setattr(_eager_softmax, "applies", lambda *a: False)
    monkeypatch.setattr(_eager_nll, "applies", lambda *a: False)


@pytest.mark.parametrize("shape, dim", [((5, 7), 1), ((5, 7), 0), ((2, 3, 4), -1), ((6,), 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_softmax_matches_torch_and_the_composed_form(torch, shape, dim, dtype, monkeypatch):
    x = randn(*shape, dtype=dtype) * 4
    got, _ = compare(lambda L, t: L.log_softmax(t, dim), x, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    assert got.grad_fn.name() == "LogSoftmaxBackward0"
    _composed(monkeypatch)
    np.testing.assert_array_equal(gt.tensor(x).log_softmax(dim).numpy(), got.detach().numpy())


def test_log_softmax_keeps_inf_and_nan_as_the_composed_form(torch, monkeypatch):
    x = np.array([[0.0, -np.inf, 1.0], [np.inf, 0.0, 1.0], [np.nan, 0.0, 0.0]], np.float32)
    fast = gt.tensor(x).log_softmax(1).numpy()
    np.testing.assert_array_equal(fast, torch.tensor(x).log_softmax(1).numpy())
    _composed(monkeypatch)
    np.testing.assert_array_equal(fast, gt.tensor(x).log_softmax(1).numpy())


def test_log_softmax_output_modified_in_place_is_torchs_error():
    x = gt.tensor(randn(3, 4), requires_grad=True)
    y = x.log_softmax(1)
    y.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


CE_CASES = [  # (targets, ignore_index, reduction)
    ([3, 0, 9, 4, 4, 1], -100, "mean"),
    ([3, 0, 9, 4, 4, 1], -100, "sum"),
    ([3, 0, 9, 4, 4, 1], 4, "mean"),  # ignored rows leave the mean's count
    ([3, 0, 9, 4, 4, 1], 4, "sum"),
]


@pytest.mark.parametrize("targets, ignore_index, reduction", CE_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_matches_torch_with_its_graph(torch, targets, ignore_index, reduction, dtype):
    x, y = randn(6, 10, dtype=dtype) * 3, np.array(targets)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    got, want = compare(lambda L, t: L.nn.functional.cross_entropy(t, L.tensor(y), ignore_index=ignore_index,
                                                                   reduction=reduction), x, **tol)
    names = [got.grad_fn.name(), got.grad_fn.next_functions[0][0].name()]
    assert names == [want.grad_fn.name(), want.grad_fn.next_functions[0][0].name()]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_nll_loss_equals_the_composed_form_exactly(reduction, monkeypatch):
    x, y = gt.tensor(randn(9, 5), requires_grad=True), gt.tensor(np.array([0, 4, 2, 2, 1, 3, 0, 4, 4]))
    fast = gt.nn.functional.nll_loss(x, y, ignore_index=2, reduction=reduction)
    fast.backward()
    fast_grad, x.grad = x.grad, None
    _composed(monkeypatch)
    slow = gt.nn.functional.nll_loss(x, y, ignore_index=2, reduction=reduction)
    slow.backward()
    np.testing.assert_array_equal(fast.numpy(force=True), slow.numpy(force=True))
    np.testing.assert_array_equal(fast_grad.numpy(), x.grad.numpy())


def test_cross_entropy_every_target_ignored_is_nan_as_torch(torch):
    x, y = randn(3, 4), np.array([1, 1, 1])
    compare(lambda L, t: L.nn.functional.cross_entropy(t, L.tensor(y), ignore_index=1), x)


def test_cross_entropy_out_of_range_target_is_torchs_error(torch):
    x, y = randn(3, 4), np.array([1, 7, -3])
    raises_like(lambda: torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(y)),
                lambda: gt.nn.functional.cross_entropy(gt.tensor(x), gt.tensor(y)))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_finite_differences_float64(reduction):
    y = np.array([2, 0, 3, 3])
    gradcheck(lambda x: gt.nn.functional.cross_entropy(x, gt.tensor(y), ignore_index=0, reduction=reduction),
              [randn(4, 5, dtype=np.float64)])


def test_cross_entropy_double_backward_matches_torch(torch):
    x, y = randn(4, 5, dtype=np.float64), np.array([2, 0, 3, 3])
    grads = []
    for lib in (gt, torch):
        t = lib.tensor(x.copy(), requires_grad=True)
        (g,) = lib.autograd.grad(lib.nn.functional.cross_entropy(t, lib.tensor(y)), [t], create_graph=True)
        (g * g).sum().backward()
        grads.append((g.detach().numpy(), t.grad.numpy()))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_cross_entropy_compiled_equals_eager():
    model = gt.nn.Linear(6, 4)
    x, y = gt.tensor(randn(8, 6)), gt.tensor(np.array([0, 3, 1, 1, 2, 0, 3, 2]))
    results = loss_eager_then_compiled(model, lambda x, y: gt.nn.functional.cross_entropy(model(x), y), x, y)
    assert results[2][2] == "CompiledFunctionBackward"
    np.testing.assert_allclose(results[2][0], results[0][0], rtol=1e-6)
    np.testing.assert_allclose(results[2][1], results[0][1], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- linear as one op


def _composed_linear(monkeypatch):
    from graphtorch.nn import _eager_linear

    monkeypatch.setattr(_eager_linear, "applies", lambda *a: False)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("grads", ["all", "input only", "weight only"])
def test_linear_matches_torch_with_its_graph(torch, bias, dtype, grads):
    x, w, b = randn(5, 7, dtype=dtype), randn(3, 7, dtype=dtype, seed=1), randn(3, dtype=dtype, seed=2)
    arrays = [x, w, b] if bias else [x, w]
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)

    def fn(L, *ts):
        for t, wanted in zip(ts, {"all": (1, 1, 1), "input only": (1, 0, 0), "weight only": (0, 1, 0)}[grads]):
            t.requires_grad_(bool(wanted))
        return L.nn.functional.linear(*ts)

    got, want = compare(fn, *arrays, **tol)
    assert got.grad_fn.name() == want.grad_fn.name()
    names = [[n.name().split("::")[-1] if n is not None else None for n, _ in node.next_functions]
             for node in (got.grad_fn, want.grad_fn)]  # torch's AccumulateGrad is torch::autograd::AccumulateGrad
    assert names[0] == names[1]


def test_linear_equals_the_composed_form_exactly(monkeypatch):
    layer, x = gt.nn.Linear(7, 4), gt.tensor(randn(6, 7), requires_grad=True)
    results = []
    for composed in (False, True):
        if composed:
            _composed_linear(monkeypatch)
        layer.zero_grad()
        x.grad = None
        out = layer(x)
        (out * gt.tensor(randn(6, 4, seed=5))).sum().backward()
        results.append([out.detach().numpy(), x.grad.numpy(), layer.weight.grad.numpy(), layer.bias.grad.numpy()])
    for fast, slow in zip(*results):
        np.testing.assert_array_equal(fast, slow)


def test_linear_finite_differences_and_double_backward(torch):
    x, w, b = randn(3, 4, dtype=np.float64), randn(2, 4, dtype=np.float64, seed=1), randn(2, dtype=np.float64, seed=2)
    gradcheck(lambda x, w, b: gt.nn.functional.linear(x, w, b).tanh(), [x, w, b])
    grads = []
    for lib in (gt, torch):
        xs = [lib.tensor(a.copy(), requires_grad=True) for a in (x, w, b)]
        out = lib.nn.functional.linear(*xs)
        out = (out * out * out).sum()  # (tanh saves its output detached: no second order in graphtorch)
        gs = lib.autograd.grad(out, xs, create_graph=True)
        sum((g * g).sum() for g in gs).backward()
        grads.append([t.grad.numpy() for t in xs])
    for a, c in zip(*grads):
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-12)


def test_linear_weight_modified_in_place_is_torchs_error():
    layer = gt.nn.Linear(3, 2)
    out = layer(gt.tensor(randn(4, 3), requires_grad=True)).sum()
    with gt.no_grad():
        layer.weight.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()


def test_linear_bad_shapes_are_torchs_errors(torch):
    x, w = randn(4, 3), randn(2, 5)
    raises_like(lambda: torch.nn.functional.linear(torch.tensor(x), torch.tensor(w)),
                lambda: gt.nn.functional.linear(gt.tensor(x), gt.tensor(w)))


@pytest.mark.parametrize("x_shape,bias_shape", [((4, 3), (3,)), ((4, 3), (3, 2)), ((5, 4, 3), (7,)), ((4, 3), (1, 4, 2))])
def test_linear_bias_that_does_not_expand_is_torchs_error(torch, x_shape, bias_shape):
    x, w, b = randn(*x_shape), randn(2, 3), randn(*bias_shape)
    raises_like(lambda: torch.nn.functional.linear(torch.tensor(x), torch.tensor(w), torch.tensor(b)),
                lambda: gt.nn.functional.linear(gt.tensor(x), gt.tensor(w), gt.tensor(b)))
