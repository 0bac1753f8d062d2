"""A persistent pool of threads for native kernels, and the thread-count setting.

A parallel run calls a native `fn(arg, tid, n)` on workers 1..n-1 and on the caller as tid 0,
and returns when all have returned. Handing work over through a Python queue cost 20-100 us per
run: a worker asleep in the kernel takes that long to wake (longer on a VM, whose idle vCPU has
halted). So, as OpenMP does, a worker spins in native code for a few milliseconds after its last
job, watching a generation word, and only then returns to Python to sleep on its queue; a run
that finds a worker asleep wakes it through the queue. A training loop's steps come closer
together than the spin, so its runs cost a cache-line hand-off (~1 us), not a wake-up.

The state the threads share is one int64 array, each field on its own cache line:
  GENERATION  bumped by each run, after the job's words are written
  FN, ARG, N  the job: fn(arg, tid, n) for tid < n
  DONE        how many workers have finished the current job
  SLEEPING+8*tid  1 while worker tid is asleep in Python (or about to be)
A worker about to sleep sets its flag and then reads the generation once more; a run bumps the
generation and then reads the flags. Both are seq_cst, so at least one of them sees the other: a
run is never missed, though a worker may now and then get a wake-up it did not need.
"""

from __future__ import annotations

import ctypes
import functools
import os
import queue
import threading
from collections.abc import Callable

import numpy as np

from .jit import NativeModule, compile_ir

_num_threads = os.cpu_count() or 1

GENERATION, FN, ARG, N, DONE, SLEEPING = 0, 8, 9, 10, 16, 24
MAX_WORKERS = 1023
SPIN_CYCLES = 3_000_000  # how long an idle worker spins before it sleeps: ~1 ms of a 2.6-3.5 GHz cycle counter

_NATIVE_IR = f"""
declare void @llvm.x86.sse2.pause()
declare i64 @llvm.readcyclecounter()
declare i32 @sched_yield()

; the posted job's fn(arg, tid, n)
define internal void @run_job(ptr %s, i64 %tid, i64 %n) {{
  %pfn = getelementptr i64, ptr %s, i64 {FN}
  %fn = load i64, ptr %pfn
  %f = inttoptr i64 %fn to ptr
  %parg = getelementptr i64, ptr %s, i64 {ARG}
  %arg = load i64, ptr %parg
  %a = inttoptr i64 %arg to ptr
  call void %f(ptr %a, i64 %tid, i64 %n)
  ret void
}}

define void @gt_pool_post(ptr %s, i64 %fn, i64 %arg, i64 %n) {{
  %pfn = getelementptr i64, ptr %s, i64 {FN}
  store i64 %fn, ptr %pfn
  %parg = getelementptr i64, ptr %s, i64 {ARG}
  store i64 %arg, ptr %parg
  %pn = getelementptr i64, ptr %s, i64 {N}
  store i64 %n, ptr %pn
  %pdone = getelementptr i64, ptr %s, i64 {DONE}
  store atomic i64 0, ptr %pdone monotonic, align 8
  %old = atomicrmw add ptr %s, i64 1 seq_cst
  ret void
}}

; worker tid's loop: run each new generation's job, return the last generation seen once idle for `budget` cycles
define i64 @gt_pool_work(ptr %s, i64 %tid, i64 %seen0, i64 %budget) {{
entry:
  %k = mul i64 %tid, 8
  %kflag = add i64 %k, {SLEEPING}
  %pflag = getelementptr i64, ptr %s, i64 %kflag
  store atomic i64 0, ptr %pflag seq_cst, align 8
  br label %idle
idle:
  %seen = phi i64 [%seen0, %entry], [%gen, %ran]
  %t0 = call i64 @llvm.readcyclecounter()
  br label %spin
spin:
  %g = load atomic i64, ptr %s acquire, align 8
  %new = icmp ne i64 %g, %seen
  br i1 %new, label %job, label %pause
pause:
  call void @llvm.x86.sse2.pause()
  %t = call i64 @llvm.readcyclecounter()
  %idled = sub i64 %t, %t0
  %long = icmp ugt i64 %idled, %budget
  br i1 %long, label %sleep, label %spin
sleep:
  %was = atomicrmw xchg ptr %pflag, i64 1 seq_cst
  %g2 = load atomic i64, ptr %s seq_cst, align 8
  %none = icmp eq i64 %g2, %seen
  br i1 %none, label %out, label %woke
woke:
  store atomic i64 0, ptr %pflag seq_cst, align 8
  br label %job
job:
  %gen = phi i64 [%g, %spin], [%g2, %woke]
  %pn = getelementptr i64, ptr %s, i64 {N}
  %n = load i64, ptr %pn
  %mine = icmp slt i64 %tid, %n
  br i1 %mine, label %call, label %ran
call:
  call void @run_job(ptr %s, i64 %tid, i64 %n)
  %pdone = getelementptr i64, ptr %s, i64 {DONE}
  %d = atomicrmw add ptr %pdone, i64 1 release
  br label %ran
ran:
  br label %idle
out:
  ret i64 %seen
}}

; the caller's part: fn(arg, 0, n), then wait for the n-1 workers (spin, then give the core away)
define void @gt_pool_join(ptr %s) {{
entry:
  %pn = getelementptr i64, ptr %s, i64 {N}
  %n = load i64, ptr %pn
  call void @run_job(ptr %s, i64 0, i64 %n)
  %workers = sub i64 %n, 1
  %pdone = getelementptr i64, ptr %s, i64 {DONE}
  br label %wait
wait:
  %spins = phi i64 [0, %entry], [%spins1, %pause], [%spins1, %yield]
  %d = load atomic i64, ptr %pdone acquire, align 8
  %all = icmp sge i64 %d, %workers
  br i1 %all, label %out, label %more
more:
  %spins1 = add i64 %spins, 1
  %patient = icmp slt i64 %spins, 4000
  br i1 %patient, label %pause, label %yield
pause:
  call void @llvm.x86.sse2.pause()
  br label %wait
yield:
  %r = call i32 @sched_yield()
  br label %wait
out:
  ret void
}}
"""

