"""graphtorch.explain(model, *inputs): compile for these inputs and say what each stage did."""

from __future__ import annotations

from .compiled import CompiledFunction, TraceBroke, flatten
from .compiler.explain import ExplainReport
from .segments import run_segmented


def _guards(key: tuple) -> list[str]:
    args, (training, grad_enabled, _) = key
    lines = []
    for i, a in enumerate(args):
        if a[0] == "tensor":
            shape, dtype, requires_grad = a[1:]
            lines.append(f"input {i}: {dtype} {list(shape)}, requires_grad={requires_grad}, contiguous")
        else:
            lines.append(f"input {i}: equal to {a[1]}")
    if training is not None:
        lines.append(f"module.training == {training}")
    lines.append(f"grad mode enabled == {grad_enabled}")
    return lines


def explain(model, *example_inputs, backend: str = "llvm") -> ExplainReport:
    from .nn import Module

    if isinstance(model, Module):
        fn = CompiledFunction(model.forward, backend=backend, module=model, name=type(model).__name__)
    else:
        fn = CompiledFunction(model, backend=backend)
    flat, spec = flatten((example_inputs, {}))
    key = fn.signature(flat)
    try:
        return explain_entry(fn, key, fn.build(key, flat, spec))
    except TraceBroke:
        return explain_breaks(fn, example_inputs)


def explain_breaks(fn: CompiledFunction, example_inputs: tuple) -> ExplainReport:
    """The report of a function that graph-breaks: each break with the user's file:line and
    reason (as torch._dynamo.explain), and the segments compiled between them."""
    run_segmented(fn.fn, example_inputs, {}, fn._segment, fn._note_break)
    segments = list(fn.segments.values())
    report = ExplainReport(title=fn.name, graphs={f"segment {i} (optimized)": g.artifacts.optimized
                                                  for i, g in enumerate(segments)})
    report.notes.append(f"graph breaks ({len(fn.graph_breaks)}), {len(segments)} compiled segments:")
    report.notes += [f"  {b}" for b in fn.graph_breaks]
    report.graph_breaks = list(fn.graph_breaks)
    return report


def explain_entry(fn: CompiledFunction, key: tuple, entry) -> ExplainReport:
    """The report of one compiled entry (graphtorch.report draws the same report as HTML)."""
    fwd = entry.forward
    report = ExplainReport.from_artifacts(fwd.artifacts, title=fn.name, guards=_guards(key))
    report.guards += [f"{what} unchanged" for what, _, _ in entry.guards]
    if entry.state is not None:
        report.guards += entry.state.describe()
    report.graph_breaks = []
    report.times_ms = {"tracing": entry.trace_seconds * 1e3, **report.times_ms}
    eager = sum(n.type.numel * n.type.dtype.itemsize for n in fwd.artifacts.traced.nodes if n.op == "call")
    report.memory["eager, all intermediates"] = eager
    if fwd.executable is not None:
        report.memory["compiled arena"] = fwd.executable.plan.arena_bytes
        report.memory["compiled peak live"] = fwd.executable.plan.peak_bytes
    if entry.backward is not None:
        bwd = entry.backward.artifacts
        report.graphs["backward (optimized)"] = bwd.optimized
        report.rejections += bwd.fusion.rejections
        report.times_ms.update({f"backward {k}": v for k, v in bwd.times_ms.items()})
        report.notes.append(f"backward fusion:\\n{bwd.fusion}")
    return report
