"""Loss functions (the functional forms), with torch's reductions, weighting and errors.

Class-index losses pick the target's entry with an elementwise one-hot (eq(iota, target)) and a
sum over the class dim rather than a data-dependent gather, so they trace into fusable graphs.
"""

from __future__ import annotations

import warnings

from .. import dtypes as dt
from ..compiler.primitives import _pretty
from ..dispatch import apply, op
from ..ops.elementwise import clamp, eq, log, log1p, ne, where
from ..ops.reduction import log_softmax
from ..ops.shape import broadcast_tensors
from ..tensor import Tensor
from . import _eager_mse, _eager_nll

_REDUCTIONS = ("none", "mean", "sum")


def legacy_get_string(size_average: bool | None, reduce: bool | None) -> str:
    """The reduction named by the deprecated size_average/reduce pair."""
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    ret = "none" if not reduce else "mean" if size_average else "sum"
    warnings.warn(f"size_average and reduce args will be deprecated, please use reduction='{ret}' instead.",
                  stacklevel=3)
    return ret


def _reduction(size_average, reduce, reduction: str) -> str:
    if size_average is not None or reduce is not None:
        reduction = legacy_get_string(size_average, reduce)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _warn_size(input: Tensor, target: Tensor) -> None:
    if target.shape != input.shape:
        warnings.warn(f"Using a target size ({target.shape}) that is different to the input size ({input.shape}). "
                      "This will likely lead to incorrect results due to broadcasting. "
                      "Please ensure they have the same size.", stacklevel=3)


def _pointwise_loss(diff_fn, input, target, size_average, reduce, reduction, weight) -> Tensor:
    _warn_size(input, target)
    reduction = _reduction(size_average, reduce, reduction)
    x, t = broadcast_tensors(input, target)
    loss = diff_fn(x - t)
    if weight is None:
        return _reduce(loss, reduction)
    if weight.shape != input.shape:
        raise ValueError("Weights and input must have the same size.")
    loss = loss * weight
    return loss.sum() / weight.sum() if reduction == "mean" else _reduce(loss, reduction)


@op("MseLossBackward0", origin="mse_loss")
def mse_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
             weight: Tensor | None = None) -> Tensor:
    if (weight is None and size_average is None and reduce is None and _eager_mse.applies(input, target)
            and _reduction(None, None, reduction) != "none"):
        return _eager_mse.mse_loss(input, target, reduction)  # one op instead of four (performance only)
    return _pointwise_loss(lambda d: d * d, input, target, size_average, reduce, reduction, weight)


def l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
            weight: Tensor | None = None) -> Tensor:
    return _pointwise_loss(lambda d: d.abs(), input, target, size_average, reduce, reduction, weight)


@op("BinaryCrossEntropyBackward0", origin="binary_cross_entropy")
def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,
                         reduce=None, reduction: str = "mean") -> Tensor:
    reduction = _reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(f"Using a target size ({target.shape}) that is different to the input size ({input.shape}) "
                         "is deprecated. Please ensure they have the same size.")
    if not input.is_tracer and bool(((input < 0) | (input > 1)).any()):
        raise RuntimeError("all elements of input should be between 0 and 1")
    # torch clamps the logs at -100 so that a confident wrong answer costs 100, not inf
    log_x = clamp(log(input), min=-100)
    log_1mx = clamp(log(1 - input), min=-100)
    loss = -(target * log_x + (1 - target) * log_1mx)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


@op("BinaryCrossEntropyWithLogitsBackward0", origin="binary_cross_entropy_with_logits")
def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,
                                     reduce=None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    reduction = _reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(f"Target size ({target.shape}) must be the same as input size ({input.shape})")
    # -log(sigmoid(x)) = max(-x, 0) + log1p(exp(-|x|)): no overflow for any x
    neg_log_sigmoid = clamp(-input, min=0) + log1p((-input.abs()).exp())
    if pos_weight is not None:
        neg_log_sigmoid = neg_log_sigmoid * ((pos_weight - 1) * target + 1)
    loss = (1 - target) * input + neg_log_sigmoid
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


