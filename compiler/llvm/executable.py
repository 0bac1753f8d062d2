"""`build(graph, groups)`: plan, lower, JIT; and the Executable that guards and runs the result.

A call checks every input's shape and dtype against the graph (native code trusts them for its
bounds), makes non-contiguous inputs contiguous, allocates the outputs, fills the `void **` table
(only where an input or output array changed since the last call) and makes one native call per
thread. The table, the arena and the status words are allocated
once per Executable, so a call costs a few microseconds of Python.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ...runtime import JITError, LazyPart, compile_ir, get_num_threads, host_calls, pool
from ..errors import GraphtorchCompileError
from ..ir import Graph, Group, Node
from ..memory_plan import MemoryPlan, plan_memory
from .module import (
    ERROR_CODE,
    ERROR_DIM,
    ERROR_INDEX,
    ERROR_SIZE,
    HOST_ERROR,
    MPI_ERROR,
    STATUS_SLOTS,
    Layout,
    build_module,
)

ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)


def build(graph: Graph, groups: list[Group], *, name: str = "graph", num_threads: int | None = None,
          dump: str | Path | None = None, cache: bool = True, timed: bool | None = None,
          donate: list[tuple[int, int]] = ()) -> Executable:
    """Compile `groups` (in order) into native code for this CPU.

    num_threads fixes the thread count; None follows runtime.get_num_threads() at each call.
    dump: a directory that receives <name>.ll, <name>.opt.ll, <name>.s and <name>.plan.txt.
    timed: count each kernel's time (`Executable.kernel_times`); None follows $GRAPHTORCH_KERNEL_TIMES.
    donate: (output index, input index) pairs: the output may be written over the input's array,
    which the call then returns as that output (memory_plan decides which pairs are safe).
    """
    start = time.perf_counter()
    plan = plan_memory(graph, groups, donate=[(graph.outputs[o], graph.inputs[i]) for o, i in donate])
    groups = [g for g in groups if g.outputs[0] not in plan.views]  # a view is the same bytes: no kernel
    max_threads = num_threads or max(get_num_threads(), 1)
    timed = kernel_times_wanted() if timed is None else timed
    try:
        modules, layout = build_module(graph, groups, plan, name=name, max_threads=max_threads, timed=timed)
    except GraphtorchCompileError:
        raise
    except Exception as e:  # a lowering bug: say which, keep the traceback
        raise GraphtorchCompileError("GT054", f"the LLVM backend failed while lowering graph {name!r}: {e}",
                                     stage="lowered", hint="this is a graphtorch bug; please report it") from e
    built = time.perf_counter()
    # each module printed by the process that compiles it (runtime.LazyPart)
    parts = [LazyPart(m.__str__, unroll, cost) for m, unroll, cost in modules]
    try:
        native = compile_ir(parts, cache=cache)
    except JITError as e:
        if dump:
            _write(dump, name, {".ll": "\n".join(str(m) for m, _, _ in modules), ".llvm_error.txt": e.llvm_message})
        where = f" (see {dump})" if dump else " (pass dump=DIR to see the module)"
        raise GraphtorchCompileError("GT054", f"LLVM failed to compile graph {name!r}: {e}{where}", stage="lowered",
                                     hint="this is a graphtorch bug; please report it with the dump") from None
    exe = Executable(graph, groups, plan, layout, native, name, num_threads, max_threads)
    exe.build_ms = {"plan and LLVM IR": (built - start) * 1e3, "LLVM": (time.perf_counter() - built) * 1e3}
    if dump:
        _write(dump, name, {".ll": native.ir_text, ".opt.ll": exe.artifacts["llvm_ir_optimized"],
                            ".s": exe.artifacts["asm"], ".plan.txt": plan.report()})
    return exe


def kernel_times_wanted() -> bool:
    """$GRAPHTORCH_KERNEL_TIMES: build executables that count each kernel's time."""
    return os.environ.get("GRAPHTORCH_KERNEL_TIMES", "") not in ("", "0")


