"""Views and layout against torch: view/reshape (memory sharing), transpose/permute, squeeze,
expand, narrow, cat/stack/split/chunk/repeat, contiguity, with gradients."""

import numpy as np
import pytest
from conftest import assert_same, compare, raises_like, randn

import graphtorch as gt


def shares(a, b) -> bool:
    return np.shares_memory(a._data, b._data)


def test_view_shares_memory_and_bumps_version(torch):
    x = gt.arange(12.0)
    v = x.view(3, 4)
    assert shares(x, v) and v._version is x._version
    v[1, 1] = -1.0
    assert x[5].item() == -1.0
    compare(lambda L, t: t.view(3, 4), randn(12))
    compare(lambda L, t: t.view(-1, 2, 3), randn(12))
    compare(lambda L, t: t.view(2, -1), randn(3, 4))


def test_view_refuses_non_viewable_strides(torch):
    raises_like(lambda: torch.ones(3, 4).t().view(12), lambda: gt.ones(3, 4).t().view(12))
    raises_like(lambda: torch.ones(12).view(5, -1), lambda: gt.ones(12).view(5, -1))
    raises_like(lambda: torch.ones(12).view(-1, -1), lambda: gt.ones(12).view(-1, -1))
    compare(lambda L, t: t.t().view(4, 1, 3), randn(3, 4))  # splitting one dim is still a view


def test_reshape_copies_only_when_it_must(torch):
    x = gt.ones(3, 4)
    assert shares(x, x.reshape(12)) and x.reshape(2, 6).data_ptr() == x.data_ptr()
    xt = x.t()
    assert not shares(xt, xt.reshape(12))
    assert shares(xt, xt.reshape(4, 1, 3))
    tx = torch.ones(3, 4)
    assert (tx.t().reshape(12).data_ptr() == tx.data_ptr()) is False
    compare(lambda L, t: t.t().reshape(12), randn(3, 4))
    compare(lambda L, t: t.reshape(-1), randn(3, 5, 7)[:, 1:4])


@pytest.mark.parametrize("fn", [
    lambda t: t.t(), lambda t: t.T, lambda t: t.transpose(0, 1), lambda t: t.transpose(-1, 0), lambda t: t.mT,
])
def test_transposes(torch, fn):
    compare(lambda L, t: fn(t), randn(3, 5))


def test_permute_and_movedim(torch):
    a = randn(3, 5, 7)
    compare(lambda L, t: t.permute(2, 0, 1), a)
    compare(lambda L, t: t.permute((1, 2, 0)), a)
    compare(lambda L, t: t.permute(-1, 0, 1), a)
    compare(lambda L, t: L.movedim(t, 0, -1), a)
    compare(lambda L, t: L.permute(t, (2, 1, 0)), a)
    g = gt.ones(3, 5, 7)
    assert shares(g, g.permute(2, 0, 1)) and not g.permute(2, 0, 1).is_contiguous()
    raises_like(lambda: torch.ones(2, 3).permute(0, 0), lambda: gt.ones(2, 3).permute(0, 0))
    raises_like(lambda: torch.ones(2, 3).t().t().t().reshape(3, 2).t().permute(0), lambda: gt.ones(2, 3).permute(0))
    raises_like(lambda: torch.ones(2, 3, 4).t(), lambda: gt.ones(2, 3, 4).t())


def test_t_of_1d_and_0d(torch):
    compare(lambda L, t: t.t(), randn(4))
    compare(lambda L, t: t.t(), np.array(2.0))


