"""Indexing against torch: basic slicing (views), advanced integer and boolean indexing,
index assignment with and without autograd, in-place ops and their dtype rules."""

import numpy as np
import pytest
from conftest import assert_same, compare, gradcheck, raises_like, randn

import graphtorch as gt

A = randn(4, 5, 6, seed=21)
BASIC = [
    (1,), (-1,), (slice(1, 3),), (slice(None, None, 2),), (slice(None), 2), (Ellipsis, 1), (1, Ellipsis, 2),
    (None, 1), (slice(None), None, slice(1, 4)), (slice(-3, None), slice(None, None, 3), -2),
    (slice(5, 10),), (slice(3, 1),), (1, 2, 3), (Ellipsis,), (Ellipsis, None),
]


@pytest.mark.parametrize("index", BASIC, ids=str)
def test_basic_indexing_values_and_grads(torch, index):
    compare(lambda L, t: t[index], A)


def test_basic_indexing_is_a_view(torch):
    g = gt.tensor(A)
    v = g[1:3, ::2]
    assert np.shares_memory(v._data, g._data) and v._version is g._version
    v[0, 0, 0] = 42.0
    assert g[1, 0, 0].item() == 42.0
    s = g[2]
    s.zero_()
    assert g[2].abs().sum().item() == 0.0


ADVANCED = [
    ([0, 2],), ([[0, 1], [3, 2]],), ([-1, 0, -4],), (slice(None), [4, 0, 4]), ([0, 1], [2, 3]),
    ([0, 1], slice(None), [2, 3]), (slice(None), [1, 2], [0, 5]), ([[0], [3]], [1, 2]), (1, [0, 2]),
    ([2, 0], 1), (Ellipsis, [5, 0]), ([1], slice(1, 3), [0, 2]), (slice(None), [[0, 1]], slice(None)),
]


@pytest.mark.parametrize("index", ADVANCED, ids=str)
def test_advanced_integer_indexing(torch, index):
    compare(lambda L, t: t[tuple(L.tensor(i) if isinstance(i, list) else i for i in index)], A)
    compare(lambda L, t: t[index if len(index) > 1 else index[0]], A, grad=False)


def test_index_tensor_dtypes_and_bounds(torch):
    compare(lambda L, t, i: t[i], A, np.array([0, 3], np.int32))
    compare(lambda L, t, i: t[i], A, np.array(2))
    raises_like(lambda: torch.tensor(A)[torch.tensor([4])], lambda: gt.tensor(A)[gt.tensor([4])])
    raises_like(lambda: torch.tensor(A)[4], lambda: gt.tensor(A)[4])
    raises_like(lambda: torch.tensor(A)[0, 0, 0, 0], lambda: gt.tensor(A)[0, 0, 0, 0])
    raises_like(lambda: torch.tensor(A)[torch.tensor([1.0])], lambda: gt.tensor(A)[gt.tensor([1.0])])


def test_boolean_masks(torch):
    m = A > 0.2
    compare(lambda L, t, mask: t[mask], A, m)
    compare(lambda L, t, mask: t[mask[:, :, 0]], A, m)
    compare(lambda L, t, mask: t[mask[0, :, 0]], A[0], m)
    compare(lambda L, t, mask: t[:, mask[0, :, 0]], A, m)
    compare(lambda L, t: t[t > 0], A)
    compare(lambda L, t: L.masked_select(t, t < 0), A)
    compare(lambda L, t: t[True], A[0], grad=False)
    raises_like(lambda: torch.ones(3)[torch.tensor([True, False])], lambda: gt.ones(3)[gt.tensor([True, False])])


def test_nonzero_gather_index_select(torch):
    compare(lambda L, t: L.nonzero(t > 0), A[0], grad=False)
    compare(lambda L, t: L.nonzero(t > 0, as_tuple=True), A[0], grad=False)
    idx = np.array([[0, 4, 1], [2, 2, 0]])
    compare(lambda L, t, i: L.gather(t, 1, i), A[0, :2], idx)
    compare(lambda L, t, i: t.gather(0, i), A[0], np.array([[0, 1, 2, 3, 0, 1]]))
    compare(lambda L, t, i: t.index_select(1, i), A, np.array([4, 0, 0]))
    compare(lambda L, t, i, s: L.scatter_add(t, 1, i, s), A[0, :2], idx, randn(2, 3))
    compare(lambda L, t, i, s: t.index_add(0, i, s), A[0], np.array([1, 1, 3]), randn(3, 6))