@functools.cache
def cycles_per_us() -> float:
    """The cycle counter's rate (llvm.readcyclecounter is rdtsc on x86: constant, not the core clock)."""
    native = compile_ir("declare i64 @llvm.readcyclecounter()\ndefine i64 @now() {\n  %t = call i64 "
                        "@llvm.readcyclecounter()\n  ret i64 %t\n}\n")
    now = ctypes.CFUNCTYPE(ctypes.c_int64)(native.address("now"))
    t0, c0 = time.perf_counter(), now()
    time.sleep(0.02)
    return (now() - c0) / ((time.perf_counter() - t0) * 1e6)


def _write(directory: str | Path, name: str, files: dict[str, str]) -> None:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for suffix, text in files.items():
        (d / f"{name}{suffix}").write_text(text)


def _aligned(nbytes: int, alignment: int = 64) -> tuple[np.ndarray, int]:
    """A byte buffer and the first `alignment`-aligned address in it."""
    raw = np.zeros(nbytes + alignment, np.uint8)
    addr = raw.ctypes.data
    return raw, addr + (-addr % alignment)


class _Artifacts(dict):
    """llvm_ir, llvm_ir_optimized and asm; the last two are made on first access (a cache hit skipped them)."""

    def __init__(self, native):
        super().__init__()
        self._native = native
        self["llvm_ir"] = native.ir_text

    def __missing__(self, key):
        make = {"llvm_ir_optimized": self._native.optimized_ir, "asm": self._native.assembly}
        if key not in make:
            raise KeyError(key)
        self[key] = make[key]()
        return self[key]


