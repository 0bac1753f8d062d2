"""Elementwise ops against torch: values, dtypes and gradients, with broadcasting, reflected
operators, odd sizes and non-contiguous (transposed, sliced) inputs."""

import operator

import numpy as np
import pytest
from conftest import assert_same, compare, raises_like, randn

import graphtorch as gt

BINARY = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
    "pow": lambda a, b: abs(a) ** b, "maximum": lambda a, b: a.maximum(b), "minimum": lambda a, b: a.minimum(b),
    "add_alpha": lambda a, b: a.add(b, alpha=2.5), "sub_alpha": lambda a, b: a.sub(b, alpha=-1),
}
SHAPES = [((3, 5, 7), (3, 5, 7)), ((3, 5, 7), (5, 1)), ((1, 5, 1), (3, 1, 7)), ((7,), (3, 5, 7)), ((), (2, 3)),
          ((4, 1), ())]


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("shapes", SHAPES)
def test_binary_broadcasting_values_and_grads(torch, name, shapes):
    a, b = randn(*shapes[0], seed=1), randn(*shapes[1], seed=2)
    compare(lambda L, x, y: BINARY[name](x, y), a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "truediv", "pow"])
def test_non_contiguous_operands(torch, name):
    a, b = randn(7, 5, seed=3), randn(5, 14, seed=4)
    compare(lambda L, x, y: BINARY[name](x.t(), y[:, ::2]), a, b, rtol=1e-5)
    compare(lambda L, x, y: BINARY[name](x[1:6:2], y[:, 3:8]), randn(9, 5), randn(3, 14, seed=7), rtol=1e-5)


@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.mul, operator.truediv, operator.pow,
                                operator.floordiv, operator.mod])
@pytest.mark.parametrize("scalar", [2, -1.5, 3])
def test_reflected_scalar_operators(torch, op, scalar):
    a = np.abs(randn(3, 4)) + 0.5
    compare(lambda L, x: op(scalar, x), a, grad=op not in (operator.floordiv, operator.mod), rtol=1e-5)
    compare(lambda L, x: op(x, scalar), a, grad=op not in (operator.floordiv, operator.mod), rtol=1e-5)
    ints = np.array([[5, -7, 3], [0, 8, -2]])
    if op is not operator.pow or scalar > 0:
        compare(lambda L, x: op(x, scalar) if scalar != 0 else x, ints, grad=False, rtol=1e-6)


@pytest.mark.parametrize("op", [operator.floordiv, operator.mod])
def test_floor_division_and_remainder_signs(torch, op):
    a = np.array([-7.5, -7, -1, 0, 1, 7, 7.5], np.float32)
    b = np.array([2, -2, 3, -3, 2, -2, 0.5], np.float32)
    compare(lambda L, x, y: op(x, y), a, b, grad=False)
    compare(lambda L, x, y: op(x, y), a.astype(np.int64), np.where(b.astype(np.int64) == 0, 4, b.astype(np.int64)), grad=False)


UNARY = ["exp", "log", "sqrt", "abs", "sign", "sin", "cos", "tanh", "sigmoid", "relu", "neg", "floor", "ceil",
         "round", "trunc", "reciprocal", "rsqrt", "log1p", "expm1", "log2", "log10", "square", "erf"]


@pytest.mark.parametrize("name", UNARY)
def test_unary_values_and_grads(torch, name):
    a = randn(3, 5, 7, seed=5) * 3
    positive = name in ("log", "sqrt", "rsqrt", "log2", "log10", "log1p")
    x = np.abs(a) + 0.1 if positive else a
    zero_grad = name in ("sign", "floor", "ceil", "round", "trunc")
    compare(lambda L, t: getattr(t, name)(), x, rtol=1e-5, atol=1e-6)
    compare(lambda L, t: getattr(L, name)(t.t()) if t.ndim == 2 else getattr(L, name)(t), x[0], rtol=1e-5,
            atol=1e-6)
    if zero_grad:  # torch's gradient is 0, not None
        compare(lambda L, t: getattr(t, name)(), x[:1], rtol=1e-6)


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid", "abs", "sign", "neg",
                                  "floor", "ceil", "round", "relu", "square"])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_, np.float64, np.float16])