def test_setitem_without_autograd(torch):
    def assign(L, t):
        t = t.clone()
        t[0] = 1.5
        t[1, ::2] = L.tensor([9.0, 8.0, 7.0])[:, None]
        t[:, 1, [0, 2]] = -3.0
        t[t > 1.0] = 0.0
        t[[2, 3], [4, 0]] = L.tensor(5.0)
        t[..., -1] = t[..., 0]
        return t

    compare(assign, A, grad=False)


def test_setitem_with_autograd(torch):
    def assign(L, t, v):
        out = t * 2
        out[1:3, 0] = v
        out[out < -1] = 0.0
        out[[0, 3], [1, 2]] = v[0, :1]
        return out

    compare(assign, A, randn(2, 6, seed=5))


def test_setitem_on_a_view_writes_through(torch):
    g, t = gt.zeros(3, 4), torch.zeros(3, 4)
    g[:, 1][1:] = 7.0
    t[:, 1][1:] = 7.0
    assert_same(g, t)
    g.t()[2] = 1.0
    t.t()[2] = 1.0
    assert_same(g, t)


INPLACE = [
    ("add_", (2.0,)), ("sub_", (1,)), ("mul_", (3,)), ("div_", (2,)), ("clamp_", (-0.5, 0.5)), ("abs_", ()),
    ("neg_", ()), ("pow_", (2,)), ("exp_", ()), ("sigmoid_", ()), ("tanh_", ()), ("relu_", ()), ("zero_", ()),
    ("fill_", (3.25,)), ("round_", ()), ("floor_", ()), ("sqrt_", ()), ("clamp_min_", (0.1,)),
]


@pytest.mark.parametrize("name,args", INPLACE, ids=[n for n, _ in INPLACE])
def test_in_place_methods(torch, name, args):
    def run(L, t):
        x = t.clone().abs() if name == "sqrt_" else t.clone()
        out = getattr(x, name)(*args)
        assert out is x
        return x

    compare(run, A)
    compare(lambda L, t: run(L, t[:, ::2].transpose(0, 2)), A)


def test_in_place_with_tensor_operands_and_broadcasting(torch):
    def run(L, t, u):
        x = t.clone()
        x.add_(u)
        x.mul_(u[0])
        x.copy_(x * 2)
        x.masked_fill_(x > 0, 0.5)
        x += 1
        x -= u
        x *= 2
        x /= 4
        return x

    compare(run, A, randn(5, 6, seed=2))


def test_in_place_dtype_rules(torch):
    raises_like(lambda: torch.ones(3, dtype=torch.long).add_(1.5),
                lambda: gt.ones(3, dtype=gt.long).add_(1.5),
                match="result type Float can't be cast to the desired output type Long")
    raises_like(lambda: torch.ones(3, dtype=torch.long).div_(2), lambda: gt.ones(3, dtype=gt.long).div_(2))
    raises_like(lambda: torch.ones(3, dtype=torch.int32).mul_(torch.ones(3)),
                lambda: gt.ones(3, dtype=gt.int32).mul_(gt.ones(3)))
    raises_like(lambda: torch.ones(3, dtype=torch.bool).add_(1), lambda: gt.ones(3, dtype=gt.bool).add_(1))

    def allowed(L):
        f = L.ones(3)
        f.add_(L.tensor([1, 2, 3]))
        f.mul_(L.tensor([2.0], dtype=L.float64))
        i = L.ones(3, dtype=L.int32)
        i.add_(L.tensor([1, 2, 3]))
        return f, i

    got, want = allowed(gt), allowed(torch)
    for g, t in zip(got, want):
        assert_same(g, t)
    gi, ti = gt.zeros(3, dtype=gt.long), torch.zeros(3, dtype=torch.long)
    gi.copy_(gt.tensor([1.7, -1.7, 2.5]))
    ti.copy_(torch.tensor([1.7, -1.7, 2.5]))
    assert_same(gi, ti)
    gi.fill_(2.9)
    ti.fill_(2.9)
    assert_same(gi, ti)


