"""Shared helpers: compare graphtorch with torch (the oracle) on the same numpy inputs, and a
float64 finite-difference gradient check for the VJP rules."""

from __future__ import annotations

import os

import numpy as np
import pytest

import graphtorch as gt

# the compiler verifies the graph after every optimization pass (a broken pass is named), not
# only after the stage as it does by default (compiler/pipeline.py `verify_each_pass`)
os.environ.setdefault("GRAPHTORCH_VERIFY", "1")


@pytest.fixture(scope="session")
def torch():
    """The oracle. Tests that compare with torch skip, saying why, where it is not installed."""
    return pytest.importorskip("torch", reason="torch is the test oracle for the eager core")


def to_numpy(x) -> np.ndarray:
    """A graphtorch or torch tensor (or anything array-like) as a numpy array, detached."""
    if hasattr(x, "detach"):
        x = x.detach()
    if type(x).__module__.startswith("torch"):
        return x.numpy()
    if isinstance(x, gt.Tensor):
        return x._data
    return np.asarray(x)


def assert_same(actual, expected, rtol: float = 0.0, atol: float = 0.0, what: str = "") -> None:
    """A graphtorch tensor equals a torch tensor: dtype name, shape and values (NaN == NaN).
    Default tolerances are zero: exact equality, for ops whose result torch computes exactly."""
    assert isinstance(actual, gt.Tensor), f"{what}: expected a graphtorch Tensor, got {type(actual).__name__}"
    assert str(actual.dtype) == str(expected.dtype), f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert tuple(actual.shape) == tuple(expected.shape), f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a, e = to_numpy(actual), to_numpy(expected)
    if a.dtype.kind == "f":
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)
    else:
        np.testing.assert_array_equal(a, e, err_msg=what)


def pair(array: np.ndarray, torch_module, requires_grad: bool = False):
    """The same numpy array as a (graphtorch, torch) pair of independent tensors."""
    return (gt.tensor(array.copy(), requires_grad=requires_grad),
            torch_module.tensor(array.copy(), requires_grad=requires_grad))


def randn(*shape, dtype=np.float32, seed: int = 0) -> np.ndarray:
    return np.asarray(np.random.default_rng(seed).standard_normal(shape), dtype=dtype)


def raises_like(torch_fn, gt_fn, match: str | None = None):
    """Both calls raise the same exception type; torch's message (or `match`) appears in ours."""
    with pytest.raises(Exception) as expected:
        torch_fn()
    with pytest.raises(type(expected.value)) as actual:
        gt_fn()
    text = match if match is not None else str(expected.value).splitlines()[0]
    assert text in str(actual.value), f"torch says {expected.value!r}, graphtorch says {actual.value!r}"


def gradcheck(fn, inputs, eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-7, seed: int = 0) -> None:
    """Check fn's analytic VJP against central differences, in float64.

    `inputs` are float64 numpy arrays (the differentiable ones) or other values passed through.
    fn's output is contracted with a fixed random cotangent `v`, so one backward gives the
    full gradient of the scalar <fn(x), v>, which is compared entry by entry with
    (<fn(x + eps e_i), v> - <fn(x - eps e_i), v>) / 2 eps."""
    diff = [i for i, x in enumerate(inputs) if isinstance(x, np.ndarray) and x.dtype == np.float64]
    assert diff, "gradcheck needs at least one float64 input"

    def call(arrays):
        args = [gt.tensor(a, requires_grad=i in diff) if i in diff else a for i, a in enumerate(arrays)]
        return args, fn(*args)

    args, out = call(list(inputs))
    v = np.random.default_rng(seed).standard_normal(tuple(out.shape))
    (out * gt.tensor(v)).sum().backward()
    for i in diff:
        analytic = args[i].grad
        assert analytic is not None, f"input {i}: no gradient reached it"
        assert analytic.dtype is gt.float64 and tuple(analytic.shape) == inputs[i].shape
        numeric = np.zeros(inputs[i].shape)
        for k in range(inputs[i].size):
            values = []
            for sign in (1, -1):
                moved = [np.array(a, copy=True) if j == i else a for j, a in enumerate(inputs)]
                moved[i].flat[k] += sign * eps
                with gt.no_grad():
                    values.append(float(np.sum(call(moved)[1]._data * v)))
            numeric.flat[k] = (values[0] - values[1]) / (2 * eps)
        np.testing.assert_allclose(analytic._data, numeric, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {i}")


def compare(fn, *arrays, grad: bool = True, rtol: float = 1e-6, atol: float = 1e-6, seed: int = 1):
    """fn(lib, *tensors) with lib = graphtorch and lib = torch on the same numpy arrays: the
    outputs must agree, and (for float outputs, when `grad`) so must the input gradients of
    sum(out * v) for a random v. Float inputs require grad when `grad`. Returns both outputs."""
    import torch

    def make(lib):
        return [lib.tensor(a.copy(), requires_grad=grad and a.dtype.kind == "f") if isinstance(a, np.ndarray) else a
                for a in arrays]

    gin, tin = make(gt), make(torch)
    got, want = fn(gt, *gin), fn(torch, *tin)
    outs = list(zip(got, want)) if isinstance(want, (tuple, list)) else [(got, want)]
    for k, (g, t) in enumerate(outs):
        assert_same(g, t, rtol=rtol, atol=atol, what=f"output {k}")
    g, t = outs[0]
    if grad and t.requires_grad:
        v = np.random.default_rng(seed).standard_normal(tuple(t.shape)).astype(to_numpy(t).dtype)
        (g * gt.tensor(v)).sum().backward()
        (t * torch.tensor(v)).sum().backward()
        for k, (a, b) in enumerate(zip(gin, tin)):
            if isinstance(b, torch.Tensor) and b.requires_grad:
                assert (a.grad is None) == (b.grad is None), f"gradient of input {k}"
                if b.grad is not None:
                    assert_same(a.grad, b.grad, rtol=rtol * 10, atol=atol * 10, what=f"gradient of input {k}")
    return got, want


def loss_eager_then_compiled(model, loss_fn, x, y) -> list[tuple[float, np.ndarray, str]]:
    """(loss, model.weight's gradient, the loss's grad_fn name) from loss_fn eagerly, from its
    compiled version's first call (which runs eagerly) and from its compiled call."""
    compiled = gt.compile(loss_fn)
    results = []
    for fn in (loss_fn, compiled, compiled):
        model.weight.grad = None
        loss = fn(x, y)
        loss.backward()
        results.append((loss.item(), model.weight.grad.numpy().copy(), loss.grad_fn.name()))
    return results


def lenet_train_step():
    """(model, step): the digits LeNet and an SGD-momentum training step over it, seeded."""
    import lenet_digits  # examples/ is on pytest's pythonpath

    gt.manual_seed(0)
    model = lenet_digits.Net()
    opt = gt.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = gt.nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return model, step
