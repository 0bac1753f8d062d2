"""`build(graph, groups)`: emit, compile for the device's SM, load; the CudaExecutable runs numpy arrays.

A call checks every input's shape and dtype against the graph (kernels trust them for their
bounds), copies the inputs into the device arena, launches the kernels in order on one stream,
raises IndexError if a kernel flagged an index out of bounds, and copies the outputs back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...runtime import cuda as rt
from ..errors import GraphtorchCompileError
from ..ir import Graph, Group
from .compile import Compiled, compile_module
from .emit import CudaModule, emit
from .prelude import ERROR_CODE, ERROR_DIM, ERROR_INDEX, ERROR_SIZE


def build(graph: Graph, groups: list[Group], *, name: str = "graph", arch: str | None = None,
          dump: str | Path | None = None, cache: bool = True) -> CudaExecutable:
    """Compile `groups` (in order) for the first CUDA device (or `arch`) and load them on it."""
    if not rt.is_available():
        raise GraphtorchCompileError("GT053", f"backend='cuda' needs a CUDA device: {rt.why_unavailable()}",
                                     stage="loaded", hint="use the default CPU backend on this machine")
    dev = rt.device()
    try:
        module = emit(graph, groups, name=name)
    except GraphtorchCompileError:
        raise
    except Exception as e:  # an emitter bug: say which, keep the traceback
        raise GraphtorchCompileError("GT050", f"the CUDA backend failed while lowering graph {name!r}: {e}",
                                     stage="lowered", hint="this is a graphtorch bug; please report it") from e
    compiled = compile_module(module, arch=arch or dev.arch, dump=dump, cache=cache)
    return CudaExecutable(graph, module, compiled, dev)


class CudaExecutable:
    def __init__(self, graph: Graph, module: CudaModule, compiled: Compiled, dev: rt.Device):
        self.name, self.module, self.compiled = module.name, module, compiled
        self._specs = [(n.target, n.type.shape, n.type.dtype.np) for n in graph.inputs]
        launches = [rt.KernelLaunch(la.kernel, la.grid, la.block, tuple(module.buffers[a].offset for a in la.args))
                    for la in module.launches]
        self.program = rt.Program(compiled.cubin or compiled.ptx.encode() + b"\0", launches, module.arena_bytes, dev)
        for number, value in module.constants.items():
            self.program.upload(module.buffers[number].offset, value)

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        if len(arrays) != len(self._specs):
            raise TypeError(f"{self.name} expects {len(self._specs)} inputs, got {len(arrays)}")
        m = self.module
        for k, (a, (target, shape, dtype), number) in enumerate(zip(arrays, self._specs, m.inputs)):
            a = np.asarray(a)
            if a.dtype != dtype:
                raise TypeError(f"{self.name}: input {k} ({target}) has dtype {a.dtype}, expected {dtype}")
            if a.shape != shape:
                raise ValueError(f"{self.name}: input {k} ({target}) has shape {a.shape}, expected {shape}")
            self.program.upload(m.buffers[number].offset, a)
        status = self.program.run()
        if status[ERROR_CODE]:
            raise IndexError(f"index {status[ERROR_INDEX]} is out of bounds for dimension {status[ERROR_DIM]} "
                             f"with size {status[ERROR_SIZE]}")
        outs = []
        for number in m.outputs:
            b = m.buffers[number]
            outs.append(self.program.download(b.offset, np.empty(b.shape, b.dtype)))
        return outs
