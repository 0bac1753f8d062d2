"""Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d as pad -> unfold -> reduce.

Windows come from the `unfold` primitive (N, C, OH, OW, KH, KW). Max pooling picks one element per
window with argmax + gather, so its gradient goes to that element only, as in torch.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..autograd.grad_mode import is_grad_enabled
from ..dispatch import apply, op
from ..ops.creation import tensor
from ..ops.shape import cat
from ..tensor import Tensor
from ._utils import _pair, _single


def pool_output_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's pooling_output_shape: with ceil_mode the last window must start inside the input or left pad."""
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _geometry(input: Tensor, kernel_size, stride, padding, dilation, ceil_mode: bool):
    k = _pair(kernel_size)
    s = _pair(stride) if stride is not None and stride != () and stride != [] else k
    p, d = _pair(padding), _pair(dilation)
    if input.ndim not in (3, 4):
        raise RuntimeError(f"non-empty 3D or 4D (batch mode) tensor expected for input, but got: {list(input.shape)}")
    if any(v <= 0 for v in k + s + d):
        raise RuntimeError(f"kernel_size, stride and dilation must be greater than zero, but got kernel_size={k}, "
                           f"stride={s} and dilation={d}")
    h, w = input.shape[-2:]
    out = tuple(pool_output_size(n, *a, ceil_mode) for n, a in zip((h, w), zip(k, s, p, d)))
    if min(out) < 1:
        c = input.shape[-3]
        raise RuntimeError(f"Given input size: ({c}x{h}x{w}). Calculated output size: ({c}x{out[0]}x{out[1]}). "
                           "Output size is too small")
    # padding after the input: enough for the last (ceil_mode) window, never less than needed
    hi = tuple(max(0, (o - 1) * si + di * (ki - 1) + 1 - n - pi) for o, si, di, ki, n, pi in zip(out, s, d, k, (h, w), p))
    return k, s, p, d, out, hi


def _windows(x: Tensor, k, s, p, d, hi, value) -> Tensor:
    if any(p) or any(hi):
        x = apply("pad", x, pads=((0, 0), (0, 0), (p[0], hi[0]), (p[1], hi[1])), value=value)
    return apply("unfold", x, kernel=k, stride=s, dilation=d)


def _lowest(dtype: dt.DType):
    return float("-inf") if dtype.is_floating_point else int(np.iinfo(dtype.np).min)


@op("MaxPool2DWithIndicesBackward0", origin="max_pool2d")
def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    k, s, p, d, out, hi = _geometry(input, kernel_size, stride, padding, dilation, ceil_mode)
    for pi, ki, di in zip(p, k, d):
        if pi > ((ki - 1) * di + 1) // 2:
            raise RuntimeError(f"pad should be at most half of effective kernel size, but got pad={pi}, "
                               f"kernel_size={ki} and dilation={di}")
    x = input.unsqueeze(0) if input.ndim == 3 else input
    win = _windows(x, k, s, p, d, hi, _lowest(x.dtype))
    n, c, oh, ow = win.shape[:4]
    win = win.reshape(n, c, oh, ow, k[0] * k[1])
    if return_indices or (is_grad_enabled() and input.requires_grad):
        # the max picked by argmax: its gradient goes to that one element per window, as torch's
        arg = apply("argmax", win, dim=4, keepdim=True)
        values = apply("gather", win, arg, dim=4).reshape(n, c, oh, ow)
    else:  # no gradient, no indices: a plain max reduction (the same values, NaN included)
        values = apply("max", win, dims=(4,), keepdim=False)
    if input.ndim == 3:
        values = values.squeeze(0)
    if not return_indices:
        return values
    indices = _flat_indices(arg.reshape(n, c, oh, ow), k, s, p, d, input.shape[-1])
    return values, indices.squeeze(0) if input.ndim == 3 else indices


