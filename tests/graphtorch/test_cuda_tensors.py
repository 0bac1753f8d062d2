"""CUDA tensors as torch users see them: .cuda()/.cpu(), device, repr, eager ops as single-op
kernels, autograd, module.cuda(). Every test runs twice: on the fake driver (tests/compiler/
fake_cuda_driver.py: host memory, kernels compiled by g++) and on a real GPU where one exists.
Without either, the real environment's answer is checked: no CUDA, torch's errors."""

from __future__ import annotations

import lenet_digits  # examples/ is on pytest's pythonpath
import logistic_regression
import numpy as np
import pytest
import sin_regression
from fake_cuda_driver import install, reset

import graphtorch as gt
import graphtorch.nn as nn
from graphtorch import cuda_tensor
from graphtorch.compiler.cuda import hostcheck
from graphtorch.runtime import cuda as rt

REAL_GPU = rt.is_available()
MIXED = "Expected all tensors to be on the same device, but found at least two devices, {} and {}!"


@pytest.fixture(params=["fake", "gpu"])
def cuda(request, monkeypatch):
    """The driver the test runs on: the fake one (returned), or the real GPU (None)."""
    if request.param == "fake":
        if not hostcheck.available():
            pytest.skip("g++ is needed: the fake driver runs the emitted kernels on the CPU")
        fake = install(monkeypatch)
        yield fake
        reset()
    else:
        if not REAL_GPU:
            pytest.skip(f"no CUDA GPU here: {rt.why_unavailable()}")
        cuda_tensor.cache_clear()
        yield None


def host(t) -> np.ndarray:
    return t.detach().cpu().numpy()


# ---------------------------------------------------------------- devices and copies


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "int8", "uint8", "bool"])
def test_round_trip_keeps_values_and_dtype(cuda, dtype):
    values = np.array([[0, 1, 3], [7, 2, 0]]).astype(dtype)
    x = gt.tensor(values)
    y = x.cuda()
    assert y.is_cuda and not x.is_cuda and y.dtype is x.dtype and y.shape == x.shape
    back = y.cpu()
    assert back.dtype is x.dtype and not back.is_cuda
    np.testing.assert_array_equal(back.numpy(), values)
    assert y.cuda() is y and x.cpu() is x  # already there: the same tensor, as torch
    for moved in (x.to("cuda"), x.to(gt.device("cuda:0")), x.to(gt.device("cuda")), x.to(y)):
        assert moved.device == gt.device("cuda", 0)
        np.testing.assert_array_equal(host(moved), values)


def test_to_device_and_dtype_at_once(cuda):
    y = gt.tensor([1, 2, 3]).to("cuda", gt.float64)
    assert y.is_cuda and y.dtype is gt.float64
    np.testing.assert_array_equal(host(y), [1.0, 2.0, 3.0])


def test_device_attributes_match_torch(cuda, torch):
    y = gt.ones(2).cuda()
    assert str(y.device) == "cuda:0" and y.device.type == "cuda" and y.device.index == 0
    assert repr(y.device) == repr(torch.device("cuda", 0))
    assert repr(gt.device("cuda")) == repr(torch.device("cuda"))
    assert y.device == "cuda:0" and gt.ones(2).device == "cpu"
    assert gt.cuda.is_available() and gt.cuda.device_count() >= 1


@pytest.mark.parametrize("make", [
    lambda m: m.tensor([1.0, 2.0]),
    lambda m: m.tensor([[1, 2], [3, 40]], dtype=m.int32),
    lambda m: m.tensor([0.5, -1.25], dtype=m.float64, requires_grad=True),
    lambda m: m.arange(12.0).reshape(3, 4) / 7,
    lambda m: m.tensor(True),
    lambda m: m.zeros(0, 3),
])
def test_repr_is_torchs_with_the_device_suffix(cuda, torch, make):
    """torch prints device='cuda:0' as the first suffix after the values; the rest is the CPU repr
    (compared with the line breaks taken out: the longer suffix list may wrap where the CPU one did not)."""
    t = make(gt)
    ours = repr(t.detach().cuda().requires_grad_(t.requires_grad))
    want = repr(make(torch))
    cut = want.rindex("]") + 1 if "[" in want else len(want) - 1  # after the values (0-d: before the paren)
    want = want[:cut] + ", device='cuda:0'" + want[cut:]
    assert " ".join(ours.split()) == " ".join(want.split())


