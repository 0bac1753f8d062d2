"""The runtime alone: JIT from IR text, the object cache's checks, the thread pool."""

import ctypes
import os
import threading

import pytest

from graphtorch.runtime import JITError, ObjectCache, Part, compile_ir, get_num_threads, jit, pool, set_num_threads
from graphtorch.runtime.cache import cache_dir

ADD = """
declare double @erf(double)
define double @f(double %x) {
  %y = call double @erf(double %x)
  %z = fadd double %y, 1.0
  ret double %z
}
"""


def test_jit_calls_libm_and_exposes_dumps(tmp_path):
    native = compile_ir(ADD, cache=ObjectCache(tmp_path))
    f = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)(native.address("f"))
    assert f(0.0) == 1.0
    assert "define" in native.optimized_ir() and "erf" in native.assembly()
    again = compile_ir(ADD, cache=ObjectCache(tmp_path))
    assert again.from_cache and not native.from_cache
    assert ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)(again.address("f"))(0.0) == 1.0


def test_bad_ir_is_a_jit_error():
    with pytest.raises(JITError) as e:
        compile_ir("define i32 @f() { ret i64 0 }", cache=False)
    assert e.value.llvm_message


@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign", "garbage"])
def test_cache_rejects_damaged_entries(tmp_path, damage):
    cache = ObjectCache(tmp_path)
    key, other = ObjectCache.key("ir", "sig"), ObjectCache.key("ir2", "sig")
    cache.store(key, b"\x7fELF object bytes")
    path = cache.path(key)
    blob = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(blob[:-3])
    elif damage == "flip":
        path.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    elif damage == "foreign":  # a valid entry for another key, copied over this one
        cache.store(other, b"other object")
        path.write_bytes(cache.path(other).read_bytes())
    else:
        path.write_bytes(b"not a cache entry")
    assert cache.load(key) is None and cache.rejected == 1
    cache.store(key, b"\x7fELF object bytes")
    assert cache.load(key) == b"\x7fELF object bytes" and cache.hits == 1


def test_cache_key_separates_parts():
    assert ObjectCache.key("ab", "c") != ObjectCache.key("a", "bc")


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHTORCH_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("GRAPHTORCH_CACHE_DIR")
    assert cache_dir().name == "graphtorch"


def test_unwritable_cache_is_not_an_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    ObjectCache(blocker / "sub").store("k" * 64, b"obj")  # the directory cannot be created


def test_pool_runs_every_tid_on_distinct_threads():
    seen = {}
    lock = threading.Lock()

    def work(tid, n):
        with lock:
            seen[tid] = (n, threading.get_ident())

    pool().run(work, 3)
    assert sorted(seen) == [0, 1, 2] and all(n == 3 for n, _ in seen.values())
    assert len({ident for _, ident in seen.values()}) == 3
    assert seen[0][1] == threading.get_ident()  # tid 0 runs on the caller


def test_pool_reraises_a_worker_error_after_all_finish():
    def work(tid, n):
        if tid == 1:
            raise RuntimeError("worker failed")

    with pytest.raises(RuntimeError, match="worker failed"):
        pool().run(work, 2)
    pool().run(lambda tid, n: None, 2)  # still usable


def test_pool_wakes_workers_that_went_to_sleep():
    import time

    from graphtorch.runtime.threads import SPIN_CYCLES

    for gap in (0.0, 0.05):  # back to back (workers spinning), then after they sleep on their queues
        seen = []
        time.sleep(gap)
        pool().run(lambda tid, n, seen=seen: seen.append(tid), 3)
        assert sorted(seen) == [0, 1, 2]
    assert SPIN_CYCLES < 0.05 * 5e9  # the 50 ms gap outlasts the spin on any clock up to 5 GHz


def test_pool_runs_a_native_function_on_every_thread():
    import numpy as np

    native = compile_ir("define void @mark(ptr %a, i64 %tid, i64 %n) {\n"
                        "  %p = getelementptr i64, ptr %a, i64 %tid\n  %v = add i64 %n, 100\n"
                        "  store i64 %v, ptr %p\n  ret void\n}\n", cache=False)
    for n in (1, 2, 4):
        marks = np.zeros(4, np.int64)
        pool().run_native(native.address("mark"), marks.ctypes.data, n)
        assert marks.tolist() == [n + 100] * n + [0] * (4 - n)


def test_set_num_threads_validates():
    saved = get_num_threads()
    try:
        set_num_threads(3)
        assert get_num_threads() == 3
        with pytest.raises(ValueError, match="positive integer"):
            set_num_threads(0)
    finally:
        set_num_threads(saved)


# ---------------------------------------------------------------- several parts, compiled in parallel

CALLER = """
declare double @twice(double)
define double @f(double %x) {
  %y = call double @twice(double %x)
  %z = fadd double %y, 1.0
  ret double %z
}
"""
CALLEE = """
define double @twice(double %x) {
  %y = fmul double %x, 2.0
  ret double %y
}
"""


def _f(native):
    return ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)(native.address("f"))


def test_parts_link_into_one_engine_and_cache_separately(tmp_path):
    cache = ObjectCache(tmp_path)
    native = compile_ir([Part(CALLER, unroll=False), Part(CALLEE)], cache=cache)
    assert _f(native)(3.0) == 7.0 and not native.from_cache
    assert native.ir_text.index("@f") < native.ir_text.index("define double @twice")
    assert "define" in native.optimized_ir() and "twice" in native.assembly()
    assert len(list(tmp_path.iterdir())) == 2  # one object per part
    again = compile_ir([Part(CALLER, unroll=False), Part(CALLEE)], cache=cache)
    assert again.from_cache and _f(again)(0.5) == 2.0
    assert cache.hits == 2
    # the unroll flag is part of the key: the same text optimized otherwise is another object
    compile_ir([Part(CALLER, unroll=True), Part(CALLEE)], cache=cache)
    assert len(list(tmp_path.iterdir())) == 3


def test_a_part_compiles_in_a_forked_worker(monkeypatch):
    if not jit._can_fork(2):
        pytest.skip("no fork here (not Linux, or one core): parts compile one after the other")
    forked = []
    real = jit._fork
    monkeypatch.setattr(jit, "_fork", lambda work: forked.append(work) or real(work))
    native = compile_ir([CALLER, CALLEE], cache=False)
    assert _f(native)(1.0) == 3.0 and len(forked) == min(os.cpu_count(), 2) - 1  # a worker per other core


def test_a_failed_worker_is_redone_here(monkeypatch):
    class Dead:
        def result(self):
            return None

    monkeypatch.setattr(jit, "_can_fork", lambda n: True)
    monkeypatch.setattr(jit, "_fork", lambda work: Dead())
    assert _f(compile_ir([CALLER, CALLEE], cache=False))(2.0) == 5.0
    with pytest.raises(JITError, match="rejected"):  # the redo reports the bad part's own error
        compile_ir([CALLER, "define i32 @twice() { ret i64 0 }"], cache=False)


def test_a_worker_that_writes_nothing_or_fails_yields_no_object():
    if not jit._can_fork(2):
        pytest.skip("no fork here")
    compile_in_child = lambda texts: jit._fork(lambda: [jit._compile_object(Part(t)) for t in texts])
    assert compile_in_child([CALLEE, "this is not LLVM IR"]).result() is None
    objects = compile_in_child([CALLEE, CALLER]).result()
    assert len(objects) == 2 and all(o[:4] == b"\x7fELF" for o in objects)
