"""Every elementwise primitive as a single group, compiled == numpy kernel, on odd shapes, all dtypes."""

import numpy as np
import pytest
from llvm_helpers import assert_match, binary_graph, unary_graph, values

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.ir import Graph

SHAPES = [(3, 5, 7), (1,), (0, 3), ()]
FLOATS = [dt.float32, dt.float64]
INTS = [dt.int64, dt.int32, dt.int8, dt.uint8]
EXACT_UNARY = ["abs", "neg", "sign", "floor", "ceil", "round", "copy"]
MATH_UNARY = ["exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid", "erf"]


def rtol(d):
    return 2e-6 if d is dt.float32 else 1e-13


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("d", FLOATS)
@pytest.mark.parametrize("prim", EXACT_UNARY + MATH_UNARY)
def test_float_unary(prim, d, shape):
    x = values(shape, d, np.random.default_rng(0))
    # float32 exp/log/tanh/sigmoid/erf are vecmath.py polynomials, within 2.5 ulp of numpy (rtol 2e-6)
    tol = {} if prim in EXACT_UNARY else {"rtol": rtol(d), "atol": 1e-37}
    assert_match(unary_graph(prim, shape, d), x, **tol)


# no neg of bool: numpy has none and the eager op rejects it too
@pytest.mark.parametrize("prim,d", [(p, d) for p in ["abs", "neg", "sign", "copy", "logical_not"]
                                    for d in INTS + [dt.bool_] if (p, d) != ("neg", dt.bool_)])
def test_int_unary(prim, d):
    assert_match(unary_graph(prim, (3, 5, 7), d), values((3, 5, 7), d, np.random.default_rng(1)))


def test_int_extremes():
    x = np.array([np.iinfo(np.int64).min, -1, 0, 1, np.iinfo(np.int64).max], np.int64)
    for prim in ["abs", "neg", "sign"]:
        assert_match(unary_graph(prim, x.shape, dt.int64), x)


FLOAT_BINARY = ["add", "sub", "mul", "div", "maximum", "minimum", "floor_divide", "remainder",
                "eq", "ne", "lt", "le", "gt", "ge"]


@pytest.mark.parametrize("d", FLOATS)
@pytest.mark.parametrize("prim", FLOAT_BINARY + ["pow"])
def test_float_binary(prim, d):
    rng = np.random.default_rng(2)
    shape = (3, 5, 7)
    a, b = values(shape, d, rng), values(shape, d, rng)
    b.flat[:4] = [0.0, -0.0, np.inf, np.nan]  # division by zero, by inf, NaN on the right
    a.flat[:4] = [3.0, -3.0, -5.0, 1.0]
    tol = {"rtol": rtol(d)} if prim == "pow" else {}
    assert_match(binary_graph(prim, shape, d), a, b, **tol)


def test_every_float_pair():
    """All pairs of the special values: floor_divide/remainder corners of numpy's divmod."""
    s = np.array([0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 7.0, -7.0, np.inf, -np.inf, np.nan, 1e-300], np.float64)
    a, b = np.meshgrid(s, s)
    for prim in FLOAT_BINARY:
        assert_match(binary_graph(prim, a.shape, dt.float64), a.copy(), b.copy())


@pytest.mark.parametrize("d", INTS)
@pytest.mark.parametrize("prim", ["add", "sub", "mul", "maximum", "minimum", "floor_divide", "remainder", "pow",
                                  "eq", "ne", "lt", "le", "gt", "ge"])
def test_int_binary(prim, d):
    rng = np.random.default_rng(3)
    a, b = values((4, 9), d, rng), values((4, 9), d, rng)
    if prim == "pow":
        b = np.abs(b) % 5  # numpy raises for negative integer powers
    b.flat[0] = 0  # division by zero gives 0 in numpy
    assert_match(binary_graph(prim, (4, 9), d), a, b)


def test_int_division_overflow():
    info = np.iinfo(np.int64)
    a = np.array([info.min, info.min, 7, -7, 7, -7], np.int64)
    b = np.array([-1, 1, 2, 2, -2, -2], np.int64)
    for prim in ["floor_divide", "remainder"]:
        assert_match(binary_graph(prim, a.shape, dt.int64), a, b)


@pytest.mark.parametrize("prim", ["add", "mul", "maximum", "minimum", "logical_and", "logical_or", "eq", "ne", "lt", "ge"])
def test_bool_binary(prim):
    rng = np.random.default_rng(4)
    assert_match(binary_graph(prim, (5, 7), dt.bool_), values((5, 7), dt.bool_, rng), values((5, 7), dt.bool_, rng))


@pytest.mark.parametrize("d", FLOATS + INTS + [dt.bool_])
def test_where(d):
    g = Graph()
    c = g.input("c", TensorType((3, 5, 7), dt.bool_))
    a, b = g.input("a", TensorType((3, 5, 7), d)), g.input("b", TensorType((3, 5, 7), d))
    g.outputs = [g.call("where", [c, a, b])]
    rng = np.random.default_rng(5)
    assert_match(g, values((3, 5, 7), dt.bool_, rng), values((3, 5, 7), d, rng), values((3, 5, 7), d, rng))


CAST_TYPES = [dt.float32, dt.float64, dt.int64, dt.int32, dt.int16, dt.int8, dt.uint8, dt.bool_]


@pytest.mark.parametrize("src", CAST_TYPES)
def test_cast(src):
    x = values((6, 7), src, np.random.default_rng(6), specials=False)
    if src.is_floating_point:
        x = (x * 5).astype(src.np)  # in range of every integer type, fractional parts truncate
        x.flat[:4] = [0.0, -0.0, np.inf, np.nan] if False else [0.0, -0.0, 2.5, -2.5]
    for d in CAST_TYPES:
        if src.is_floating_point and not d.is_signed and d is not dt.bool_:
            x = np.abs(x)  # negative float -> unsigned is undefined in C (and numpy)
        assert_match(unary_graph("cast", x.shape, src, dtype=d), x)


def test_cast_float_specials_to_float_and_bool():
    x = np.array([np.nan, np.inf, -np.inf, -0.0, 1e300, 1e-300], np.float64)
    for d in [dt.float32, dt.bool_]:
        assert_match(unary_graph("cast", x.shape, dt.float64, dtype=d), x)


@pytest.mark.parametrize("d", [dt.float32, dt.int64, dt.bool_])
def test_full_and_iota(d):
    g = Graph()
    g.outputs = [g.call("full", [], {"shape": (3, 5, 7), "value": 1, "dtype": d}),
                 g.call("iota", [], {"shape": (3, 5, 7), "dim": 1, "dtype": d if d is not dt.bool_ else dt.int64})]
    assert_match(g)
