"""The compile report as one self-contained HTML page: inline CSS, JS and SVG, nothing fetched.

It draws what `graphtorch.explain` gathers (an ExplainReport per compiled entry: guards, stage
times, memory totals) plus, per compiled graph, each stage's graph as SVG (a layered layout
computed here with networkx; nodes coloured by fusion group; hover for type and file:line, click
for the source line, group and the kernel's generated code), the fusion refusals, the kernel
timers as bars and the memory plan as a timeline. The front end (graphtorch/report.py) collects
the objects; this module sees only IR, plans and text.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .explain import ExplainReport
from .fusion import format_group, label
from .ir import Graph, Group, Node, format_node
from .memory_plan import MemoryPlan
from .pipeline import CompileArtifacts

NODE_W, NODE_H, GAP_X, GAP_Y = 150, 34, 24, 46
MAX_KERNEL_CODE = 20_000  # characters of generated code kept per kernel (GEMM kernels are long)


@dataclass
class GraphView:
    """One compiled graph (forward or backward): its stages and, for a native backend, its executable."""

    name: str
    artifacts: CompileArtifacts
    executable: Any = None  # llvm.Executable: .plan, .kernel_times(), .artifacts["llvm_ir"]
    kernel_name: Any = None  # Group -> the backend's function name for its kernel
    partitioned: bool = False  # split from a joint forward+backward graph: its first stage is the split


@dataclass
class EntryView:
    """One compiled signature: the explain report and its graphs."""

    explain: ExplainReport
    graphs: list[GraphView]
    recompile_reason: str | None = None
    graph_breaks: list[str] = field(default_factory=list)
    joint: Graph | None = None  # the traced graph before it was split into forward and backward


# ---------------------------------------------------------------- layout


def layered_layout(graph: Graph) -> dict[Node, tuple[float, float]]:
    """Top-left corner of each node's box: layer = longest path from an input, order within a
    layer by the mean position of its inputs (one barycentre sweep down)."""
    import networkx as nx

    g = graph.to_networkx()
    layer: dict[Node, int] = {}
    for n in nx.topological_sort(g):
        layer[n] = 1 + max((layer[i] for i in n.inputs), default=-1)
    rows: dict[int, list[Node]] = {}
    for n in graph.nodes:
        rows.setdefault(layer[n], []).append(n)
    pos: dict[Node, tuple[float, float]] = {}
    for depth in sorted(rows):
        row = sorted(rows[depth], key=lambda n: _barycentre(n, pos))
        for k, n in enumerate(row):
            pos[n] = (k * (NODE_W + GAP_X), depth * (NODE_H + GAP_Y))
    return pos


def _barycentre(n: Node, pos: dict[Node, tuple[float, float]]) -> float:
    xs = [pos[i][0] for i in n.inputs if i in pos]
    return sum(xs) / len(xs) if xs else -1.0


# ---------------------------------------------------------------- SVG of one stage


def group_colour(group_id: int | None) -> str:
    if group_id is None:
        return "#e6e6e6"
    return f"hsl({group_id * 137.5 % 360:.1f}, 65%, 82%)"


def node_caption(n: Node) -> str:
    what = n.target if n.op == "call" else "const" if n.op == "constant" else f"in {n.target}"
    return f"{n.name} {what}"


def graph_svg(graph: Graph, groups: list[Group] | None, stage_id: str) -> str:
    pos = layered_layout(graph)
    group_of = {n: g.id for g in groups or [] for n in g.nodes}
    width = max((x for x, _ in pos.values()), default=0) + NODE_W + 2
    height = max((y for _, y in pos.values()), default=0) + NODE_H + 2
    ids = {n: k for k, n in enumerate(graph.nodes)}
    edges = [_edge(pos[i], pos[n]) for n in graph.nodes for i in n.inputs]
    nodes = [_node_svg(n, ids[n], pos[n], group_of.get(n), n in graph.outputs) for n in graph.nodes]
    return (f'<svg class="graph" data-stage="{stage_id}" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" xmlns="http://www.w3.org/2000/svg">'
            f'<g class="edges">{"".join(edges)}</g>{"".join(nodes)}</svg>')


def _edge(a: tuple[float, float], b: tuple[float, float]) -> str:
    x1, y1, x2, y2 = a[0] + NODE_W / 2, a[1] + NODE_H, b[0] + NODE_W / 2, b[1]
    mid = (y1 + y2) / 2
    return f'<path d="M{x1:.0f},{y1:.0f} C{x1:.0f},{mid:.0f} {x2:.0f},{mid:.0f} {x2:.0f},{y2:.0f}"/>'


def _node_svg(n: Node, k: int, xy: tuple[float, float], group: int | None, is_output: bool) -> str:
    hover = html.escape(f"{n.name} : {n.type}" + (f"\n{n.loc}" if n.loc else "") +
                        (f"\nfrom {n.origin}" if n.origin else "") + (f"\ngroup {group}" if group is not None else ""))
    cls = "node output" if is_output else "node"
    caption = html.escape(node_caption(n)[:22])
    return (f'<g class="{cls}" data-node="{k}" transform="translate({xy[0]:.0f},{xy[1]:.0f})">'
            f"<title>{hover}</title>"
            f'<rect width="{NODE_W}" height="{NODE_H}" rx="5" fill="{group_colour(group)}"/>'
            f'<text x="6" y="14">{caption}</text>'
            f'<text x="6" y="28" class="type">{html.escape(str(n.type)[:24])}</text></g>')


def node_details(graph: Graph, groups: list[Group] | None, sources: dict[str, str],
                 kernels: dict[int, str]) -> list[dict]:
    """What a click shows, per node (the page's script reads this as JSON)."""
    group_of = {n: g for g in groups or [] for n in g.nodes}
    out = []
    for n in graph.nodes:
        g = group_of.get(n)
        out.append({"line": format_node(n), "loc": n.loc or "", "source": sources.get(n.loc or "", ""),
                    "origin": n.origin or "", "group": f"group {g.id} [{g.pattern}] {label(g)}" if g else "",
                    "kernel": g.id if g is not None and g.id in kernels else None})
    return out


# ---------------------------------------------------------------- kernel code, cost and times


def kernel_code(ir_text: str, names: dict[int, str]) -> dict[int, str]:
    """Each group's kernel function, cut out of the module's LLVM IR by its name."""
    out = {}
    for gid, name in names.items():
        m = re.search(r'^define [^\n]*@"?' + re.escape(name) + r'"?\(.*?^}', ir_text, re.S | re.M)
        if m:
            text = m.group(0)
            out[gid] = text if len(text) <= MAX_KERNEL_CODE else text[:MAX_KERNEL_CODE] + "\n... (cut)"
    return out


def group_cost(g: Group) -> tuple[int | None, int]:
    """(floating-point operations, bytes read and written) of one kernel call; FLOPs where the
    anchor says them exactly (matmul, conv2d), None elsewhere."""
    moved = sum(n.type.numel * n.type.dtype.itemsize for n in [*g.inputs, *g.outputs])
    a = g.anchor
    if a is not None and a.target == "matmul":
        return 2 * a.type.numel * a.inputs[0].type.shape[-1], moved
    if a is not None and a.target == "conv2d":
        w = a.inputs[1].type
        return 2 * a.type.numel * (w.numel // w.shape[0]), moved
    return None, moved


def _times_table(view: GraphView) -> str:
    times = _kernel_times(view)
    if times is None:
        return ('<p class="note">No kernel times: set GRAPHTORCH_KERNEL_TIMES=1 before compiling '
                "(graphtorch.report does when it compiles) and call the function.</p>")
    top = max((us for _, us in times), default=0.0) or 1.0
    rows = []
    for g, us in times:
        flops, moved = group_cost(g)
        rate = f"{flops / us / 1e3:.2f} GFLOP/s" if flops and us > 0 else ""
        bw = f"{moved / us / 1e3:.2f} GB/s" if us > 0 else ""
        work = html.escape(f"{_fmt_int(flops)} FLOP, " if flops else "") + f"{moved:,} bytes per call"
        rows.append(f'<tr title="{work}"><td>group {g.id} {html.escape(label(g))}</td><td class="barcell">'
                    f'<div class="bar" style="width:{100 * us / top:.1f}%"></div>{us:.1f} µs</td>'
                    f"<td>{rate}</td><td>{bw}</td></tr>")
    head = "<tr><th>kernel</th><th>time per call</th><th>FLOP/s</th><th>bytes/s</th></tr>"
    return f'<table class="times">{head}{"".join(rows)}</table>'


def _kernel_times(view: GraphView) -> list[tuple[Group, float]] | None:
    exe = view.executable
    if exe is None or not hasattr(exe, "kernel_times") or not getattr(exe, "calls", 0):
        return None
    try:
        return exe.kernel_times()
    except RuntimeError:  # built without the timers
        return None


def _fmt_int(n: int | None) -> str:
    return f"{n:,}" if n is not None else ""


# ---------------------------------------------------------------- memory timeline


def memory_svg(plan: MemoryPlan, steps: int) -> str:
    """Each arena buffer as a bar: x = the kernel steps it is live, y = its bytes in the arena."""
    if not plan.offsets:
        return '<p class="note">Nothing lives in the arena.</p>'
    w, h = 440, 200
    sx, sy = w / max(steps, 1), h / max(plan.arena_bytes, 1)
    bars = []
    for n, off in plan.offsets.items():
        first, last = plan.intervals[n]
        tip = html.escape(f"{n.name} : {n.type}, {plan.sizes.get(n, 0):,} bytes at {off:,}, steps {first}..{last}")
        bars.append(f'<rect class="buffer" x="{first * sx:.1f}" y="{off * sy:.1f}" width="{max((last - first + 1) * sx, 1):.1f}" '
                    f'height="{max(plan.sizes.get(n, 0) * sy, 1):.1f}"><title>{tip}</title></rect>')
    return (f'<svg class="memory" width="{w}" height="{h + 16}" xmlns="http://www.w3.org/2000/svg">'
            f'{"".join(bars)}<text x="0" y="{h + 14}">kernel step 0 → {steps - 1}; '
            f"height: arena offset 0 → {plan.arena_bytes:,} bytes</text></svg>")


def memory_bars(totals: dict[str, int]) -> str:
    top = max(totals.values(), default=0) or 1
    rows = [f'<tr><td>{html.escape(k)}</td><td class="barcell"><div class="bar mem" style="width:{100 * v / top:.1f}%">'
            f"</div></td><td>{v:,} bytes</td></tr>" for k, v in totals.items()]
    return f'<table class="times">{"".join(rows)}</table>'


# ---------------------------------------------------------------- the page


def _section(title: str, body: str, cls: str = "") -> str:
    return f'<section class="{cls}"><h2>{html.escape(title)}</h2>{body}</section>'


def _list(items: list[str], empty: str) -> str:
    if not items:
        return f'<p class="note">{html.escape(empty)}</p>'
    return "<ul>" + "".join(f"<li><code>{html.escape(i)}</code></li>" for i in items) + "</ul>"


def _stages(view: GraphView) -> list[tuple[str, Graph, list[Group] | None]]:
    a = view.artifacts
    return [("partitioned" if view.partitioned else "traced", a.traced, None), ("optimized", a.optimized, None), ("fused", a.optimized, a.fusion.groups)]


def _tab(sid: str, caption: str, graph: Graph, groups: list[Group] | None, sources: dict[str, str],
         code: dict[int, str], kernel_prefix: str, data: dict) -> tuple[str, str]:
    """One stage's tab button and its pane (the SVG); its nodes' details go into `data`."""
    data["stages"][sid] = {"nodes": node_details(graph, groups, sources, code), "kernelPrefix": kernel_prefix}
    calls = sum(n.op == "call" for n in graph.nodes)
    return (f'<button class="tab" data-target="{sid}">{html.escape(caption)} ({calls} calls)</button>',
            f'<div class="pane" id="{sid}">{graph_svg(graph, groups, sid)}</div>')


def _graph_tabs(view: GraphView, prefix: str, sources: dict[str, str], data: dict) -> list[tuple[str, str]]:
    names = {g.id: view.kernel_name(g) for g in view.artifacts.fusion.groups} if view.kernel_name else {}
    exe = view.executable
    code = kernel_code(exe.artifacts["llvm_ir"], names) if exe is not None and names else {}
    kernel_prefix = f"{prefix}-{view.name}-"
    data["kernels"].update({f"{kernel_prefix}{k}": v for k, v in code.items()})
    return [_tab(f"{kernel_prefix}{stage}", f"{view.name} · {stage}", graph, groups, sources, code, kernel_prefix, data)
            for stage, graph, groups in _stages(view)]


def _graph_details(view: GraphView) -> str:
    plan = view.artifacts.fusion
    groups = "".join(f"<pre>{html.escape(format_group(g))}</pre>" for g in plan.groups)
    refusals = _list([str(r) for r in plan.rejections], "Nothing was refused.")
    parts = [_section(f"{view.name}: kernel times", f'<div class="scroll">{_times_table(view)}</div>')]
    if view.executable is not None and hasattr(view.executable, "plan"):
        p = view.executable.plan
        parts.append(_section(f"{view.name}: memory plan (arena {p.arena_bytes:,} bytes, peak live {p.peak_bytes:,})",
                              memory_svg(p, len(plan.groups))))
    parts.append(_section(f"{view.name}: fusion decisions ({len(plan.groups)} kernels, {len(plan.rejections)} refusals)",
                          f'<h3>refusals</h3><div class="scroll">{refusals}</div>'
                          f"<details><summary>groups</summary>{groups}</details>"))
    return '<div class="details">' + "".join(parts) + "</div>"


def _entry_html(k: int, entry: EntryView, sources: dict[str, str], data: dict) -> str:
    e = entry.explain
    head = f"<h2>entry {k}: {html.escape(e.title)}</h2>"
    if entry.recompile_reason:
        head += f'<p class="recompile">recompiled because {html.escape(entry.recompile_reason)}</p>'
    tabs = [_tab(f"e{k}-joint", "traced (forward + backward, before the partition)", entry.joint, None, sources,
                 {}, "", data)] if entry.joint is not None else []
    for view in entry.graphs:
        tabs += _graph_tabs(view, f"e{k}", sources, data)
    graphs = (f'<div class="tabs">{"".join(t for t, _ in tabs)}</div>'
              f'<div class="graphbox">{"".join(p for _, p in tabs)}</div>')
    details = "".join(_graph_details(v) for v in entry.graphs)
    times = [f"{stage}: {ms:.2f} ms" for stage, ms in e.times_ms.items()]
    info = (_section("guards", _list(e.guards, "no guards")) +
            _section("graph breaks", _list(entry.graph_breaks, "none: one graph")) +
            _section("compile time per stage", _list(times, "not measured")) +
            _section("memory: eager vs compiled", memory_bars(e.memory)))
    return f'<article class="entry">{head}<div class="main">{graphs}</div>{details}{info}</article>'


def render_html(title: str, entries: list[EntryView], *, sources: dict[str, str] | None = None,
                recompiles: list[str] | None = None) -> str:
    """The page for `entries` (one per compiled signature). sources: loc -> the text of that line."""
    data: dict = {"stages": {}, "kernels": {}}
    body = "".join(_entry_html(k, e, sources or {}, data) for k, e in enumerate(entries))
    summary = (f"<p>{len(entries)} compiled entr{'y' if len(entries) == 1 else 'ies'}; "
               f"recompiles: {len(recompiles or [])}</p>" + _list(recompiles or [], "no recompiles"))
    payload = json.dumps(data).replace("</", "<\\/")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body><header><h1>graphtorch compile report: {html.escape(title)}</h1>"
            f'{summary}<div id="errors"></div></header><aside id="details"><h2>node</h2>'
            '<p class="note">Click a node.</p></aside>'
            f'{body}<script type="application/json" id="report-data">{payload}</script>'
            f"<script>{SCRIPT}</script></body></html>")


CSS = """
body{font:13px/1.4 system-ui,sans-serif;margin:0 380px 0 0;padding:12px;color:#222}
h1{font-size:18px;margin:0 0 6px}h2{font-size:15px;margin:14px 0 6px}h3{font-size:13px}
code,pre{font:11px/1.35 ui-monospace,monospace}pre{white-space:pre-wrap;margin:4px 0}
.note{color:#777}.recompile{color:#a40}#errors:not(:empty){color:#fff;background:#c00;padding:6px}
.tabs{display:flex;flex-wrap:wrap;gap:4px;margin:6px 0}.tab{border:1px solid #bbb;background:#f4f4f4;
border-radius:4px;padding:3px 8px;cursor:pointer}.tab.active{background:#2b5fad;color:#fff}
.graphbox{border:1px solid #ccc;max-height:620px;overflow:auto;background:#fcfcfc}.pane{display:none;padding:8px}
.pane.active{display:block}svg.graph .edges path{fill:none;stroke:#9aa;stroke-width:1}
svg.graph .node{cursor:pointer}svg.graph .node rect{stroke:#667;stroke-width:1}
svg.graph .node.output rect{stroke:#000;stroke-width:2}svg.graph .node.selected rect{stroke:#e00;stroke-width:3}
svg.graph text{font:11px ui-monospace,monospace;fill:#111}svg.graph text.type{fill:#555;font-size:10px}
#details{position:fixed;right:0;top:0;bottom:0;width:360px;overflow:auto;background:#f7f7fa;
border-left:1px solid #ccc;padding:10px;box-sizing:border-box}
table.times{border-collapse:collapse;width:100%}table.times td,table.times th{padding:2px 6px;text-align:left;
white-space:nowrap}td.barcell{width:45%;font-size:11px}.bar{height:9px;background:#2b5fad}.bar.mem{background:#3a8}
.scroll{max-height:260px;overflow:auto;border:1px solid #e4e4e4}
.details{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:0 18px}
svg.memory rect.buffer{fill:#3a8;fill-opacity:.55;stroke:#174}article.entry{border-top:2px solid #2b5fad;margin-top:12px}
"""

SCRIPT = """
(function(){
  var errors = document.getElementById('errors');
  window.addEventListener('error', function(e){ errors.textContent += 'Uncaught ' + e.message + ' '; });
  var data = JSON.parse(document.getElementById('report-data').textContent);
  var details = document.getElementById('details');
  function row(label, text, pre){
    if(!text && text !== 0) return '';
    var el = document.createElement(pre ? 'pre' : 'p');
    el.textContent = text; return '<h3>' + label + '</h3>' + el.outerHTML;
  }
  function show(svg, g){
    var prev = document.querySelector('.node.selected'); if(prev) prev.classList.remove('selected');
    g.classList.add('selected');
    var stage = data.stages[svg.dataset.stage], node = stage.nodes[+g.dataset.node];
    var code = node.kernel === null ? '' : data.kernels[stage.kernelPrefix + node.kernel];
    details.innerHTML = '<h2>node</h2>' + row('IR', node.line, true) + row('user line', node.loc) +
      row('source', node.source, true) + row('from', node.origin) + row('fusion group', node.group) +
      row('kernel code', code || (node.group ? 'no generated code (interpreter backend)' : ''), true);
    details.dataset.shown = node.line;
  }
  document.querySelectorAll('svg.graph').forEach(function(svg){
    svg.addEventListener('click', function(ev){
      var g = ev.target.closest('.node'); if(g) show(svg, g);
    });
  });
  document.querySelectorAll('.tabs').forEach(function(tabs){
    var buttons = tabs.querySelectorAll('.tab');
    function open(b){
      buttons.forEach(function(x){ x.classList.remove('active');
        document.getElementById(x.dataset.target).classList.remove('active'); });
      b.classList.add('active'); document.getElementById(b.dataset.target).classList.add('active');
    }
    buttons.forEach(function(b){ b.addEventListener('click', function(){ open(b); }); });
    var fused = Array.prototype.filter.call(buttons, function(b){ return /fused/.test(b.textContent); });
    if(buttons.length) open(fused[0] || buttons[0]);
  });
  // open on the first node of the shown graph that has a kernel: the click handler runs once
  var shown = document.querySelectorAll('.pane.active svg.graph .node');
  var pick = Array.prototype.find.call(shown, function(g){
    var s = data.stages[g.closest('svg').dataset.stage]; return s.nodes[+g.dataset.node].kernel !== null; }) || shown[0];
  if(pick) pick.dispatchEvent(new MouseEvent('click', {bubbles: true}));
  document.body.dataset.ready = 'yes';
})();
"""
