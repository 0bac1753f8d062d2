"""graphtorch.compile, and what it returns for a module: a Module sharing the original's parameters.

As torch's OptimizedModule, it holds the original as `_orig_mod` (so state_dict keys carry
that prefix) and forwards attribute access to it; `forward` is the compiled function.
"""

from __future__ import annotations

from .compiled import CompiledFunction
from .nn import Module


class OptimizedModule(Module):
    def __init__(self, mod: Module, *, backend: str = "llvm", dump_dir: str | None = None, fullgraph: bool = False):
        super().__init__()
        self._orig_mod = mod
        self._compiled = CompiledFunction(mod.forward, backend=backend, dump_dir=dump_dir, module=mod,
                                          name=type(mod).__name__, fullgraph=fullgraph)

    def forward(self, *args, **kwargs):
        return self._compiled(*args, **kwargs)

    @property
    def graph_breaks(self) -> list:
        """The graph breaks met so far (file:line and reason each; graphtorch.report lists them)."""
        return self._compiled.graph_breaks

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["_orig_mod"], name)

    def train(self, mode: bool = True):
        self._orig_mod.train(mode)
        return super().train(mode)

    def __repr__(self) -> str:
        return f"OptimizedModule(\n  (_orig_mod): {repr(self._orig_mod).replace(chr(10), chr(10) + '  ')}\n)"


def compile(model=None, *, fullgraph: bool = False, dynamic=None, backend: str = "llvm", mode=None,
            options=None, disable: bool = False, dump_dir: str | None = None, check: str | None = None):
    """graphtorch.compile(model_or_function): the same call shape as torch.compile.

    fullgraph=False (the default): code the trace cannot capture (a branch on a tensor's value,
    .item(), print, an op with no primitive) runs eagerly, listed in the compiled object's
    `graph_breaks` and logged with GRAPHTORCH_LOGS=graph_breaks; fullgraph=True raises the coded error.
    check="float64": every call also compares each intermediate with float64 and raises
    graphtorch.debug.DivergenceError at the first divergence (slow: for debugging).
    """
    if model is None:
        return lambda m: compile(m, fullgraph=fullgraph, backend=backend, dump_dir=dump_dir, disable=disable,
                                 check=check)
    if disable:
        return model
    if backend in ("inductor", "eager", "aot_eager"):  # torch's backend names: ours is the compiler
        backend = "llvm"
    if check is not None:
        from .debug import checked_compile

        return checked_compile(model, check, backend=backend, dump_dir=dump_dir)
    if isinstance(model, Module):
        return OptimizedModule(model, backend=backend, dump_dir=dump_dir, fullgraph=fullgraph)
    return CompiledFunction(model, backend=backend, dump_dir=dump_dir, fullgraph=fullgraph)
