"""The IR's views (printout, table, DOT, JSON), copying, the verifier and the error registry."""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np
import pytest
from compiler_helpers import f32, lenet, logistic_regression, random_inputs, sin_mlp

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler import interpreter
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.errors import CODES, GraphtorchCompileError
from graphtorch.compiler.fusion import fuse
from graphtorch.compiler.ir import Graph, Node, rewrite
from graphtorch.compiler.verify import verify

MODELS = [lenet, sin_mlp, logistic_regression]


def odd_graph() -> Graph:
    """Constants of several dtypes, inf/nan attributes, dtype attributes, tuples of tuples."""
    g = Graph()
    x = g.input("x", f32(2, 3))
    c = g.constant(np.array([[1.5, -0.0, np.nan]], np.float32), loc="odd.py:1")
    k = g.constant(np.array([3, -7], np.int64))
    b = g.constant(np.array(True))
    p = g.call("pad", [x], dict(pads=((1, 0), (0, 2)), value=float("-inf")), "odd.py:2", "pad")
    i = g.call("cast", [p], dict(dtype=dt.int64), "odd.py:3")
    e = g.call("add", [x, g.call("expand", [c], dict(shape=(2, 3)))])
    g.outputs = [i, e, k, b]
    return g


@pytest.mark.parametrize("make", MODELS + [odd_graph])
def test_json_round_trip_gives_an_equal_graph(make):
    g = make()
    text = g.to_json()
    back = Graph.from_json(text)
    assert back.equals(g) and g.equals(back)
    assert back.to_json() == text
    verify(back)
    xs = random_inputs(g)
    for a, b in zip(interpreter.run(g, xs), interpreter.run(back, xs)):
        np.testing.assert_array_equal(a, b)


def test_json_keeps_constants_bytes_and_attribute_types():
    back = Graph.from_json(odd_graph().to_json())
    c = back.nodes[1]
    assert c.value.dtype == np.float32 and np.signbit(c.value[0, 1]) and np.isnan(c.value[0, 2])
    pad = next(n for n in back.nodes if n.target == "pad")
    assert pad.attrs["pads"] == ((1, 0), (0, 2)) and isinstance(pad.attrs["pads"][0], tuple)
    assert pad.attrs["value"] == float("-inf") and pad.loc == "odd.py:2" and pad.origin == "pad"
    cast = next(n for n in back.nodes if n.target == "cast")
    assert cast.attrs["dtype"] is dt.int64
    assert "Infinity" not in odd_graph().to_json()  # standard JSON only


def _edit(text: str, fn) -> str:
    doc = json.loads(text)
    fn(doc)
    return json.dumps(doc)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["nodes"][5].update(inputs=[7]), "earlier node"),
    (lambda d: d["nodes"][5].update(target="os.system"), "unknown primitive"),
    (lambda d: d["nodes"][5]["type"].update(shape=[9, 9]), "differs from the inferred"),
    (lambda d: d["nodes"][1]["value"].update(data="AAAA"), "needs 12 bytes"),
    (lambda d: d["nodes"][0].update(op="exec"), "unknown node op"),
    (lambda d: d.update(format="pickle"), "expected format"),
    (lambda d: d.update(outputs=[99]), "earlier node"),
])
def test_loading_a_bad_file_is_a_clear_error(edit, match):
    with pytest.raises(GraphtorchCompileError, match=match) as e:
        Graph.from_json(_edit(odd_graph().to_json(), edit))
    assert e.value.code == "GT015"


def test_copy_is_equal_and_independent():
    g = lenet()
    c = g.copy()
    assert c.equals(g) and not set(c.nodes) & set(g.nodes)
    c.nodes[-1].loc = "elsewhere.py:1"
    assert not c.equals(g)


def test_rewrite_replaces_nodes_and_follows_outputs():
    g = Graph()
    x = g.input("x", f32(3))
    y = g.call("exp", [x])
    g.outputs = [g.call("neg", [y])]
    out = rewrite(g, lambda n, ins, h: h.call("sin", ins, loc="r.py:1") if n.target == "exp" else None)
    assert [n.target for n in out.nodes] == ["x", "sin", "neg"] and out.outputs[0].inputs[0].loc == "r.py:1"