# ---------------------------------------------------------------- class-index losses


def _check_targets(input: Tensor, target: Tensor, ignore_index: int) -> None:
    if input.ndim < 1:
        raise ValueError(f"Expected 1 or more dimensions (got {input.ndim})")
    if input.ndim == 1:
        if target.ndim != 0:
            raise RuntimeError(f"0D or 1D target tensor expected, multi-target not supported; got {list(target.shape)}")
    elif target.ndim == 0 or input.shape[0] != target.shape[0]:
        raise ValueError(f"Expected input batch_size ({input.shape[0]}) to match target batch_size "
                         f"({target.shape[0] if target.ndim else 0}).")
    elif tuple(target.shape) != (input.shape[0], *input.shape[2:]):
        raise RuntimeError(f"Expected target size {[input.shape[0], *input.shape[2:]]}, got {list(target.shape)}")
    if target.dtype not in (dt.int64, dt.uint8):
        raise RuntimeError(f"expected target dtype to be Long or Byte, but got {_pretty(target.dtype)}")
    if not target.is_tracer and target.numel():  # a captured target has values even inside a trace
        t = target._host()  # numpy: checked without eager ops (or graph nodes while tracing)
        classes = input.shape[0 if input.ndim == 1 else 1]
        bad = ((t < 0) | (t >= classes)) & (t != ignore_index)
        if bad.any():
            raise IndexError(f"Target {t[bad].reshape(-1)[0].item()} is out of bounds.")


def _one_hot_mask(target: Tensor, input: Tensor) -> Tensor:
    """Bool (N, C, ...) mask: True at [n, target[n, ...], ...]. Ignored targets match no class."""
    classes = apply("iota", shape=tuple(input.shape), dim=1, dtype=dt.int64)
    return eq(classes, target.to(dt.int64).unsqueeze(1))


def _class_weights(mask: Tensor, weight: Tensor | None, valid: Tensor, dtype: dt.DType) -> Tensor:
    """weight[target] (1 where no weight) for each sample, 0 where the target is ignored."""
    if weight is None:
        return valid.to(dtype)
    shape = (1, -1) + (1,) * (mask.ndim - 2)
    picked = where(mask, weight.reshape(*shape), 0.0).sum(1)
    return where(valid, picked, 0.0)


def _nll(input: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int, reduction: str) -> Tensor:
    _check_targets(input, target, ignore_index)
    if weight is None and reduction != "none" and _eager_nll.applies(input, target):
        return _eager_nll.nll_loss(input, target, ignore_index, reduction)  # one op, not a dozen (performance only)
    unbatched = input.ndim == 1
    if unbatched:
        input, target = input.unsqueeze(0), target.reshape(1)
    mask = _one_hot_mask(target, input)
    valid = ne(target, ignore_index)
    w = _class_weights(mask, weight, valid, input.dtype)
    loss = -where(mask, input, 0.0).sum(1) * w
    if reduction == "mean":
        return loss.sum() / w.sum()
    if reduction == "sum":
        return loss.sum()
    return loss.squeeze(0) if unbatched else loss


