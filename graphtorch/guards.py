"""Guards on the Python state a trace read: module registries, plain attributes, globals, closures.

A compiled graph bakes in what Python computed while tracing: which Parameter, buffer and
submodule objects a module held, plain attribute values (`self.scale`), hooks, and the
numbers, bools and strings the function read from its globals and closure. A StateGuard
snapshots all of these after the trace and says, before each call, what changed.

Module state is cheap to guard: every Module attribute write, registration and hook change
bumps `state_version`, and a call whose version equals the one last checked skips the
comparison. Globals and closure values are compared on every call (there are few of them).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np

state_version = [0]  # bumped by every Module attribute write, registration and hook change

_SIMPLE = (bool, int, float, complex, str, type(None), np.generic)
_HOOK_REGISTRIES = ("_forward_pre_hooks", "_forward_hooks", "_backward_hooks", "_backward_pre_hooks",
                    "_forward_pre_hooks_with_kwargs", "_forward_hooks_with_kwargs")
_MISSING = ("missing", None)


def module_state_changed() -> None:
    state_version[0] += 1


def is_simple(value: Any) -> bool:
    """A value a trace may bake in and a guard can compare: numbers, bools, strings, tuples of them."""
    if isinstance(value, tuple):
        return all(is_simple(v) for v in value)
    return isinstance(value, _SIMPLE)


def module_state(label: str, root) -> dict[str, tuple]:
    """`path -> (kind, object or value)` for everything under `root` a forward may read."""
    state = {}
    for prefix, mod in root.named_modules(prefix=label, remove_duplicate=False):
        d = mod.__dict__
        for kind, registry in (("Parameter", "_parameters"), ("buffer", "_buffers"), ("submodule", "_modules")):
            for name, obj in d[registry].items():
                state[f"{prefix}.{name}"] = (kind, obj)
        for name, value in d.items():
            if is_simple(value):
                state[f"{prefix}.{name}"] = ("value", value)
        state[f"{prefix} hooks"] = ("hooks", tuple(h for r in _HOOK_REGISTRIES for h in d[r].values()))
    return state


def _same(a: tuple, b: tuple) -> bool:
    if a[0] != b[0]:
        return False
    if a[0] == "value":
        return a[1] is b[1] or (type(a[1]) is type(b[1]) and a[1] == b[1])
    if a[0] == "hooks":
        return len(a[1]) == len(b[1]) and all(x is y for x, y in zip(a[1], b[1]))
    return a[1] is b[1]


def _why(path: str, old: tuple, new: tuple) -> str:
    if old[0] == "value" and new[0] == "value":
        return f"{path} changed from {old[1]!r} to {new[1]!r}"
    if old is _MISSING:
        return f"{path}: added"
    if new is _MISSING:
        return f"{path}: removed"
    if old[1] is None or new[1] is None:
        return f"{path} changed from {_name(old)} to {_name(new)}"
    if old[0] == "hooks":
        return f"{path} changed: {len(old[1])} before, {len(new[1])} now"
    return f"{path}: a different {new[0]}"


def _name(entry: tuple) -> str:
    return "None" if entry[1] is None else f"a {entry[0]}"


def state_difference(old: dict[str, tuple], new: dict[str, tuple]) -> str | None:
    """The first change between two module_state snapshots, in words, or None."""
    for path in list(old) + [p for p in new if p not in old]:
        a, b = old.get(path, _MISSING), new.get(path, _MISSING)
        if not _same(a, b):
            return _why(path, a, b)
    return None


def _plain_object(value: Any) -> bool:
    """An instance of a user class (a config, a counter) whose attributes a forward may read."""
    from .nn import Module
    from .tensor import Tensor

    return hasattr(value, "__dict__") and not isinstance(
        value, (Module, Tensor, type, types.ModuleType, types.FunctionType, types.MethodType))


def simple_attributes(obj: Any) -> tuple:
    """The (name, value) of each number, bool or string attribute of `obj`."""
    return tuple((k, v) for k, v in vars(obj).items() if is_simple(v))


def _code_of(fn: Callable):
    fn = getattr(fn, "__func__", fn)
    return getattr(fn, "__code__", None), fn


def _read_names(fn: Callable) -> list[tuple[str, Callable[[], Any]]]:
    """(label, getter) for each global and closure variable the function's code reads."""
    code, fn = _code_of(fn)
    if code is None:
        return []
    found = []
    globals_ = fn.__globals__
    for name in code.co_names:
        if name in globals_:
            found.append((name, lambda g=globals_, n=name: g.get(n, _MISSING)))
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        found.append((name, lambda c=cell: c.cell_contents))
    return found


class StateGuard:
    """What one trace read of Python state; `check()` says what changed since, or None."""

    def __init__(self, fn: Callable, module=None):
        from .nn import Module

        self.values: list[tuple[str, Callable, Any]] = []
        self.modules: list[tuple[str, Any, dict]] = []
        if module is not None:
            self.modules.append(("self", module, module_state("self", module)))
        for label, get in _read_names(fn):
            value = get()
            if isinstance(value, Module) and value is not module:
                self.modules.append((label, value, module_state(label, value)))
            elif is_simple(value):
                self.values.append((label, get, value))
            elif _plain_object(value):
                self._watch_object(label, value)
        for label, root, _ in self.modules:  # plain objects held by modules (a config): checked per call
            for prefix, mod in root.named_modules(prefix=label):
                for name, value in vars(mod).items():
                    if _plain_object(value):
                        self._watch_object(f"{prefix}.{name}", value)
        self.version = state_version[0]

    def _watch_object(self, label: str, obj: Any) -> None:
        attributes = simple_attributes(obj)
        if attributes:
            self.values.append((f"{label} attributes", lambda: simple_attributes(obj), attributes))

    def check(self) -> str | None:
        for label, get, value in self.values:
            now = get()
            if now is not value and not (type(now) is type(value) and now == value):
                return f"{label} changed from {value!r} to {now!r}"
        if self.version == state_version[0]:
            return None
        for label, root, snapshot in self.modules:
            reason = state_difference(snapshot, module_state(label, root))
            if reason:
                return reason
        self.version = state_version[0]
        return None

    def describe(self) -> list[str]:
        """One line per guarded thing (explain's guard list)."""
        lines = [f"{label} == {value!r}" for label, _, value in self.values]
        return lines + [f"{label}: its parameters, buffers, submodules, attributes and hooks unchanged"
                        for label, _, _ in self.modules]