class Executable:
    def __init__(self, graph: Graph, groups: list[Group], plan: MemoryPlan, layout: Layout, native, name: str,
                 num_threads: int | None, max_threads: int):
        self.graph, self.groups, self.plan, self.layout, self.name = graph, groups, plan, layout, name
        self.native, self.from_cache = native, native.from_cache
        self.artifacts = _Artifacts(native)
        self.num_threads, self.max_threads = num_threads, max_threads
        self.parallel = layout.parallel  # some kernel is worth splitting across threads
        self._entry_address = native.address("run")
        self._entry = ENTRY(self._entry_address)
        self._inputs = graph.inputs
        self._specs = [(tuple(n.type.shape), n.type.dtype.np) for n in self._inputs]
        self._input_slots = [layout.slots[n] for n in self._inputs]
        self._donor = {o: graph.inputs.index(i) for o, i in plan.donated.items()}  # output -> input it overwrites
        self._out_slot_of = {o: layout.slots[o] for o in dict.fromkeys(graph.outputs)
                             if o.op == "call" and o not in self._donor}
        self._out_slots = [(slot, o.type.shape, o.type.dtype.np) for o, slot in self._out_slot_of.items()]
        self._lock = threading.Lock()
        self._spare = {slot: np.empty(shape, dtype) for slot, shape, dtype in self._out_slots}
        self._last_inputs: list[np.ndarray | None] = [None] * len(self._inputs)
        # memory that lives as long as the executable: status words, workspace, arena, constants
        self._table = (ctypes.c_void_p * layout.n_slots)()
        self._table_addr = ctypes.addressof(self._table)
        self._status = np.zeros(STATUS_SLOTS + len(groups) * layout.timed, np.int64)
        self.calls = 0
        self.build_ms: dict[str, float] = {}  # build's stages (none when loaded by compiler/llvm/saved.py)
        # page-aligned, so a kernel's buffers and its scratch sit at the same low address bits in
        # every process (4K aliasing and L1 sets depend on them; see conv.py's thread_scratch)
        self._workspace, ws = _aligned(layout.workspace_bytes, 4096)
        self._arena, arena = _aligned(plan.arena_bytes, 4096)
        self._table[Layout.STATUS], self._table[Layout.WORKSPACE], self._table[Layout.ARENA] = self._status.ctypes.data, ws, arena
        self._constants = [np.ascontiguousarray(c.value) for c in layout.constants]
        for c, arr in zip(layout.constants, self._constants):
            self._table[layout.slots[c]] = arr.ctypes.data
        for slot, arr in self._spare.items():
            self._table[slot] = arr.ctypes.data
        self._recipes = [self._recipe(o) for o in graph.outputs]

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        if len(arrays) != len(self._specs):
            raise TypeError(f"{self.name} expects {len(self._specs)} inputs, got {len(arrays)}")
        inputs = list(arrays)
        for k, ((shape, dtype), a) in enumerate(zip(self._specs, arrays)):  # the per-call guard, inline: it runs
            if a.__class__ is not np.ndarray or a.dtype != dtype or a.shape != shape or not a.flags.c_contiguous:
                inputs[k] = self._check(k, a)  # for every input of every call
        with self._lock:
            table, last = self._table, self._last_inputs
            for k, (slot, a) in enumerate(zip(self._input_slots, inputs)):
                if last[k] is not a:  # the same array (weights, mostly) is where the table already points
                    last[k] = a  # held, so its memory cannot move or be freed while the table points there
                    table[slot] = a.ctypes.data
            spare, getrefcount = self._spare, sys.getrefcount
            for slot, shape, dtype in self._out_slots:
                # last call's output array when nobody holds it any more (no view, no tensor): reusing
                # it saves the page faults of fresh memory, which cost as much as a memory-bound kernel
                if getrefcount(spare[slot]) > 2:  # the dict's reference and getrefcount's argument
                    spare[slot] = a = np.empty(shape, dtype)
                    table[slot] = a.ctypes.data
            self._run()
            self.calls += 1
            if self._status[ERROR_CODE]:
                self._raise_status()
            return [spare[k] if kind == 0 else inputs[k] if kind == 1 else self._copy_output(kind, k, inputs)
                    for kind, k in self._recipes]

    def _recipe(self, node: Node) -> tuple[int, int]:
        """How `__call__` produces graph output `node`: (0, slot) a computed output, (1, input index)
        a donated input, (2, input index) a copy of an input, (3, -1) a constant."""
        if node in self._donor:
            return 1, self._donor[node]
        if node.op == "input":
            return 2, self._inputs.index(node)
        if node.op == "constant":
            return 3, self.graph.outputs.index(node)
        return 0, self._out_slot_of[node]

    def _copy_output(self, kind: int, k: int, inputs: list[np.ndarray]) -> np.ndarray:
        return inputs[k].copy() if kind == 2 else np.array(self.graph.outputs[k].value)

    def _check(self, k: int, a) -> np.ndarray:
        shape, dtype = self._specs[k]
        if not isinstance(a, np.ndarray):
            a = np.asarray(a)
        if a.dtype != dtype:
            raise TypeError(f"{self.name}: input {k} ({self._inputs[k].target}) has dtype {a.dtype}, expected {dtype}")
        if a.shape != shape:
            raise ValueError(f"{self.name}: input {k} ({self._inputs[k].target}) has shape {a.shape}, expected {shape}")
        return a if a.flags.c_contiguous else np.ascontiguousarray(a)

    def _run(self) -> None:
        n = self.num_threads or min(get_num_threads(), self.max_threads)
        if n <= 1 or not self.parallel:
            self._entry(self._table_addr, 0, 1)
        else:
            pool().run_native(self._entry_address, self._table_addr, n)

    def kernel_times(self) -> list[tuple[Group, float]]:
        """(group, mean microseconds per call) for each kernel, slowest first: thread 0's time in the
        kernel and at the barrier after it. Needs build(timed=True) or GRAPHTORCH_KERNEL_TIMES=1."""
        if len(self._status) == STATUS_SLOTS:
            raise RuntimeError(f"{self.name} was built without kernel timing: set GRAPHTORCH_KERNEL_TIMES=1 "
                               "(or build(..., timed=True)) before compiling")
        us = self._status[STATUS_SLOTS:] / (cycles_per_us() * max(self.calls, 1))
        return sorted(zip(self.groups, us.tolist()), key=lambda gt: -gt[1])

    def _raise_status(self) -> None:
        code, bad, dim, size = (int(self._status[k]) for k in (ERROR_CODE, ERROR_INDEX, ERROR_DIM, ERROR_SIZE))
        self._status[ERROR_CODE] = 0
        error = host_calls.take_error()  # taken in any case, so a stale one never surfaces later
        if code == HOST_ERROR and error is not None:
            raise error
        if code == MPI_ERROR:
            from ...runtime.mpi import check

            check(bad, f"MPI_Allreduce in compiled graph {self.name!r}")
        raise IndexError(f"index {bad} is out of bounds for dimension {dim} with size {size}")
