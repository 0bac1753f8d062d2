"""Run a CudaModule's kernels on the CPU: a faithful check of the emitted C without a GPU.

The module's source is compiled by g++ against emulation_header.HEADER (CUDA's built-ins, fibers
for the threads of a block, shared memory with a race detector, warp collectives, atomics) after
instrument.for_emulation has rewritten its shared-memory accesses. Every kernel runs with its real
launch geometry: blocks one after another, the threads of a block concurrently as fibers where
they cooperate (tiled GEMM/conv, block reductions), a plain call per thread where they do not.
A race, a deadlock at a barrier, a bad warp collective or an index out of bounds (shared memory,
or a buffer argument's extent) raises `EmulationError` naming the kernel and the emitted line.

    HostModule(module).run(inputs) -> outputs      # the whole launch list on numpy arrays
    HostLibrary(source).launch(kernel, grid, block, pointers, extents)   # one launch (the fake driver's)
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .emit import CudaModule
from .emulation_header import HEADER
from .instrument import KernelInfo, for_emulation, kernels_of
from .prelude import ERROR_CODE, ERROR_DIM, ERROR_INDEX, ERROR_SIZE, STATUS_SLOTS

Dim3 = tuple[int, int, int]
# -O0: at test shapes g++ is most of the cost, and -O1 doubles it for kernels that run milliseconds
GXX_FLAGS = ("-std=c++17", "-O0", "-fPIC", "-w")


class EmulationError(RuntimeError):
    """A kernel did something a GPU would not run correctly: a race, a divergent barrier, ..."""

    def __init__(self, kernel: str, line: int, message: str, source_line: str):
        self.kernel, self.line = kernel, line
        super().__init__(f"kernel {kernel}: {message}\n  line {line}: {source_line.strip()}")


def available() -> bool:
    return shutil.which("g++") is not None


@functools.cache
def _precompiled_header() -> Path:
    """HEADER as a g++ precompiled header, built once per process: it halves each module's compile."""
    folder = Path(tempfile.mkdtemp(prefix="gt-hostcheck-pch-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    header = folder / "gt_emulation.h"
    header.write_text(HEADER)
    _gxx([*GXX_FLAGS, "-x", "c++-header", "-o", f"{header}.gch", str(header)], "the emulation header")
    return header


def _gxx(args: list[str], what: str) -> None:
    done = subprocess.run(["g++", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"g++ rejected {what}:\n{done.stderr[:4000]}")


class HostLibrary:
    """CUDA C source compiled by g++ for the emulator into a shared library, loaded with ctypes."""

    def __init__(self, source: str):
        self.source = source
        self.kernels: dict[str, KernelInfo] = kernels_of(source)
        self._tmp = tempfile.TemporaryDirectory(prefix="gt-hostcheck-")  # lives as long as the library
        src, lib = Path(self._tmp.name) / "module.cpp", Path(self._tmp.name) / "module.so"
        src.write_text(for_emulation(source))
        _gxx([*GXX_FLAGS, "-include", str(_precompiled_header()), "-shared", "-o", str(lib), str(src)], "the module")
        self.lib = ctypes.CDLL(str(lib))
        self.lib.gt_emu_error.restype = ctypes.c_int

    def launch(self, kernel: str, grid: Dim3, block: Dim3, pointers: list[int], extents: list[int]) -> None:
        """Run `kernel` over grid x block threads on these arguments (device pointers are host addresses);
        extents[k] is how many bytes from pointers[k] the kernel may touch."""
        info = self.kernels[kernel]
        if not len(pointers) == len(extents) == len(info.pointers):
            raise ValueError(f"kernel {kernel} takes {len(info.pointers)} pointers ({', '.join(info.pointers)}), "
                             f"got {len(pointers)} pointers and {len(extents)} extents")
        args = (ctypes.c_void_p * len(pointers))(*pointers)
        sizes = (ctypes.c_ulonglong * len(extents))(*extents)
        geometry = (ctypes.c_uint * 6)(*grid, *block)
        if getattr(self.lib, f"gt_launch_{kernel}")(args, sizes, geometry):
            self._raise(kernel)

    def _raise(self, kernel: str) -> None:
        text = ctypes.create_string_buffer(2048)
        line = self.lib.gt_emu_error(text, len(text))
        lines = self.source.split("\n")
        source_line = lines[line - 1] if 0 < line <= len(lines) else ""
        raise EmulationError(kernel, line, text.value.decode(errors="replace"), source_line)


class HostModule:
    """The module's kernels compiled for this CPU; `run` executes the launch list on numpy arrays."""

    def __init__(self, module: CudaModule):
        self.module = module
        self.library = HostLibrary(module.source)

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
            pointers = [base + m.buffers[a].offset for a in launch.args]
            extents = [m.buffers[a].nbytes for a in launch.args]
            self.library.launch(launch.kernel, launch.grid, launch.block, [*pointers, status.ctypes.data],
                                [*extents, status.nbytes])
        if status[ERROR_CODE]:
            raise IndexError(f"index {status[ERROR_INDEX]} is out of bounds for dimension {status[ERROR_DIM]} "
                             f"with size {status[ERROR_SIZE]}")
        return [view(o).copy() for o in m.outputs]
