"""The min-cut partitioner: what the forward saves for the backward, and that the split graphs
still compute the joint graph's values (hand-built joint graphs and traced seed models)."""

import networkx as nx
import numpy as np
import pytest
from compiler_helpers import f32, random_inputs, scalar

import graphtorch as gt
import graphtorch.nn as nn
import graphtorch.nn.functional as F
from graphtorch.compiled import flatten, trace
from graphtorch.compiler import interpreter
from graphtorch.compiler import partition as partition_module
from graphtorch.compiler.dtypes import TensorType, int64
from graphtorch.compiler.ir import Graph, Node
from graphtorch.compiler.partition import MAX_RECOMPUTE_DISTANCE, Partition, choose_saved, partition

BANNED = {"matmul", "conv2d", "rand", "sum", "max", "argmax"}


def _t(g: Graph, x: Node) -> Node:
    return g.call("permute", [x], dict(dims=(1, 0)))


def _seed(g: Graph, like: Node) -> tuple[Node, Node]:
    """The output gradient of a scalar loss, broadcast to `like` as the engine does."""
    gout = g.input("grad_out_0", f32())
    return gout, g.call("expand", [g.call("reshape", [gout], dict(shape=(1, 1)))], dict(shape=like.type.shape))


def _split(g: Graph, grad_inputs: list[Node], n_fwd: int) -> Partition:
    return partition(g, grad_inputs, g.outputs[:n_fwd], g.outputs[n_fwd:])


def _saved(g: Graph, parts: Partition, n_fwd: int) -> list[str]:
    """The joint graph's names of the saved values, checked against the split graphs."""
    saved = choose_saved(g, [n for n in g.inputs if n.target.startswith("grad_out")], g.outputs[n_fwd:])
    assert [n.type for n in saved] == [n.type for n in parts.backward.inputs[:parts.num_saved]]
    assert [n.type for n in saved] == [n.type for n in parts.forward.outputs[n_fwd:]]
    return [n.target if n.op == "input" else n.name for n in saved]


def _assert_split_computes_joint(g: Graph, grad_inputs: list[Node], parts: Partition, n_fwd: int,
                                 arrays: list[np.ndarray] | None = None) -> None:
    """Forward then backward give the joint graph's outputs (on `arrays`, random by default)."""
    if arrays is None:  # 0-d inputs come back from random_inputs as numpy scalars
        arrays = [np.asarray(a, n.type.dtype.np) for a, n in zip(random_inputs(g, seed=1), g.inputs)]
    want = interpreter.run(g, arrays)
    primal = [a for a, n in zip(arrays, g.inputs) if n not in grad_inputs]
    fwd = interpreter.run(parts.forward, primal)
    cot = [a for a, n in zip(arrays, g.inputs) if n in grad_inputs]
    bwd = interpreter.run(parts.backward, fwd[n_fwd:] + cot)
    assert len(fwd) == n_fwd + parts.num_saved
    for got, expected in zip(fwd[:n_fwd] + bwd, want):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def _backward_reads_only_saved_and_grads(parts: Partition, grad_inputs: list[Node]) -> None:
    names = [n.target for n in parts.backward.inputs]
    assert names == [f"saved_{i}" for i in range(parts.num_saved)] + [g.target for g in grad_inputs]


# ---------------------------------------------------------------- hand-built joint graphs


def relu_mlp() -> tuple[Graph, list[Node]]:
    """sum(relu(x @ w1) @ w2) and its backward: the relu mask, the relu output and matmul grads."""
    g = Graph()
    x, w1, w2 = g.input("x", f32(8, 4)), g.input("w1", f32(4, 16)), g.input("w2", f32(16, 2))
    h = g.call("matmul", [x, w1])
    mask = g.call("le", [h, scalar(g, 0.0, h)])
    r = g.call("where", [mask, scalar(g, 0.0, h), h])
    y = g.call("matmul", [r, w2])
    loss = g.call("sum", [y], dict(dims=(0, 1), keepdim=False))
    gout, gy = _seed(g, y)
    gw2 = g.call("matmul", [_t(g, r), gy])
    gh = g.call("where", [mask, scalar(g, 0.0, h), g.call("matmul", [gy, _t(g, w2)])])
    gw1 = g.call("matmul", [_t(g, x), gh])
    g.outputs = [loss, gw1, gw2]
    return g, [gout]


