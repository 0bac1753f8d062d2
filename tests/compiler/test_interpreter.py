"""The interpreter against each primitive's numpy kernel, called directly."""

from __future__ import annotations

import numpy as np
import pytest
from compiler_helpers import f32, random_inputs

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler import interpreter
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.errors import GraphtorchCompileError
from graphtorch.compiler.ir import Graph, Node
from graphtorch.compiler.primitives import PRIMITIVES, Kind

F, B, I = dt.float32, dt.bool_, dt.int64
T = TensorType

_POOL = dict(out=(4, 3), kernel=(3, 2), stride=(2, 2), padding=(1, 1), dilation=(1, 2), adaptive=False)

# primitive -> (input types, attrs); odd shapes on purpose
CASES: dict[str, tuple[list[TensorType], dict]] = {
    "cast": ([T((3, 5), F)], dict(dtype=dt.int32)),
    "full": ([], dict(shape=(2, 3), value=1.5, dtype=F)),
    "iota": ([], dict(shape=(3, 4), dim=1, dtype=I)),
    "rand": ([T((), I)], dict(shape=(3, 5), dtype=F)),
    "where": ([T((3, 5), B), T((3, 5), F), T((3, 5), F)], {}),
    "logical_not": ([T((3, 5), B)], {}),
    "logical_and": ([T((3, 5), B), T((3, 5), B)], {}),
    "logical_or": ([T((3, 5), B), T((3, 5), B)], {}),
    "expand": ([T((3, 1), F)], dict(shape=(2, 3, 5))),
    "reshape": ([T((3, 5), F)], dict(shape=(5, 3))),
    "permute": ([T((2, 3, 5), F)], dict(dims=(2, 0, 1))),
    "slice": ([T((7, 5), F)], dict(starts=(1, 0), stops=(7, 5), steps=(2, 3))),
    "pad": ([T((3, 5), F)], dict(pads=((1, 0), (2, 1)), value=-1.0)),
    "concat": ([T((3, 5), F), T((2, 5), F)], dict(dim=0)),
    "gather": ([T((3, 5), F), T((3, 2), I)], dict(dim=1)),
    "unfold": ([T((2, 3, 7, 6), F)], dict(kernel=(3, 2), stride=(2, 1), dilation=(1, 2))),
    "argmax": ([T((3, 5), F)], dict(dim=1, keepdim=True)),
    "argmin": ([T((3, 5), F)], dict(dim=0, keepdim=False)),
    "cumsum": ([T((3, 5), F)], dict(dim=1)),
    "matmul": ([T((2, 3, 5), F), T((2, 5, 7), F)], {}),
    "conv2d": ([T((2, 3, 7, 6), F), T((4, 3, 3, 2), F)], dict(stride=(2, 1), padding=(1, 0), dilation=(1, 1), groups=1)),
    "fold": ([T((1, 2, 3, 3, 2, 2), F)], dict(size=(4, 4), stride=(1, 1), dilation=(1, 1))),
    "scatter_add": ([T((3, 5), F), T((3, 2), I), T((3, 2), F)], dict(dim=1)),
    "inverse": ([T((2, 3, 3), F)], {}),
    "det": ([T((2, 3, 3), F)], {}),
    "slogdet": ([T((2, 3, 3), F)], {}),
    "cholesky": ([T((2, 1, 1), F)], {}),  # the inputs are positive: 1x1 ones are positive-definite
    "qr": ([T((2, 5, 3), F)], dict(mode="reduced", part="Q")),
    "svd": ([T((2, 3, 5), F)], dict(full_matrices=True, part="Vh")),
    "argsort": ([T((3, 5), F)], dict(dim=1, descending=True)),
    "softmax": ([T((3, 5), F)], dict(log=True)),
    "layer_norm": ([T((3, 5), F), T((5,), F), T((5,), F)], dict(eps=1e-5)),
    "layer_norm_grad": ([T((3, 5), F), T((5,), F), T((3, 5), F)], dict(eps=1e-5, wrt="x")),
    "attention": ([T((2, 3, 4), F), T((2, 5, 4), F), T((2, 5, 3), F), T((1, 3, 5), F)],
                  dict(scale=0.5, causal=True, masked_rows="zero")),
    "attention_probs": ([T((2, 3, 4), F), T((2, 5, 4), F), T((1, 1, 5), F)], dict(scale=0.5, causal=False,
                                                                                 masked_rows="nan")),
    "attention_grad": ([T((2, 3, 4), F), T((2, 5, 4), F), T((2, 5, 3), F), T((1, 3, 5), F), T((2, 3, 4), F),
                        T((2, 3, 3), F), T((2, 3), F)], dict(scale=0.5, causal=False, masked_rows="zero", wrt="k")),
    "cumprod": ([T((3, 5), F)], dict(dim=0)),
    "cumextreme_index": ([T((3, 5), F)], dict(dim=1, largest=False)),
    "max_pool": ([T((2, 3, 7, 6), F)], dict(_POOL)),
    "max_pool_index": ([T((2, 3, 7, 6), F)], dict(_POOL)),
    "max_pool_grad": ([T((2, 3, 7, 6), F), T((2, 3, 4, 3), F)], dict(_POOL)),
    "avg_pool": ([T((2, 3, 7, 6), F)], dict(_POOL, dilation=(1, 1), count_include_pad=False, divisor=0)),
    "avg_pool_grad": ([T((2, 3, 4, 3), F)], dict(_POOL, dilation=(1, 1), count_include_pad=True, divisor=0, size=(7, 6))),
}
# a collective needs MPI and its handles: tests/graphtorch/distributed runs it under mpiexec
NEEDS_MPI = {"all_reduce"}
for _name, _p in PRIMITIVES.items():  # the rest: unary/binary elementwise and reductions
    if _name in CASES or _p.data_dependent or _name in NEEDS_MPI:
        continue
    if _p.kind is Kind.REDUCTION:
        CASES[_name] = ([T((3, 4, 5), F)], dict(dims=(0, 2), keepdim=False))
    else:
        arity = 1 if _name in ("exp", "log", "sqrt", "abs", "sign", "sin", "cos", "tanh", "sigmoid", "erf",
                               "floor", "ceil", "round", "neg", "copy") else 2
        CASES[_name] = ([T((3, 5), F)] * arity, {})


