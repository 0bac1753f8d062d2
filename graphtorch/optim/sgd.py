"""SGD with momentum, dampening, Nesterov momentum, weight decay and maximize (torch.optim.SGD)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..ops.creation import zeros_like
from ..tensor import Tensor
from .hyperparameters import at, is_zero
from .optimizer import Optimizer, check_hyperparameters, eager_state


class SGD(Optimizer):
    def __init__(self, params: Iterable, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False, fused: bool | None = None) -> None:
        check_hyperparameters(lr=lr, momentum=momentum, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                        maximize=maximize, foreach=foreach, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)

    def _update(self, param: Tensor, grad: Tensor, group: dict[str, Any]) -> None:
        # `alpha=` spelled out as a product: the scalars are tensors while tracing (at())
        momentum = at(group["momentum"], param)
        if group["maximize"]:
            grad = -grad
        if not is_zero(group["weight_decay"]):
            grad = grad.add(param.mul(at(group["weight_decay"], param)))
        if not is_zero(group["momentum"]):
            # state is touched only with momentum, so a plain SGD's state_dict is empty, as torch's
            state = self.state[param]
            buf = state.get("momentum_buffer")
            if buf is None:  # the first step takes the gradient as it is: no dampening
                with eager_state():
                    buf = state["momentum_buffer"] = zeros_like(param)
                buf.copy_(grad)
            else:
                buf.mul_(momentum).add_(grad.mul(at(1 - group["dampening"], param)))
            grad = grad.add(buf.mul(momentum)) if group["nesterov"] else buf
        param.add_(grad.mul(at(-group["lr"], param)))
