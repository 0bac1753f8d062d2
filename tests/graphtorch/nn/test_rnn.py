"""RNN/LSTM/GRU and their cells against torch: outputs, final states, input/state/parameter gradients,
reprs, state_dict keys, init range and errors; pad_sequence; compiled equals eager."""

import numpy as np
import pytest
from conftest import assert_same, gradcheck, raises_like, randn
from nn_helpers import copy_weights

import graphtorch as gt
import graphtorch.nn as nn

torch = pytest.importorskip("torch")


def flat(out):
    """An RNN's (output, h_n) or LSTM's (output, (h_n, c_n)) as a flat list."""
    if isinstance(out, tuple):
        return [t for part in out for t in flat(part)]
    return [out]


def check_rnn(g, t, inputs, rtol=1e-5, atol=1e-6, call=lambda m, x, *hx: m(x, *hx)):
    """Same weights and inputs: every output, and the gradients of a random contraction of all of
    them with respect to the inputs (the sequence and initial states) and the parameters."""
    copy_weights(g, t)
    gin = [gt.tensor(a.copy(), requires_grad=True) for a in inputs]
    tin = [torch.tensor(a.copy(), requires_grad=True) for a in inputs]
    got, want = flat(call(g, *gin)), flat(call(t, *tin))
    rng = np.random.default_rng(5)
    gloss, tloss = 0, 0
    for k, (a, b) in enumerate(zip(got, want)):
        assert_same(a, b, rtol=rtol, atol=atol, what=f"output {k}")
        v = rng.standard_normal(tuple(b.shape)).astype(np.float32)
        gloss, tloss = gloss + (a * gt.tensor(v)).sum(), tloss + (b * torch.tensor(v)).sum()
    gloss.backward()
    tloss.backward()
    for k, (a, b) in enumerate(zip(gin, tin)):
        assert_same(a.grad, b.grad, rtol=rtol * 10, atol=atol * 10, what=f"gradient of input {k}")
    tparams = dict(t.named_parameters())
    for name, p in g.named_parameters():
        assert_same(p.grad, tparams[name].grad, rtol=rtol * 10, atol=atol * 10, what=f"gradient of {name}")


def both(name, *args, **kwargs):
    return getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)


CONFIGS = {
    "one_layer": dict(),
    "two_layers_bidirectional": dict(num_layers=2, bidirectional=True),
    "batch_first_no_bias": dict(batch_first=True, bias=False),
    "three_layers": dict(num_layers=3),
}


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("config", CONFIGS)
def test_recurrent_layers(kind, config):
    kwargs = CONFIGS[config]
    g, t = both(kind, 3, 5, **kwargs)
    assert repr(g) == repr(t) and list(g.state_dict()) == list(t.state_dict())
    batch_first = kwargs.get("batch_first", False)
    check_rnn(g, t, [randn(2, 4, 3) if batch_first else randn(4, 2, 3)])


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_initial_states_and_unbatched(kind):
    g, t = both(kind, 3, 4, num_layers=2, bidirectional=True)
    states = [randn(4, 2, 4, seed=1)] + ([randn(4, 2, 4, seed=2)] if kind == "LSTM" else [])
    if kind == "LSTM":
        def call(m, x, h, c):
            return m(x, (h, c))
    else:
        def call(m, x, h):
            return m(x, h)
    check_rnn(g, t, [randn(5, 2, 3), *states], call=call)
    check_rnn(g, t, [randn(5, 3, seed=3), *[s[:, 0] for s in states]], call=call)


def test_rnn_relu_and_lstm_projection():
    check_rnn(*both("RNN", 3, 4, 2, nonlinearity="relu"), [randn(6, 2, 3)])
    g, t = both("LSTM", 3, 6, num_layers=2, proj_size=2, bidirectional=True)
    assert repr(g) == repr(t) and list(g.state_dict()) == list(t.state_dict())
    check_rnn(g, t, [randn(4, 2, 3)])


def test_dropout_between_layers_only_in_training():
    gt.manual_seed(0)
    m = nn.LSTM(3, 4, num_layers=2, dropout=0.5)
    x = gt.tensor(randn(5, 2, 3))
    a, b = m(x)[0], m(x)[0]
    assert not np.allclose(a.detach().numpy(), b.detach().numpy())  # a different dropout mask each call
    m.eval()
    assert np.array_equal(m(x)[0].detach().numpy(), m(x)[0].detach().numpy())
    with pytest.warns(UserWarning, match="dropout option adds dropout after all but last recurrent layer"):
        nn.GRU(3, 4, dropout=0.2)


