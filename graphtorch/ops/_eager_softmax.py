"""log_softmax eagerly as one op: one numpy expression forward, one VJP backward (LogSoftmaxBackward0).

The `softmax` primitive's numpy kernel (log=True; compiler/primitives.py: max, sub, exp, sum,
log, sub) stays the definition: a traced step records that primitive (one row kernel), CUDA runs
it, and so does the backward with create_graph. This path computes the same numpy operations in
the same order, so its values equal the primitive's bit for bit.
"""

from __future__ import annotations

import numpy as np

from .. import dispatch
from ..autograd.grad_mode import is_grad_enabled
from ..tensor import Tensor


def applies(input: Tensor) -> bool:
    """Eager, on the CPU, with at least one element (the caller has checked the dtype)."""
    return dispatch._tracer is None and not input.is_cuda and input.ndim > 0 and input.numel() > 0


def log_softmax(input: Tensor, dim: int) -> Tensor:
    x = input._data
    with np.errstate(all="ignore"):  # inf - inf is NaN, as in the composed form
        shifted = x - x.max(axis=dim, keepdims=True)
        out = Tensor._wrap(shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True)))
    if input.requires_grad and is_grad_enabled():
        result = out.detach()  # saved without a reference cycle; shares the version counter
        dispatch.attach_custom(out, "LogSoftmaxBackward0", _vjp(input, dim), [result], [input])
    return out


def _vjp(input: Tensor, dim: int):
    def vjp(grad: Tensor, saved: list) -> list:
        (out,) = saved  # unpacked: torch's error when the output was modified in place since
        if is_grad_enabled():  # create_graph: the same formula in ops, differentiable also in the input
            from .reduction import softmax

            return [grad - softmax(input, dim) * grad.sum(dim, keepdim=True)]
        g = grad._data
        with np.errstate(all="ignore"):
            return [Tensor._wrap(g - np.exp(out._data) * g.sum(axis=dim, keepdims=True))]

    return vjp
