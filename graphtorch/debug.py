"""Why does the compiled result differ? `find_divergence` and `compile(..., check="float64")`.

Both run each compiled graph (forward, and backward when there is one) as usual, then run its
kernels once more with every kernel's output kept (the same groups, lowered by the same backend,
with each group root made a graph output) and the same graph in float64 on the interpreter, and
compare every intermediate (compiler/divergence.py says how, and why booleans and integers are
not compared). `find_divergence` returns the first node that leaves tolerance; a checked compiled
function raises `DivergenceError` with that report on the first call that diverges.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np

from .compiled import CompiledFunction, CompiledGraph, Entry, flatten
from .compiler.divergence import Divergence
from .compiler.divergence import find_divergence as _search
from .compiler.ir import Graph, Node
from .source_lines import code_file, source_line
from .tensor import Tensor

RTOL, ATOL = 1e-4, 1e-5  # float32 against float64 after a few hundred roundings: well inside


class DivergenceError(RuntimeError):
    """A checked compiled function's result left tolerance; `.divergence` has the details."""

    def __init__(self, divergence: Divergence):
        super().__init__(str(divergence))
        self.divergence = divergence


class CheckedFunction(CompiledFunction):
    """A CompiledFunction whose graphs compare every intermediate with float64 on each call;
    `on_divergence` receives the first node that leaves tolerance."""

    def __init__(self, fn: Callable, *, on_divergence: Callable[[Divergence], None], rtol: float = RTOL,
                 atol: float = ATOL, **kwargs):
        super().__init__(fn, **kwargs)
        self.on_divergence, self.rtol, self.atol = on_divergence, rtol, atol

    def build(self, key, flat, spec) -> Entry:
        entry = super().build(key, flat, spec)
        entry.forward = self._checked(entry.forward, "forward")
        if entry.backward is not None:
            entry.backward = self._checked(entry.backward, "backward")
        return entry

    def _checked(self, graph: CompiledGraph, which: str) -> CompiledGraph:
        probe = _KernelProbe(graph, self.backend, f"{self.name}.{which}")

        def run(arrays: list) -> list:
            inputs = [np.array(a) for a in arrays]  # the run may write donated inputs in place
            results = graph.run(arrays)
            found = probe.search(inputs, which, self.rtol, self.atol, results)
            if found is not None:
                found.source = source_line(found.loc, code_file(self.fn))
                self.on_divergence(found)
            return results

        return dataclasses.replace(graph, run=run)


class _KernelProbe:
    """The graph's kernels built once more with every group root as an output, so each kernel's
    result can be read; the interpreter backend has no kernels (its values are the interpreter's)."""

    def __init__(self, graph: CompiledGraph, backend: str, name: str):
        self.graph, self.backend, self.name = graph, backend, name
        self._exe = None

    def kernel_outputs(self, inputs: list[np.ndarray]) -> tuple[dict[Node, np.ndarray], dict[int, str]]:
        if self.backend == "interpreter":
            return {}, {}
        if self.backend != "llvm":
            raise NotImplementedError(f"find_divergence runs the kernels of the 'llvm' and 'interpreter' "
                                      f"backends, not {self.backend!r}")
        from .compiler.llvm import build
        from .compiler.llvm.module import kernel_name

        art = self.graph.artifacts
        roots = [o for g in art.fusion.groups for o in g.outputs]
        if not roots:
            return {}, {}
        if self._exe is None:
            probe = Graph(nodes=art.optimized.nodes, outputs=roots)
            self._exe = build(probe, art.fusion.groups, name=f"{self.name}.probe", timed=False)
        values = self._exe(*inputs)
        return dict(zip(roots, values)), {g.id: kernel_name(g) for g in art.fusion.groups}

    def search(self, inputs: list[np.ndarray], which: str, rtol: float, atol: float,
               results: list[np.ndarray] | None = None) -> Divergence | None:
        """The first divergence; `results`, the real call's outputs, stand for the kernels that
        compute graph outputs (so a fault of the real call's memory plan shows as a kernel fault)."""
        art = self.graph.artifacts
        kernels, names = self.kernel_outputs(inputs)
        if kernels and results is not None:
            kernels.update((o, r) for o, r in zip(art.optimized.outputs, results) if o in kernels)
        return _search(art.optimized, art.fusion.groups, inputs, kernels, rtol=rtol, atol=atol, name=which,
                       kernel_names=names)


