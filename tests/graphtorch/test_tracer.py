"""The tracer: graphs recorded from the eager API, lifted tensors, errors for untraceable code."""

import numpy as np
import pytest

import graphtorch as gt
from graphtorch.compiled import flatten, trace
from graphtorch.compiler.errors import GraphtorchCompileError
from graphtorch.compiler.partition import partition


def _trace(fn, *args):
    flat, spec = flatten((args, {}))
    return trace(fn, flat, spec, None, fn.__name__)


def test_ops_record_primitives_with_user_locations():
    w = gt.randn(5, 3, requires_grad=True)

    def f(x):
        return gt.relu(x @ w.t())

    with gt.no_grad():
        traced = _trace(f, gt.randn(4, 3))
    text = str(traced.graph)
    assert "matmul(" in text and "where(" in text
    assert "test_tracer.py:" in text  # the user's file:line, not graphtorch's
    inputs = [n.target for n in traced.graph.inputs]
    assert inputs == ["x", "captured_0"]  # the weight is lifted to an input, not baked in
    assert traced.feeds[1][1] is w
    origins = {n.origin for n in traced.graph.nodes if n.op == "call"}
    assert {"matmul", "relu"} <= origins


def test_tensors_created_inside_are_constants_and_outside_ones_inputs():
    outside = gt.tensor([1.0, 2.0, 3.0])

    def f(x):
        return x + gt.tensor([10.0, 20.0, 30.0]) + outside

    traced = _trace(f, gt.zeros(3))
    ops = [n.op for n in traced.graph.nodes]
    assert ops.count("constant") == 1 and ops.count("input") == 2


def test_control_flow_on_a_traced_value_is_an_error_with_code_location_and_hint():
    def f(x):
        if x.sum() > 0:
            return x
        return -x

    with pytest.raises(GraphtorchCompileError) as err:
        _trace(f, gt.ones(3))
    text = str(err.value)
    assert err.value.code == "GT001" and "test_tracer.py:" in text and "hint:" in text
    assert "torch.where" in text


@pytest.mark.parametrize("what", ["item", "numpy", "print", "tolist"])
def test_reading_values_while_tracing_is_an_error(what):
    def f(x):
        y = x * 2
        {"item": lambda: y.sum().item(), "numpy": y.numpy, "print": lambda: print(y), "tolist": y.tolist}[what]()
        return y

    with pytest.raises(GraphtorchCompileError) as err:
        _trace(f, gt.ones(3))
    assert err.value.code == "GT002"
    assert "move it outside the compiled function" in str(err.value)


def test_data_dependent_shapes_are_an_error():
    def f(x):
        return x[x > 0]

    with pytest.raises(GraphtorchCompileError) as err:
        _trace(f, gt.ones(3))
    assert err.value.code == "GT003"


def test_in_place_writes_to_outside_tensors_become_outputs_and_are_undone_after_tracing():
    buf = gt.zeros(3)

    def f(x):
        buf.add_(x)
        return x * 2

    traced = _trace(f, gt.ones(3))
    assert traced.mutated == [buf]
    assert buf._node is None and np.array_equal(buf.numpy(), np.zeros(3))  # the trace changed nothing
    assert len(traced.graph.outputs) == 2


def test_random_draws_take_a_key_input_and_do_not_advance_the_generator():
    gt.manual_seed(3)
    state = gt.get_rng_state().numpy().copy()

    def f(x):
        return x * gt.rand(3) + gt.rand(3)

    traced = _trace(f, gt.ones(3))
    assert [f[0] for f in traced.feeds] == ["arg", "rng"]
    assert traced.feeds[1][2] == 6  # one call draws six values
    assert np.array_equal(gt.get_rng_state().numpy(), state)


def test_joint_graph_partitions_into_forward_and_backward():
    w = gt.randn(5, 3, requires_grad=True)

    def f(x):
        return (x @ w.t()).sigmoid().sum()

    traced = _trace(f, gt.randn(4, 3))
    assert traced.grad_inputs and traced.diff_sources == [("lifted", w)]
    n = traced.num_fwd_outputs
    parts = partition(traced.graph, traced.grad_inputs, traced.graph.outputs[:n], traced.graph.outputs[n:])
    assert not any(node.target.startswith("grad_out") for node in parts.forward.inputs)
    assert parts.backward.inputs[-1].target == "grad_out_0"
    # the backward reads x itself, not its transpose: layout ops are recomputed, not saved
    saved_types = [node.type.shape for node in parts.backward.inputs[:-1]]
    assert (4, 3) in saved_types and (3, 4) not in saved_types
    backward_origins = {node.origin for node in parts.backward.nodes if node.op == "call"}
    assert any(o and o.endswith("(backward)") for o in backward_origins)
