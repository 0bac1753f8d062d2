"""Graph breaks (compile's default fullgraph=False): compiled segments with eager code between."""

import logging

import numpy as np
import pytest
import torch

import graphtorch as gt
import graphtorch.nn as nn
from graphtorch.compiler.errors import GraphtorchCompileError


def _both(f, x: np.ndarray, n: int = 3):
    """f compiled and f eager (graphtorch) and f on torch, each called n times on copies of x."""
    cf = gt.compile(f)
    outs = [cf(gt.tensor(x.copy())) for _ in range(n)]
    return outs[-1], f(torch.tensor(x.copy()))


def branch_on_item(t):
    y = t * 2
    if y.sum().item() > 0:
        return y + 1
    return y - 1


def print_in_the_middle(t):
    y = t.exp()
    print(y.sum())
    return y * 3


def boolean_mask(t):
    return (t[t > 0] * 2).sum() + t.sum()


def python_if_on_tensor(t):
    s = t.sum()
    return t * 2 if s > 0 else t * -2


@pytest.mark.parametrize("f", [branch_on_item, print_in_the_middle, boolean_mask, python_if_on_tensor])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_graph_breaking_functions_equal_eager(f, sign, capsys):
    x = (np.arange(6, dtype=np.float32).reshape(2, 3) - 2) * sign
    got, expected = _both(f, x)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6)


def test_the_branch_follows_the_value_on_every_call():
    cf = gt.compile(branch_on_item)
    for sign in [1, 1, 1, -1, 1, -1]:
        x = np.full(3, sign, np.float32)
        np.testing.assert_allclose(cf(gt.tensor(x)).numpy(), branch_on_item(torch.tensor(x)).numpy())


def test_breaks_are_listed_with_the_users_line_and_logged(monkeypatch, caplog):
    monkeypatch.setenv("GRAPHTORCH_LOGS", "graph_breaks")
    cf = gt.compile(branch_on_item)
    with caplog.at_level(logging.INFO, logger="graphtorch"):
        for _ in range(3):
            cf(gt.ones(3))
    assert len(cf.graph_breaks) == 1
    text = str(cf.graph_breaks[0])
    assert text.startswith("test_graph_breaks.py:") and "item()" in text
    assert "Graph break in branch_on_item" in caplog.text


def test_fullgraph_true_keeps_the_coded_error():
    cf = gt.compile(python_if_on_tensor, fullgraph=True)
    cf(gt.ones(3))
    with pytest.raises(GraphtorchCompileError, match="GT001"):
        cf(gt.ones(3))


def test_segments_are_compiled_once_and_reused():
    cf = gt.compile(branch_on_item)
    for _ in range(5):
        cf(gt.ones(3))
    assert 1 <= len(cf.segments) <= 3  # before the break, after it: compiled once each


def test_a_train_step_with_a_break_matches_eager():
    def make():
        gt.manual_seed(0)
        m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        return m, gt.optim.SGD(m.parameters(), lr=0.1)

    def step_of(m, opt):
        def step(x, y):
            opt.zero_grad()
            loss = ((m(x) - y) ** 2).mean()
            if loss.item() > 100:  # a graph break
                loss = loss * 0
            loss.backward()
            opt.step()
            return loss
        return step

    (m1, o1), (m2, o2) = make(), make()
    eager, compiled = step_of(m1, o1), gt.compile(step_of(m2, o2))
    rng = np.random.default_rng(0)
    counts = []
    for _ in range(6):
        x, y = gt.tensor(rng.standard_normal((5, 4)).astype(np.float32)), gt.zeros(5, 2)
        np.testing.assert_allclose(compiled(x, y).item(), eager(x, y).item(), rtol=1e-5)
        counts.append(len(compiled.segments))
    assert counts[2] == counts[-1] == 2  # before and after the break, compiled once and reused
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_allclose(p2.detach().numpy(), p1.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert compiled.graph_breaks


def test_a_break_with_gradients_flowing_out_of_the_compiled_call():
    w = gt.ones(3, requires_grad=True)
    cf = gt.compile(lambda t: (t * w).exp() * (2 if (t * w).sum().item() > 0 else 3))
    for _ in range(3):
        w.grad = None
        out = cf(gt.tensor([0.5, -0.2, 1.0]))
        out.sum().backward()
    tw = torch.ones(3, requires_grad=True)
    tx = torch.tensor([0.5, -0.2, 1.0])
    ((tx * tw).exp() * 2).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-6)


