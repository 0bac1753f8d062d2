"""The fused attention primitives (compiler/attention.py) as kernels: the LLVM lowering at 1 and 2
threads and the CUDA C in the emulator equal the numpy kernels (the interpreter) on odd lengths,
causal rows, broadcast additive and boolean-style masks, fully masked rows, key counts past one
64-key block, and every gradient (wrt q, k, v); the type rules reject bad shapes by name."""

from __future__ import annotations

import math

import numpy as np
import pytest
from llvm_helpers import compiled, interpret

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.cuda import emit
from graphtorch.compiler.cuda.hostcheck import HostModule, available
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.fusion import fuse
from graphtorch.compiler.ir import Graph
from graphtorch.compiler.primitives import PRIMITIVES

# (batch dims, Tq, Tk, D, Dv, bias shape, causal)
CASES = [
    ((2, 3), 7, 9, 5, 4, (1, 1, 1, 1), False),
    ((2, 3), 7, 9, 5, 4, (1, 1, 1, 1), True),
    ((2,), 13, 5, 3, 6, (2, 13, 5), False),  # a full bias, more queries than keys
    ((1, 2), 9, 131, 4, 3, (1, 2, 9, 131), False),  # three key blocks, a masked row
    ((3,), 70, 70, 8, 8, (1, 70, 70), True),  # causal over two key blocks
    ((), 1, 1, 1, 1, (1, 1), False),
]


def attention_graph(batch, tq, tk, d, dv, bias_shape, causal, dtype=dt.float64, masked_rows="zero") -> Graph:
    """out = attention(q, k, v, bias) and its gradients dq, dk, dv and dk|dv (wrt="kv") for an upstream gradient `dout`."""
    g = Graph()
    t = lambda *s: TensorType(tuple(s), dtype)
    q, k, v = g.input("q", t(*batch, tq, d)), g.input("k", t(*batch, tk, d)), g.input("v", t(*batch, tk, dv))
    bias, dout = g.input("bias", t(*bias_shape)), g.input("dout", t(*batch, tq, dv))
    attrs = {"scale": 1 / math.sqrt(d), "causal": causal, "masked_rows": masked_rows}
    fwd = g.call("attention", [q, k, v, bias], attrs)
    out = g.call("slice", [fwd], {"starts": (0,) * fwd.type.ndim, "stops": (*batch, tq, dv), "steps": (1,) * fwd.type.ndim})
    delta = g.call("sum", [g.call("mul", [dout, out])], {"dims": (len(batch) + 1,), "keepdim": False})
    grads = [g.call("attention_grad", [q, k, v, bias, fwd, dout, delta], {**attrs, "wrt": w}) for w in ("q", "k", "v", "kv")]
    g.outputs = [fwd, *grads]
    return g


def inputs(graph: Graph, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(n.type.shape).astype(n.type.dtype.np) for n in graph.inputs]
    bias = arrays[3]
    if bias.ndim >= 2 and bias.shape[-1] > 1:  # -inf where a bool mask is False, and one row masked whole
        bias[rng.random(bias.shape) < 0.3] = -np.inf
        bias[..., min(2, bias.shape[-2] - 1), :] = -np.inf
    return arrays