@pytest.mark.parametrize("kind,chunks", [("RNNCell", 1), ("GRUCell", 3), ("LSTMCell", 4)])
def test_cells(kind, chunks):
    for kwargs in (dict(), dict(bias=False)):
        g, t = both(kind, 3, 5, **kwargs)
        assert repr(g) == repr(t) and list(g.state_dict()) == list(t.state_dict())
        assert g.weight_ih.shape == (chunks * 5, 3)
        states = [randn(2, 5, seed=1)] + ([randn(2, 5, seed=2)] if kind == "LSTMCell" else [])
        if kind == "LSTMCell":
            def call(m, x, h, c):
                return m(x, (h, c))
        else:
            def call(m, x, h):
                return m(x, h)
        check_rnn(g, t, [randn(2, 3), *states], call=call)
        check_rnn(g, t, [randn(3), *[s[0] for s in states]], call=call)
        check_rnn(g, t, [randn(2, 3)])  # no state: zeros
    check_rnn(*both("RNNCell", 3, 4, nonlinearity="relu"), [randn(2, 3)])


def test_init_range_and_float64():
    gt.manual_seed(0)
    m = nn.GRU(3, 16, 2)
    values = np.concatenate([p.detach().numpy().ravel() for p in m.parameters()])
    assert np.abs(values).max() <= 0.25 and np.abs(values).max() > 0.24  # uniform(-1/sqrt(16), 1/sqrt(16))
    g, t = both("LSTM", 2, 3)
    g, t = g.double(), t.double()
    check_rnn(g, t, [randn(3, 2, 2, dtype=np.float64)], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_gradcheck(kind):
    m = getattr(nn, kind)(2, 3, num_layers=2, bidirectional=True).double()
    gradcheck(lambda x: m(x)[0], [np.random.default_rng(0).standard_normal((3, 2, 2))])


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("shape,dtype", [((2, 2, 2, 3), "float32"), ((5, 2, 4), "float32"), ((5, 2, 3), "float64")])
def test_input_errors_like_torch(kind, shape, dtype):
    g, t = both(kind, 3, 4, num_layers=2)
    raises_like(lambda: t(torch.zeros(*shape, dtype=getattr(torch, dtype))),
                lambda: g(gt.zeros(*shape, dtype=getattr(gt, dtype))))


@pytest.mark.parametrize("args,kwargs", [((3, 4), dict(dropout=2)), ((3, 4), dict(proj_size=5)), ((3, 0), dict()),
                                         ((3, 4.0), dict()), ((3, 4), dict(num_layers=0))])
def test_constructor_errors_like_torch(args, kwargs):
    raises_like(lambda: torch.nn.LSTM(*args, **kwargs), lambda: nn.LSTM(*args, **kwargs))


def test_state_errors_like_torch():
    g, t = both("GRU", 3, 4)
    raises_like(lambda: t(torch.zeros(5, 2, 3), torch.zeros(2, 2, 4)), lambda: g(gt.zeros(5, 2, 3), gt.zeros(2, 2, 4)))
    raises_like(lambda: t(torch.zeros(5, 2, 3), torch.zeros(2, 4)), lambda: g(gt.zeros(5, 2, 3), gt.zeros(2, 4)))
    g, t = both("LSTM", 3, 4)
    raises_like(lambda: t(torch.zeros(5, 2, 3), (torch.zeros(1, 2, 4), torch.zeros(1, 3, 4))),
                lambda: g(gt.zeros(5, 2, 3), (gt.zeros(1, 2, 4), gt.zeros(1, 3, 4))))
    raises_like(lambda: t(torch.zeros(5, 2, 3), (torch.zeros(2, 4), torch.zeros(2, 4))),
                lambda: g(gt.zeros(5, 2, 3), (gt.zeros(2, 4), gt.zeros(2, 4))))
    raises_like(lambda: torch.nn.RNN(3, 4, nonlinearity="gelu"), lambda: nn.RNN(3, 4, nonlinearity="gelu"))
    raises_like(lambda: torch.nn.GRU(3, 4, proj_size=2), lambda: nn.GRU(3, 4, proj_size=2))
    g, t = both("LSTMCell", 3, 4)
    raises_like(lambda: t(torch.zeros(1, 2, 3)), lambda: g(gt.zeros(1, 2, 3)))
    raises_like(lambda: t(torch.zeros(2, 3), (torch.zeros(1, 2, 4), torch.zeros(2, 4))),
                lambda: g(gt.zeros(2, 3), (gt.zeros(1, 2, 4), gt.zeros(2, 4))))


def test_pad_sequence():
    seqs = [randn(3, 2), randn(5, 2, seed=1), randn(1, 2, seed=2)]
    for kwargs in (dict(), dict(batch_first=True, padding_value=-1.0), dict(padding_side="left", batch_first=True)):
        got = nn.utils.rnn.pad_sequence([gt.tensor(s) for s in seqs], **kwargs)
        want = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in seqs], **kwargs)
        assert_same(got, want)
    raises_like(lambda: torch.nn.utils.rnn.pad_sequence([torch.zeros(2)], padding_side="top"),
                lambda: nn.utils.rnn.pad_sequence([gt.zeros(2)], padding_side="top"))


