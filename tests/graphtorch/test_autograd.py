"""Autograd against torch: graph structure and names, backward/grad APIs, grad modes, hooks,
custom Functions, and the errors torch raises (freed graphs, in-place on saved values or leaves)."""

import numpy as np
import pytest
from conftest import assert_same, raises_like, randn

import graphtorch as gt

GRAD_FN_NAMES = [
    lambda L, x, y: x + y, lambda L, x, y: x * y, lambda L, x, y: x - y, lambda L, x, y: x / y,
    lambda L, x, y: x.mean(), lambda L, x, y: x.sum(), lambda L, x, y: x ** 2, lambda L, x, y: x ** y,
    lambda L, x, y: x.mm(y.t()), lambda L, x, y: x.sigmoid(), lambda L, x, y: x.relu(), lambda L, x, y: x.exp(),
    lambda L, x, y: x.log(), lambda L, x, y: x.tanh(), lambda L, x, y: -x, lambda L, x, y: x.t(),
    lambda L, x, y: x.view(6), lambda L, x, y: x.reshape(6), lambda L, x, y: x[0], lambda L, x, y: x[:, 1:],
    lambda L, x, y: x.unsqueeze(0), lambda L, x, y: x.squeeze(), lambda L, x, y: x.permute(1, 0),
    lambda L, x, y: x.transpose(0, 1), lambda L, x, y: x.expand(4, 2, 3), lambda L, x, y: L.cat([x, y]),
    lambda L, x, y: L.stack([x, y]), lambda L, x, y: x.clone(), lambda L, x, y: x.abs(), lambda L, x, y: x.sqrt(),
    lambda L, x, y: x.sum(0), lambda L, x, y: x.mean(1), lambda L, x, y: x.max(), lambda L, x, y: x.max(0)[0],
    lambda L, x, y: x.softmax(1), lambda L, x, y: x.log_softmax(1), lambda L, x, y: x.matmul(y.t()),
    lambda L, x, y: x @ y.t(), lambda L, x, y: x.clamp(0, 1), lambda L, x, y: L.where(x > 0, x, y),
    lambda L, x, y: x.masked_fill(x > 0, 0.0), lambda L, x, y: x.sin(), lambda L, x, y: x.cos(),
    lambda L, x, y: x.std(), lambda L, x, y: x.var(), lambda L, x, y: x.norm(), lambda L, x, y: x.prod(),
    lambda L, x, y: x.cumsum(0), lambda L, x, y: x.flatten(), lambda L, x, y: x.to(L.float64),
    lambda L, x, y: x.repeat(2, 1), lambda L, x, y: x.narrow(1, 0, 2), lambda L, x, y: x[[0, 1]],
    lambda L, x, y: x.split(1)[1], lambda L, x, y: x.neg(), lambda L, x, y: 2 * x, lambda L, x, y: 1 - x,
    lambda L, x, y: x.contiguous().t().contiguous(), lambda L, x, y: x.maximum(y), lambda L, x, y: L.dot(x[0], y[0]),
    lambda L, x, y: L.bmm(x[None], y.t()[None]),
]


@pytest.mark.parametrize("k", range(len(GRAD_FN_NAMES)))
def test_grad_fn_names_match_torch(torch, k):
    fn = GRAD_FN_NAMES[k]
    a, b = np.abs(randn(2, 3)) + 0.5, np.abs(randn(2, 3, seed=2)) + 0.5
    got = fn(gt, gt.tensor(a, requires_grad=True), gt.tensor(b, requires_grad=True))
    want = fn(torch, torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True))
    assert got.grad_fn.name() == want.grad_fn.name()
    assert type(got.grad_fn).__name__ == type(want.grad_fn).__name__


def test_requires_grad_propagation_and_leaves(torch):
    x = gt.ones(2, requires_grad=True)
    c = gt.ones(2)
    y = x * c
    assert y.requires_grad and not y.is_leaf and x.is_leaf and c.is_leaf
    assert not (c * 2).requires_grad and (c * 2).grad_fn is None
    assert (x > 0).requires_grad is False and x.argmax().requires_grad is False
    assert not x.detach().requires_grad and x.detach().is_leaf


def test_next_functions_structure(torch):
    def build(L):
        x = L.tensor([1.0, 2.0], requires_grad=True)
        w = L.tensor([3.0, 4.0], requires_grad=True)
        c = L.tensor([5.0, 6.0])
        out = ((x * w) + c).sum()
        return out, x, w

    def shape(node):
        if node is None:
            return None
        return (type(node).__name__, tuple(shape(n) for n, _ in node.next_functions))

    (g, gx, gw), (t, _, _) = build(gt), build(torch)
    assert shape(g.grad_fn) == shape(t.grad_fn)
    mul = g.grad_fn.next_functions[0][0].next_functions[0][0]
    assert mul.next_functions[0][0].variable is gx and mul.next_functions[1][0].variable is gw
    assert all(i == 0 for _, i in g.grad_fn.next_functions)


