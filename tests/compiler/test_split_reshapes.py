"""split_reshapes (compiler/cleanup.py): a reshape read by several kernels gets one copy per
kernel-fused user, so no kernel of its own copies the buffer; opaque users (and a graph output)
keep the original. Values equal the interpreter's, compiled too."""

import numpy as np
from llvm_helpers import compiled, interpret, values

from graphtorch.compiler import cleanup, interpreter
from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.fusion import fuse
from graphtorch.compiler.ir import Graph


def qkv_graph(with_opaque_user: bool = False, reshape_is_output: bool = False) -> Graph:
    """The GPT's qkv projection: one (b*t, 3c) buffer reshaped to (b, t, 3c), read by three slices
    (each a sin here, standing for its consumer), optionally by a softmax (opaque) and as an output."""
    g = Graph()
    x = g.input("x", TensorType((6, 9), dt.float32))
    w = g.input("w", TensorType((9, 12), dt.float32))
    qkv = g.call("reshape", [g.call("matmul", [x, w])], {"shape": (2, 3, 12)})
    parts = [g.call("sin", [g.call("slice", [qkv], {"starts": (0, 0, 4 * k), "stops": (2, 3, 4 * k + 4),
                                                   "steps": (1, 1, 1)})]) for k in range(3)]
    g.outputs = parts + ([g.call("softmax", [qkv], {"log": False})] if with_opaque_user else [])
    g.outputs += [qkv] if reshape_is_output else []
    return g


def _users_of_reshapes(g: Graph) -> list[int]:
    users = g.users()
    return sorted(len(users[n]) for n in g.nodes if n.target == "reshape")


def _inputs(g: Graph) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [values(i.type.shape, dt.float32, rng, specials=False) for i in g.inputs]


def test_each_fused_user_gets_its_own_reshape():
    g = qkv_graph()
    out = cleanup.split_reshapes(g)
    assert _users_of_reshapes(g) == [3] and _users_of_reshapes(out) == [1, 1, 1]
    for a, b in zip(interpreter.run(out, _inputs(g)), interpreter.run(g, _inputs(g))):
        np.testing.assert_array_equal(a, b)


def test_opaque_users_and_outputs_keep_the_original():
    g = qkv_graph(with_opaque_user=True, reshape_is_output=True)
    out = cleanup.split_reshapes(g)
    users = out.users()
    original = out.outputs[-1]
    assert original.target == "reshape" and [u.target for u in users[original]] == ["softmax"]
    assert _users_of_reshapes(out) == [1, 1, 1, 1]
    assert cleanup.split_reshapes(cleanup.split_reshapes(g)).equals(out)  # nothing left to split


def test_a_reshape_read_once_or_by_opaque_users_only_is_left_alone():
    g = Graph()
    x = g.input("x", TensorType((4, 6), dt.float32))
    r = g.call("reshape", [x], {"shape": (6, 4)})
    g.outputs = [g.call("softmax", [r], {"log": False}), g.call("softmax", [r], {"log": True})]
    assert cleanup.split_reshapes(g) is g
    g.outputs = [g.call("neg", [g.call("reshape", [x], {"shape": (24,)})])]
    assert cleanup.split_reshapes(g) is g


def test_no_copy_kernel_after_optimize_and_compiled_equals_the_interpreter():
    """Before, the shared reshape was a group of its own (a copy); now each slice's kernel reads
    the matmul's buffer through its own reshape. (Without the final passes the matmul's kernel
    takes the shared reshape as its final epilogue step: no copy either.)"""
    g = qkv_graph()
    lone_reshape = lambda plan: [grp for grp in plan.groups if {n.target for n in grp.nodes} == {"reshape"}]
    unsplit = fuse(cleanup.optimize(g, passes=cleanup.PASSES))
    assert not lone_reshape(unsplit) and [grp.outputs[0].target for grp in unsplit.groups][0] == "reshape"
    optimized = cleanup.optimize(g)
    plan = fuse(optimized)
    assert not lone_reshape(plan)
    for got, want in zip(compiled(optimized, *_inputs(g), groups=plan.groups), interpret(g, *_inputs(g))):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)  # sums may add in another order
