"""graphtorch.compile: compiled results equal eager ones, forward, backward and whole steps."""

import logging
import os
import weakref

import lenet_digits  # examples/ is on pytest's pythonpath
import logistic_regression
import numpy as np
import pytest
import sin_regression

import graphtorch as gt
import graphtorch.nn as nn
from graphtorch.compiler.errors import GraphtorchCompileError

BACKENDS = ["interpreter", "llvm"]


# the seed notes' models, as the examples define them
SinNet = sin_regression.NeuralNetworks
sequential_sin = sin_regression.sequential
logistic = logistic_regression.LogisticRegression
LeNet = lenet_digits.Net


MODELS = {
    "sin": (SinNet, (100, 1)),
    "sin-sequential": (sequential_sin, (100, 1)),
    "logistic": (logistic, (100, 2)),
    "lenet": (LeNet, (3, 1, 32, 32)),
}


def _input(shape, seed=0):
    return gt.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _grads(model):
    return [p.grad.numpy().copy() for p in model.parameters()]


# LeNet on LLVM is covered by test_lenet_llvm_train_step_and_dump_dir (one LeNet compile keeps CI short)
CASES = [(name, backend) for name in MODELS for backend in BACKENDS if (name, backend) != ("lenet", "llvm")]


@pytest.mark.parametrize("name,backend", CASES)
def test_compiled_model_equals_eager_forward_and_backward(name, backend):
    build, shape = MODELS[name]
    gt.manual_seed(0)
    model = build()
    compiled = gt.compile(model, backend=backend)
    x = _input(shape)
    out = compiled(x)
    out.sum().backward()
    compiled_grads = _grads(model)
    model.zero_grad()
    expected = model(x)
    expected.sum().backward()
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-5, atol=1e-5)
    for got, want in zip(compiled_grads, _grads(model)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert out.grad_fn.name() == "CompiledFunctionBackward"


def test_compiled_module_shares_parameters_and_state_dict():
    model = SinNet()
    compiled = gt.compile(model, backend="interpreter")
    assert [p is q for p, q in zip(compiled.parameters(), model.parameters())] == [True] * 6
    assert list(compiled.state_dict()) == ["_orig_mod." + k for k in model.state_dict()]
    assert compiled.hidden_1 is model.hidden_1  # attributes forward to the original
    with gt.no_grad():
        before = compiled(_input((4, 1)))
        model.output.bias.add_(1.0)  # a parameter update needs no recompile
        after = compiled(_input((4, 1)))
    np.testing.assert_allclose(after.numpy(), before.numpy() + 1.0, rtol=1e-6)
    assert len(compiled._compiled.entries) == 1


def test_recompiles_on_a_new_shape_and_says_why(monkeypatch, caplog):
    monkeypatch.setenv("GRAPHTORCH_LOGS", "recompiles")
    compiled = gt.compile(SinNet(), backend="interpreter")
    with gt.no_grad(), caplog.at_level(logging.DEBUG, logger="graphtorch"):
        compiled(_input((64, 1)))
        compiled(_input((32, 1)))
    assert "input 0: size mismatch at dim 0, expected 64, got 32" in caplog.text
    assert len(compiled._compiled.entries) == 2


def test_warns_once_past_the_cache_limit():
    fn = gt.compile(lambda x: x * 2, backend="interpreter")
    with pytest.warns(UserWarning, match="cache size limit"):
        for n in range(1, 12):
            fn(gt.ones(n))
            fn(gt.ones(n))  # the first call of a function's signature runs eagerly; the second compiles
    np.testing.assert_array_equal(fn(gt.ones(3)).numpy(), np.full(3, 2.0))


def test_untraceable_control_flow_names_the_user_line():
    def f(x):
        if x.sum() > 0:
            return x
        return -x

    compiled = gt.compile(f, backend="interpreter", fullgraph=True)
    compiled(gt.ones(3))  # eager warm-up
    with pytest.raises(GraphtorchCompileError, match=r"GT001 at test_compile.py:\d+"):
        compiled(gt.ones(3))


def test_compile_returns_a_module_for_a_module_and_a_callable_for_a_function():
    from graphtorch.compiled import CompiledFunction
    from graphtorch.optimized_module import OptimizedModule

    model = logistic()
    compiled = gt.compile(model, backend="interpreter")
    assert isinstance(compiled, OptimizedModule) and isinstance(compiled, nn.Module)
    assert compiled._orig_mod is model
    assert isinstance(gt.compile(lambda x: x + 1, backend="interpreter"), CompiledFunction)
    assert gt.compile(model, disable=True) is model


def make_step(model, opt, loss_fn):
    """The training step every test compiles: a user's ordinary loop body."""

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def _train(model, make_opt, step_fn_compiled: bool, steps: int, data, backend="interpreter"):
    step = make_step(model, make_opt(model.parameters()), nn.MSELoss())
    run = gt.compile(step, backend=backend) if step_fn_compiled else step
    losses = [run(x, y).item() for x, y in data[:steps]]
    return [p.detach().numpy().copy() for p in model.parameters()], losses


OPTIMIZERS = {
    "sgd": lambda p: gt.optim.SGD(p, lr=0.05),
    "sgd-momentum-nesterov-wd": lambda p: gt.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda p: gt.optim.Adam(p, lr=0.01),
    "adamw-amsgrad": lambda p: gt.optim.AdamW(p, lr=0.01, amsgrad=True),
    "rmsprop-centered-momentum": lambda p: gt.optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True),
}


def _sin_data(n=20):
    rng = np.random.default_rng(1)
    xs = [rng.uniform(-3, 3, (32, 1)).astype(np.float32) for _ in range(n)]
    return [(gt.from_numpy(x), gt.from_numpy(np.sin(x))) for x in xs]