def test_squeeze_unsqueeze_and_in_place_forms(torch):
    a = randn(1, 3, 1, 5)
    compare(lambda L, t: t.squeeze(), a)
    compare(lambda L, t: t.squeeze(0), a)
    compare(lambda L, t: t.squeeze(1), a)
    compare(lambda L, t: t.squeeze(-2), a)
    compare(lambda L, t: t.squeeze((0, 2)), a)
    for d in [0, 2, -1, 4]:
        compare(lambda L, t, d=d: t.unsqueeze(d), a)
    compare(lambda L, t: t.unsqueeze(0), np.array(1.0))
    raises_like(lambda: torch.ones(2).unsqueeze(3), lambda: gt.ones(2).unsqueeze(3))
    g, t = gt.ones(1, 3), torch.ones(1, 3)
    assert g.squeeze_() is g and tuple(g.shape) == tuple(t.squeeze_().shape)
    assert g.unsqueeze_(1) is g and tuple(g.shape) == tuple(t.unsqueeze_(1).shape)
    g2, t2 = gt.ones(2, 3), torch.ones(2, 3)
    assert_same(g2.t_(), t2.t_())
    assert_same(g2.transpose_(0, 1), t2.transpose_(0, 1))


def test_flatten_unflatten_ravel(torch):
    a = randn(2, 3, 4, 5)
    compare(lambda L, t: t.flatten(), a)
    compare(lambda L, t: t.flatten(1), a)
    compare(lambda L, t: L.flatten(t, 1, 2), a)
    compare(lambda L, t: t.flatten(-2), a)
    compare(lambda L, t: t.flatten(), np.array(3.0))
    compare(lambda L, t: t.unflatten(1, (3, 1)), a)
    compare(lambda L, t: t.unflatten(-1, (-1, 5)), a)
    compare(lambda L, t: t.ravel(), a[:, ::2])


def test_expand(torch):
    a = randn(3, 1)
    compare(lambda L, t: t.expand(3, 4), a)
    compare(lambda L, t: t.expand(2, -1, 5), a)
    compare(lambda L, t: t.expand((2, 3, 1)), a)
    compare(lambda L, t, o: t.expand_as(o), a, randn(2, 3, 6))
    compare(lambda L, t: L.broadcast_to(t, (4, 3, 2)), a)
    g = gt.ones(3, 1)
    assert shares(g, g.expand(3, 4))
    raises_like(lambda: torch.ones(3, 2).expand(3, 4), lambda: gt.ones(3, 2).expand(3, 4))
    raises_like(lambda: torch.ones(3, 2).expand(2), lambda: gt.ones(3, 2).expand(2))


def test_broadcast_tensors(torch):
    compare(lambda L, a, b: L.broadcast_tensors(a, b), randn(3, 1), randn(4))


def test_narrow_and_contiguous(torch):
    a = randn(5, 7)
    compare(lambda L, t: t.narrow(0, 1, 3), a)
    compare(lambda L, t: t.narrow(1, -3, 2), a)
    compare(lambda L, t: L.narrow(t, -1, 0, 7), a)
    raises_like(lambda: torch.ones(5).narrow(0, 3, 4), lambda: gt.ones(5).narrow(0, 3, 4))
    g = gt.ones(5, 7)
    n = g.narrow(1, 1, 3)
    assert shares(g, n) and not n.is_contiguous()
    c = n.contiguous()
    assert c.is_contiguous() and not shares(c, n)
    assert g.contiguous() is g
    compare(lambda L, t: t.t().contiguous(), a)
    assert gt.ones(2, 3).t().stride() == torch.ones(2, 3).t().stride()
    assert gt.ones(2, 3, 4).stride(1) == torch.ones(2, 3, 4).stride(1)


def test_clone_and_detach(torch):
    a = randn(3, 4)
    compare(lambda L, t: t.clone(), a)
    g = gt.tensor(a, requires_grad=True)
    c, d = g.clone(), g.detach()
    assert not shares(g, c) and shares(g, d)
    assert c.grad_fn.name() == "CloneBackward0" and d.grad_fn is None and not d.requires_grad
    d[0, 0] = 100.0
    assert g[0, 0].item() == 100.0


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_and_stack(torch, dim):
    a, b, c = randn(3, 4, seed=1), randn(3, 4, seed=2), randn(3, 4, seed=3)
    compare(lambda L, x, y, z: L.cat([x, y, z], dim), a, b, c)
    compare(lambda L, x, y: L.cat((x, y.t().t()), dim=dim), a, b)
    compare(lambda L, x, y, z: L.stack([x, y, z], dim), a, b, c)
    compare(lambda L, x, y: L.stack((x, y), dim=dim), a, b)
    compare(lambda L, x, y: L.cat([x, y], dim), np.arange(4).reshape(2, 2), np.ones((2, 2), np.float32), grad=False)


