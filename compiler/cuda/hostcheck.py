"""Run a CudaModule's non-cooperative kernels on the CPU: a check of the emitted C without a GPU.

Elementwise kernels, thread-per-output reductions and the single ops' kernels have no barriers,
shuffles or shared memory, so one host thread running each with gridDim = blockDim = 1 executes
every grid-stride iteration: the same C, compiled by g++ with a small header standing in for
CUDA's built-ins. That checks the index mapping, the scalar rules and the opaque ops against the
numpy oracle. Cooperative kernels (tiled GEMM, block reductions) are not emulated: they are only
compiled here, and run where a GPU exists.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .emit import CudaModule
from .prelude import ERROR_CODE, ERROR_DIM, ERROR_INDEX, ERROR_SIZE, STATUS_SLOTS

HEADER = r"""
#include <math.h>
#include <string.h>
struct gt_dim3 { unsigned int x, y, z; };
static const gt_dim3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __shared__ static
static inline void __syncthreads() {}
template <typename T> static inline T __shfl_down_sync(unsigned, T v, int) { return v; }
static inline float __int_as_float(unsigned int x) { float f; memcpy(&f, &x, 4); return f; }
static inline double __longlong_as_double(unsigned long long x) { double f; memcpy(&f, &x, 8); return f; }
static inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long cmp, unsigned long long v) {
  unsigned long long old = *p; if (old == cmp) *p = v; return old;
}
template <typename T> static inline T atomicAdd(T* p, T v) { T old = *p; *p = old + v; return old; }
"""


def available() -> bool:
    return shutil.which("g++") is not None


class HostLibrary:
    """CUDA C source compiled by g++ against HEADER into a shared library, loaded with ctypes."""

    def __init__(self, source: str):
        self._tmp = tempfile.TemporaryDirectory(prefix="gt-hostcheck-")  # lives as long as the library
        src, lib = Path(self._tmp.name) / "module.cpp", Path(self._tmp.name) / "module.so"
        src.write_text(HEADER + source)
        done = subprocess.run(["g++", "-std=c++17", "-O1", "-shared", "-fPIC", "-w", "-o", str(lib), str(src)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"g++ rejected the module:\n{done.stderr[:4000]}")
        self.lib = ctypes.CDLL(str(lib))


class HostModule:
    """The module's kernels compiled for this CPU; `run` executes the launch list on numpy arrays."""

    def __init__(self, module: CudaModule):
        cooperative = [la.kernel for la in module.launches if la.cooperative]
        if cooperative:
            raise ValueError(f"kernels {cooperative} need a GPU (threads of a block cooperate)")
        self.module = module
        self.lib = HostLibrary(module.source).lib

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        m = self.module
        arena = np.zeros(m.arena_bytes + 256, np.uint8)
        base = arena.ctypes.data + (-arena.ctypes.data % 256)
        status = np.zeros(STATUS_SLOTS, np.int64)

        def view(number: int) -> np.ndarray:
            b = m.buffers[number]
            at = base - arena.ctypes.data + b.offset
            return arena[at:at + b.nbytes].view(b.dtype).reshape(b.shape)

        for number, value in [*zip(m.inputs, inputs), *m.constants.items()]:
            view(number)[...] = value
        for launch in m.launches:
            ptrs = [ctypes.c_void_p(base + m.buffers[a].offset) for a in launch.args]
            getattr(self.lib, launch.kernel)(*ptrs, ctypes.c_void_p(status.ctypes.data))
        if status[ERROR_CODE]:
            raise IndexError(f"index {status[ERROR_INDEX]} is out of bounds for dimension {status[ERROR_DIM]} "
                             f"with size {status[ERROR_SIZE]}")
        return [view(o).copy() for o in m.outputs]