def test_backward_with_gradient_and_accumulation(torch):
    def run(L):
        x = L.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        y = x * x * 3
        y.backward(L.tensor([[1.0, 0.5], [2.0, 0.0]]))
        first = x.grad.clone()
        (x.sum() * 2).backward()
        return first, x.grad

    for g, t in zip(run(gt), run(torch)):
        assert_same(g, t)


def test_grad_object_is_accumulated_in_place(torch):
    x = gt.ones(3, requires_grad=True)
    (x * 2).sum().backward()
    g = x.grad
    (x * 3).sum().backward()
    assert x.grad is g and g.tolist() == [5.0, 5.0, 5.0]


def test_backward_errors(torch):
    raises_like(lambda: torch.ones(3, requires_grad=True).mul(2).backward(),
                lambda: gt.ones(3, requires_grad=True).mul(2).backward())
    raises_like(lambda: torch.ones(3).sum().backward(), lambda: gt.ones(3).sum().backward())

    def twice(L):
        x = L.ones(3, requires_grad=True)
        y = (x * x).sum()
        y.backward()
        y.backward()

    raises_like(lambda: twice(torch), lambda: twice(gt))
    raises_like(lambda: torch.ones(2, requires_grad=True).mul(2).backward(torch.ones(3)),
                lambda: gt.ones(2, requires_grad=True).mul(2).backward(gt.ones(3)))


def test_retain_graph_allows_a_second_backward(torch):
    for L in (gt, torch):
        x = L.tensor([1.0, 2.0], requires_grad=True)
        y = (x * x).sum()
        y.backward(retain_graph=True)
        y.backward()
        assert x.grad.tolist() == [4.0, 8.0]


def test_retain_grad_and_non_leaf_grad_warning(torch):
    def run(L):
        x = L.tensor([1.0, 2.0], requires_grad=True)
        y = x * 3
        y.retain_grad()
        z = y * y
        z.sum().backward()
        return x.grad, y.grad, y.retains_grad

    (gx, gy, gr), (tx, ty, tr) = run(gt), run(torch)
    assert_same(gx, tx) and assert_same(gy, ty)
    assert gr == tr
    y = gt.ones(2, requires_grad=True) * 2
    with pytest.warns(UserWarning, match="is not a leaf Tensor"):
        assert y.grad is None


def test_grad_modes(torch):
    x = gt.ones(2, requires_grad=True)
    with gt.no_grad():
        assert not gt.is_grad_enabled()
        y = x * 2
        with gt.enable_grad():
            assert gt.is_grad_enabled() and (x * 2).requires_grad
    assert gt.is_grad_enabled() and not y.requires_grad and y.grad_fn is None

    @gt.no_grad()
    def f(t):
        return t * 2

    assert not f(x).requires_grad and gt.is_grad_enabled()
    with gt.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert gt.is_grad_enabled()
    gt.set_grad_enabled(False)
    assert not gt.is_grad_enabled()
    gt.set_grad_enabled(True)
    with gt.inference_mode():
        assert not (x * 2).requires_grad

    @gt.enable_grad()
    def g(t):
        return t * 2

    with gt.no_grad():
        assert g(x).requires_grad


def test_requires_grad_flags(torch):
    raises_like(lambda: torch.ones(2, dtype=torch.long).requires_grad_(),
                lambda: gt.ones(2, dtype=gt.long).requires_grad_())
    raises_like(lambda: torch.tensor([1, 2], requires_grad=True), lambda: gt.tensor([1, 2], requires_grad=True))
    x = gt.zeros(2)
    assert x.requires_grad_() is x and x.requires_grad
    raises_like(lambda: torch.ones(2, requires_grad=True).mul(2).requires_grad_(False),
                lambda: gt.ones(2, requires_grad=True).mul(2).requires_grad_(False))


def test_hooks_modify_gradients_and_are_removable(torch):
    def run(L):
        x = L.tensor([1.0, 2.0], requires_grad=True)
        seen = []
        h = x.register_hook(lambda g: g * 10)
        y = x * 2
        y.register_hook(lambda g: seen.append(g.clone()))
        (y * y).sum().backward()
        h.remove()
        first = x.grad.clone()
        x.grad = None
        (x * 2).sum().backward()
        return first, x.grad, seen[0]

    for g, t in zip(run(gt), run(torch)):
        assert_same(g, t)


def test_autograd_grad_and_second_derivative(torch):
    def run(L):
        x = L.tensor([1.0, 2.0, 3.0], requires_grad=True)
        y = (x ** 3).sum()
        (dx,) = L.autograd.grad(y, x, create_graph=True)
        (ddx,) = L.autograd.grad(dx.sum(), x)
        return dx, ddx, x.grad

    (gd, gdd, gg), (td, tdd, tg) = run(gt), run(torch)
    assert_same(gd.detach(), td.detach()) and assert_same(gdd, tdd)
    assert gg is None and tg is None
    assert gd.requires_grad == td.requires_grad

    def unused(L):
        a, b = L.ones(2, requires_grad=True), L.ones(2, requires_grad=True)
        return L.autograd.grad((a * 2).sum(), [a, b])

    raises_like(lambda: unused(torch), lambda: unused(gt))
    a, b = gt.ones(2, requires_grad=True), gt.ones(2, requires_grad=True)
    ga, gb = gt.autograd.grad((a * 2).sum(), [a, b], allow_unused=True)
    assert ga.tolist() == [2.0, 2.0] and gb is None