def _arrays(types: list[TensorType], attrs: dict, rng) -> list[np.ndarray]:
    out = []
    for k, t in enumerate(types):
        if t.dtype is I and t.shape == ():
            out.append(np.array(12345, np.int64))
        elif t.dtype is I:
            out.append(rng.integers(0, 3, t.shape).astype(np.int64))  # indices valid for every case above
        elif t.dtype is B:
            out.append(rng.random(t.shape) < 0.5)
        else:
            a = rng.standard_normal(t.shape).astype(t.dtype.np)
            out.append(np.abs(a) + 0.5 if k == 0 else a)  # log/sqrt of positives keep the check meaningful
    return out


def test_every_traceable_primitive_has_a_case():
    assert set(CASES) == {n for n, p in PRIMITIVES.items() if not p.data_dependent} - NEEDS_MPI


@pytest.mark.parametrize("name", sorted(CASES))
def test_interpreter_equals_kernel(name):
    types, attrs = CASES[name]
    g = Graph()
    ins = [g.input(f"a{k}", t) for k, t in enumerate(types)]
    g.outputs = [g.call(name, ins, attrs)]
    arrays = _arrays(types, attrs, np.random.default_rng(1))
    (got,) = interpreter.run(g, arrays)
    with np.errstate(all="ignore"):
        want = np.asarray(PRIMITIVES[name].kernel(*arrays, **attrs))
    assert got.dtype == want.dtype == g.outputs[0].type.dtype.np
    assert got.shape == want.shape == g.outputs[0].type.shape
    np.testing.assert_array_equal(got, want)


def test_data_dependent_primitive_cannot_enter_a_graph():
    g = Graph()
    x = g.input("x", f32(3))
    with pytest.raises(RuntimeError, match="depends on the values"):
        g.call("nonzero", [x])


def test_outputs_are_fresh_arrays_even_for_views_and_inputs():
    g = Graph()
    x = g.input("x", f32(2, 3))
    t = g.call("permute", [x], dict(dims=(1, 0)))
    g.outputs = [t, x, t]
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = interpreter.run(g, [a])
    assert all(o.flags.c_contiguous and not np.shares_memory(o, a) for o in out)
    assert not np.shares_memory(out[0], out[2])
    np.testing.assert_array_equal(out[0], a.T)


def test_constants_and_long_chains_with_freed_values():
    g = Graph()
    x = g.input("x", f32(4))
    c = g.constant(np.array([1, 2, 3, 4], np.float32))
    h = x
    for _ in range(10):
        h = g.call("add", [h, c])
    g.outputs = [h]
    (out,) = interpreter.run(g, [np.zeros(4, np.float32)])
    np.testing.assert_array_equal(out, [10, 20, 30, 40])


@pytest.mark.parametrize("bad, match", [
    ([], "takes 1 inputs"),
    ([np.zeros((2, 3), np.float64)], r"input 0 \(%x\) expects f32\[2,3\].*got float64\[2, 3\]"),
    ([np.zeros((3, 2), np.float32)], r"got float32\[3, 2\]"),
    ([[1.0, 2.0]], "got list"),
])
def test_input_mismatch_is_a_clear_error(bad, match):
    g = Graph()
    x = g.input("x", f32(2, 3))
    g.outputs = [g.call("neg", [x])]
    with pytest.raises(GraphtorchCompileError, match=match) as e:
        interpreter.run(g, bad)
    assert e.value.code == "GT040"


def test_kernel_type_mismatch_is_reported():
    g = Graph()
    x = g.input("x", f32(3))
    bad = g._add(Node("call", "neg", [x], {}, TensorType((3,), dt.float64), loc="m.py:3"))
    g.outputs = [bad]
    with pytest.raises(GraphtorchCompileError, match="GT041 at m.py:3"):
        interpreter.run(g, random_inputs(g))