def test_compiled_lstm_step_equals_eager():
    gt.manual_seed(0)
    lstm, head = nn.LSTM(3, 8, num_layers=2, batch_first=True), nn.Linear(8, 1)
    params = list(lstm.parameters()) + list(head.parameters())
    x, y = gt.tensor(randn(4, 6, 3)), gt.tensor(randn(4, 1, seed=1))

    def step(x, y):
        for p in params:
            p.grad = None
        out, _ = lstm(x)
        loss = (head(out[:, -1]) - y).square().mean()
        loss.backward()
        return loss

    eager = step(x, y)
    eager_grads = [p.grad.clone() for p in params]
    compiled = gt.compile(step)
    compiled(x, y)
    got = compiled(x, y)
    assert len(compiled.entries) == 1
    assert_same(got, eager, rtol=1e-5, atol=1e-6)
    for a, b in zip([p.grad for p in params], eager_grads):
        assert_same(a, b, rtol=1e-5, atol=1e-6)


def _matmuls(artifacts, stage: str) -> list:
    graph = artifacts.traced if stage == "traced" else artifacts.optimized
    return [n for n in graph.nodes if n.op == "call" and n.target == "matmul"]


def _fused_matmuls(artifacts) -> list:
    return [n for g in artifacts.fusion.groups for n in g.nodes if n.target == "matmul"]


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_compiled_step_folds_zero_state_and_stacks_weight_gradients(kind):
    """In the fused graph, the zero initial state's h0 @ W_hh^T and its weight-gradient term fold away
    and the other steps' weight-gradient GEMMs become one per layer; losses and gradients equal torch's."""
    (g, t), layers = both(kind, 3, 6, num_layers=2, batch_first=True), 2
    copy_weights(g, t)
    x, y = randn(4, 6, 3), randn(4, 6, seed=1)

    def step(lib, model, x, y):
        for p in model.parameters():
            p.grad = None
        loss = (model(x)[0][:, -1] - y).square().mean()
        loss.backward()
        return loss

    compiled = gt.compile(lambda x, y: step(gt, g, x, y))
    compiled(gt.tensor(x), gt.tensor(y))
    got = compiled(gt.tensor(x), gt.tensor(y))
    want = step(torch, t, torch.tensor(x), torch.tensor(y))
    assert_same(got, want, rtol=1e-5, atol=1e-6)
    tparams = dict(t.named_parameters())
    for name, p in g.named_parameters():
        assert_same(p.grad, tparams[name].grad, rtol=1e-4, atol=1e-6, what=f"gradient of {name}")
    entry = next(iter(compiled.entries.values()))
    parts = [e.artifacts for e in (entry.forward, entry.backward) if e is not None]
    traced, fused = (sum(len(f(a)) for a in parts) for f in (lambda a: _matmuls(a, "traced"), _fused_matmuls))
    steps, batch = x.shape[1], x.shape[0]
    # per layer: h0 @ W_hh^T folds; the T - 1 other weight-gradient terms become one GEMM over T - 1 steps
    assert traced - fused == layers * steps
    stacked = [n for n in sum(map(_fused_matmuls, parts), []) if n.inputs[1].type.shape[0] == (steps - 1) * batch]
    # a stack of the steps' inputs, or rows of one the graph already has (the first layer's outputs: concats.concat_runs)
    assert len(stacked) == layers and all(n.inputs[1].target in ("concat", "slice") for n in stacked)
    assert any(n.inputs[1].target == "slice" for n in stacked)
    assert not any(i.op == "call" and i.target == "full" for n in sum(map(_fused_matmuls, parts), []) for i in n.inputs)


