"""graphtorch.report(model_or_fn, *inputs, path=...): the compile report as one HTML file.

It gathers, per compiled entry, what `graphtorch.explain` reports (explaining.explain_entry) and
the compiled graphs with their executables; compiler/report.py draws the page. With
$GRAPHTORCH_REPORT_DIR set, every compiled entry writes its own report there as it is built.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager

from .compiled import CompiledFunction, why_different
from .compiler.report import EntryView, GraphView, render_html
from .explaining import explain_entry
from .source_lines import code_file, source_line


def report(model_or_fn, *example_inputs, path: str = "graphtorch-report.html", runs: int = 3) -> str:
    """Write the report of `model_or_fn` (a module, a function, or what graphtorch.compile made of
    one) to `path` and return the path. With example inputs it is compiled with the kernel timers
    on and called `runs` times (a function's first call runs eagerly, as any compiled function's
    does; a training step therefore takes its steps); without, the entries compiled so far are drawn.
    """
    from .optimized_module import compile

    callable_ = model_or_fn if _compiled_function(model_or_fn) is not None else compile(model_or_fn)
    fn = _compiled_function(callable_)
    if example_inputs:
        _call(callable_, fn, example_inputs, runs)
    if not fn.entries:
        raise ValueError(f"graphtorch.report: {fn.name} has no compiled entries yet: pass example inputs, "
                         "e.g. graphtorch.report(model, x)")
    return write_report(fn, path)


def _compiled_function(obj) -> CompiledFunction | None:
    inner = getattr(obj, "_compiled", obj)  # an OptimizedModule holds its CompiledFunction there
    return inner if isinstance(inner, CompiledFunction) else None


@contextmanager
def kernel_timers():
    """Executables built inside count each kernel's time (the backend reads the variable at build)."""
    old = os.environ.get("GRAPHTORCH_KERNEL_TIMES")
    os.environ["GRAPHTORCH_KERNEL_TIMES"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["GRAPHTORCH_KERNEL_TIMES"]
        else:
            os.environ["GRAPHTORCH_KERNEL_TIMES"] = old


def _call(callable_, fn: CompiledFunction, inputs: tuple, runs: int) -> None:
    """`runs` compiled calls, each with its backward when the outputs need gradients (so the
    backward's kernels are timed too); the gradients that leaves on a module are put back."""
    from .debug import restored_grads, run_backward

    with kernel_timers(), restored_grads(fn.module):
        out = callable_(*inputs)
        if not fn.entries:  # that was a function's eager first call
            out = callable_(*inputs)
        run_backward(out)
        for _ in range(runs - 1):
            run_backward(callable_(*inputs))


def write_report(fn: CompiledFunction, path: str, keys: list | None = None) -> str:
    """The report of `fn`'s entries (those of `keys`, or all) written to `path`."""
    order = list(fn.entries)
    reasons = {key: why_different(order[k - 1], key) for k, key in enumerate(order) if k}
    views = [_entry_view(fn, key, reasons.get(key)) for key in (keys or order)]
    locs = {n.loc for v in views for g in v.graphs for n in g.artifacts.traced.nodes if n.loc}
    hints = code_file(fn.fn)
    sources = {loc: text for loc in locs if (text := source_line(loc, hints))}
    page = render_html(fn.name, views, sources=sources, recompiles=[f"{fn.name}: {r}" for r in reasons.values()])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path


def _entry_view(fn: CompiledFunction, key: tuple, reason: str | None) -> EntryView:
    entry = fn.entries[key]
    split = entry.backward is not None
    graphs = [GraphView(name, g.artifacts, g.executable, _kernel_namer(g), split)
              for name, g in (("forward", entry.forward), ("backward", entry.backward)) if g is not None]
    breaks = [str(b) for b in getattr(fn, "graph_breaks", None) or []]
    return EntryView(explain_entry(fn, key, entry), graphs, reason, breaks, entry.joint)


def _kernel_namer(graph):
    """Group -> kernel function name, for the LLVM backend's executables (the others: None)."""
    if graph.executable is None:
        return None
    from .compiler.llvm import Executable
    from .compiler.llvm.module import kernel_name

    return kernel_name if isinstance(graph.executable, Executable) else None


def write_entry_report(fn: CompiledFunction, key: tuple) -> str:
    """$GRAPHTORCH_REPORT_DIR/<name>-<k>.html for entry `key` (k: its position among fn's entries)."""
    directory = os.environ["GRAPHTORCH_REPORT_DIR"]
    k = list(fn.entries).index(key)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", fn.name)
    return write_report(fn, os.path.join(directory, f"{name}-{k}.html"), [key])
