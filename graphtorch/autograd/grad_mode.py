"""Whether operations record autograd history: no_grad, enable_grad, set_grad_enabled."""

from __future__ import annotations

import functools
import threading

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "enabled", True)


def _set(enabled: bool) -> None:
    _state.enabled = enabled


class _GradMode:
    """A context manager that is also a decorator, like torch's."""

    enabled: bool

    def __enter__(self):
        self._prev = is_grad_enabled()
        _set(self.enabled)

    def __exit__(self, *exc):
        _set(self._prev)

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    enabled = False


class enable_grad(_GradMode):
    enabled = True


class set_grad_enabled(_GradMode):
    def __init__(self, mode: bool):
        self.enabled = bool(mode)
        self._prev = is_grad_enabled()
        _set(self.enabled)  # torch applies it at once, so it also works as a plain call

    def __enter__(self):
        pass

    def __exit__(self, *exc):
        _set(self._prev)


class inference_mode(no_grad):
    def __init__(self, mode: bool = True):
        self.enabled = not mode
