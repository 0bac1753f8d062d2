"""compiler/report.py: the layered layout, the SVG, kernel code and cost, and the float64 search
(compiler/divergence.py) on hand-built graphs."""

from __future__ import annotations

import re

import numpy as np
from compiler_helpers import f32, lenet, random_inputs, sin_mlp

from graphtorch.compiler import llvm
from graphtorch.compiler.divergence import find_divergence
from graphtorch.compiler.explain import ExplainReport
from graphtorch.compiler.ir import Graph
from graphtorch.compiler.llvm.module import kernel_name
from graphtorch.compiler.pipeline import run_pipeline
from graphtorch.compiler.report import (
    NODE_H,
    NODE_W,
    EntryView,
    GraphView,
    graph_svg,
    group_cost,
    kernel_code,
    layered_layout,
    render_html,
)


def test_layout_puts_every_node_below_its_inputs_without_overlaps():
    graph = lenet()
    pos = layered_layout(graph)
    assert set(pos) == set(graph.nodes)
    for n in graph.nodes:
        for i in n.inputs:
            assert pos[n][1] >= pos[i][1] + NODE_H  # edges point down
    corners = list(pos.values())
    assert len(set(corners)) == len(corners)
    for (x1, y1), (x2, y2) in zip(sorted(corners), sorted(corners)[1:]):
        assert x1 != x2 or abs(y1 - y2) >= NODE_H
        assert y1 != y2 or abs(x1 - x2) >= NODE_W


def test_svg_has_one_element_per_node_coloured_by_group_with_type_and_line_on_hover():
    graph = sin_mlp()
    art = run_pipeline(graph)
    svg = graph_svg(art.optimized, art.fusion.groups, "s")
    assert svg.count('<g class="node') == len(art.optimized.nodes)
    first = art.fusion.groups[0]
    colour = re.search(rf'data-node="{art.optimized.nodes.index(first.nodes[0])}".*?fill="([^"]+)"', svg, re.S).group(1)
    assert colour.startswith("hsl(") and svg.count(f'fill="{colour}"') == len(first.nodes)
    assert "f32[5,3]" in svg and "mlp.py:5" in svg


def test_kernel_code_is_cut_out_by_name_and_costs_are_counted():
    art = run_pipeline(sin_mlp())
    exe = llvm.build(art.optimized, art.fusion.groups, name="mlp")
    names = {g.id: kernel_name(g) for g in art.fusion.groups}
    code = kernel_code(exe.artifacts["llvm_ir"], names)
    assert set(code) == set(names)
    for gid, text in code.items():
        assert text.startswith("define") and names[gid] in text.splitlines()[0] and text.endswith("}")
    matmul = next(g for g in art.fusion.groups if g.anchor is not None and g.anchor.target == "matmul")
    m, n = matmul.anchor.type.shape
    k = matmul.anchor.inputs[0].type.shape[1]
    flops, moved = group_cost(matmul)
    assert flops == 2 * m * n * k and moved >= 4 * (m * k + k * n + m * n)


def test_render_html_is_self_contained_and_lists_refusals_and_guards():
    art = run_pipeline(lenet())
    explain = ExplainReport.from_artifacts(art, title="lenet", guards=["input 0: float32 [3, 1, 12, 12]"])
    page = render_html("lenet", [EntryView(explain, [GraphView("forward", art)])], sources={"lenet.py:12": "h = conv(x)"})
    assert page.startswith("<!DOCTYPE html>") and "<script src" not in page and "<link" not in page
    assert "cannot fuse" in page and "input 0: float32 [3, 1, 12, 12]" in page and "h = conv(x)" in page
    assert page.count('<g class="node') == 2 * len(art.optimized.nodes) + len(art.traced.nodes)


def _float32_cancellation() -> Graph:
    g = Graph()
    a = g.input("a", f32(6))
    big = g.call("expand", [g.call("full", [], dict(shape=(), value=1e8, dtype=a.type.dtype))], dict(shape=(6,)))
    b = g.call("sub", [g.call("add", [a, big], loc="user.py:3"), big], loc="user.py:3")
    g.outputs = [g.call("mul", [b, b], loc="user.py:4")]
    return g


def test_search_blames_the_cancellation_and_not_what_follows():
    graph = _float32_cancellation()
    art = run_pipeline(graph)
    a = np.array([-2, -1, 0, 0.5, 1, 2], np.float32)
    d = find_divergence(art.optimized, art.fusion.groups, [a])
    assert d is not None and d.node.target == "sub" and d.loc == "user.py:3"
    assert d.error.bad == 5 and d.error.max_abs == 2.0  # only a = 0 survives the round trip
    assert find_divergence(art.optimized, art.fusion.groups, [np.zeros(6, np.float32)]) is None


def test_search_tells_a_wrong_kernel_from_rounding():
    art = run_pipeline(sin_mlp())
    inputs = random_inputs(art.optimized)
    root = art.fusion.groups[-1].outputs[0]
    good = find_divergence(art.optimized, art.fusion.groups, inputs)
    assert good is None
    from graphtorch.compiler.interpreter import run_groups

    roots = Graph(nodes=art.optimized.nodes, outputs=[root])
    wrong = run_groups(roots, art.fusion.groups, inputs)[0] + 1.0  # a kernel off by one
    d = find_divergence(art.optimized, art.fusion.groups, inputs, {root: wrong}, kernel_names={art.fusion.groups[-1].id: "k"})
    assert d.node is root and d.kernel == "k" and abs(d.kernel_vs_interpreter - 1.0) < 1e-6
    assert "a backend bug" in str(d)