@pytest.mark.parametrize("backend", ["interpreter", "llvm"])
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_whole_step_compiled_20_steps_equal_eager(opt, backend):
    data = _sin_data()
    results = {}
    for compiled in (False, True):
        gt.manual_seed(0)
        model = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))
        storage = [p._data for p in model.parameters()]
        step = make_step(model, OPTIMIZERS[opt](model.parameters()), nn.MSELoss())
        run = gt.compile(step, backend=backend) if compiled else step
        losses = [run(x, y).item() for x, y in data]
        assert all(p._data is a for p, a in zip(model.parameters(), storage))  # updated in place
        results[compiled] = [p.detach().numpy().copy() for p in model.parameters()], losses
        if compiled and backend == "llvm":  # the kernels wrote the parameters (donated inputs)
            assert len(next(iter(run.entries.values())).forward.executable.plan.donated) >= 4
    for got, want in zip(results[True][0], results[False][0]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[True][1], results[False][1], rtol=1e-5)


def test_batchnorm_and_dropout_train_the_same_compiled_and_eager():
    data = [(_input((8, 4), s), _input((8, 1), s + 100)) for s in range(10)]
    results = {}
    for compiled in (False, True):
        gt.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 1))
        gt.manual_seed(5)  # the same dropout masks in both runs
        params, _ = _train(model, OPTIMIZERS["sgd-momentum-nesterov-wd"], compiled, 10, data)
        results[compiled] = params, model[1].running_mean.numpy().copy(), int(model[1].num_batches_tracked)
    for got, want in zip(results[True][0], results[False][0]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[True][1], results[False][1], rtol=1e-5, atol=1e-6)
    assert results[True][2] == results[False][2] == 10


def test_lr_scheduler_never_recompiles_and_a_new_branch_retraces(monkeypatch, caplog):
    monkeypatch.setenv("GRAPHTORCH_LOGS", "recompiles")
    data = _sin_data(6)
    weights = {}
    for compiled in (False, True):
        gt.manual_seed(0)
        model = nn.Linear(1, 1)
        opt = gt.optim.SGD(model.parameters(), lr=0.1)
        sched = gt.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        step = make_step(model, opt, nn.MSELoss())
        run = gt.compile(step, backend="interpreter") if compiled else step
        with caplog.at_level(logging.DEBUG, logger="graphtorch"):
            for x, y in data:
                run(x, y)
                sched.step()
        weights[compiled] = model.weight.detach().numpy().copy()
    np.testing.assert_allclose(weights[True], weights[False], rtol=1e-6)
    assert "Recompiling" not in caplog.text and len(run.entries) == 1  # the lr is a run-time scalar
    opt.param_groups[0]["momentum"] = 0.9  # a momentum buffer: other code
    with caplog.at_level(logging.DEBUG, logger="graphtorch"):
        run(*data[0])
    assert "SGD hyperparameters changed" in caplog.text


def test_lenet_llvm_train_step_and_dump_dir(tmp_path):
    data = [(_input((4, 1, 32, 32), s), gt.from_numpy(np.arange(4) % 10)) for s in range(3)]
    results = {}
    for compiled in (False, True):
        gt.manual_seed(0)
        model = LeNet()
        step = make_step(model, gt.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), nn.CrossEntropyLoss())
        run = gt.compile(step, backend="llvm", dump_dir=str(tmp_path)) if compiled else step
        losses = [run(x, y).item() for x, y in data]
        results[compiled] = losses, [p.detach().numpy().copy() for p in model.parameters()]
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-5)
    for got, want in zip(results[True][1], results[False][1]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    names = set(os.listdir(tmp_path))
    for stage in ("traced", "optimized", "fused"):
        assert {f"{stage}.txt", f"{stage}.dot", f"{stage}.json"} <= names
    assert any(n.endswith(".ll") for n in names)


def test_explain_names_fusion_groups_and_the_pools_fused_into_the_convs():
    with gt.no_grad():
        report = gt.explain(LeNet().eval(), _input((2, 1, 32, 32)))
    text = str(report)
    assert text.count("[conv2d_pool] conv2d + bias + relu + max_pool2d") == 2 and "matmul + bias + relu" in text
    assert "max_pool over chunks of 2 images" in text and "cannot fuse" in text
    assert "input 0: float32 [2, 1, 32, 32]" in text
    assert report.memory["compiled arena"] < report.memory["eager, all intermediates"]


def test_cuda_backend_without_a_gpu_is_a_clear_error():
    if gt.cuda.is_available():
        pytest.skip("a CUDA device is present: tests/compiler/test_cuda_runtime.py covers running there")
    compiled = gt.compile(logistic(), backend="cuda")
    with gt.no_grad(), pytest.raises(GraphtorchCompileError, match="GT053") as err:
        compiled(_input((4, 2)))
    assert "hint:" in str(err.value)


def test_a_compiled_step_reuses_a_dropped_grad_array_but_never_one_the_user_holds():
    gt.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    step = gt.compile(make_step(model, gt.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss()))
    (x, y), (x2, y2) = [(gt.randn(8, 3), gt.randn(8, 1)) for _ in range(2)]
    for _ in range(3):
        step(x, y)
    w = model[0].weight
    array = weakref.ref(w.grad._data)  # a weak reference: holding the array would keep it busy
    step(x, y)
    assert w.grad._data is array()  # the old .grad was dropped: its memory took the new gradient
    held = w.grad
    before = held.numpy().copy()
    step(x2, y2)
    assert w.grad is not held and w.grad._data is not held._data
    np.testing.assert_array_equal(held.numpy(), before)  # what the user kept is untouched
