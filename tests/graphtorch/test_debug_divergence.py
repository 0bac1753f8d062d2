"""graphtorch.debug.find_divergence and compile(check="float64"): the first node that leaves float64."""

import lenet_digits  # examples/ is on pytest's pythonpath
import numpy as np
import pytest
import sin_regression
from conftest import lenet_train_step

import graphtorch as gt
import graphtorch.nn as nn
from graphtorch.compiler.divergence import widen
from graphtorch.compiler.llvm import scalar
from graphtorch.debug import DivergenceError

find_divergence = gt.debug.find_divergence  # the public path


def _input(shape, seed=0, scale=1.0):
    return gt.from_numpy((np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32))


def cancels(a):
    b = (a + 1e8) - 1e8  # float32 cannot hold a + 1e8: b is a multiple of 8
    return b * 2


def test_names_the_line_that_float32_cannot_hold():
    d = find_divergence(gt.compile(cancels), _input((4, 5)))
    assert d is not None and d.graph == "forward"
    assert d.node.target == "sub" and d.source == "b = (a + 1e8) - 1e8  # float32 cannot hold a + 1e8: b is a multiple of 8"
    assert d.loc.startswith("test_debug_divergence.py:")
    assert d.error.bad == 20 and d.error.max_abs > 0.1 and d.error.max_rel == pytest.approx(1.0)
    # the add before it is still within tolerance: it is not blamed, and its error is reported
    add_error = dict(d.input_errors)[d.node.inputs[0].name]
    assert add_error.bad == 0 and 0 < add_error.max_rel < 1e-7
    assert d.group is not None and d.kernel == f"kernel{d.group.id}.elementwise"
    text = str(d)
    assert "sub(" in text and "b = (a + 1e8) - 1e8" in text and "fusion group" in text


def test_nothing_diverges_in_float64_or_on_benign_inputs():
    assert find_divergence(gt.compile(cancels), _input((4, 5)).double()) is None
    assert find_divergence(lambda a: (a * 3 + 1).sin(), _input((4, 5))) is None


def test_a_broken_kernel_is_found_and_called_a_backend_bug(monkeypatch):
    emit = scalar.emit

    def broken(b, name, args, in_dtype, out_dtype, attrs):  # the test-only hook: sin lowers to the identity
        return args[0] if name == "sin" else emit(b, name, args, in_dtype, out_dtype, attrs)

    monkeypatch.setattr(scalar, "emit", broken)
    d = find_divergence(gt.compile(lambda x: x.sin() * 3 + 1), _input((4, 5)))
    assert d is not None and "sin" in [n.target for n in d.group.nodes]
    assert d.node is d.group.outputs[0] and d.kernel_vs_interpreter > 0.1
    assert "a backend bug" in str(d)


def test_a_broken_kernel_in_the_backward_graph(monkeypatch):
    emit = scalar.emit

    def broken(b, name, args, in_dtype, out_dtype, attrs):  # only the backward of sin uses cos
        return args[0] if name == "cos" else emit(b, name, args, in_dtype, out_dtype, attrs)

    monkeypatch.setattr(scalar, "emit", broken)
    x = _input((4, 5))
    x.requires_grad = True
    d = find_divergence(gt.compile(lambda x: (x.sin() * 3).sum()), x)
    assert d is not None and d.graph == "backward"
    assert "cos" in [n.target for n in d.group.nodes]


@pytest.mark.parametrize("name,backend", [("sin", "llvm"), ("sin", "interpreter"), ("lenet", "llvm")])
def test_models_forward_and_backward_agree_with_float64(name, backend):
    gt.manual_seed(0)
    model, x = {"sin": (sin_regression.NeuralNetworks, _input((64, 1), scale=2.0)),
                "lenet": (lenet_digits.Net, _input((2, 1, 32, 32)))}[name]
    model = model()
    grads_before = [p.grad for p in model.parameters()]
    assert find_divergence(gt.compile(model, backend=backend), x) is None
    assert [p.grad for p in model.parameters()] == grads_before  # the backward left no gradients