_NativeFn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)


def set_num_threads(n: int) -> None:
    """The number of threads compiled code uses (like torch.set_num_threads)."""
    global _num_threads
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads expects a positive integer, but got {n!r}")
    _num_threads = n


def get_num_threads() -> int:
    return _num_threads


@functools.cache
def _native() -> tuple[NativeModule, Callable, Callable, Callable]:
    native = compile_ir(_NATIVE_IR)
    post = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)
    work = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)
    join = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
    return (native, post(native.address("gt_pool_post")), work(native.address("gt_pool_work")),
            join(native.address("gt_pool_join")))


class ThreadPool:
    def __init__(self) -> None:
        self._state = np.zeros(SLEEPING + 8 * (MAX_WORKERS + 1), np.int64)
        self._address = self._state.ctypes.data
        self._wake: list[queue.SimpleQueue] = []  # worker tid's is _wake[tid - 1]
        self._lock = threading.Lock()  # one parallel run at a time: the job words are shared

    def run_native(self, fn: int, arg: int, n: int) -> None:
        """Call the native fn(arg, tid, n) for tid in 0..n-1 in parallel (tid 0 on this thread);
        return when all have returned."""
        if n <= 1:
            _NativeFn(fn)(arg, 0, 1)
            return
        with self._lock:
            _, post, _, join = _native()
            self._grow(n - 1)
            post(self._address, fn, arg, n)
            state = self._state
            for tid in range(1, n):
                if state[SLEEPING + 8 * tid]:
                    self._wake[tid - 1].put(None)
            join(self._address)

    def run(self, fn: Callable[[int, int], None], n: int) -> None:
        """Call the Python fn(tid, n) for tid in 0..n-1 the same way; re-raise the first error
        once all have returned."""
        errors: list[BaseException] = []

        def call(_arg, tid: int, n: int) -> None:
            try:
                fn(tid, n)
            except BaseException as e:  # noqa: BLE001 - cannot raise through native code: re-raised below
                errors.append(e)

        native_call = _NativeFn(call)
        self.run_native(ctypes.cast(native_call, ctypes.c_void_p).value, 0, n)
        if errors:
            raise errors[0]

    def _grow(self, workers: int) -> None:
        if workers > MAX_WORKERS:
            raise ValueError(f"the thread pool runs at most {MAX_WORKERS + 1} threads, but {workers + 1} were asked for")
        while len(self._wake) < workers:
            wake: queue.SimpleQueue = queue.SimpleQueue()
            self._wake.append(wake)
            generation = int(self._state[GENERATION])  # read before the run that needs it is posted
            threading.Thread(target=self._work, args=(len(self._wake), wake, generation), daemon=True,
                             name=f"graphtorch-worker-{len(self._wake)}").start()

    def _work(self, tid: int, wake: queue.SimpleQueue, seen: int) -> None:
        work = _native()[2]
        while True:
            seen = work(self._address, tid, seen, SPIN_CYCLES)
            wake.get()


_pool = ThreadPool()


def pool() -> ThreadPool:
    return _pool
