"""Adagrad with learning-rate decay (torch.optim.Adagrad)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..ops.creation import full_like
from ..tensor import Tensor
from .hyperparameters import at, is_zero, value_of
from .optimizer import Optimizer, check_hyperparameters, eager_state, step_counter, step_value


class Adagrad(Optimizer):
    def __init__(self, params: Iterable, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False, fused: bool | None = None) -> None:
        check_hyperparameters(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                              initial_accumulator_value=initial_accumulator_value, eps=eps)
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        # torch makes Adagrad's state at construction, so its state_dict has every parameter from the start
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, group)

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state = self.state[param]
        if len(state) == 0:
            with eager_state():
                state["step"] = step_counter()
                state["sum"] = full_like(param, value_of(group["initial_accumulator_value"]))
        return state

    def _update(self, param: Tensor, grad: Tensor, group: dict[str, Any]) -> None:
        # the numbers are Python floats eagerly, 0-d tensors while tracing (at())
        state = self._init_state(param, group)  # parameters of a group added later start here
        state["step"].add_(1)
        step = step_value(state["step"])
        if group["maximize"]:
            grad = -grad
        if not is_zero(group["weight_decay"]):
            grad = grad.add(param.mul(at(group["weight_decay"], param)))
        clr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
        state["sum"].addcmul_(grad, grad, value=1)
        std = state["sum"].sqrt().add_(at(group["eps"], param))
        param.addcdiv_(grad, std, value=at(-clr, param))
