"""Adam and AdamW (torch.optim.Adam / AdamW): AdamW is Adam with decoupled weight decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..ops.creation import zeros_like
from ..tensor import Tensor
from .hyperparameters import at, is_zero
from .optimizer import Optimizer, check_hyperparameters, eager_state, step_counter, step_value


class Adam(Optimizer):
    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, decoupled_weight_decay: bool = False) -> None:
        check_hyperparameters(lr=lr, eps=eps)
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        check_hyperparameters(weight_decay=weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, capturable=capturable, differentiable=differentiable,
                        fused=fused, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _update(self, param: Tensor, grad: Tensor, group: dict[str, Any]) -> None:
        # lr, betas, eps, weight_decay: Python numbers eagerly, 0-d tensors while tracing (at())
        lr, (beta1, beta2), weight_decay = group["lr"], group["betas"], group["weight_decay"]
        state = self.state[param]
        if len(state) == 0:
            with eager_state():
                state["step"] = step_counter()
                state["exp_avg"] = zeros_like(param)
                state["exp_avg_sq"] = zeros_like(param)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = zeros_like(param)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        if group["maximize"]:
            grad = -grad
        state["step"].add_(1)

        if not is_zero(weight_decay):
            if group["decoupled_weight_decay"]:
                param.mul_(at(1 - lr * weight_decay, param))
            else:
                grad = grad.add(param.mul(at(weight_decay, param)))
        exp_avg.lerp_(grad, at(1 - beta1, param))
        exp_avg_sq.mul_(at(beta2, param)).addcmul_(grad, grad, value=at(1 - beta2, param))

        step = step_value(state["step"])
        step_size = lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        if group["amsgrad"]:
            second_moment = state["max_exp_avg_sq"].maximum_(exp_avg_sq)
        else:
            second_moment = exp_avg_sq
        denom = (second_moment.sqrt() / at(bias_correction2_sqrt, param)).add_(at(group["eps"], param))
        param.addcdiv_(exp_avg, denom, value=at(-step_size, param))


class AdamW(Adam):
    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # as torch: an AdamW always decouples, whatever was saved
            group["decoupled_weight_decay"] = True