def test_in_place_on_expanded_tensor_is_refused(torch):
    raises_like(lambda: torch.zeros(3, 1).expand(3, 4).add_(1), lambda: gt.zeros(3, 1).expand(3, 4).add_(1),
                match="unsupported operation")


def test_inverse(torch):
    a = randn(4, 4, seed=7) + 3 * np.eye(4, dtype=np.float32)
    compare(lambda L, t: L.inverse(t), a, rtol=1e-4, atol=1e-5)
    compare(lambda L, t: t.inverse(), np.stack([a, a.T]), rtol=1e-4, atol=1e-5)
    with pytest.raises(RuntimeError, match="the inversion could not be completed because the input matrix is singular"):
        gt.inverse(gt.zeros(2, 2))  # torch raises its own LinAlgError (a RuntimeError) with this text
    raises_like(lambda: torch.inverse(torch.zeros(2, 3)), lambda: gt.inverse(gt.zeros(2, 3)))


def test_item_tolist_numpy(torch):
    for data in [[[1, 2], [3, 4]], [1.5, -2.0], [True], 3.0]:
        g, t = gt.tensor(data), torch.tensor(data)
        assert g.tolist() == t.tolist()
        np.testing.assert_array_equal(g.numpy(), t.numpy())
        assert g.numpy().dtype == t.numpy().dtype
    g, t = gt.tensor([[2.5]]), torch.tensor([[2.5]])
    assert g.item() == t.item() and type(g.item()) is type(t.item())
    assert type(gt.tensor(3).item()) is int and type(gt.tensor(True).item()) is bool
    assert float(g) == 2.5 and int(gt.tensor([7])) == 7 and bool(gt.tensor([1]))
    raises_like(lambda: torch.ones(2).item(), lambda: gt.ones(2).item())
    raises_like(lambda: bool(torch.ones(2)), lambda: bool(gt.ones(2)))
    raises_like(lambda: torch.ones(2, requires_grad=True).numpy(), lambda: gt.ones(2, requires_grad=True).numpy())
    assert [x.item() for x in gt.tensor([1, 2])] == [1, 2]
    assert list(range(10))[gt.tensor(3)] == 3


@pytest.mark.parametrize("name", ["tril", "triu"])
@pytest.mark.parametrize("diagonal", [-4, -1, 0, 1, 2, 9])
def test_tril_triu_values_and_grads(torch, name, diagonal):
    compare(lambda lib, x: getattr(lib, name)(x, diagonal), randn(2, 4, 5))
    compare(lambda lib, x: getattr(x, name)(diagonal=diagonal), randn(5, 3))


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.bool_])
def test_tril_triu_keep_the_dtype(torch, dtype):
    x = (randn(3, 4) > 0).astype(dtype)
    assert_same(gt.tril(gt.tensor(x)), torch.tril(torch.tensor(x)))
    assert_same(gt.tensor(x).triu(1), torch.tensor(x).triu(1))


def test_tril_triu_in_place_grad_fn_and_errors(torch):
    x, y = gt.ones(3, 3), torch.ones(3, 3)
    assert_same(x.triu_(-1), y.triu_(-1))
    assert_same(x.tril_(), y.tril_())
    assert type(gt.tril(gt.ones(2, 2, requires_grad=True)).grad_fn).__name__ == "TrilBackward0"
    raises_like(lambda: torch.tril(torch.ones(3)), lambda: gt.tril(gt.ones(3)))
    raises_like(lambda: torch.triu(torch.tensor(1.0)), lambda: gt.triu(gt.tensor(1.0)))


def test_tril_triu_finite_differences():
    gradcheck(lambda x: gt.tril(x, 1) * gt.triu(x, -1), [randn(3, 4, dtype=np.float64)])