def test_unary_dtypes(torch, name, dtype):
    a = np.array([[0, 1, 2], [3, 4, 1]]).astype(dtype)
    try:
        want = getattr(torch, name)(torch.tensor(a))
    except RuntimeError as e:
        with pytest.raises(type(e)):
            getattr(gt, name)(gt.tensor(a))
        return
    assert_same(getattr(gt, name)(gt.tensor(a)), want, rtol=1e-3)


def test_special_values(torch):
    a = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e-30], np.float32)
    for name in ["exp", "log", "sqrt", "abs", "sign", "sigmoid", "tanh", "relu", "floor", "round", "neg"]:
        compare(lambda L, t, name=name: getattr(L, name)(t), a, grad=False, rtol=1e-6)
    compare(lambda L, t: t.clamp(-1, 1), a, grad=False)


def test_round_half_to_even_and_decimals(torch):
    a = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 0.49999997], np.float32)
    compare(lambda L, t: t.round(), a, grad=False)
    b = np.array([1.2345, -2.71828, 0.125, 1234.5678], np.float64)
    compare(lambda L, t: L.round(t, decimals=2), b, grad=False, rtol=1e-12)


@pytest.mark.parametrize("lo,hi", [(-0.5, 0.5), (None, 0.3), (-0.2, None), (0.5, -0.5)])
def test_clamp(torch, lo, hi):
    a = randn(3, 5, seed=6)
    compare(lambda L, t: t.clamp(lo, hi), a)
    compare(lambda L, t: L.clamp(t, min=lo, max=hi), a)
    ints = np.arange(-4, 5)
    if lo is not None and hi is not None:
        compare(lambda L, t: t.clamp(int(lo * 4), int(hi * 4)), ints, grad=False)


def test_clamp_gradient_at_the_bounds(torch):
    a = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    compare(lambda L, t: t.clamp(-0.5, 0.5), a)
    raises_like(lambda: torch.clamp(torch.ones(2)), lambda: gt.clamp(gt.ones(2)))


def test_pow_forms(torch):
    a = np.abs(randn(3, 4)) + 0.5
    for e in [2, 3, 0.5, -1, 0, 1, 2.5]:
        compare(lambda L, t, e=e: t ** e, a, rtol=1e-5)
    compare(lambda L, t, u: t.pow(u), a, randn(4, seed=9), rtol=1e-5)
    compare(lambda L, t: 2 ** t, a, rtol=1e-5)
    compare(lambda L, t: t ** 2, np.array([-3, 0, 4]), grad=False)
    compare(lambda L, t: L.pow(t, 3), np.array([-3, 0, 4], np.int32), grad=False)


def test_relu_at_zero_and_nan(torch):
    compare(lambda L, t: L.relu(t), np.array([-1.0, 0.0, 2.0, np.nan]))


def test_maximum_minimum_ties_split_the_gradient(torch):
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 5.0, 0.0])
    compare(lambda L, x, y: L.maximum(x, y), a, b)
    compare(lambda L, x, y: L.minimum(x, y), a, b)
    compare(lambda L, x, y: L.max(x, y), a, b)


COMPARISONS = [operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge]


@pytest.mark.parametrize("op", COMPARISONS)
def test_comparisons(torch, op):
    a = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    b = np.array([3, 2, 1], np.int64)
    compare(lambda L, x, y: op(x, y), a, b, grad=False)
    compare(lambda L, x: op(x, 3), a, grad=False)
    compare(lambda L, x: op(3.5, x), a, grad=False)
    compare(lambda L, x: op(x, np.float32(2.0)) if L is gt else op(x, 2.0), a, grad=False)


