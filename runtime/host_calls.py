"""Native code calling back into Python: `gt_host_call(key, args)`.

Some kernels are not worth generating (a matrix factorization, a sort): compiled code calls the
function registered under `key` with a table of buffer pointers, and it runs with the GIL held.
One C symbol serves every key, so the generated IR names only the key: it stays cacheable on disk,
and a process that loads a cached object registers the same keys while it lowers the graph.

A callback cannot raise through native code: it returns nonzero, the native code records a status,
and the runtime re-raises the saved exception after the call (`take_error`).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable

import llvmlite.binding as llvm

SYMBOL = "gt_host_call"

HostFunction = Callable[[ctypes.Array], None]  # called with the table of void* (inputs, then output)

_functions: dict[int, HostFunction] = {}
_errors: list[BaseException] = []  # kernels run on pool threads: the caller's thread is not the callback's
_lock = threading.Lock()


def register(key: int, fn: HostFunction) -> None:
    """Make `gt_host_call(key, table)` call fn(table); keys are i64 values chosen by the compiler."""
    _functions[key] = fn


def take_error() -> BaseException | None:
    """The exception the earliest failed callback raised, once (None when there is none)."""
    with _lock:
        error = _errors[0] if _errors else None
        _errors.clear()
    return error


def _dispatch(key: int, table: int) -> int:
    try:
        fn = _functions[key]
        fn(ctypes.cast(table, ctypes.POINTER(ctypes.c_void_p)))
        return 0
    except BaseException as e:  # noqa: BLE001 - anything, re-raised after the native call returns
        with _lock:
            _errors.append(e)
        return 1


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p)(_dispatch)
llvm.add_symbol(SYMBOL, ctypes.cast(_CALLBACK, ctypes.c_void_p).value)
