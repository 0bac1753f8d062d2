"""A traced optimizer step records only tensor ops, and the recorded graph computes the eager update."""

from __future__ import annotations

import numpy as np
import pytest
from optim_helpers import make_params

import graphtorch as gt
import graphtorch.optim as gto
from graphtorch.tracer import Tracer, tracing

CASES = [("SGD", dict(lr=0.1, momentum=0.9, dampening=0.2)), ("SGD", dict(lr=0.1, nesterov=True, momentum=0.5)),
         ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)), ("AdamW", dict(lr=0.01)),
         ("RMSprop", dict(centered=True, momentum=0.5)), ("Adagrad", dict(lr_decay=0.1))]


def _evaluate(tracer: Tracer, nodes: list) -> list[np.ndarray]:
    """Run the traced graph with the primitives' numpy kernels (the reference semantics) on the
    current values of the lifted tensors."""
    feeds = {id(lf.node): lf.tensor._data for lf in tracer.lifted.values()}
    values = {}
    for n in tracer.graph.nodes:
        if n.op == "input":
            values[id(n)] = feeds[id(n)]
        elif n.op == "constant":
            values[id(n)] = n.value
        else:
            out = n.prim.kernel(*(values[id(i)] for i in n.inputs), **n.attrs)
            values[id(n)] = np.asarray(out, dtype=n.type.dtype.np)
    return [values[id(n)] for n in nodes]


def _traced_step(opt, params):
    """Trace opt.step(), then apply the graph's results to what it mutated, as a compiled call would."""
    tracer = Tracer()
    with tracing(tracer):
        opt.step()
        written = [(t, t._node) for t in tracer.mutated.values()]
    for (t, _), value in zip(written, _evaluate(tracer, [node for _, node in written])):
        np.copyto(t._data, value)
    return tracer


@pytest.mark.parametrize("name,kwargs", CASES)
def test_traced_steps_compute_the_eager_update(name, kwargs):
    _, eager_params = make_params([(3, 4), (5,)], np.float32)
    _, traced_params = make_params([(3, 4), (5,)], np.float32)
    eager, traced = getattr(gto, name)(eager_params, **kwargs), getattr(gto, name)(traced_params, **kwargs)
    rng = np.random.default_rng(0)
    for _ in range(4):  # the first step (state made while tracing) and later ones
        for e, t in zip(eager_params, traced_params):
            grad = rng.standard_normal(tuple(e.shape)).astype(np.float32)
            e.grad, t.grad = gt.tensor(grad), gt.tensor(grad.copy())
        eager.step()
        tracer = _traced_step(traced, traced_params)
        assert all(id(p) in tracer.mutated for p in traced_params)
        for e, t in zip(eager_params, traced_params):
            np.testing.assert_allclose(t.detach().numpy(), e.detach().numpy(), rtol=1e-6, atol=1e-6)
            for key, value in eager.state[e].items():
                state = traced.state[t][key]
                assert state._node is None and state._data is not None, f"{key} must outlive the trace"
                np.testing.assert_allclose(state.numpy(), value.numpy(), rtol=1e-6, atol=1e-6, err_msg=key)


def test_a_traced_step_reads_the_step_counter_as_a_tensor():
    _, params = make_params([(3,)], np.float32)
    opt = gto.Adam(params)
    params[0].grad = gt.tensor([0.1, 0.2, 0.3])
    tracer = _traced_step(opt, params)
    step = opt.state[params[0]]["step"]
    assert id(step) in tracer.mutated and step.item() == 1.0
    assert any(n.target == "pow" for n in tracer.graph.nodes)  # beta ** step is in the graph


def test_trace_guard_ignores_the_lr_and_changes_with_the_code_it_selects():
    _, params = make_params([(3,)], np.float32)
    opt = gto.SGD(params, lr=0.1)
    sched = gto.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    before = opt.trace_guard()
    hash(before)
    opt.step()
    sched.step()
    assert opt.trace_guard() == before  # the lr is a run-time scalar
    opt.param_groups[0]["momentum"] = 0.9  # a momentum buffer: other code
    assert opt.trace_guard() != before
    opt.param_groups[0]["momentum"] = 0.5
    opt.param_groups[0]["nesterov"] = True
    assert opt.trace_guard() != before


def test_a_traced_step_reads_the_hyperparameters_as_lifted_scalars():
    _, params = make_params([(3,)], np.float32)
    opt = gto.Adam(params, lr=0.1, betas=(0.8, 0.9))
    params[0].grad = gt.tensor([0.1, 0.2, 0.3])
    tracer = _traced_step(opt, params)
    scalars = [lf.tensor for lf in tracer.lifted.values() if lf.tensor._data.dtype == np.float64]
    assert sorted(t.item() for t in scalars) == [1e-08, 0.1, 0.8, 0.9]  # lr, betas, eps: inputs, not constants
    opt.param_groups[0]["lr"] = 0.25
    opt.trace_guard()  # what a compiled call runs first: the scalars take the groups' numbers
    assert sorted(t.item() for t in scalars) == [1e-08, 0.25, 0.8, 0.9]
