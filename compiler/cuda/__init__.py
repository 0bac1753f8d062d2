"""The CUDA backend: fusion groups rendered as CUDA C, compiled with NVRTC (or nvcc) to PTX/cubin.

    module = emit(graph, groups)                          # CudaModule: .source, .launches, .buffers
    compiled = compile_module(module, arch="sm_90", dump=DIR)  # Compiled: .cubin, .ptx
    exe = build(graph, groups)                            # on a GPU: exe(*arrays) -> outputs

graphtorch.runtime.cuda loads and runs the result where a GPU exists; docs/cuda.md says more.
"""

from .compile import ARCHS, Compiled, compile_module, compile_source, compilers
from .emit import Buffer, CudaModule, emit
from .executable import CudaExecutable, build
from .kernel import Launch

__all__ = ["ARCHS", "Buffer", "Compiled", "CudaExecutable", "CudaModule", "Launch", "build", "compile_module",
           "compile_source", "compilers", "emit"]