def test_relu_saves_the_pre_activation_instead_of_output_and_mask():
    g, grads = relu_mlp()
    parts = _split(g, grads, 1)
    # h (f32[8,16]) rebuilds both the mask and relu(h); before, the mask (128 B) and relu(h) (512 B)
    # were saved beside x and w2: 896 B.
    assert _saved(g, parts, 1) == ["x", "w2", "%3"]
    assert parts.saved_bytes == 128 + 128 + 512 < 896
    _backward_reads_only_saved_and_grads(parts, grads)
    _assert_split_computes_joint(g, grads, parts, 1)


def sigmoid_tanh_chain() -> tuple[Graph, list[Node]]:
    """sum(tanh(sigmoid(x @ w))): the engine records 1 - b*b and a*(1 - a) from forward values."""
    g = Graph()
    x, w = g.input("x", f32(8, 4)), g.input("w", f32(4, 16))
    h = g.call("matmul", [x, w])
    a = g.call("sigmoid", [h])
    b = g.call("tanh", [a])
    loss = g.call("sum", [b], dict(dims=(0, 1), keepdim=False))
    dtanh = g.call("sub", [scalar(g, 1.0, b), g.call("mul", [b, b])])
    dsigmoid = g.call("mul", [a, g.call("sub", [scalar(g, 1.0, a), a])])
    gout, gb = _seed(g, b)
    gh = g.call("mul", [g.call("mul", [gb, dtanh]), dsigmoid])
    g.outputs = [loss, g.call("matmul", [_t(g, x), gh])]
    return g, [gout]


def test_sigmoid_tanh_chain_saves_one_activation():
    g, grads = sigmoid_tanh_chain()
    parts = _split(g, grads, 1)
    # sigmoid(h) rebuilds tanh and both derivatives; h would too, at the same size, but one op
    # further from the backward. Before, both derivatives were saved: 128 + 2 * 512 B.
    assert _saved(g, parts, 1) == ["x", "%3"]
    assert parts.saved_bytes == 128 + 512 < 128 + 2 * 512
    assert {n.target for n in parts.backward.nodes} >= {"tanh", "mul", "sub"}
    assert "sigmoid" not in {n.target for n in parts.backward.nodes}
    _assert_split_computes_joint(g, grads, parts, 1)


def test_matmul_reduction_and_rand_outputs_are_saved_even_when_bigger_than_their_inputs():
    g = Graph()
    x, w, key = g.input("x", f32(64, 1)), g.input("w", f32(1, 64)), g.input("key", TensorType((), int64))
    h = g.call("matmul", [x, w])  # 16 KiB out of 512 B of inputs
    m = g.call("max", [h], dict(dims=(1,), keepdim=True))
    shifted = g.call("sub", [h, g.call("expand", [m], dict(shape=(64, 64)))])
    keep = g.call("lt", [g.call("rand", [key], dict(shape=(64, 64), dtype=h.type.dtype)), scalar(g, 0.5, h)])
    y = g.call("where", [keep, g.call("exp", [shifted]), scalar(g, 0.0, h)])
    loss = g.call("sum", [y], dict(dims=(0, 1), keepdim=False))
    gout, gy = _seed(g, y)
    gy = g.call("mul", [g.call("where", [keep, gy, scalar(g, 0.0, h)]), g.call("exp", [shifted])])
    g.outputs = [loss, g.call("matmul", [gy, _t(g, w)])]
    parts = _split(g, [gout], 1)
    backward_ops = {n.target for n in parts.backward.nodes}
    assert backward_ops & BANNED == {"matmul"}  # only the gradient's own matmul
    assert [n.target for n in parts.backward.nodes].count("matmul") == 1
    # the dropout mask (bool, 4 KiB) is saved rather than the random values; exp(h - max) needs h
    # (or the shifted values) and the row maxima
    assert "b8[64,64]" in {str(n.type) for n in parts.backward.inputs}
    _assert_split_computes_joint(g, [gout], parts, 1)