def test_repr_literal_forms(cuda):
    assert repr(gt.tensor([1.0, 2.0]).cuda()) == "tensor([1., 2.], device='cuda:0')"
    assert repr(gt.zeros(0, 3).cuda()) == "tensor([], device='cuda:0', size=(0, 3))"
    w = gt.tensor([1.0, 2.0], device="cuda", requires_grad=True)
    assert repr(w * 2) == "tensor([2., 4.], device='cuda:0', grad_fn=<MulBackward0>)"


def test_numpy_on_a_cuda_tensor_raises_torchs_type_error(cuda):
    y = gt.ones(2).cuda()
    msg = "can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to host memory first."
    with pytest.raises(TypeError) as e:
        y.numpy()
    assert str(e.value) == msg
    with pytest.raises(TypeError, match="can't convert cuda:0 device type tensor to numpy"):
        np.asarray(y)
    assert y.tolist() == [1.0, 1.0] and (y.sum() * 3).item() == 6.0  # torch copies these to the host


def test_creation_functions_take_device(cuda):
    for t in (gt.zeros(2, 3, device="cuda"), gt.ones(4, device="cuda:0"), gt.full((2,), 7, device="cuda"),
              gt.tensor([1, 2], device=gt.device("cuda")), gt.arange(5, device="cuda"), gt.randn(3, device="cuda")):
        assert t.is_cuda
    np.testing.assert_array_equal(host(gt.full((2,), 7, device="cuda")), [7, 7])
    y = gt.ones(3).cuda()
    for t in (gt.zeros_like(y), gt.ones_like(y), gt.full_like(y, 2.0), gt.rand_like(y), gt.empty_like(y)):
        assert t.is_cuda and t.shape == y.shape
    assert not gt.zeros_like(y, device="cpu").is_cuda
    w = gt.zeros(2, device="cuda", requires_grad=True)
    assert w.is_leaf and w.requires_grad and w.is_cuda


# ---------------------------------------------------------------- eager ops


def _pair(shape_a=(3, 5), shape_b=(5,), seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape_a).astype(np.float32)
    b = (rng.standard_normal(shape_b) + 2.0).astype(np.float32)
    return gt.tensor(a), gt.tensor(b)


