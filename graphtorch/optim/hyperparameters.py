"""Hyperparameters as run-time scalars: what a traced optimizer step reads lr, betas, eps from.

Eagerly an update reads its group's Python numbers (torch's double-precision scalar math).
While tracing it reads 0-d float64 tensors instead, one per (group, hyperparameter): the tracer
lifts them as graph inputs, and before every compiled call `ScalarTable.refresh` copies the
groups' current numbers into them. An lr scheduler therefore changes the values a compiled
step computes with, never its code. What the code does depend on (flags such as nesterov or
amsgrad, and whether momentum or weight decay is zero) is `structure`, the compiled step's guard.
"""

from __future__ import annotations

from typing import Any

from .. import dtypes as dt
from ..ops.creation import tensor
from ..tensor import Tensor

# hyperparameters whose being zero selects a branch of an update (a momentum buffer, a decay term)
_BRANCHES = ("momentum", "weight_decay")
_NOT_HYPERPARAMETERS = ("params", "param_names")


def _is_number(value: Any) -> bool:
    return type(value) in (float, int) or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _shape_of(name: str, value: Any) -> Any:
    """The part of one hyperparameter that a traced update's code depends on."""
    if _is_number(value):
        return ("number", value == 0) if name in _BRANCHES else "number"
    if isinstance(value, tuple) and all(_is_number(v) for v in value):
        return ("numbers", len(value))
    return value


def structure(groups: list[dict[str, Any]]) -> tuple:
    """Everything of the param groups a traced step bakes into its code (hashable). Runs before
    every compiled step, so it is kept plain: a group's keys in their own order."""
    return tuple(tuple([(k, _shape_of(k, v)) for k, v in g.items() if k not in _NOT_HYPERPARAMETERS])
                 for g in groups)


class ScalarTable:
    """The 0-d tensors that stand for the groups' numeric hyperparameters while tracing."""

    def __init__(self) -> None:
        self._tensors: dict[tuple[int, str, int | None], Tensor] = {}

    def view(self, index: int, group: dict[str, Any]) -> dict[str, Any]:
        """`group` with each number (or tuple of numbers) replaced by its 0-d tensor(s)."""
        out = {}
        for name, value in group.items():
            if _is_number(value):
                out[name] = self._scalar(index, name, None, value)
            elif isinstance(value, tuple) and value and all(_is_number(v) for v in value):
                out[name] = tuple(self._scalar(index, name, k, v) for k, v in enumerate(value))
            else:
                out[name] = value
        return out

    def _scalar(self, index: int, name: str, k: int | None, value: float) -> Tensor:
        key = (index, name, k)
        if key not in self._tensors:
            from .optimizer import eager_state  # a real tensor that outlives the trace, as optimizer state

            with eager_state():
                self._tensors[key] = tensor(0.0, dtype=dt.float64)
        self._tensors[key]._data[()] = value
        return self._tensors[key]

    def refresh(self, groups: list[dict[str, Any]]) -> None:
        """Copy the groups' current numbers into the tensors (before each compiled call)."""
        for (index, name, k), t in self._tensors.items():
            if index < len(groups) and name in groups[index]:
                value = groups[index][name] if k is None else groups[index][name][k]
                if _is_number(value):  # else the structure guard retraces
                    t._data[()] = value


def at(value: float | Tensor, like: Tensor) -> float | Tensor:
    """A scalar as an operand of `like`'s update: traced scalars take `like`'s dtype first, as a
    Python number does when numpy combines it with an array (computed in float64, then rounded)."""
    if isinstance(value, Tensor):
        return value.to(like.dtype)
    return value


def value_of(value: float | Tensor) -> float:
    """The current number behind a hyperparameter, for the code that branches on one (the
    structure guard retraces when the branch taken changes)."""
    return float(value._data) if isinstance(value, Tensor) else value


def is_zero(value: float | Tensor) -> bool:
    return value_of(value) == 0