def checked(model, *, rtol: float = RTOL, atol: float = ATOL, backend: str = "llvm", dump_dir: str | None = None):
    """`model` compiled so that every call compares each intermediate with float64 and raises
    DivergenceError on the first divergence (what `graphtorch.compile(model, check="float64")` returns)."""

    def fail(d: Divergence) -> None:
        raise DivergenceError(d)

    return _checked_like(model, fail, rtol, atol, backend, dump_dir)


def checked_compile(model, check: str, *, backend: str = "llvm", dump_dir: str | None = None):
    """What `graphtorch.compile(model, check=...)` returns; "float64" is the one check there is."""
    if check != "float64":
        raise ValueError(f"check must be None or 'float64', got {check!r}")
    return checked(model, backend=backend, dump_dir=dump_dir)


def _checked_like(model, on_divergence, rtol: float, atol: float, backend: str, dump_dir: str | None = None):
    """A CheckedFunction (or an OptimizedModule holding one) for a module, a function, or a compiled one."""
    from .nn import Module
    from .optimized_module import OptimizedModule

    if isinstance(model, OptimizedModule):
        model, backend = model._orig_mod, model._compiled.backend
    elif isinstance(model, CompiledFunction):
        model, backend = (model.module, model.backend) if model.module is not None else (model.fn, model.backend)
    options = dict(on_divergence=on_divergence, rtol=rtol, atol=atol, backend=backend, dump_dir=dump_dir)
    if isinstance(model, Module):
        wrapper = OptimizedModule(model, backend=backend, dump_dir=dump_dir)
        wrapper._compiled = CheckedFunction(model.forward, module=model, name=type(model).__name__, **options)
        return wrapper
    return CheckedFunction(model, **options)


def find_divergence(fn_or_module, *inputs, rtol: float = RTOL, atol: float = ATOL) -> Divergence | None:
    """Run `fn_or_module(*inputs)` compiled, its forward and (when outputs need gradients) its
    backward, and return the first node whose result leaves `atol + rtol * |float64 result|`, or None.

    It calls the function as a compiled call would: a function's first call runs eagerly, so a
    training step takes one eager and one compiled step. Gradients a module's backward leaves in
    `.grad` are restored afterwards.
    """
    found: list[Divergence] = []
    # a compiled function or module keeps its backend; anything else compiles for llvm
    checker = _checked_like(fn_or_module, found.append, rtol, atol, "llvm")
    function = checker._compiled if hasattr(checker, "_compiled") else checker
    with restored_grads(function.module):
        out = _call_compiled(checker, function, inputs)
        if not found:
            run_backward(out)
    return found[0] if found else None


def _call_compiled(checker, function: CheckedFunction, inputs: tuple):
    out = checker(*inputs)
    if not function.entries:  # that was a function's eager first call: now the compiled one
        out = checker(*inputs)
    return out


@contextmanager
def restored_grads(module):
    """Put back the `.grad` of every parameter of `module` (None: nothing) when the block ends."""
    saved = [(p, p._grad) for p in module.parameters()] if module is not None else []
    try:
        yield
    finally:
        for p, g in saved:
            p._grad = g


def run_backward(out) -> None:
    """Backward from every output that needs gradients, with ones as their gradients."""
    from . import autograd

    leaves = [t for t in flatten(out)[0] if isinstance(t, Tensor) and t.requires_grad]
    if leaves:
        autograd.backward(leaves, [_ones_like(t) for t in leaves])


def _ones_like(t: Tensor) -> Tensor:
    return Tensor._wrap(np.ones(t.shape, t.dtype.np))


__all__ = ["find_divergence", "checked", "checked_compile", "CheckedFunction", "DivergenceError"]
