"""Tensor creation against torch: tensor() dtype inference, the numpy bridge, zeros/ones/full/eye,
arange (torch's length rule) and linspace (bit for bit), the *_like family."""

import numpy as np
import pytest
from conftest import assert_same, raises_like

import graphtorch as gt


@pytest.mark.parametrize("data", [
    [1, 2, 3], [1.0, 2], [True, False], [[1, 2], [3, 4]], [[1.5], [2]], [True, 2], [True, 2.5],
    3, 2.5, False, [], [[]], [[1, 2.0], [3, 4]], (1, 2), [np.float64(1.5)], [np.int32(3)],
])
def test_tensor_infers_dtype_like_torch(torch, data):
    assert_same(gt.tensor(data), torch.tensor(data))


@pytest.mark.parametrize("npdtype", [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8,
                                     np.uint8, np.bool_])
def test_tensor_from_numpy_keeps_dtype_and_copies(torch, npdtype):
    a = np.arange(6).reshape(2, 3).astype(npdtype)
    g = gt.tensor(a)
    assert_same(g, torch.tensor(a))
    assert not np.shares_memory(g.numpy(), a)
    assert_same(gt.tensor(a, dtype=gt.float32), torch.tensor(a, dtype=torch.float32))


def test_numpy_scalars_keep_their_dtype(torch):
    for v in [np.float64(1.5), np.float32(1.5), np.int32(3), np.int64(3), np.bool_(True)]:
        assert_same(gt.tensor(v), torch.tensor(v))


def test_legacy_constructor_is_float32(torch):
    assert_same(gt.Tensor([1, 2]), torch.Tensor([1, 2]))
    assert_same(gt.Tensor([[True], [False]]), torch.Tensor([[True], [False]]))
    assert gt.Tensor(2, 3).shape == torch.Tensor(2, 3).shape
    assert gt.Tensor(2, 3).dtype is gt.float32
    assert tuple(gt.Tensor().shape) == tuple(torch.Tensor().shape)
    assert_same(gt.FloatTensor([1, 2]), torch.FloatTensor([1, 2]))
    assert_same(gt.LongTensor([1, 2]), torch.LongTensor([1, 2]))
    assert_same(gt.tensor(np.array([1, 2])).float(), torch.Tensor(np.array([1, 2])))


def test_ragged_lists_are_refused(torch):
    raises_like(lambda: torch.tensor([[1, 2], [3]]), lambda: gt.tensor([[1, 2], [3]]),
                match="expected sequence of")


def test_from_numpy_shares_memory_both_ways(torch):
    a = np.array([0.0, 1.0, 2.0])
    g = gt.from_numpy(a)
    a[0] = 5.0
    assert g[0].item() == 5.0
    g[1] = 7.0
    assert a[1] == 7.0
    g.add_(1)
    np.testing.assert_array_equal(a, [6.0, 8.0, 3.0])
    back = g.numpy()
    back[2] = -1.0
    assert a[2] == -1.0 and g[2].item() == -1.0
    assert g.dtype is gt.float64


def test_from_numpy_refuses_unsupported_dtypes(torch):
    raises_like(lambda: torch.from_numpy(np.array(["a"])), lambda: gt.from_numpy(np.array(["a"])),
                match="can't convert np.ndarray of type")


def test_as_tensor_shares_when_it_can(torch):
    a = np.array([1.0, 2.0])
    assert np.shares_memory(gt.as_tensor(a).numpy(), a)
    assert not np.shares_memory(gt.as_tensor(a, dtype=gt.float32).numpy(), a)
    assert_same(gt.as_tensor([1, 2]), torch.as_tensor([1, 2]))
    g = gt.tensor([1.0])
    assert gt.as_tensor(g) is g