def test_logical_ops(torch):
    p = np.array([True, True, False, False])
    q = np.array([True, False, True, False])
    for name in ["logical_and", "logical_or", "logical_xor"]:
        compare(lambda L, x, y, name=name: getattr(L, name)(x, y), p, q, grad=False)
        compare(lambda L, x, y, name=name: getattr(L, name)(x, y), p.astype(np.float32), q.astype(np.int64) * 3, grad=False)
    compare(lambda L, x: L.logical_not(x), p, grad=False)
    compare(lambda L, x: L.logical_not(x), np.array([0.0, 2.0, -1.0]), grad=False)
    compare(lambda L, x, y: (x & y, x | y, x ^ y, ~x), p, q, grad=False)


def test_isnan_isinf_isfinite_isclose(torch):
    a = np.array([np.nan, np.inf, -np.inf, 1.0, 0.0], np.float32)
    for name in ["isnan", "isinf", "isfinite"]:
        compare(lambda L, x, name=name: getattr(L, name)(x), a, grad=False)
    compare(lambda L, x: L.isinf(x), np.array([1, 2]), grad=False)
    b = a + np.float32(1e-6)
    compare(lambda L, x, y: L.isclose(x, y), a, b, grad=False)
    compare(lambda L, x, y: L.isclose(x, y, equal_nan=True), a, b, grad=False)
    assert gt.allclose(gt.tensor([1.0, 2.0]), gt.tensor([1.0, 2.0 + 1e-9]))
    assert gt.equal(gt.tensor([1, 2]), gt.tensor([1, 2])) and not gt.equal(gt.tensor([1, 2]), gt.tensor([1, 3]))


def test_where(torch):
    c = np.array([[True, False, True]])
    a, b = randn(2, 3), randn(3, seed=3)
    compare(lambda L, m, x, y: L.where(m, x, y), c, a, b)
    compare(lambda L, m, x: L.where(m, x, 0.0), c, a)
    compare(lambda L, m, x: L.where(m, 1, x), c, a)
    compare(lambda L, m, x: x.where(m, -x), c, a)
    compare(lambda L, m, x, y: L.where(m, x, y), c, np.array([1, 2, 3]), np.array([1.5]), grad=False)
    compare(lambda L, x: L.where(x > 0), a, grad=False)


def test_masked_fill(torch):
    a = randn(3, 4)
    m = a > 0.3
    compare(lambda L, x, mask: x.masked_fill(mask, -1.5), a, m)
    compare(lambda L, x, mask: x.masked_fill(mask[0], float("-inf")), a, m)
    compare(lambda L, x, mask: x.masked_fill(mask, 2.7), np.arange(12).reshape(3, 4), m, grad=False)
    raises_like(lambda: torch.ones(2).masked_fill(torch.tensor([1, 0]), 0.0),
                lambda: gt.ones(2).masked_fill(gt.tensor([1, 0]), 0.0), match="only supports boolean masks")


def test_div_rounding_modes(torch):
    a, b = np.array([-7.0, 7.0, 5.5, -5.5]), np.array([2.0, -2.0, 2.0, 2.0])
    for mode in ["floor", "trunc", None]:
        compare(lambda L, x, y, mode=mode: L.div(x, y, rounding_mode=mode), a, b, grad=False)
        compare(lambda L, x, y, mode=mode: L.div(x, y, rounding_mode=mode), a.astype(np.int64), b.astype(np.int64), grad=False)


def test_broadcast_error_text(torch):
    raises_like(lambda: torch.ones(2, 3) + torch.ones(4), lambda: gt.ones(2, 3) + gt.ones(4))
    raises_like(lambda: torch.ones(2, 3) + torch.ones(3, 3), lambda: gt.ones(2, 3) + gt.ones(3, 3))
    raises_like(lambda: torch.ones(5, 2, 3) * torch.ones(4, 1, 3), lambda: gt.ones(5, 2, 3) * gt.ones(4, 1, 3))


def test_bool_arithmetic_errors(torch):
    t, g = torch.tensor([True]), gt.tensor([True])
    raises_like(lambda: t - t, lambda: g - g)
    raises_like(lambda: -t, lambda: -g)
    assert_same(g + g, t + t)
    assert_same(g * g, t * t)


def test_float16_arithmetic(torch):
    a = randn(4, 5).astype(np.float16)
    compare(lambda L, x, y: x * y + 1, a, a[::-1].copy(), grad=False, rtol=1e-3)
