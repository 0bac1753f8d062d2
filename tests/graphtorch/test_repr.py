"""str(tensor) against torch's, character for character."""

import numpy as np
import pytest

import graphtorch as gt

CASES = [
    [1, 2, 3], [-1, 20, -300], [[1, 2], [3, 4]], [1.0, 2.0, 3.0], [1.0, -2.0, 300.0], [0.5, 1.25, -3.125],
    [1e-5, 1.0], [1e8, 1.0], [1e10, 2.0], [123456.7, 0.1], [0.0001, 0.001], [1e-10, -1e-12],
    [float("nan"), 1.0], [float("inf"), -float("inf"), 1.5], [float("nan"), float("inf"), 2.0], [0.0, -0.0],
    [True, False], 2.5, 7, True, -0.0, float("nan"), [[0.1234567, 12.5], [-1.0, 1000.0]],
    [12345.678, 0.5], [1.5, 2.5, 1e7], [0.1, 0.2, 1000.5],
]


def both(torch, data, **kw):
    gkw = {k: (getattr(gt, str(v).split(".")[-1]) if k == "dtype" else v) for k, v in kw.items()}
    return gt.tensor(data, **gkw), torch.tensor(data, **kw)


@pytest.mark.parametrize("data", CASES, ids=str)
def test_values_print_like_torch(torch, data):
    g, t = both(torch, data)
    assert str(g) == str(t)
    assert repr(g) == repr(t)


@pytest.mark.parametrize("dtype", ["float64", "int32", "float16", "int8", "uint8", "int16", "bool", "int64"])
def test_dtype_suffixes(torch, dtype):
    data = [[1, 0, 3], [4, 5, 1]]
    g, t = both(torch, data, dtype=getattr(torch, dtype))
    assert str(g) == str(t)
    g2, t2 = both(torch, [0.5, 1.25], dtype=getattr(torch, dtype)) if dtype.startswith("float") else (g, t)
    assert str(g2) == str(t2)


@pytest.mark.parametrize("shape", [(0,), (2, 0), (0, 3, 1)])
@pytest.mark.parametrize("dtype", ["float32", "int64", "float64"])
def test_empty_tensors(torch, shape, dtype):
    g, t = gt.zeros(shape, dtype=getattr(gt, dtype)), torch.zeros(shape, dtype=getattr(torch, dtype))
    assert str(g) == str(t)


def test_autograd_suffixes(torch):
    a = np.array([[1.5, -2.0], [3.25, 4.0]], np.float32)
    g, t = gt.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    assert str(g) == str(t)
    for fn in [lambda x: x * 2, lambda x: x.sum(), lambda x: x.mean(), lambda x: x.sigmoid(), lambda x: x.relu(),
               lambda x: x @ x, lambda x: x.double() / 3, lambda x: x[0]]:
        assert str(fn(g)) == str(fn(t))
    g64 = gt.tensor(a.astype(np.float64), requires_grad=True)
    t64 = torch.tensor(a.astype(np.float64), requires_grad=True)
    assert str(g64) == str(t64) and str(g64 * 2) == str(t64 * 2)


@pytest.mark.parametrize("n", [20, 31, 60])
def test_long_rows_wrap_at_80_columns(torch, n):
    a = np.linspace(-3, 3, n).astype(np.float32)
    g, t = both(torch, a)
    assert str(g) == str(t)
    assert str(gt.arange(n) * 1000) == str(torch.arange(n) * 1000)
    g2, t2 = both(torch, a.reshape(-1, n // 10 if n % 10 == 0 else 1))
    assert str(g2) == str(t2)


@pytest.mark.parametrize("shape", [(1001,), (40, 30), (11, 12, 13), (2000, 1)])
def test_summarization_over_1000_elements(torch, shape):
    a = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) / 7
    g, t = both(torch, a)
    assert str(g) == str(t)
    ints = np.arange(int(np.prod(shape))).reshape(shape)
    assert str(gt.tensor(ints)) == str(torch.tensor(ints))


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 2, 2, 3), (1, 1, 1), (3, 1, 2)])
def test_nesting(torch, shape):
    a = (np.arange(int(np.prod(shape))).reshape(shape) - 5) / 4
    g, t = both(torch, a.astype(np.float32))
    assert str(g) == str(t)


def test_size_and_return_types(torch):
    assert repr(gt.ones(2, 3).shape) == repr(torch.ones(2, 3).shape)
    assert str(gt.ones(0).size()) == str(torch.ones(0).size())
    assert repr(gt.ones(2, 3).shape[1:]) == repr(torch.ones(2, 3).shape[1:])
    a = np.array([[1.0, 5.0, 2.0], [7.0, 0.5, 3.0]], np.float32)
    assert repr(gt.tensor(a).max(1)) == repr(torch.tensor(a).max(1))
    assert str(gt.tensor(a).min(0, keepdim=True)) == str(torch.tensor(a).min(0, keepdim=True))


def test_format_of_zero_dim_and_dtype_and_device(torch):
    assert f"{gt.tensor(2.5):.3f}" == f"{torch.tensor(2.5):.3f}"
    assert f"{gt.tensor([1, 2])}" == f"{torch.tensor([1, 2])}"
    assert str(gt.float32) == str(torch.float32) and repr(gt.int64) == repr(torch.int64)
    assert str(gt.ones(1).device) == str(torch.ones(1).device)
    assert repr(gt.ones(1).device) == repr(torch.ones(1).device)


def test_set_printoptions(torch):
    a = np.array([1.123456789, 2.5], np.float32)
    try:
        gt.set_printoptions(precision=2)
        torch.set_printoptions(precision=2)
        assert str(gt.tensor(a)) == str(torch.tensor(a))
    finally:
        gt.set_printoptions(profile="default")
        torch.set_printoptions(profile="default")
