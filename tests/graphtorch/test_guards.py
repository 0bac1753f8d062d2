"""Compiled equals eager after the Python state the trace read changes (issue 12, cases 1-4)."""

import collections
import logging

import numpy as np
import pytest
import torch

import graphtorch as gt
import graphtorch.nn as nn
import graphtorch.nn.functional as F


def _calls(fn, *args, n=3):
    """A function's first call runs eagerly; repeat so the compiled path runs too."""
    return [fn(*args) for _ in range(n)][-1]


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.scale = 2.0

    def forward(self, x):
        return self.fc(x) * self.scale


def _x(*shape, seed=0):
    return gt.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def test_replacing_a_parameter_recompiles_and_the_new_parameter_gets_its_gradient(monkeypatch, caplog):
    monkeypatch.setenv("GRAPHTORCH_LOGS", "recompiles")
    m = Scaled()
    cm = gt.compile(m)
    x = _x(4, 3)
    _calls(cm, x)
    m.fc.weight = nn.Parameter(gt.ones(2, 3))
    with caplog.at_level(logging.INFO, logger="graphtorch"):
        out = _calls(cm, x)
    np.testing.assert_allclose(out.detach().numpy(), m(x).detach().numpy(), rtol=1e-6)
    assert "fc.weight: a different Parameter" in caplog.text
    out.sum().backward()
    assert m.fc.weight.grad is not None
    np.testing.assert_allclose(m.fc.weight.grad.numpy(), 2 * np.tile(x.numpy().sum(0), (2, 1)), rtol=1e-5)


def test_removing_a_bias_recompiles():
    m = Scaled()
    cm = gt.compile(m)
    x = _x(4, 3)
    _calls(cm, x)
    m.fc.bias = None
    np.testing.assert_allclose(_calls(cm, x).detach().numpy(), (x.numpy() @ m.fc.weight.detach().numpy().T) * 2, rtol=1e-6)


def test_a_plain_attribute_read_in_forward_is_guarded(monkeypatch, caplog):
    monkeypatch.setenv("GRAPHTORCH_LOGS", "recompiles")
    m = Scaled()
    cm = gt.compile(m)
    x = _x(4, 3)
    _calls(cm, x)
    m.scale = 3.0
    with caplog.at_level(logging.INFO, logger="graphtorch"):
        out = _calls(cm, x)
    np.testing.assert_allclose(out.detach().numpy(), m(x).detach().numpy(), rtol=1e-6)
    assert "scale changed from 2.0 to 3.0" in caplog.text


def test_replacing_a_submodule_and_registering_a_hook_recompile():
    m = Scaled()
    cm = gt.compile(m)
    x = _x(4, 3)
    _calls(cm, x)
    m.fc = nn.Linear(3, 2)
    np.testing.assert_allclose(_calls(cm, x).detach().numpy(), m(x).detach().numpy(), rtol=1e-6)
    m.fc.register_forward_hook(lambda mod, inp, out: out + 1)
    np.testing.assert_allclose(_calls(cm, x).detach().numpy(), m(x).detach().numpy(), rtol=1e-6)


def test_globals_and_closure_values_read_are_guarded():
    factor = [2.0]

    def make(k):
        return lambda t: t * k + OFFSET

    global OFFSET
    OFFSET = 1.0
    f = gt.compile(make(factor[0]))
    x = _x(3)
    _calls(f, x)
    OFFSET = 5.0
    np.testing.assert_allclose(_calls(f, x).numpy(), x.numpy() * 2 + 5, rtol=1e-6)


def test_requires_grad_of_a_parameter_is_guarded():
    m = Scaled()
    cm = gt.compile(m)
    x = _x(4, 3)
    _calls(cm, x)
    m.fc.weight.requires_grad_(False)
    out = _calls(cm, x)
    out.sum().backward()
    assert m.fc.weight.grad is None and m.fc.bias.grad is not None


def test_replacing_a_parameter_keeps_its_place_in_named_parameters():
    m, t = nn.Linear(2, 2), torch.nn.Linear(2, 2)
    m.weight = nn.Parameter(gt.ones(2, 2))
    t.weight = torch.nn.Parameter(torch.ones(2, 2))
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in t.named_parameters()] == ["weight", "bias"]


# ---------------------------------------------------------------- case 2: inputs mutated in place


def test_an_input_mutated_in_place_is_written_back():
    def f(t):
        t.add_(1)
        return t * 2

    cf = gt.compile(f)
    a, b = gt.zeros(3), torch.zeros(3)
    for _ in range(3):
        out = cf(a)
        expected = f.__call__(b)
        np.testing.assert_array_equal(out.detach().numpy(), expected.numpy())
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_the_same_tensor_passed_twice_gives_eager_results():
    def f(a, b):
        a.mul_(2)
        return a + b

    cf = gt.compile(f)
    x, y = gt.ones(3), torch.ones(3)
    _calls(cf, gt.ones(3), gt.ones(3))  # compiled for two distinct tensors
    for _ in range(3):
        out = cf(x, x)
        np.testing.assert_array_equal(out.detach().numpy(), f(y, y).numpy())
        np.testing.assert_array_equal(x.numpy(), y.numpy())


# ---------------------------------------------------------------- case 3: captured tensors