def test_compiled_gru_bidirectional_equals_eager():
    gru = nn.GRU(3, 4, num_layers=2, bidirectional=True)
    compiled = gt.compile(gru)
    x, h = gt.tensor(randn(5, 2, 3)), gt.tensor(randn(4, 2, 4, seed=1))
    for got, want in zip(compiled(x, h), gru(x, h)):
        assert_same(got, want, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- packed sequences


def _pack(lib, x, lengths, **kwargs):
    return lib.nn.utils.rnn.pack_padded_sequence(x, lengths, **kwargs)


@pytest.mark.parametrize("lengths,kwargs", [([4, 3, 1], {}), ([2, 4, 3], dict(enforce_sorted=False)),
                                            ([3, 4, 4, 1], dict(enforce_sorted=False, batch_first=True))], ids=str)
def test_pack_and_pad_packed_equal_torch(lengths, kwargs):
    shape = (len(lengths), 4, 2) if kwargs.get("batch_first") else (4, len(lengths), 2)
    x = randn(*shape)
    got, want = _pack(gt, gt.tensor(x), lengths, **kwargs), _pack(torch, torch.tensor(x), lengths, **kwargs)
    for a, b in zip(got, want):
        assert (a is None) == (b is None)
        if b is not None:
            assert_same(a, b)
    batch_first = kwargs.get("batch_first", False)
    for extra in (dict(), dict(total_length=6, padding_value=-1.0)):
        padded = nn.utils.rnn.pad_packed_sequence(got, batch_first=batch_first, **extra)
        expected = torch.nn.utils.rnn.pad_packed_sequence(want, batch_first=batch_first, **extra)
        assert_same(padded[0], expected[0])
        assert_same(padded[1], expected[1])
    seqs = [randn(n, 2, seed=n) for n in lengths]
    packed = nn.utils.rnn.pack_sequence([gt.tensor(s) for s in seqs], enforce_sorted=False)
    assert_same(packed.data, torch.nn.utils.rnn.pack_sequence([torch.tensor(s) for s in seqs],
                                                               enforce_sorted=False).data)


def test_packing_errors_like_torch():
    x = (torch.zeros(4, 3, 1), gt.zeros(4, 3, 1))
    raises_like(lambda: _pack(torch, x[0], [2, 4, 3]), lambda: _pack(gt, x[1], [2, 4, 3]))
    raises_like(lambda: _pack(torch, x[0], [2, 0, 3], enforce_sorted=False),
                lambda: _pack(gt, x[1], [2, 0, 3], enforce_sorted=False))
    raises_like(lambda: torch.nn.utils.rnn.pad_packed_sequence(_pack(torch, x[0], [4, 3, 1]), total_length=2),
                lambda: nn.utils.rnn.pad_packed_sequence(_pack(gt, x[1], [4, 3, 1]), total_length=2))


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_recurrent_layers_on_packed_sequences(kind, enforce_sorted):
    g, t = both(kind, 3, 4, num_layers=2, bidirectional=True)
    lengths = [5, 3, 2] if enforce_sorted else [2, 5, 3]

    def call(m, x, h):
        lib = gt if isinstance(m, nn.Module) else torch
        packed = _pack(lib, x, lengths, enforce_sorted=enforce_sorted)
        out, state = m(packed, (h, h * 0.5) if kind == "LSTM" else h)
        assert isinstance(out, lib.nn.utils.rnn.PackedSequence)
        padded, _ = lib.nn.utils.rnn.pad_packed_sequence(out)
        return padded, state

    check_rnn(g, t, [randn(5, 3, 3), randn(4, 3, 4, seed=1)], call=call)


def test_compiled_lstm_on_packed_sequences_equals_eager():
    lstm = nn.LSTM(3, 4, bidirectional=True)
    x = gt.tensor(randn(5, 3, 3))

    def fn(x):
        out, (h, _) = lstm(nn.utils.rnn.pack_padded_sequence(x, [2, 5, 3], enforce_sorted=False))
        return nn.utils.rnn.pad_packed_sequence(out)[0].sum(0) + h.sum(0).repeat(1, 2)

    compiled = gt.compile(fn)
    compiled(x)
    assert_same(compiled(x), fn(x), rtol=1e-5, atol=1e-6)
