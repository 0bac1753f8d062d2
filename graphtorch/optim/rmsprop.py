"""RMSprop with momentum and the centered variant (torch.optim.RMSprop)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..ops.creation import zeros_like
from ..tensor import Tensor
from .hyperparameters import at, is_zero, value_of
from .optimizer import Optimizer, check_hyperparameters, eager_state, step_counter


class RMSprop(Optimizer):
    def __init__(self, params: Iterable, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False, differentiable: bool = False) -> None:
        check_hyperparameters(lr=lr, eps=eps, momentum=momentum, weight_decay=weight_decay, alpha=alpha)
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered, weight_decay=weight_decay,
                        capturable=capturable, foreach=foreach, maximize=maximize, differentiable=differentiable)
        super().__init__(params, defaults)

    def _update(self, param: Tensor, grad: Tensor, group: dict[str, Any]) -> None:
        # the numbers are Python floats eagerly, 0-d tensors while tracing (at())
        alpha, momentum = at(group["alpha"], param), group["momentum"]
        state = self.state[param]
        if len(state) == 0:
            with eager_state():
                state["step"] = step_counter()
                state["square_avg"] = zeros_like(param)
                if value_of(momentum) > 0:
                    state["momentum_buffer"] = zeros_like(param)
                if group["centered"]:
                    state["grad_avg"] = zeros_like(param)
        if group["maximize"]:
            grad = -grad
        state["step"].add_(1)
        if not is_zero(group["weight_decay"]):
            grad = grad.add(param.mul(at(group["weight_decay"], param)))

        square_avg = state["square_avg"].mul_(alpha).addcmul_(grad, grad, value=at(1 - group["alpha"], param))
        if group["centered"]:
            grad_avg = state["grad_avg"].lerp_(grad, at(1 - group["alpha"], param))
            avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
        else:
            avg = square_avg.sqrt()
        avg = avg.add_(at(group["eps"], param))

        if value_of(momentum) > 0:
            buf = state["momentum_buffer"].mul_(at(momentum, param)).addcdiv_(grad, avg)
            param.add_(buf.mul(at(-group["lr"], param)))
        else:
            param.addcdiv_(grad, avg, value=at(-group["lr"], param))
