"""Parts printed by the process that compiles them (runtime.LazyPart): the same code and cache
entries as text parts, a worker's part never printed in this process, and a failed worker redone
here."""

from __future__ import annotations

import ctypes
import time

import pytest

from graphtorch.runtime import JITError, LazyPart, ObjectCache, Part, compile_ir, jit

CALLER = "declare double @twice(double)\ndefine double @f(double %x) {\n  %y = call double @twice(double %x)\n" \
         "  %z = fadd double %y, 1.0\n  ret double %z\n}\n"
CALLEE = "define double @twice(double %x) {\n  %y = fmul double %x, 2.0\n  ret double %y\n}\n"


def _f(native):
    return ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)(native.address("f"))


def _lazy(text: str, printed: list, cost: float) -> LazyPart:
    return LazyPart(lambda: printed.append(text) or text, unroll=False, cost=cost)


def test_lazy_parts_give_the_text_parts_code_and_cache_entries(tmp_path):
    cache = ObjectCache(tmp_path)
    printed: list[str] = []
    native = compile_ir([_lazy(CALLER, printed, 2), _lazy(CALLEE, printed, 1)], cache=cache)
    assert _f(native)(3.0) == 7.0 and not native.from_cache
    assert native.ir_text == CALLER + "\n" + CALLEE  # the parts' texts, in order, wherever printed
    again = compile_ir([Part(CALLER, unroll=False), Part(CALLEE, unroll=False)], cache=cache)
    assert again.from_cache and _f(again)(0.5) == 2.0  # the same keys as text parts
    assert compile_ir([_lazy(CALLER, [], 2), _lazy(CALLEE, [], 1)], cache=cache).from_cache


def test_a_workers_part_is_printed_only_in_the_worker():
    if not jit._can_fork(2):
        pytest.skip("no fork here (not Linux, or one core): every part is printed in this process")
    printed: list[str] = []
    native = compile_ir([_lazy(CALLER, printed, 2), _lazy(CALLEE, printed, 1)], cache=False)
    assert _f(native)(1.0) == 3.0
    assert printed == [CALLER]  # the heavier part's lane is this process; CALLEE was printed by the worker


def test_a_failed_worker_is_redone_here(monkeypatch):
    class Dead:
        def result(self):
            return None

    monkeypatch.setattr(jit, "_can_fork", lambda n: True)
    monkeypatch.setattr(jit, "_fork", lambda work: Dead())
    printed: list[str] = []
    assert _f(compile_ir([_lazy(CALLER, printed, 2), _lazy(CALLEE, printed, 1)], cache=False))(2.0) == 5.0
    assert sorted(printed) == sorted([CALLER, CALLEE])
    with pytest.raises(JITError, match="rejected"):
        compile_ir([_lazy(CALLER, [], 2), _lazy("define i32 @twice() { ret i64 0 }", [], 1)], cache=False)


def test_a_core_that_is_done_takes_the_next_part_from_the_queue():
    if not jit._can_fork(3):
        pytest.skip("no fork here (not Linux, or one core): every part is printed in this process")
    printed: list[str] = []
    other = "define double @g(double %x) {\n  ret double %x\n}\n"

    def slow_caller() -> str:  # this process's first part: the worker takes the two others meanwhile
        time.sleep(0.5)
        printed.append(CALLER)
        return CALLER

    parts = [LazyPart(slow_caller, unroll=False, cost=2), _lazy(CALLEE, printed, 2), _lazy(other, printed, 2)]
    native = compile_ir(parts, cache=False)
    assert _f(native)(1.0) == 3.0 and native.ir_text == "\n".join([CALLER, CALLEE, other])
    assert printed == [CALLER]  # dealt up front, this process would have taken `other` too (equal costs)


def test_a_part_queue_hands_each_index_out_once():
    queue = jit._PartQueue([3, 1, 2])
    assert list(queue.claimed()) == [3, 1, 2] and list(queue.claimed()) == []
    queue.close()
    with pytest.raises(ValueError, match="below 256, got 300"):
        jit._PartQueue([1, 300])
