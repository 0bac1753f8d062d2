"""mse_loss eagerly as one op: one numpy expression forward, one VJP backward (MseLossBackward0).

The composed form (broadcast, sub, mul, mean) costs four dispatches forward and four backward
nodes; in a `compile(model)` loop, where the model's forward and backward are one native call
each, those eager ops were a large part of the step. The composed form stays the definition:
it is what a traced step records, what runs for the cases below that this path leaves alone
(broadcasting, weights, CUDA, reduction='none'), and what the backward runs with create_graph.
"""

from __future__ import annotations

import numpy as np

from .. import dispatch
from ..autograd.grad_mode import is_grad_enabled
from ..tensor import Tensor


def applies(input: Tensor, target: Tensor) -> bool:
    """The common case: eager, same shapes and float dtype, on the CPU (the caller checks the
    reduction: 'mean' or 'sum')."""
    return (dispatch._tracer is None and isinstance(input, Tensor)
            and isinstance(target, Tensor) and input.dtype is target.dtype and input.dtype.is_floating_point
            and input.shape == target.shape and input.numel() > 0 and not input.is_cuda and not target.is_cuda)


def mse_loss(input: Tensor, target: Tensor, reduction: str) -> Tensor:
    diff = input._data - target._data
    total = np.sum(diff * diff)
    out = Tensor._wrap(np.asarray(total / diff.size if reduction == "mean" else total, dtype=diff.dtype))
    if is_grad_enabled() and (input.requires_grad or target.requires_grad):
        scale = 2.0 / diff.size if reduction == "mean" else 2.0
        dispatch.attach_custom(out, "MseLossBackward0", _vjp(scale, input, target), [input, target], [input, target])
    return out


def _vjp(scale: float, input: Tensor, target: Tensor):
    needs = (input.requires_grad, target.requires_grad)

    def vjp(grad: Tensor, saved: list) -> list:
        x, t = saved  # unpacked: raises torch's error when either was modified in place since
        if is_grad_enabled():  # create_graph: the composed ops, so the gradient is differentiable
            g = (x - t) * (grad * scale)
        else:
            g = Tensor._wrap(np.asarray((x._data - t._data) * (grad._data * scale), dtype=x._data.dtype))
        return [g if needs[0] else None, -g if needs[1] else None]

    return vjp