_nll_nd = op("NllLossBackward0", origin="nll_loss")(_nll)
_nll_2d = op("NllLoss2DBackward0", origin="nll_loss")(_nll)


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None, ignore_index: int = -100,
             reduce=None, reduction: str = "mean") -> Tensor:
    reduction = _reduction(size_average, reduce, reduction)
    return (_nll_2d if input.ndim == 4 else _nll_nd)(input, target, weight, ignore_index, reduction)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,
                  ignore_index: int = -100, reduce=None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    reduction = _reduction(size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    class_dim = 0 if input.ndim == 1 else 1
    logp = log_softmax(input, class_dim)
    if target.dtype.is_floating_point and target.shape == input.shape:
        return _cross_entropy_probs(logp, target, weight, reduction, label_smoothing, class_dim)
    nll = nll_loss(logp, target, weight, None, ignore_index, None, reduction)
    if label_smoothing == 0.0:
        return nll
    return nll * (1 - label_smoothing) + _smooth_term(logp, target, weight, ignore_index, reduction, class_dim) * \
        (label_smoothing / input.shape[class_dim])


def _weighted(logp: Tensor, weight: Tensor | None, class_dim: int) -> Tensor:
    if weight is None:
        return logp
    return logp * weight.reshape(*([1] * class_dim), -1, *([1] * (logp.ndim - class_dim - 1)))


def _smooth_term(logp, target, weight, ignore_index, reduction, class_dim) -> Tensor:
    """The uniform-target part of label smoothing, reduced as torch does (weighted by weight[target])."""
    smooth = -_weighted(logp, weight, class_dim).sum(class_dim)
    valid = ne(target, ignore_index)
    smooth = where(valid, smooth, 0.0)
    if reduction == "sum":
        return smooth.sum()
    if reduction == "none":
        return smooth
    if weight is None:
        return smooth.sum() / valid.sum()
    x, t = (logp.unsqueeze(0), target.reshape(1)) if logp.ndim == 1 else (logp, target)
    return smooth.sum() / _class_weights(_one_hot_mask(t, x), weight, ne(t, ignore_index), logp.dtype).sum()


def _cross_entropy_probs(logp, target, weight, reduction, label_smoothing, class_dim) -> Tensor:
    classes = logp.shape[class_dim]
    if label_smoothing > 0:
        target = target * (1 - label_smoothing) + label_smoothing / classes
    loss = -(_weighted(logp, weight, class_dim) * target).sum(class_dim)
    if reduction == "mean":
        return loss.sum() / (logp.numel() // classes)
    return _reduce(loss, reduction)


# ---------------------------------------------------------------- robust regression and divergence


@op("SmoothL1LossBackward0", origin="smooth_l1_loss")
def smooth_l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
                   beta: float = 1.0) -> Tensor:
    """Quadratic below beta (scaled by 1/beta), linear above; beta = 0 is the L1 loss."""
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    if beta == 0:
        return l1_loss(input, target, size_average, reduce, reduction)

    def smooth(d: Tensor) -> Tensor:
        a = d.abs()
        return where(a < beta, a * a * (0.5 / beta), a - 0.5 * beta)
    return _pointwise_loss(smooth, input, target, size_average, reduce, reduction, None)


@op("HuberLossBackward0", origin="huber_loss")
def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,
               weight: Tensor | None = None) -> Tensor:
    """Quadratic below delta, delta-sloped linear above: smooth_l1_loss times delta."""
    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")

    def huber(d: Tensor) -> Tensor:
        a = d.abs()
        return where(a < delta, a * a * 0.5, (a - 0.5 * delta) * delta)
    return _pointwise_loss(huber, input, target, None, None, reduction, weight)


def kl_div(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
           log_target: bool = False) -> Tensor:
    """Pointwise target * (log target - input), input being log-probabilities; 'batchmean' divides the
    sum by the batch size (the KL divergence proper)."""
    if size_average is not None or reduce is not None:
        reduction = legacy_get_string(size_average, reduce)
    if reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the support size."
                      "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
                      "'mean' will be changed to behave the same as 'batchmean' in the next major release.",
                      stacklevel=2)
    if log_target:
        loss = target.exp() * (target - input)
    else:
        positive = target > 0
        # t log t is 0 at t = 0; log sees 1 there so its gradient stays finite
        loss = where(positive, target * log(where(positive, target, 1.0)), 0.0) - target * input
    if reduction == "batchmean":
        return loss.sum() / input.shape[0] if input.ndim else loss.sum()
    return _reduce(loss, _reduction(None, None, reduction))