@pytest.mark.parametrize("fn", ["zeros", "ones", "empty"])
@pytest.mark.parametrize("size", [(2, 3), ((4,),), ([3, 1, 2],), (0,), ((),)])
@pytest.mark.parametrize("dtype", [None, "int64", "bool", "float64"])
def test_zeros_ones_empty(torch, fn, size, dtype):
    kw = {} if dtype is None else {"dtype": getattr(torch, dtype)}
    gkw = {} if dtype is None else {"dtype": getattr(gt, dtype)}
    want, got = getattr(torch, fn)(*size, **kw), getattr(gt, fn)(*size, **gkw)
    if fn == "empty":
        assert tuple(got.shape) == tuple(want.shape) and str(got.dtype) == str(want.dtype)
    else:
        assert_same(got, want)
    like = getattr(gt, fn + "_like")(got)
    assert tuple(like.shape) == tuple(got.shape) and like.dtype is got.dtype


def test_negative_size_is_refused(torch):
    raises_like(lambda: torch.ones(2, -1), lambda: gt.ones(2, -1))
    raises_like(lambda: torch.empty(2, -1), lambda: gt.empty(2, -1))


@pytest.mark.parametrize("value", [1, 2.5, True, -3])
def test_full_and_full_like(torch, value):
    assert_same(gt.full((2, 3), value), torch.full((2, 3), value))
    assert_same(gt.full((2,), value, dtype=gt.float64), torch.full((2,), value, dtype=torch.float64))
    base = np.ones((2, 2), np.int32)
    assert_same(gt.full_like(gt.tensor(base), value), torch.full_like(torch.tensor(base), value))
    assert_same(gt.zeros_like(gt.tensor(base), dtype=gt.float32), torch.zeros_like(torch.tensor(base), dtype=torch.float32))


def test_full_requires_grad():
    x = gt.ones(2, 3, requires_grad=True)
    assert x.requires_grad and x.is_leaf


@pytest.mark.parametrize("args", [(3,), (4, 1), (2, 5), (0,)])
def test_eye(torch, args):
    assert_same(gt.eye(*args), torch.eye(*args))
    assert_same(gt.eye(*args, dtype=gt.int64), torch.eye(*args, dtype=torch.int64))


@pytest.mark.parametrize("args", [
    (5,), (0,), (2, 9), (2, 9, 3), (9, 2, -3), (10, 0, -1), (0, 1, 0.1), (1.0, 2.5, 0.5), (-1, 1, 0.3),
    (0, 10, 3), (0.5, 4), (1, 1), (5, 2.2, -0.7), (0, 1, 1 / 3),
])
def test_arange_values_and_length_rule(torch, args):
    # torch's kernel rounds start + i * step once (an FMA): the last bit of a float64 may differ
    assert_same(gt.arange(*args), torch.arange(*args), rtol=1e-7)
    assert_same(gt.arange(*args, dtype=gt.float64), torch.arange(*args, dtype=torch.float64), atol=1e-15)


def test_arange_errors(torch):
    raises_like(lambda: torch.arange(0, 5, 0), lambda: gt.arange(0, 5, 0), match="step must be nonzero")
    raises_like(lambda: torch.arange(5, 0, 1), lambda: gt.arange(5, 0, 1))


@pytest.mark.parametrize("args", [(0, 1, 5), (-3, 7, 11), (0, 1, 1), (2, 2, 4), (0, 1, 0), (1, -1, 6),
                                  (0.1, 0.9, 7), (-5.5, 3.25, 8), (3, 10, 2), (0, 10, 4), (0, -7, 4)])
def test_linspace_bit_for_bit(torch, args):
    for name in ["float32", "float64", "int64", "int32"]:
        got, want = gt.linspace(*args, dtype=getattr(gt, name)), torch.linspace(*args, dtype=getattr(torch, name))
        assert_same(got, want, what=name)


def test_linspace_long_is_close(torch):
    # past 8 elements torch's vectorized kernel rounds in another order: equal up to an ulp
    assert_same(gt.linspace(-5.5, 3.3, 100), torch.linspace(-5.5, 3.3, 100), rtol=1e-6, atol=1e-6)


def test_logspace(torch):
    assert_same(gt.logspace(0, 2, 5), torch.logspace(0, 2, 5), rtol=1e-6)
