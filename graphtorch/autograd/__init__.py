"""torch.autograd: the eager autograd engine."""

from .function import Function, FunctionCtx
from .functional import backward, grad
from .grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .graph import Node

__all__ = ["Function", "FunctionCtx", "backward", "grad", "enable_grad", "inference_mode", "is_grad_enabled",
           "no_grad", "set_grad_enabled", "Node"]