@pytest.mark.parametrize("op", ["tanh", "exp", "sigmoid", "sqrt", "softmax", "log_softmax"])
def test_double_backward_through_a_saved_output(op):
    """Ops whose backward reads their own output: a second derivative flows through that output."""
    torch = pytest.importorskip("torch")

    def run(L):
        x = L.tensor([[0.3, 0.7, 1.2], [0.5, 1.5, 2.0]], dtype=L.float64, requires_grad=True)
        f = getattr(L, op)
        y = f(x, dim=1) if "softmax" in op else f(x)
        (dx,) = L.autograd.grad((y * y).sum(), x, create_graph=True)
        (ddx,) = L.autograd.grad((dx * dx).sum(), x)
        return dx, ddx

    (gd, gdd), (td, tdd) = run(gt), run(torch)
    assert gd.grad_fn is not None
    np.testing.assert_allclose(gd.detach().numpy(), td.detach().numpy(), rtol=1e-14)
    np.testing.assert_allclose(gdd.numpy(), tdd.numpy(), rtol=1e-12)

def test_autograd_backward_with_inputs(torch):
    for L in (gt, torch):
        a, b = L.ones(2, requires_grad=True), L.ones(2, requires_grad=True)
        L.autograd.backward([(a * b * 3).sum()], inputs=[a])
        assert a.grad.tolist() == [3.0, 3.0] and b.grad is None


def test_custom_function(torch):
    def make(L):
        class Cube(L.autograd.Function):
            @staticmethod
            def forward(ctx, x, k):
                ctx.save_for_backward(x)
                ctx.k = k
                return x ** 3 * k

            @staticmethod
            def backward(ctx, grad):
                (x,) = ctx.saved_tensors
                return grad * 3 * x ** 2 * ctx.k, None

        return Cube

    def run(L):
        x = L.tensor([1.0, -2.0, 0.5], requires_grad=True)
        y = make(L).apply(x, 2.0)
        (y * L.tensor([1.0, 2.0, 3.0])).sum().backward()
        return y, x.grad

    (gy, gg), (ty, tg) = run(gt), run(torch)
    assert_same(gy.detach(), ty.detach()) and assert_same(gg, tg)
    assert gy.grad_fn.name() == ty.grad_fn.name()
    assert gy.requires_grad


def test_modifying_a_saved_tensor_in_place_is_detected(torch):
    def run(L):
        x = L.ones(3, requires_grad=True)
        y = x.sigmoid()
        z = (y * 2).sum()
        y.mul_(3)
        z.backward()

    def run2(L):
        x = L.ones(3, requires_grad=True)
        y = x * 1
        z = (y * y).sum()
        y.add_(1)
        z.backward()

    raises_like(lambda: run(torch), lambda: run(gt), match="one of the variables needed for gradient computation has "
                "been modified by an inplace operation: [torch.FloatTensor [3]], which is output 0 of")
    raises_like(lambda: run2(torch), lambda: run2(gt), match="is at version 1; expected version 0 instead")


def test_in_place_on_a_leaf_requiring_grad_is_refused(torch):
    raises_like(lambda: torch.ones(2, requires_grad=True).add_(1), lambda: gt.ones(2, requires_grad=True).add_(1))

    def setitem(L):
        x = L.ones(2, requires_grad=True)
        x[0] = 5.0

    raises_like(lambda: setitem(torch), lambda: setitem(gt))
    x = gt.ones(2, requires_grad=True)
    with gt.no_grad():
        x.add_(1)
        x[0] = 0.0
    assert x.tolist() == [0.0, 2.0] and x.is_leaf and x.requires_grad


def test_in_place_on_a_non_leaf_records_history(torch):
    def run(L):
        x = L.tensor([1.0, -2.0, 3.0], requires_grad=True)
        y = x * 2
        y.mul_(x)
        y.add_(1)
        y.relu_()
        y.sum().backward()
        return y, x.grad

    (gy, gg), (ty, tg) = run(gt), run(torch)
    assert gy.grad_fn.name() == ty.grad_fn.name()
    assert_same(gy.detach(), ty.detach()) and assert_same(gg, tg)


def test_detach_shares_memory_and_data_setter(torch):
    x = gt.ones(3, requires_grad=True)
    d = x.detach()
    d[0] = 7.0
    assert x[0].item() == 7.0
    x.data = gt.zeros(3)
    assert x.tolist() == [0.0, 0.0, 0.0] and x.requires_grad
    w = gt.ones(2, requires_grad=True)
    w.data.sub_(gt.tensor([0.5, 1.0]))
    assert w.tolist() == [0.5, 0.0] and w.is_leaf


def test_float64_gradients_stay_float64(torch):
    x = gt.tensor([1.0, 2.0], dtype=gt.float64, requires_grad=True)
    (x.float() * 2).sum().backward()
    assert x.grad.dtype is gt.float64
