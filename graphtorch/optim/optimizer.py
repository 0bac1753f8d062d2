"""Optimizer: parameter groups, per-parameter state, state_dict, and the update loop.

Subclasses write one method, `_update(param, grad, group)`, with in-place tensor methods only
(`param.add_`, `buf.mul_(...).add_(...)`): the tracer sees tensor ops, so a whole training step
(forward, backward, optimizer update) compiles like any other function.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from copy import deepcopy
from itertools import chain
from typing import Any

from .. import dispatch
from .. import dtypes as dt
from ..autograd.grad_mode import enable_grad, no_grad
from ..ops.creation import tensor
from ..tensor import Tensor
from ._native import NativeStep, wants_native
from .hyperparameters import ScalarTable, structure


class _RequiredParameter:
    """Marks a hyperparameter that every param group must give (torch.optim.optimizer.required)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()

# torch 2.x keys that select a mode we do not have; kept in the param groups so state dicts and
# reprs match torch's (foreach and fused select the native multi-tensor step, _native.py)
_UNSUPPORTED_MODES = ("capturable", "differentiable")


class Optimizer:
    """Base class of all optimizers (torch.optim.Optimizer)."""

    def __init__(self, params: Iterable, defaults: dict[str, Any]) -> None:
        for mode in _UNSUPPORTED_MODES:
            if defaults.get(mode):
                raise NotImplementedError(f"{type(self).__name__}({mode}=True) is not supported by graphtorch")
        if defaults.get("fused") and defaults.get("foreach"):
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
        self.defaults = defaults
        self._scalars = ScalarTable()
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            f"but got {params.type()}")
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        groups = list(params)
        if len(groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self) -> str:
        text = type(self).__name__ + " ("
        for i, group in enumerate(self.param_groups):
            text += f"\nParameter Group {i}\n"
            text += "".join(f"    {key}: {group[key]}\n" for key in sorted(group) if key != "params")
        return text + ")"

    # ------------------------------------------------------------ param groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering of "
                            "tensors in sets will change between runs. Please use a list instead.")
        param_group["params"] = _split_names(param_group, list(params))
        for p in param_group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}")
            if not (p.is_leaf or p.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            param_group.setdefault(name, default)
        ids = [id(p) for p in param_group["params"]]
        if len(ids) != len(set(ids)):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; in future, this will "
                          "cause an error; see github.com/pytorch/pytorch/issues/40967 for more information",
                          stacklevel=3)
        taken = {id(p) for group in self.param_groups for p in group["params"]}
        if not taken.isdisjoint(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                    continue
                if p.grad.grad_fn is not None:
                    p.grad.detach_()
                else:
                    p.grad.requires_grad_(False)
                p.grad.zero_()

    # ------------------------------------------------------------ the update
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns the closure's loss."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            if dispatch._tracer is not None:  # a whole step being compiled: record the update ops
                self._update_groups(range(len(self.param_groups)))
            else:
                native = tuple(i for i, g in enumerate(self.param_groups) if wants_native(g))
                if native:
                    self._native_step(native)()
                self._update_groups([i for i in range(len(self.param_groups)) if i not in native])
        return loss

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles leave the compiled native steps behind; they recompile on use."""
        state = self.__dict__.copy()
        state.pop("_native_steps", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_scalars", ScalarTable())  # pickled before run-time scalars existed

    def _native_step(self, indices: tuple[int, ...]) -> NativeStep:
        """The compiled multi-tensor update of these groups (_native.py), made on first use."""
        steps = self.__dict__.setdefault("_native_steps", {})
        if indices not in steps:
            steps[indices] = NativeStep(self, indices)
        return steps[indices]

    def _update_groups(self, indices: Iterable[int], grads: list[Tensor] | None = None) -> None:
        """The per-parameter update of the groups at `indices`, with each parameter's .grad or,
        in order, with `grads` (the arguments of a compiled step)."""
        tracing = dispatch._tracer is not None
        if tracing:  # a compiled step must retrace when the code it baked in changes
            dispatch._tracer.add_guard(f"{type(self).__name__} hyperparameters", self.trace_guard)
        given = iter(grads) if grads is not None else None
        for index in indices:
            group = self.param_groups[index]
            # while tracing, numbers are read from lifted 0-d tensors (run-time scalars)
            hyper = self._scalars.view(index, group) if tracing else group
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad if given is None else next(given), hyper)

    def _update(self, param: Tensor, grad: Tensor, group: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement step()")

    def trace_guard(self) -> tuple:
        """What a traced step bakes into its code: the flags, and whether momentum and weight
        decay are zero; lr, betas, eps and the like are run-time scalars (hyperparameters.py).

        Not torch API. A compiled step calls this before every run: it also copies the groups'
        current numbers into the scalars the graph reads, so a scheduler's new lr takes effect."""
        self._scalars.refresh(self.param_groups)
        return structure(self.param_groups), self._state_keys()

    def _state_keys(self) -> tuple:
        """Which state tensors each parameter has: a step traced before a parameter's state existed
        took the first-step code (SGD copies the gradient into a new buffer) and must not replay it,
        and one traced before load_state_dict reads the old tensors."""
        empty, state = {}, self.state
        return tuple([(k, id(v)) for g in self.param_groups for p in g["params"] for k, v in state.get(p, empty).items()])

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """torch's format: state keyed by the parameter's index over all groups, groups with indices.

        Like torch, the state tensors are the live ones (not copies)."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {(index[id(k)] if isinstance(k, Tensor) else k): v for k, v in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore state and hyperparameters; state tensors are copied and cast to their parameter's dtype."""
        saved_groups = deepcopy(state_dict["param_groups"])
        if len(self.param_groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for group, saved in zip(self.param_groups, saved_groups):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                                 "optimizer's group")
        params = dict(zip(chain.from_iterable(g["params"] for g in saved_groups),
                          chain.from_iterable(g["params"] for g in self.param_groups)))
        state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        for key, value in state_dict["state"].items():
            if key in params:
                state[params[key]] = _copy_state(params[key], value)
            else:
                state[key] = deepcopy(value)
        for group, saved in zip(self.param_groups, saved_groups):
            saved["params"] = group["params"]
            if "param_names" in group and "param_names" not in saved:
                saved["param_names"] = group["param_names"]
        self.state, self.param_groups = state, saved_groups


def _split_names(param_group: dict[str, Any], params: list) -> list:
    """named_parameters() gives (name, tensor) pairs: keep the names in "param_names", as torch does."""
    names = [p[0] for p in params if isinstance(p, tuple)]
    if not names:
        return params
    if len(names) != len(params):
        raise ValueError("all optimizer params should be with/without names. Some param names are missing")
    param_group["param_names"] = names
    return [p[1] for p in params]


def _copy_state(param: Tensor, value: Any, key: str | None = None) -> Any:
    """A deep copy of one parameter's saved state; float tensors take the parameter's dtype
    except the step counter, which keeps its own (torch issue 74424)."""
    if isinstance(value, Tensor):
        out = value.detach()
        if key != "step" and param.is_floating_point():
            out = out.to(param.dtype)
        return out.clone()
    if isinstance(value, dict):
        return {k: _copy_state(param, v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy_state(param, v) for v in value)
    return deepcopy(value)


# ---------------------------------------------------------------- helpers for the subclasses


@contextmanager
def eager_state() -> Iterator[None]:
    """Make optimizer state as real tensors even while a training step is being traced.

    The traced graph then reads the state as a lifted input and writes it back after each
    compiled call; state made as graph values would not outlive the trace."""
    tracer, dispatch._tracer = dispatch._tracer, None
    try:
        yield
    finally:
        dispatch._tracer = tracer


def step_counter() -> Tensor:
    """The per-parameter step count torch 2.x keeps: a 0-d tensor of the default float type."""
    scalar = dt.float64 if dt.get_default_dtype() is dt.float64 else dt.float32
    return tensor(0.0, dtype=scalar)


def step_value(step: Tensor) -> float | Tensor:
    """The step count for the bias corrections: a Python float eagerly (torch's double math),
    the tensor itself while tracing, so a compiled step reads the live counter."""
    return step if step.is_tracer else step.item()


def check_hyperparameters(**values: float) -> None:
    """torch's 'Invalid learning rate: -1.0' errors for hyperparameters that must be >= 0."""
    labels = {"lr": "learning rate", "eps": "epsilon value"}
    for name, value in values.items():
        if not 0.0 <= value:
            raise ValueError(f"Invalid {labels.get(name, name + ' value')}: {value}")