def _flat_indices(karg: Tensor, k, s, p, d, width: int) -> Tensor:
    """Window-local argmax -> row * W + col in the unpadded input (torch's return_indices)."""
    shape = tuple(karg.shape)
    oh = apply("iota", shape=shape, dim=2, dtype=dt.int64)
    ow = apply("iota", shape=shape, dim=3, dtype=dt.int64)
    row = oh * s[0] - p[0] + (karg // k[1]) * d[0]
    col = ow * s[1] - p[1] + (karg % k[1]) * d[1]
    return row * width + col


@op("AvgPool2DBackward0", origin="avg_pool2d")
def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    k, s, p, d, out, hi = _geometry(input, kernel_size, stride, padding, 1, ceil_mode)
    for pi, ki in zip(p, k):
        if pi > ki // 2:
            raise RuntimeError(f"pad should be at most half of kernel size, but got pad={pi} and kernel_size={ki}")
    if divisor_override is not None and divisor_override == 0:
        raise RuntimeError("divisor must be not zero")
    x = input.unsqueeze(0) if input.ndim == 3 else input
    sums = apply("sum", _windows(x, k, s, p, d, hi, 0.0), dims=(4, 5), keepdim=False)
    if divisor_override is not None:
        result = sums / divisor_override
    else:
        counts = _window_counts(tuple(x.shape[-2:]), k, s, p, out, count_include_pad)
        result = sums / tensor(counts, dtype=sums.dtype)
    return result.squeeze(0) if input.ndim == 3 else result


def _window_counts(size, k, s, p, out, count_include_pad: bool) -> np.ndarray:
    """The divisor of each output position: a constant that depends only on shapes (torch's rule)."""
    per_dim = []
    for n, ki, si, pi, o in zip(size, k, s, p, out):
        start = np.arange(o) * si - pi
        end = np.minimum(start + ki, n + pi)
        if count_include_pad:
            per_dim.append(end - start)
        else:
            per_dim.append(np.minimum(end, n) - np.maximum(start, 0))
    return np.outer(per_dim[0], per_dim[1]).astype(np.float64)


@op("AdaptiveAvgPool2DBackward0", origin="adaptive_avg_pool2d")
def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    if input.ndim not in (3, 4):
        raise RuntimeError(f"adaptive_avg_pool2d(): Expected 3D or 4D tensor, but got {list(input.shape)}")
    h, w = input.shape[-2:]
    oh, ow = (n if o is None else o for o, n in zip(_pair(output_size), (h, w)))
    if h % oh == 0 and w % ow == 0:
        return avg_pool2d(input, (h // oh, w // ow))
    # windows of different sizes: average rows, then columns (a rectangle's mean is separable)
    x = _adaptive_mean(input, input.ndim - 2, oh)
    return _adaptive_mean(x, input.ndim - 1, ow)


def _adaptive_mean(x: Tensor, dim: int, out: int) -> Tensor:
    n = x.shape[dim]
    parts = []
    for i in range(out):
        start, end = (i * n) // out, -(-(i + 1) * n // out)
        parts.append(x.narrow(dim, start, end - start).mean(dim, keepdim=True))
    return cat(parts, dim)


# ---------------------------------------------------------------- 1-d pooling and adaptive max


def _as_1d_check(input: Tensor, name: str) -> None:
    if input.ndim not in (2, 3):
        raise RuntimeError(f"Expected 2 to 3 dimensions, but got {input.ndim}-dimensional tensor for argument #1 "
                           f"'self' (while checking arguments for {name})")


def max_pool1d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """max_pool2d over (.., 1, L): the flat indices it returns are then positions along L."""
    if input.ndim not in (2, 3):
        raise RuntimeError("max_pool1d: Expected 2D or 3D (batch mode) tensor with optional 0 dim batch size for "
                           f"input, but got:{list(input.shape)}")
    stride = kernel_size if stride is None or stride == () or stride == [] else stride
    out = max_pool2d(input.unsqueeze(-2), (1, *_single(kernel_size)), (1, *_single(stride)), (0, *_single(padding)),
                     (1, *_single(dilation)), ceil_mode, return_indices)
    if return_indices:
        return out[0].squeeze(-2), out[1].squeeze(-2)
    return out.squeeze(-2)


def avg_pool1d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    _as_1d_check(input, "avg_pool1d")
    stride = kernel_size if stride is None or stride == () or stride == [] else stride
    out = avg_pool2d(input.unsqueeze(-2), (1, *_single(kernel_size)), (1, *_single(stride)), (0, *_single(padding)),
                     ceil_mode, count_include_pad)
    return out.squeeze(-2)


def adaptive_avg_pool1d(input: Tensor, output_size) -> Tensor:
    _as_1d_check(input, "adaptive_avg_pool1d")
    return adaptive_avg_pool2d(input.unsqueeze(-2), (1, *_single(output_size))).squeeze(-2)


@op("AdaptiveMaxPool2DBackward0", origin="adaptive_max_pool2d")
def adaptive_max_pool2d(input: Tensor, output_size, return_indices: bool = False):
    """Windows [floor(i n / out), ceil((i + 1) n / out)) per dim: equal windows go through max_pool2d
    (indices included); uneven ones take the max over rows, then columns (max is separable)."""
    if input.ndim not in (3, 4):
        raise RuntimeError(f"adaptive_max_pool2d(): Expected 3D or 4D tensor, but got: {list(input.shape)}")
    h, w = input.shape[-2:]
    oh, ow = (n if o is None else o for o, n in zip(_pair(output_size), (h, w)))
    if h % oh == 0 and w % ow == 0:
        return max_pool2d(input, (h // oh, w // ow), return_indices=return_indices)
    if return_indices:
        raise NotImplementedError(f"graphtorch: adaptive_max_pool2d(return_indices=True) needs the input size "
                                  f"{(h, w)} to be a multiple of the output size {(oh, ow)}")
    x = _adaptive_max(input, input.ndim - 2, oh)
    return _adaptive_max(x, input.ndim - 1, ow)


def _adaptive_max(x: Tensor, dim: int, out: int) -> Tensor:
    n = x.shape[dim]
    parts = []
    for i in range(out):
        start, end = (i * n) // out, -(-(i + 1) * n // out)
        parts.append(x.narrow(dim, start, end - start).max(dim, keepdim=True).values)
    return cat(parts, dim)