OPS = {
    "add_broadcast": lambda a, b: a + b,
    "sub_scalar": lambda a, b: a - 1.5,
    "rsub_mul": lambda a, b: 2 * a * b - b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a ** 2 + b.abs() ** 0.5,
    "exp_log_tanh": lambda a, b: a.exp() + b.log() + a.tanh(),
    "sigmoid_relu": lambda a, b: a.sigmoid() * a.relu(),
    "compare_where": lambda a, b: gt.where(a > 0, a, b),
    "compare_bool": lambda a, b: (a > 0) & (b > 2),
    "clamp": lambda a, b: a.clamp(-0.5, 0.5),
    "cast": lambda a, b: (a * 10).to(gt.int64) % 3,
    "sum_dim": lambda a, b: a.sum(1),
    "sum_all": lambda a, b: (a * b).sum(),
    "mean_keepdim": lambda a, b: a.mean(0, keepdim=True),
    "max_dim": lambda a, b: a.max(1).values + a.max(1).indices,
    "argmin": lambda a, b: a.argmin(0),
    "softmax": lambda a, b: a.softmax(-1),
    "log_softmax": lambda a, b: a.log_softmax(0),
    "cumsum": lambda a, b: a.cumsum(1),
    "permute_reshape": lambda a, b: a.t().reshape(15) * 2,
    "slice_index": lambda a, b: a[1:, ::2] + a[1:, 1:2],
    "int_index": lambda a, b: a[1] - a[:, 0].sum(),
    "cat_stack": lambda a, b: gt.cat([a, a * 2], 0).sum(0) + gt.stack([b, b], 0)[1],
    "gather": lambda a, b: a.gather(1, gt.tensor([[0, 4], [1, 1], [3, 2]]).to(a.device)),
    "flip_pad": lambda a, b: gt.nn.functional.pad(a.flip(0), (1, 2)),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_eager_ops_on_cuda_equal_cpu(cuda, name):
    a, b = _pair()
    want = OPS[name](a, b)
    got = OPS[name](a.cuda(), b.cuda())
    assert got.is_cuda and got.dtype is want.dtype and got.shape == want.shape
    tol = 1e-5 if want.dtype.is_floating_point else 0  # libm and numpy may differ in the last bit
    np.testing.assert_allclose(host(got), want.numpy(), rtol=tol, atol=tol)


def test_kernel_cache_is_hit_on_the_second_call(cuda):
    cuda_tensor.cache_clear()
    a, b = (t.cuda() for t in _pair((4, 5), (4, 5)))
    a * b
    assert cuda_tensor.stats == {"built": 1, "hits": 0}
    launched = len(cuda.launches) if cuda is not None else 0
    c = (b + 1) * a  # add (with a broadcast CPU scalar) is new; mul at the same types is a hit
    assert cuda_tensor.stats == {"built": 2, "hits": 1}
    c * a
    assert cuda_tensor.stats == {"built": 2, "hits": 2}
    a.reshape(20) * 2.0  # other shapes, other kernels
    a.reshape(10, 2)
    assert cuda_tensor.stats == {"built": 5, "hits": 2}
    if cuda is not None:  # a hit still launches its kernel
        assert len(cuda.launches) == launched + 6  # add, mul, mul, reshape, mul, reshape


def test_mixing_devices_raises_torchs_error(cuda):
    x, y = gt.ones(3).cuda(), gt.ones(3)
    with pytest.raises(RuntimeError) as e:
        x + y
    assert str(e.value) == MIXED.format("cuda:0", "cpu")
    with pytest.raises(RuntimeError) as e:
        y * x
    assert str(e.value) == MIXED.format("cpu", "cuda:0")
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        gt.where(x > 0, y, x)
    # one value on the CPU joins a CUDA op, as in torch: Python numbers and 0-d tensors
    np.testing.assert_array_equal(host(x + gt.tensor(2.0)), [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(host(x * 4), [4.0, 4.0, 4.0])


def test_data_dependent_ops_say_to_call_cpu(cuda):
    x = gt.tensor([0.0, 2.0, 0.0, 1.0]).cuda()
    with pytest.raises(NotImplementedError, match=r"'nonzero'.*call \.cpu\(\)"):
        gt.nonzero(x)
    with pytest.raises(NotImplementedError, match=r"call \.cpu\(\)"):
        x[x > 0]
    np.testing.assert_array_equal(gt.nonzero(x.cpu()).numpy(), [[1], [3]])


def test_in_place_ops_write_device_memory(cuda):
    x = gt.tensor([1.0, 2.0, 3.0]).cuda()
    same = x._data
    x.add_(1).mul_(gt.tensor([1.0, 0.5, 2.0]).cuda())
    x[1] = 10.0
    assert x._data is same and x._version[0] == 3
    np.testing.assert_array_equal(host(x), [2.0, 10.0, 8.0])
    x.copy_(gt.tensor([7, 8, 9]))  # from the CPU, with a cast: torch copies across devices
    np.testing.assert_array_equal(host(x), [7.0, 8.0, 9.0])
    x.zero_()
    np.testing.assert_array_equal(host(x), [0.0, 0.0, 0.0])
    with pytest.raises(NotImplementedError, match="view of a CUDA tensor"):
        x[1:].add_(1)
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        gt.ones(3).add_(x)


def test_gather_index_out_of_bounds_raises_index_error(cuda):
    x = gt.arange(6.0).reshape(2, 3).cuda()
    with pytest.raises(IndexError, match="index 5 is out of bounds for dimension 1 with size 3"):
        x.gather(1, gt.tensor([[0], [5]]).cuda())


# ---------------------------------------------------------------- autograd


def test_backward_on_cuda_equals_cpu(cuda, torch):
    a, b = _pair((3, 4), (4,), seed=3)

    def loss(x, w):
        return ((x * w).tanh().sum(1) ** 2).mean() + (w.exp() / 3).sum()

    grads = []
    for device in ("cpu", "cuda"):
        x = a.to(device).detach().requires_grad_()  # a leaf on each device
        w = b.to(device).detach().requires_grad_()
        loss(x, w).backward()
        assert x.grad.device == x.device and w.grad.device == w.device
        grads.append((host(x.grad), host(w.grad)))
    tx, tw = torch.tensor(a.numpy(), requires_grad=True), torch.tensor(b.numpy(), requires_grad=True)
    loss(tx, tw).backward()
    for got in grads:
        np.testing.assert_allclose(got[0], tx.grad.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[1], tw.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_cuda_copy_is_differentiable_like_torch(cuda):
    x = gt.tensor([1.0, -2.0], requires_grad=True)
    y = x.cuda()
    assert y.grad_fn.name() == "ToCopyBackward0" and not y.is_leaf
    (y * y).sum().backward()
    assert not x.grad.is_cuda
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, -4.0])


# ---------------------------------------------------------------- modules


class Scale(nn.Module):
    """An elementwise model with short reductions: every kernel runs on the fake driver too."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(gt.linspace(-1.0, 1.0, 6).reshape(2, 3))
        self.bias = nn.Parameter(gt.tensor([0.5, -0.25, 0.0]))
        self.register_buffer("steps", gt.zeros((), dtype=gt.int64))

    def forward(self, x):
        return (x.unsqueeze(1) * self.weight + self.bias).relu().sum(-1).softmax(-1)


def test_module_cuda_moves_parameters_in_place(cuda):
    gt.manual_seed(0)
    m = Scale()
    params = list(m.parameters())
    x = gt.randn(4, 3)
    want = m(x)
    assert m.cuda() is m
    assert list(m.parameters()) == params and all(p is q for p, q in zip(m.parameters(), params))
    assert all(p.is_cuda and p.requires_grad and p.is_leaf for p in params) and m.steps.is_cuda
    got = m(x.cuda())
    np.testing.assert_allclose(host(got), want.detach().numpy(), rtol=1e-6, atol=1e-7)
    got[:, 0].sum().backward()
    assert m.weight.grad.is_cuda
    m.cpu()
    assert not m.weight.is_cuda and not m.weight.grad.is_cuda and not m.steps.is_cuda
    m.to(gt.device("cuda"))
    assert m.bias.is_cuda
    m.to("cpu", gt.float64)
    assert m.weight.dtype is gt.float64 and not m.weight.is_cuda and m.steps.dtype is gt.int64


def test_sgd_steps_on_cuda_equal_cpu(cuda):
    results = []
    for device in ("cpu", "cuda"):
        gt.manual_seed(1)
        m = Scale().to(device)
        opt = gt.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        x = gt.randn(5, 3).to(device)
        for _ in range(3):
            opt.zero_grad()
            m(x)[:, 1].sum().backward()
            opt.step()
        results.append([host(p) for p in m.parameters()])
    for cpu, dev in zip(*results):
        np.testing.assert_allclose(dev, cpu, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- cooperative kernels: tiled GEMM/conv, block reductions
# On the fake driver these run in hostcheck's emulator: a block's threads as fibers with real
# barriers, shared memory (race-checked) and warp shuffles.

LONG = {  # 300 and 200 elements per reduction: a block per output, warp shuffles, shared memory
    "linear": lambda x, F: F.linear(x[:9, :7], x[20:25, :7], x[30, :5]),
    "matmul_batched": lambda x, F: x[:2].reshape(2, 3, 100) @ x[2:4].reshape(2, 100, 3),
    "conv2d": lambda x, F: F.conv2d(x[:2, :128].reshape(2, 2, 8, 8), x[2, :36].reshape(2, 2, 3, 3), x[3, :2], padding=1),
    "sum_all": lambda x, F: x.sum(),
    "sum_dim": lambda x, F: x.sum(1),
    "max_min": lambda x, F: x.max(1).values - x.amin(0).sum(),
    "argmax": lambda x, F: x.argmax(1) + x.argmin(1),
    "softmax": lambda x, F: x.softmax(-1),
    "log_softmax": lambda x, F: x.log_softmax(1),
    "layer_norm": lambda x, F: F.layer_norm(x[:, :200], (200,)),
}


@pytest.mark.parametrize("name", sorted(LONG))
def test_tiled_and_block_kernels_on_cuda_equal_cpu(cuda, name):
    x = gt.tensor(np.random.default_rng(7).standard_normal((40, 300)).astype(np.float32))
    want = LONG[name](x, nn.functional)
    got = LONG[name](x.cuda(), nn.functional)
    assert got.is_cuda and got.dtype is want.dtype and got.shape == want.shape
    assert cuda is None or cuda.cooperative, "a block-cooperative kernel must run on the fake driver"
    tol = 1e-4 if want.dtype.is_floating_point else 0  # another summation order than numpy's
    np.testing.assert_allclose(host(got), want.numpy(), rtol=tol, atol=tol)


# the seed notes' models, as the examples define them (examples/ is on pytest's pythonpath)
SEED_MODELS = {
    "sin": (sin_regression.NeuralNetworks, (32, 1)),
    "logistic": (logistic_regression.LogisticRegression, (16, 2)),
    "lenet": (lenet_digits.Net, (2, 1, 32, 32)),
}


@pytest.mark.parametrize("name", sorted(SEED_MODELS))
def test_seed_models_forward_and_backward_on_cuda_equal_cpu(cuda, name):
    make, shape = SEED_MODELS[name]
    x = gt.tensor(np.random.default_rng(3).standard_normal(shape).astype(np.float32))
    results = []
    for device in ("cpu", "cuda"):
        gt.manual_seed(0)
        model = make().to(device)
        out = model(x.to(device))
        (out * out).sum().backward()
        results.append([host(out), *(host(p.grad) for p in model.parameters())])
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_training_loop_on_cuda_equals_cpu(cuda):
    """The sin regression's loop (Adam lr=0.01, MSELoss), a few full-batch steps on each device."""
    losses = []
    for device in ("cpu", "cuda"):
        gt.manual_seed(0)
        model = sin_regression.sequential().to(device)
        opt = gt.optim.Adam(model.parameters(), lr=0.01)
        x = gt.linspace(-3, 3, 32).reshape(32, 1)
        y = x.sin()
        x, y = x.to(device), y.to(device)
        run = []
        for _ in range(4):
            opt.zero_grad()
            loss = nn.MSELoss()(model(x), y)
            loss.backward()
            opt.step()
            run.append(loss.item())
        losses.append(run)
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    assert losses[0][-1] < losses[0][0]  # it trains


# ---------------------------------------------------------------- without any CUDA


@pytest.mark.skipif(REAL_GPU, reason="checks the behaviour without a GPU")
def test_without_cuda_torch_errors_and_cpu_unchanged():
    reset()
    assert gt.cuda.is_available() is False and gt.cuda.device_count() == 0
    x = gt.ones(2)
    for move in (x.cuda, lambda: x.to("cuda"), lambda: gt.zeros(2, device="cuda"), lambda: nn.Linear(2, 2).cuda(),
                 lambda: nn.Linear(2, 2).to(gt.device("cuda:0"))):
        with pytest.raises(AssertionError, match="Torch not compiled with CUDA enabled"):
            move()
    assert x.device == gt.device("cpu") and not x.is_cuda and x.cpu() is x and x.to("cpu") is x
    assert repr(x) == "tensor([1., 1.])"
