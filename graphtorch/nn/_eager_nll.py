"""nll_loss eagerly as one op for the common case (N, C) scores and (N,) class indices, no
weights: one numpy expression forward, one VJP backward (NllLossBackward0).

The composed form in nn/_losses.py (one-hot mask, where, sums, divide: about a dozen dispatches
and as many backward nodes) stays the definition: it is what a traced step records, what runs
for the cases this path leaves alone (class weights, N-d inputs, reduction='none', CUDA,
uint8 targets), and what the backward runs with create_graph. Its values equal the composed
form's: the same picked entries, times the same 0/1 weights, summed by the same numpy sum.
"""

from __future__ import annotations

import numpy as np

from .. import dispatch
from .. import dtypes as dt
from ..autograd.grad_mode import is_grad_enabled
from ..tensor import Tensor


def applies(input: Tensor, target: Tensor) -> bool:
    """Eager, on the CPU, (N, C) floating scores and (N,) int64 classes (the caller checked the
    targets and chose no weights and a 'mean' or 'sum' reduction)."""
    return (dispatch._tracer is None and input.ndim == 2 and input.dtype.is_floating_point
            and target.dtype is dt.int64 and not input.is_cuda and not target.is_cuda)


def nll_loss(input: Tensor, target: Tensor, ignore_index: int, reduction: str) -> Tensor:
    x, t = input._data, target._data
    valid = t != ignore_index
    rows, cols = np.arange(len(t)), np.where(valid, t, 0)
    weights = valid.astype(x.dtype)  # 0 for an ignored target: its row adds nothing
    losses = -x[rows, cols] * weights
    total = weights.sum() if reduction == "mean" else None
    with np.errstate(all="ignore"):  # every target ignored: 0 / 0 is NaN, as torch gives
        out = Tensor._wrap(np.asarray(losses.sum() / total if total is not None else losses.sum(), dtype=x.dtype))
    if input.requires_grad and is_grad_enabled():
        picks = (rows[valid], cols[valid])
        dispatch.attach_custom(out, "NllLossBackward0", _vjp(input.shape, x.dtype, picks, total), [], [input])
    return out


def _vjp(shape, dtype, picks, total):
    def vjp(grad: Tensor, saved: list) -> list:
        # torch's formula: -(grad / total weight) at each kept target, 0 elsewhere (also when
        # every target is ignored and the total is 0)
        if is_grad_enabled():  # create_graph: linear in grad, so grad times constants stays differentiable
            signs = np.zeros(shape, dtype)
            signs[picks] = -1
            scale = grad if total is None or not len(picks[0]) else grad / Tensor._wrap(total)
            return [Tensor._wrap(signs) * scale]
        out = np.zeros(shape, dtype)
        with np.errstate(all="ignore"):
            out[picks] = -(grad._data if total is None else grad._data / total)
        return [Tensor._wrap(out)]

    return vjp