def test_values_built_from_constants_are_recomputed_not_saved():
    g = Graph()
    x = g.input("x", f32(4, 4))
    loss = g.call("sum", [g.call("mul", [x, x])], dict(dims=(0, 1), keepdim=False))
    gout, gx = _seed(g, x)
    two = scalar(g, 2.0, x)
    g.outputs = [loss, g.call("mul", [g.call("mul", [gx, two]), x])]
    parts = _split(g, [gout], 1)
    assert _saved(g, parts, 1) == ["x"]
    assert {"full", "expand"} <= {n.target for n in parts.backward.nodes}
    _assert_split_computes_joint(g, [gout], parts, 1)


def _mask_then_long_chain(length: int) -> Graph:
    """A bool mask (256 B) of a matmul, cast to f32 (1 KiB) and put through `length` exp(-v)."""
    g = Graph()
    x, w = g.input("x", f32(16, 1)), g.input("w", f32(1, 16))
    h = g.call("matmul", [x, w])
    v = g.call("cast", [g.call("gt", [h, scalar(g, 0.0, h)])], dict(dtype=h.type.dtype))
    for _ in range(length):
        v = g.call("exp", [g.call("neg", [v])])
    loss = g.call("sum", [v], dict(dims=(0, 1), keepdim=False))
    gout, gv = _seed(g, v)
    g.outputs = [loss, g.call("mul", [v, gv])]
    return g


@pytest.mark.parametrize("cap,saved_bytes", [(None, 16 * 16 * 4), (1000, 16 * 16)])
def test_recomputation_stays_within_the_distance_cap(monkeypatch, cap, saved_bytes):
    """Saving the mask costs least, but it lies further from the backward than the cap allows:
    with the cap an f32 value is saved; without one the backward would redo the whole chain."""
    if cap is not None:
        monkeypatch.setattr(partition_module, "MAX_RECOMPUTE_DISTANCE", cap)
    g = _mask_then_long_chain(MAX_RECOMPUTE_DISTANCE + 3)
    grads = [n for n in g.inputs if n.target == "grad_out_0"]
    parts = _split(g, grads, 1)
    assert parts.saved_bytes == saved_bytes
    recomputed = sum(n.target in ("exp", "neg", "cast", "gt") for n in parts.backward.nodes)
    assert recomputed <= (MAX_RECOMPUTE_DISTANCE if cap is None else 2 * MAX_RECOMPUTE_DISTANCE + 8)
    _assert_split_computes_joint(g, grads, parts, 1)


def test_the_same_joint_graph_always_gives_the_same_partition():
    first, second = relu_mlp(), relu_mlp()  # equal graphs, different node objects (and hashes)
    a, b = _split(first[0], first[1], 1), _split(second[0], second[1], 1)
    assert a.forward.equals(b.forward) and a.backward.equals(b.backward)
    again = _split(first[0], first[1], 1)
    assert again.forward.equals(a.forward) and again.backward.equals(a.backward)


def test_no_gradient_reads_forward_values():
    g = Graph()
    x = g.input("x", f32(3))
    loss = g.call("sum", [x], dict(dims=(0,), keepdim=False))
    gout = g.input("grad_out_0", f32())
    g.outputs = [loss, g.call("expand", [gout], dict(shape=(3,)))]
    parts = _split(g, [gout], 1)
    assert parts.num_saved == 0 and parts.saved_bytes == 0
    _assert_split_computes_joint(g, [gout], parts, 1)


# ---------------------------------------------------------------- traced seed models


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(gt.flatten(x, 1)))
        return self.fc3(F.relu(self.fc2(x)))