def reference(graph: Graph, xs: list[np.ndarray]) -> list[np.ndarray]:
    """The numpy kernels, checked against a float64 softmax written out in full."""
    want = interpret(graph, *xs)
    q, k, v, bias, _ = xs
    node = graph.outputs[0]
    s = q @ np.swapaxes(k, -1, -2) * node.attrs["scale"] + bias
    if node.attrs["causal"]:
        s = np.where(np.tril(np.ones(s.shape[-2:], dtype=bool)), s, -np.inf)
    m = s.max(-1, keepdims=True)
    e = np.exp(s - np.where(np.isinf(m), 0, m))
    p = e / np.maximum(e.sum(-1, keepdims=True), 1e-300)
    np.testing.assert_allclose(want[0][..., :-1], p @ v, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(want[4], np.concatenate([want[2], want[3]], -1))  # kv: dk's columns, then dv's
    return want


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_llvm_equals_the_numpy_kernels(case, threads):
    g = attention_graph(*case)
    xs = inputs(g)
    for got, want in zip(compiled(g, *xs, groups=fuse(g).groups, num_threads=threads), reference(g, xs)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cuda", [False, True])
def test_a_row_masked_whole_gives_nan_when_asked(cuda):
    """masked_rows="nan" (the softmax written out): NaN in that row's output and in the gradients
    it reaches, finite values elsewhere; the same on both backends as in numpy."""
    if cuda and not available():
        pytest.skip("g++ is needed to run the emitted kernels on the CPU")
    g = attention_graph((2,), 6, 10, 4, 4, (1, 6, 10), False, masked_rows="nan")
    xs = inputs(g, seed=2)  # row 2 of the bias is -inf throughout
    want = interpret(g, *xs)
    got = HostModule(emit(g, fuse(g).groups)).run(xs) if cuda else compiled(g, *xs, groups=fuse(g).groups)
    assert np.isnan(want[0][:, 2]).all() and np.isfinite(np.delete(want[0], 2, axis=1)).all()
    assert np.isnan(want[1][:, 2]).all() and np.isnan(want[3]).all()  # dq of that row; dv of every key
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, equal_nan=True)


def test_llvm_float32():
    g = attention_graph((2, 2), 17, 33, 8, 8, (1, 1, 17, 33), True, dtype=dt.float32)
    xs = inputs(g, seed=3)
    for got, want in zip(compiled(g, *xs, groups=fuse(g).groups), interpret(g, *xs)):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("cuda", [False, True])
@pytest.mark.parametrize("masked_rows", ["zero", "nan"])
@pytest.mark.parametrize("case", CASES[1:5], ids=str)
def test_attention_probs(case, masked_rows, cuda):
    """The softmax alone (short sequences): rows sum to one, a row masked whole gives zeros or NaN,
    equal to the numpy kernel on both backends."""
    if cuda and not available():
        pytest.skip("g++ is needed to run the emitted kernels on the CPU")
    g = attention_graph(*case)
    q, k, _, bias = g.inputs[:4]
    g.outputs = [g.call("attention_probs", [q, k, bias], {"scale": 0.5, "causal": case[-1], "masked_rows": masked_rows})]
    xs = inputs(g, seed=5)
    want = interpret(g, *xs)[0]
    allowed = np.isfinite(np.broadcast_to(xs[3], want.shape))
    if case[-1]:
        allowed &= np.tril(np.ones(want.shape[-2:], dtype=bool))
    dead = ~allowed.any(-1)
    np.testing.assert_allclose(want.sum(-1)[~dead], 1.0, rtol=1e-12)
    assert (want[dead] == 0).all() if masked_rows == "zero" else np.isnan(want[dead]).all()
    got = HostModule(emit(g, fuse(g).groups)).run(xs)[0] if cuda else compiled(g, *xs, groups=fuse(g).groups)[0]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_attention_stands_alone_in_the_fused_plan():
    g = attention_graph(*CASES[1])
    patterns = {g2.outputs[0].target: g2.pattern for g2 in fuse(g).groups}
    assert patterns["attention"] == "single" and patterns["attention_grad"] == "single"


@pytest.mark.skipif(not available(), reason="g++ is needed to run the emitted kernels on the CPU")
@pytest.mark.parametrize("case", CASES[1:5], ids=str)
def test_cuda_in_the_emulator_equals_the_numpy_kernels(case):
    g = attention_graph(*case)
    xs = inputs(g, seed=1)
    module = emit(g, fuse(g).groups)
    assert "sc[64]" in module.source  # one key block of scores per thread, never the score matrix
    for got, want in zip(HostModule(module).run(xs), interpret(g, *xs)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_bad_shapes_are_named():
    t = lambda *s: TensorType(s, dt.float32)
    infer = PRIMITIVES["attention"].infer
    with pytest.raises(RuntimeError, match=r"k \(\.\.\., Tk, D\).*\(2, 3, 4\), \(2, 5, 3\)"):
        infer(t(2, 3, 4), t(2, 5, 3), t(2, 5, 4), t(1, 1, 1), scale=1.0, causal=False, masked_rows="zero")
    with pytest.raises(RuntimeError, match=r"bias \(1, 4, 5\) must broadcast to the scores \(2, 3, 5\)"):
        infer(t(2, 3, 4), t(2, 5, 4), t(2, 5, 4), t(1, 4, 5), scale=1.0, causal=False, masked_rows="zero")
    with pytest.raises(RuntimeError, match="masked_rows must be one of"):
        infer(t(2, 3, 4), t(2, 5, 4), t(2, 5, 4), t(1, 1, 1), scale=1.0, causal=False, masked_rows="skip")
    with pytest.raises(RuntimeError, match="share one floating dtype"):
        infer(t(2, 3, 4), t(2, 5, 4), TensorType((2, 5, 4), dt.float64), t(1, 1, 1), scale=1.0, causal=False, masked_rows="zero")