def test_a_train_step_closing_over_its_target_compiles():
    gt.manual_seed(0)
    m = nn.Linear(4, 3)
    opt = gt.optim.SGD(m.parameters(), lr=0.1)
    x, y = _x(5, 4), gt.tensor([0, 1, 2, 1, 0])

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
        return loss

    tm = torch.nn.Linear(4, 3)
    with torch.no_grad():
        tm.weight.copy_(torch.tensor(m.weight.detach().numpy()))
        tm.bias.copy_(torch.tensor(m.bias.detach().numpy()))
    topt = torch.optim.SGD(tm.parameters(), lr=0.1)
    tx, ty = torch.tensor(x.numpy()), torch.tensor(y.numpy())
    cstep = gt.compile(step)
    for _ in range(4):
        loss = cstep()
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tm(tx), ty)
        tloss.backward()
        topt.step()
        np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-5)
    np.testing.assert_allclose(m.weight.detach().numpy(), tm.weight.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_cross_entropy_still_rejects_an_out_of_range_target():
    with pytest.raises(IndexError, match="Target 7 is out of bounds."):
        F.cross_entropy(_x(2, 3), gt.tensor([0, 7]))


# ---------------------------------------------------------------- case 4: any output structure


def test_a_namedtuple_output():
    f = gt.compile(lambda t: t.max(dim=1))
    x = _x(3, 4)
    out = _calls(f, x)
    expected = torch.tensor(x.numpy()).max(dim=1)
    assert type(out).__name__ == "max" and out._fields == ("values", "indices")
    np.testing.assert_array_equal(out.values.numpy(), expected.values.numpy())
    np.testing.assert_array_equal(out.indices.numpy(), expected.indices.numpy())


def test_numbers_none_and_strings_are_returned():
    f = gt.compile(lambda t: (t * 2, t.shape[0], None, "ok", {"n": t.ndim, "l": [t + 1]}))
    x = _x(3)
    out = _calls(f, x)
    assert out[1:4] == (3, None, "ok") and out[4]["n"] == 1
    np.testing.assert_array_equal(out[0].numpy(), x.numpy() * 2)
    np.testing.assert_array_equal(out[4]["l"][0].numpy(), x.numpy() + 1)
    out = _calls(f, _x(5))
    assert out[1] == 5


def test_a_user_namedtuple_output():
    Pair = collections.namedtuple("Pair", "a b")
    f = gt.compile(lambda t: Pair(t + 1, t.shape))
    out = _calls(f, _x(2))
    assert isinstance(out, Pair) and out.b == (2,)


# ---------------------------------------------------------------- bad input gets eager's error


def test_a_list_where_a_tensor_is_expected_gets_eagers_error():
    m = nn.Linear(3, 2)
    cm = gt.compile(m)
    _calls(cm, _x(2, 3))
    with pytest.raises(Exception) as compiled_err:
        cm([1.0, 2.0, 3.0])
    with pytest.raises(Exception) as eager_err:
        m([1.0, 2.0, 3.0])
    assert type(compiled_err.value) is type(eager_err.value)
    assert str(compiled_err.value) == str(eager_err.value)


def test_a_wrong_shape_gets_eagers_error():
    m = nn.Linear(3, 2)
    cm = gt.compile(m)
    _calls(cm, _x(2, 3))
    with pytest.raises(RuntimeError) as compiled_err:
        cm(_x(2, 4))
    with pytest.raises(RuntimeError) as eager_err:
        m(_x(2, 4))
    assert str(compiled_err.value) == str(eager_err.value)


def test_state_that_changes_every_call_stops_recompiling_and_stays_correct():
    global STEP
    STEP = 0
    f = gt.compile(lambda t: t * STEP)
    traces = []
    f.build = lambda *a, _build=f.build: traces.append(1) or _build(*a)
    x = _x(3)
    for step in range(20):
        STEP = step
        np.testing.assert_allclose(f(x).numpy(), x.numpy() * step, rtol=1e-6)
    assert len(traces) <= 10  # the warm-up, then one per change until the limit: then segments
    assert "guards failed" in str(f.graph_breaks[-1])


def test_attributes_of_a_plain_config_object_are_guarded():
    class Config:
        def __init__(self):
            self.alpha = 2.0

    cfg = Config()

    class WithConfig(nn.Module):
        def __init__(self):
            super().__init__()
            self.cfg = Config()

        def forward(self, x):
            return x * self.cfg.alpha + cfg.alpha

    m = WithConfig()
    cm = gt.compile(m)
    x = _x(3)
    _calls(cm, x)
    m.cfg.alpha = 5.0
    np.testing.assert_allclose(_calls(cm, x).numpy(), x.numpy() * 5 + 2, rtol=1e-6)
    f = gt.compile(lambda t: t * cfg.alpha)
    _calls(f, x)
    cfg.alpha = -1.0
    np.testing.assert_allclose(_calls(f, x).numpy(), -x.numpy(), rtol=1e-6)


def test_a_parameter_of_the_wrong_shape_gets_eagers_error():
    m = nn.Linear(3, 2)
    cm = gt.compile(m)
    _calls(cm, _x(2, 3))
    m.weight = nn.Parameter(gt.ones(2, 5))
    with pytest.raises(RuntimeError) as compiled_err:
        cm(_x(2, 3))
    with pytest.raises(RuntimeError) as eager_err:
        m(_x(2, 3))
    assert str(compiled_err.value) == str(eager_err.value)