class WithLoss(nn.Module):
    def __init__(self, model, criterion):
        super().__init__()
        self.model, self.criterion = model, criterion

    def forward(self, x, y):
        return self.criterion(self.model(x), y)


def _sin_mlp():
    mlp = nn.Sequential(nn.Linear(1, 200), nn.ReLU(), nn.Linear(200, 100), nn.ReLU(), nn.Linear(100, 1))
    return WithLoss(mlp, nn.MSELoss()), (gt.randn(100, 1), gt.randn(100, 1))


def _lenet():
    return WithLoss(LeNet(), nn.CrossEntropyLoss()), (gt.randn(2, 1, 32, 32), gt.tensor([3, 7]))


def _logistic():
    model = WithLoss(nn.Sequential(nn.Linear(2, 1), nn.Sigmoid()), nn.BCELoss())
    return model, (gt.randn(100, 2), (gt.rand(100, 1) > 0.5).float())


# saved bytes with the previous rule (save every forward value the backward reads, recompute
# only constants and layout ops of inputs), measured at these sizes before the min cut
SEEDS = {"sin": (_sin_mlp, 231200), "lenet": (_lenet, 416656), "logistic": (_logistic, 3000)}


def _traced(name):
    gt.manual_seed(0)
    model, args = SEEDS[name][0]()
    flat, spec = flatten((args, {}))
    return model, args, trace(model.forward, flat, spec, model, name)


def _feed_arrays(traced, args) -> list[np.ndarray]:
    """The joint graph's inputs as a call feeds them, with output gradients of one."""
    arrays = []
    for feed, node in zip(traced.feeds, traced.graph.inputs):
        if feed[0] == "arg":
            arrays.append(args[feed[1]].numpy())
        elif feed[0] == "lifted":
            arrays.append(feed[1].detach().numpy())
        else:
            arrays.append(np.ones(node.type.shape, node.type.dtype.np))
    return arrays


def _live_tangent_targets(traced) -> list[str]:
    """The ops of the joint graph that compute gradients: they read an output gradient and feed one."""
    g, nxg = traced.graph, traced.graph.to_networkx()
    tangent = set().union(*(nx.descendants(nxg, n) for n in traced.grad_inputs))
    live = set().union(*(nx.ancestors(nxg, n) | {n} for n in g.outputs[traced.num_fwd_outputs:]))
    return sorted(n.target for n in tangent & live)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seed_models_save_less_and_recompute_only_cheap_ops(name):
    _, args, traced = _traced(name)
    g, n_fwd = traced.graph, traced.num_fwd_outputs
    parts = partition(g, traced.grad_inputs, g.outputs[:n_fwd], g.outputs[n_fwd:])
    assert parts.saved_bytes < SEEDS[name][1]
    _backward_reads_only_saved_and_grads(parts, traced.grad_inputs)
    backward_banned = sorted(n.target for n in parts.backward.nodes if n.target in BANNED)
    assert backward_banned == [t for t in _live_tangent_targets(traced) if t in BANNED]
    _assert_split_computes_joint(g, traced.grad_inputs, parts, n_fwd, _feed_arrays(traced, args))


def test_sin_mlp_saves_pre_activations_not_relu_masks():
    _, _, traced = _traced("sin")
    g, n_fwd = traced.graph, traced.num_fwd_outputs
    saved = choose_saved(g, traced.grad_inputs, g.outputs[n_fwd:])
    assert not any(n.type.dtype.name == "bool" for n in saved)
    assert [n.type.shape for n in saved if n.op == "call"] == [(100, 200), (100, 100), (100, 1)]


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_compiled_gradients_equal_eager(name):
    model, args, _ = _traced(name)
    compiled = gt.compile(model, backend="interpreter")
    loss = compiled(*args)
    loss.backward()
    got = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    expected = model(*args)
    expected.backward()
    np.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-5)
    for a, b in zip(got, [p.grad.numpy() for p in model.parameters()]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
