"""torch.autograd.Function: user-defined forward and backward."""

from __future__ import annotations

from .grad_mode import is_grad_enabled, no_grad


class FunctionCtx:
    def __init__(self):
        self.saved_tensors: tuple = ()
        self.needs_input_grad: tuple = ()
        self._non_differentiable: set = set()

    def save_for_backward(self, *tensors) -> None:
        self.saved_tensors = tensors

    def mark_non_differentiable(self, *tensors) -> None:
        self._non_differentiable.update(id(t) for t in tensors)

    def set_materialize_grads(self, value: bool) -> None:
        pass


class Function:
    """Subclass with static `forward(ctx, *args)` and `backward(ctx, *grads)`; call `.apply`."""

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("You must implement the forward function for custom autograd.Function.")

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError("You must implement either the backward or vjp method for your custom "
                                  "autograd.Function to use it with backward mode AD.")

    @classmethod
    def apply(cls, *args, **kwargs):
        from ..dispatch import attach_custom
        from ..tensor import Tensor

        ctx = FunctionCtx()
        tensors = [a for a in args if isinstance(a, Tensor)]
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        with no_grad():
            out = cls.forward(ctx, *args, **kwargs)
        outs = out if isinstance(out, tuple) else (out,)
        if is_grad_enabled() and any(t.requires_grad for t in tensors):
            positions = [i for i, a in enumerate(args) if isinstance(a, Tensor)]

            def vjp(grad, _saved):
                grads = cls.backward(ctx, grad)
                grads = grads if isinstance(grads, tuple) else (grads,)
                return [grads[i] if i < len(grads) else None for i in positions]

            for o in outs:
                if isinstance(o, Tensor) and o.dtype.is_floating_point and id(o) not in ctx._non_differentiable:
                    attach_custom(o, f"{cls.__name__}Backward", vjp, [], tensors)
                    break  # one differentiable output: the single-output node model of graphtorch
        return out