def test_lenet_train_step_agrees_with_float64():
    _, step = lenet_train_step()
    x, y = _input((4, 1, 32, 32)), gt.from_numpy(np.arange(4) % 10)
    assert find_divergence(step, x, y) is None


def test_lenet_train_step_with_a_broken_kernel(monkeypatch):
    _, step = lenet_train_step()
    x, y = _input((4, 1, 32, 32)), gt.from_numpy(np.arange(4) % 10)
    emit = scalar.emit

    def broken(b, name, args, in_dtype, out_dtype, attrs):  # log (in the loss) lowers to the identity
        return args[0] if name == "log" else emit(b, name, args, in_dtype, out_dtype, attrs)

    monkeypatch.setattr(scalar, "emit", broken)
    d = find_divergence(step, x, y)
    # the loss's log is in its log_softmax row kernel (the softmax primitive with log=True)
    assert d is not None and any(n.target == "log" or n.attrs.get("log") for n in d.group.nodes)
    assert "a backend bug" in str(d)


def test_check_float64_raises_on_the_first_divergent_call():
    checked = gt.compile(cancels, check="float64")
    small = _input((3,)) * 1e-3  # |a| < 1 at most; still not representable next to 1e8
    checked(small)  # a function's first call runs eagerly: nothing is checked
    with pytest.raises(DivergenceError, match=r"b = \(a \+ 1e8\) - 1e8") as info:
        checked(small)
    assert info.value.divergence.node.target == "sub"
    fine = gt.compile(lambda a: a * 2 + 1, check="float64")
    np.testing.assert_allclose(fine(small).numpy(), small.numpy() * 2 + 1)
    np.testing.assert_allclose(fine(small).numpy(), small.numpy() * 2 + 1)


def test_check_float64_on_a_module_checks_the_backward_too(monkeypatch):
    def tanh_mlp():
        gt.manual_seed(0)
        return gt.compile(nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1)), check="float64")

    x = _input((16, 1))
    tanh_mlp()(x).sum().backward()  # agrees: no error
    emit = scalar.emit

    def broken(b, name, args, *rest):  # tanh's backward, 1 - y*y, multiplies; the forward does not
        return emit(b, "add" if name == "mul" else name, args, *rest)

    monkeypatch.setattr(scalar, "emit", broken)
    out = tanh_mlp()(x)
    with pytest.raises(DivergenceError, match="first divergence from float64 in the backward graph") as info:
        out.sum().backward()
    assert "mul" in [n.target for n in info.value.divergence.group.nodes]


def test_check_rejects_unknown_values():
    with pytest.raises(ValueError, match=r"check must be None or 'float64', got 'float16'"):
        gt.compile(cancels, check="float16")


def test_widen_makes_every_float_float64_and_keeps_the_rest():
    def f(x, i):
        return (x.float() * 2).sum() + i.sum()

    from graphtorch.compiled import flatten, trace

    flat = [_input((3,)).half(), gt.from_numpy(np.arange(3))]
    graph = trace(f, flat, flatten(((0, 0), {}))[1], None, "f").graph
    wide = widen(graph)
    assert [n.type.dtype.name for n in wide.inputs] == ["float64", "int64"]
    assert all(n.type.dtype.name in ("float64", "int64") for n in wide.nodes)
    assert len(wide.nodes) == len(graph.nodes)


def test_check_compares_what_the_real_call_returned(monkeypatch):
    from graphtorch.compiler.llvm import Executable

    call = Executable.__call__

    def off_by_one(self, *arrays):  # the real executable errs, the kernels run one by one do not
        out = call(self, *arrays)
        return out if self.name.endswith(".probe") else [o + 1 for o in out]

    monkeypatch.setattr(Executable, "__call__", off_by_one)
    checked = gt.debug.checked(lambda x: x * 2 + 1)
    x = _input((5,))
    checked(x)  # eager
    with pytest.raises(DivergenceError, match="a backend bug") as info:
        checked(x)
    assert info.value.divergence.kernel_vs_interpreter == pytest.approx(1.0)