def test_printout_and_table():
    g = lenet()
    text = str(g)
    assert "%9 : f32[3,4,12,12] = conv2d(%x, %conv1.weight, stride=(1, 1), padding=(2, 2)" in text
    assert text.splitlines()[-1].startswith("return (%")
    rows = g.table().splitlines()
    assert rows[0].split() == ["name", "op", "target", "args", "type", "loc", "origin"]
    conv = next(r for r in rows if " conv2d " in r)
    assert "lenet.py:12" in conv and conv.rstrip().endswith("conv2d") and "f32[3,4,12,12]" in conv
    assert rows[-1] == f"outputs: {g.outputs[0].name}"


def _parse_dot(text: str):
    assert text.startswith("digraph") and text.count("{") == text.count("}")
    defined = set(re.findall(r"^\s*(\w+) \[label=", text, re.M))
    edges = re.findall(r"^\s*(\w+) -> (\w+);", text, re.M)
    clusters = re.findall(r"subgraph (cluster_\d+)", text)
    return defined, edges, clusters


def test_dot_renders_nodes_edges_and_group_clusters():
    g = lenet()
    defined, edges, clusters = _parse_dot(g.to_dot())
    assert len(edges) == sum(len(n.inputs) for n in g.nodes) + len(g.outputs)
    assert all(a in defined and b in defined for a, b in edges) and not clusters
    plan = fuse(g)
    defined2, edges2, clusters2 = _parse_dot(g.to_dot(plan.groups))
    assert defined2 == defined and edges2 == edges and len(clusters2) == len(plan.groups)
    assert 'label="group 0: conv2d"' in g.to_dot(plan.groups)


def test_verify_accepts_the_models():
    for make in MODELS + [odd_graph]:
        verify(make())


def _bad_type(g):
    g.nodes[-1].type = TensorType((9,), dt.float32)


def _use_before_def(g):
    g.nodes[3], g.nodes[4] = g.nodes[4], g.nodes[3]


def _foreign_output(g):
    g.outputs = [Graph().input("z", f32(1))]


def _duplicate_name(g):
    g.nodes[4].name = g.nodes[3].name


def _bad_constant(g):
    g.nodes[2].value = np.zeros(5, np.float64)


@pytest.mark.parametrize("damage, code, match", [
    (_bad_type, "GT010", r"has type f32\[9\], but its inputs and attributes give f32\[3\]"),
    (_use_before_def, "GT011", "not defined before it"),
    (_foreign_output, "GT012", "output 0"),
    (_duplicate_name, "GT013", "two nodes are named"),
    (_bad_constant, "GT014", "holds"),
])
def test_verifier_catches_a_bad_graph(damage, code, match):
    g = Graph()
    x = g.input("x", f32(3))
    y = g.input("y", f32(3))
    c = g.constant(np.ones(3, np.float32))
    a = g.call("add", [x, c], loc="bad.py:7")
    g.outputs = [g.call("mul", [a, y], loc="bad.py:8")]
    verify(g)
    damage(g)
    with pytest.raises(GraphtorchCompileError, match=match) as e:
        verify(g, "optimized")
    assert e.value.code == code and "after stage 'optimized'" in str(e.value) and e.value.hint


def test_verifier_reports_an_ill_typed_call_with_the_user_location():
    g = Graph()
    x = g.input("x", f32(3))
    n = g._add(Node("call", "add", [x, g.input("y", f32(4))], {}, f32(3), loc="model.py:14"))
    g.outputs = [n]
    with pytest.raises(GraphtorchCompileError, match=r"^GT010 at model.py:14: .*shapes differ") as e:
        verify(g)
    assert "\n  hint: " in str(e.value)


def test_error_text_reads_code_location_message_hint():
    e = GraphtorchCompileError("GT001", "data-dependent Python control flow on a tensor value", "model.py:14",
                               hint="use torch.where")
    assert str(e) == "GT001 at model.py:14: data-dependent Python control flow on a tensor value\n  hint: use torch.where"
    assert str(GraphtorchCompileError("GT030", "oops")) == "GT030: oops"


def test_every_code_raised_in_graphtorch_is_registered():
    root = pathlib.Path(__file__).resolve().parents[2]
    used = set()
    for path in (p for layer in ("graphtorch", "compiler", "runtime") for p in (root / layer).rglob("*.py")):
        used |= set(re.findall(r"\"(GT0\d\d)\"", path.read_text()))
    assert used and used <= set(CODES), sorted(used - set(CODES))
