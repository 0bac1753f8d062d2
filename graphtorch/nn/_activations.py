"""More activations (elu, hardtanh, hardswish, mish, prelu, glu) and cosine_similarity, as
compositions of elementwise ops; each backward follows from the composition, matching torch's."""

from __future__ import annotations

from ..dispatch import op
from ..ops.elementwise import gt, le, lt, sigmoid, tanh, where
from ..tensor import Tensor


@op("EluBackward0", origin="elu")
def _elu(input: Tensor, alpha: float) -> Tensor:
    # expm1 of the negative part only, so a large positive input never overflows the unused branch
    return where(gt(input, 0), input, input.clamp(max=0).expm1() * alpha)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    out = _elu(input, alpha)
    return input._assign(out) if inplace else out


@op("HardtanhBackward0", origin="hardtanh")
def _hardtanh(input: Tensor, min_val: float, max_val: float) -> Tensor:
    # the gradient flows strictly inside (min_val, max_val), as torch's
    inside = gt(input, min_val) & lt(input, max_val)
    return where(inside, input, where(le(input, min_val), min_val, max_val).to(input.dtype))


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    out = _hardtanh(input, min_val, max_val)
    return input._assign(out) if inplace else out


@op("HardswishBackward0", origin="hardswish")
def _hardswish(input: Tensor) -> Tensor:
    return input * (input + 3).clamp(0, 6) / 6


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    out = _hardswish(input)
    return input._assign(out) if inplace else out


@op("MishBackward0", origin="mish")
def mish(input: Tensor, inplace: bool = False) -> Tensor:
    from .functional import softplus

    out = input * tanh(softplus(input))
    return input._assign(out) if inplace else out


@op("PreluKernelBackward0", origin="prelu")
def prelu(input: Tensor, weight: Tensor) -> Tensor:
    if weight.numel() != 1:
        channels = input.shape[1] if input.ndim >= 2 else input.shape[0] if input.ndim == 1 else 1
        if input.ndim == 0 or weight.numel() != channels:
            raise RuntimeError(f"Mismatch of parameter numbers and input channel size. Found parameter numbers = "
                               f"{weight.numel()} and channel size = {channels}.")
        if input.ndim >= 2:
            weight = weight.reshape(-1, *([1] * (input.ndim - 2)))
    return where(gt(input, 0), input, input * weight)


@op("GluBackward0", origin="glu")
def glu(input: Tensor, dim: int = -1) -> Tensor:
    if input.ndim == 0:
        raise RuntimeError("glu does not support scalars because halving size must be even")
    size = input.shape[dim]
    if size % 2:
        raise RuntimeError(f"Halving dimension must be even, but dimension {dim % input.ndim} is size {size}")
    a, b = input.chunk(2, dim)
    return a * sigmoid(b)


def _clamped_norm(x: Tensor, dim: int, eps: float) -> Tensor:
    """The 2-norm along dim, at least eps. As in torch the clamp changes the value only: the
    gradient flows as if unclamped, and a zero vector's norm has gradient 0 (not NaN)."""
    sq = x.square().sum(dim, keepdim=True)
    nonzero = gt(sq, 0)
    norm = where(nonzero, sq, 1.0).sqrt() * nonzero.to(x.dtype)
    return norm + (eps - norm).clamp(min=0).detach()


@op("SumBackward1", origin="cosine_similarity")
def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Each side divided by its norm (at least eps), then the dot product along dim."""
    return ((x1 / _clamped_norm(x1, dim, eps)) * (x2 / _clamped_norm(x2, dim, eps))).sum(dim)