def test_cat_variants_and_errors(torch):
    compare(lambda L, x, y: L.cat([x, y], 1), randn(3, 2), randn(3, 5))
    # known difference: torch gives the skipped legacy empty (0,) operand a zero-size gradient, we give None
    compare(lambda L, x, y: L.cat([x, y]), randn(3), np.zeros(0, np.float32), grad=False)
    compare(lambda L, x, y: L.cat([x, y]), randn(2, 3), np.zeros(0, np.float32), grad=False)
    compare(lambda L, x, y: L.hstack([x, y]), randn(3, 2), randn(3, 5))
    compare(lambda L, x, y: L.vstack([x, y]), randn(3), randn(2, 3))
    raises_like(lambda: torch.cat([torch.ones(2, 3), torch.ones(3, 3)], 1),
                lambda: gt.cat([gt.ones(2, 3), gt.ones(3, 3)], 1))
    raises_like(lambda: torch.stack([torch.ones(2), torch.ones(3)]), lambda: gt.stack([gt.ones(2), gt.ones(3)]))


@pytest.mark.parametrize("arg", [2, 3, 7, [1, 4, 2], (3, 4)])
def test_split(torch, arg):
    a = randn(7, 5)
    if isinstance(arg, tuple):
        compare(lambda L, t: t.split(list(arg), dim=0), a)
        return
    compare(lambda L, t: t.split(arg), a)
    if isinstance(arg, int):
        compare(lambda L, t: L.split(t, arg, 1) if arg <= 5 else L.split(t, arg, 0), a)


@pytest.mark.parametrize("chunks", [1, 2, 3, 4, 6])
def test_chunk(torch, chunks):
    a = randn(6, 5)
    got, want = compare(lambda L, t: t.chunk(chunks, 1), a)
    assert len(got) == len(want)
    compare(lambda L, t: L.chunk(t, chunks), a)


def test_unbind_and_splits_are_views(torch):
    compare(lambda L, t: t.unbind(1), randn(3, 4))
    g = gt.ones(6, 2)
    assert all(shares(g, p) for p in g.split(2))


@pytest.mark.parametrize("sizes", [(2, 3), (1, 1), (3, 1, 2), (2, 1, 1, 2)])
def test_repeat_and_tile(torch, sizes):
    a = randn(2, 3)
    compare(lambda L, t: t.repeat(*sizes), a)
    compare(lambda L, t: t.tile(sizes), a)
    raises_like(lambda: torch.ones(2, 3).repeat(2), lambda: gt.ones(2, 3).repeat(2))


def test_flip(torch):
    a = randn(3, 4, 5)
    compare(lambda L, t: t.flip(0), a)
    compare(lambda L, t: t.flip((0, 2)), a)
    compare(lambda L, t: L.flip(t, [-1]), a)


def test_size_and_shape(torch):
    g, t = gt.ones(3, 5, 7), torch.ones(3, 5, 7)
    assert g.size() == t.size() and g.shape == t.shape and g.size(1) == t.size(1) and g.size(-1) == t.size(-1)
    assert g.dim() == t.dim() and g.ndim == t.ndim and g.numel() == t.numel() and len(g) == len(t)
    assert g.shape[1:] == t.shape[1:] and isinstance(g.shape[1:], gt.Size)
    assert g.element_size() == t.element_size()
    raises_like(lambda: t.size(3), lambda: g.size(3))
    raises_like(lambda: len(torch.tensor(1.0)), lambda: len(gt.tensor(1.0)))
