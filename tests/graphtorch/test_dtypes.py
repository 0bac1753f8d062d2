"""dtype promotion and conversion against torch: every pair of the 9 dtypes, tensor-scalar,
0-dim against dimensioned, reductions of ints, true division, .type()/.to()/.float() aliases."""

import itertools

import numpy as np
import pytest
from conftest import assert_same, raises_like

import graphtorch as gt

NAMES = ["float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"]
VALUES = np.array([[0, 1, 2], [3, 1, 0]])


def make(name, torch, values=VALUES, dim=True):
    a = values.astype(np.dtype(name if name != "bool" else np.bool_))
    if not dim:
        a = a.reshape(-1)[1]
    a = np.asarray(a)
    return gt.tensor(a.copy()), torch.tensor(a.copy())


def run_both(fn, *pairs):
    """fn on the graphtorch side and the torch side; both raise the same type or both return."""
    try:
        expected = fn(*(p[1] for p in pairs))
    except Exception as e:  # noqa: BLE001 - the oracle's refusal is the expected outcome
        with pytest.raises(type(e)):
            fn(*(p[0] for p in pairs))
        return None, None
    return fn(*(p[0] for p in pairs)), expected


@pytest.mark.parametrize("a,b", list(itertools.product(NAMES, NAMES)))
def test_binary_promotion_every_pair(torch, a, b):
    x, y = make(a, torch), make(b, torch, values=VALUES[::-1] + 1)
    for fn in (lambda p, q: p + q, lambda p, q: p * q, lambda p, q: p / q, lambda p, q: p < q,
               lambda p, q: p == q, lambda p, q: gt.maximum(p, q) if isinstance(p, gt.Tensor) else torch.maximum(p, q)):
        got, want = run_both(fn, x, y)
        if want is not None:
            assert_same(got, want, rtol=1e-3, what=f"{a} op {b}")


@pytest.mark.parametrize("a,b", list(itertools.product(NAMES, NAMES)))
def test_result_type_zero_dim_against_dimensioned(torch, a, b):
    x, y = make(a, torch), make(b, torch, dim=False)
    assert str(gt.result_type(x[0], y[0])) == str(torch.result_type(x[1], y[1]))
    assert str(gt.promote_types(x[0].dtype, y[0].dtype)) == str(torch.promote_types(x[1].dtype, y[1].dtype))
    got, want = run_both(lambda p, q: p + q, x, y)
    if want is not None:
        assert_same(got, want, rtol=1e-3)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scalar", [2, 2.5, True, -1])
def test_tensor_scalar_promotion(torch, name, scalar):
    x = make(name, torch)
    for fn in (lambda p: p + scalar, lambda p: scalar * p, lambda p: p / 2, lambda p: p > scalar):
        got, want = run_both(fn, x)
        if want is not None:
            assert_same(got, want, rtol=1e-3, what=f"{name} with {scalar!r}")


def test_named_promotion_cases(torch):
    cases = [
        (np.array([1, 2], np.int64), 2.5),  # int tensor + float scalar -> float32
        (np.array([1, 2], np.int32), 7),  # int32 + Python int stays int32
        (np.array([1, 2], np.uint8), np.array([-1, 3], np.int8)),  # uint8 + int8 -> int16
        (np.array([True, False]), np.array([True, True])),  # bool + bool stays bool (or)
    ]
    for a, b in cases:
        ga, ta = gt.tensor(a), torch.tensor(a)
        gb, tb = (gt.tensor(b), torch.tensor(b)) if isinstance(b, np.ndarray) else (b, b)
        assert_same(ga + gb, ta + tb)


@pytest.mark.parametrize("name", NAMES)
def test_sum_prod_cumsum_of_bool_and_ints_are_int64(torch, name):
    g, t = make(name, torch)
    assert_same(g.sum(), t.sum(), rtol=1e-3)
    assert_same(g.sum(0), t.sum(0), rtol=1e-3)
    assert_same(g.prod(1), t.prod(1), rtol=1e-3)
    assert_same(g.cumsum(1), t.cumsum(1), rtol=1e-3)


@pytest.mark.parametrize("name", ["int64", "int32", "int8", "uint8", "bool"])
def test_true_division_of_ints_is_float32(torch, name):
    g, t = make(name, torch)
    assert_same(g / 3, t / 3, rtol=1e-6)
    assert_same(gt.true_divide(g, g), torch.true_divide(t, t), rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_type_strings_and_conversions(torch, name):
    g, t = make(name, torch)
    assert g.type() == t.type()
    for conv in ["float", "double", "half", "long", "int", "short", "char", "byte", "bool"]:
        assert_same(getattr(g, conv)(), getattr(t, conv)(), what=conv)
    for target in NAMES:
        assert_same(g.to(getattr(gt, target)), t.to(getattr(torch, target)), what=f"to {target}")
        legacy = getattr(gt, target).legacy_type
        assert_same(g.type(legacy), t.type(legacy), what=f"type {legacy}")


def test_to_same_dtype_returns_self_and_copy_copies(torch):
    g = gt.tensor([1.0, 2.0])
    assert g.to(gt.float32) is g
    c = g.to(gt.float32, copy=True)
    assert c is not g and not np.shares_memory(c.numpy(), g.numpy())
    assert_same(g.to("cpu", gt.float64), torch.tensor([1.0, 2.0]).to("cpu", torch.float64))
    assert_same(g.to(gt.tensor([1], dtype=gt.int32)), torch.tensor([1.0, 2.0]).to(torch.tensor([1], dtype=torch.int32)))


def test_float_to_int_truncates_toward_zero(torch):
    a = np.array([-2.7, -0.5, 0.5, 2.7], np.float32)
    assert_same(gt.tensor(a).long(), torch.tensor(a).long())
    assert_same(gt.tensor(a).bool(), torch.tensor(a).bool())


def test_aliases_and_reprs(torch):
    for alias in ["float", "double", "long", "int", "half", "short", "bool", "float32", "uint8"]:
        assert repr(getattr(gt, alias)) == repr(getattr(torch, alias))
    assert gt.float is gt.float32 and gt.double is gt.float64 and gt.long is gt.int64
    assert gt.int is gt.int32 and gt.half is gt.float16
    assert gt.get_default_dtype() is gt.float32


def test_dtype_properties(torch):
    for name in NAMES:
        g, t = getattr(gt, name), getattr(torch, name)
        assert g.is_floating_point == t.is_floating_point
        assert g.itemsize == t.itemsize


def test_set_default_dtype(torch):
    try:
        gt.set_default_dtype(gt.float64)
        assert gt.tensor([1.5]).dtype is gt.float64
        assert gt.zeros(2).dtype is gt.float64
        assert (gt.tensor([1, 2]) / 2).dtype is gt.float64
    finally:
        gt.set_default_dtype(gt.float32)
    raises_like(lambda: torch.set_default_dtype(torch.int64), lambda: gt.set_default_dtype(gt.int64),
                match="only floating-point types are supported as the default type")