def test_aliased_inputs_and_a_mutated_input_in_segments():
    def f(a, b):
        a.add_(1)
        if a.sum().item() > 0:
            b.mul_(2)
        return a + b

    cf = gt.compile(f)
    x, tx = gt.ones(3), torch.ones(3)
    for _ in range(3):
        np.testing.assert_array_equal(cf(x, x).numpy(), f(tx, tx).numpy())
        np.testing.assert_array_equal(x.numpy(), tx.numpy())


def test_explain_lists_each_break_with_file_line_and_reason(capsys):
    def f(t):
        y = t * 2
        print(y.sum())
        if y.sum() > 0:
            return y.exp()
        return y

    report = gt.explain(f, gt.ones(3))
    assert len(report.graph_breaks) == 2
    assert all(str(b).startswith("test_graph_breaks.py:") for b in report.graph_breaks)
    text = str(report)
    assert "graph breaks (2)" in text and "printing a tensor" in text and "bool()" in text


def test_explain_of_a_whole_graph_lists_no_breaks_and_the_module_guards():
    report = gt.explain(nn.Linear(2, 2), gt.ones(1, 2))
    assert report.graph_breaks == []
    assert any("self:" in g for g in report.guards)


def test_a_call_that_raises_still_does_what_eager_did_before_the_error():
    # found by the fuzzer: BatchNorm counts the batch, then refuses a batch of one
    eager, twin = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    compiled = gt.compile(twin)
    for m in (eager, compiled):
        with pytest.raises(ValueError) as err:
            m(gt.ones(1, 3))
    assert "Expected more than 1 value per channel" in str(err.value)
    assert twin.num_batches_tracked.item() == eager.num_batches_tracked.item() == 1


def _set_first(t):
    t[0] = 5.0
    return t * 2


def _add_to_a_view(t):
    t[1:].add_(1)
    return t * 2


def _masked_assign(t):
    t[t > 0] = 0.0
    return t + 1


def _view_of_an_intermediate(t):
    y = t * 1
    y.view(-1)[0] = 7.0
    return y + t


@pytest.mark.parametrize("f", [_set_first, _add_to_a_view, _masked_assign, _view_of_an_intermediate])
def test_in_place_writes_through_indexing_and_views_equal_eager(f):
    cf = gt.compile(f)
    a, b = gt.tensor([-1.0, 1.0, 2.0]), torch.tensor([-1.0, 1.0, 2.0])
    for _ in range(3):
        np.testing.assert_array_equal(cf(a).numpy(), f(b).numpy())
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_an_indexed_write_to_a_captured_buffer_happens_on_every_call():
    buf, tbuf = gt.zeros(3), torch.zeros(3)

    def g(x, b):
        b[0] += 1
        return x * b.sum()

    cg = gt.compile(g)
    for _ in range(4):
        np.testing.assert_array_equal(cg(gt.ones(2), buf).numpy(), g(torch.ones(2), tbuf).numpy())
    np.testing.assert_array_equal(buf.numpy(), tbuf.numpy())


def test_fullgraph_refuses_a_write_to_a_view_of_a_traced_tensor():
    cf = gt.compile(_view_of_an_intermediate, fullgraph=True)
    cf(gt.ones(3))
    with pytest.raises(GraphtorchCompileError, match="GT006"):
        cf(gt.ones(3))


def test_a_compiled_module_lists_its_graph_breaks():
    class Printing(nn.Module):
        def forward(self, x):
            print(x.sum())
            return x * 2

    cm = gt.compile(Printing())
    np.testing.assert_array_equal(cm(gt.ones(2)).numpy(), [2.0, 2.0])
    assert [b.where.split(":")[0] for b in cm.graph_breaks] == ["test_graph_breaks.py"]


def _metadata_in_place_then_break(t):
    y = t * 2
    y.unsqueeze_(0)
    z = y.detach()
    if z.sum().item() > 0:
        return y + z
    return y - z


def test_tensors_made_by_detach_and_in_place_metadata_ops_get_values_at_a_break():
    got, expected = _both(_metadata_in_place_then_break, np.array([1.0, 2.0, -0.5], np.float32))
    np.testing.assert_array_equal(got.numpy(), expected.numpy())
