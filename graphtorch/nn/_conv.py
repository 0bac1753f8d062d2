"""Convolution, padding and im2col: conv2d, pad, unfold (the functional forms)."""

from __future__ import annotations

import numpy as np

from ..dispatch import apply, op
from ..ops.creation import tensor
from ..ops.indexing import index_select
from ..tensor import Tensor
from ._utils import _pair, _single

_NON_CONSTANT = {"reflect": "ReflectionPad", "replicate": "ReplicationPad", "circular": None}


def same_padding(kernel: tuple, dilation: tuple) -> list[tuple[int, int]]:
    """(lo, hi) per spatial dim so that stride-1 output size equals input size; odd totals pad hi more."""
    out = []
    for k, d in zip(kernel, dilation):
        total = d * (k - 1)
        out.append((total // 2, total - total // 2))
    return out


@op("ConvolutionBackward0", origin="conv2d")
def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    if input.ndim not in (3, 4):
        raise RuntimeError("Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: "
                           f"{list(input.shape)}")
    x = input.unsqueeze(0) if input.ndim == 3 else input
    stride, dilation = _pair(stride), _pair(dilation)
    if isinstance(padding, str):
        x, padding = _string_padding(x, weight, padding, stride, dilation)
    out = apply("conv2d", x, weight, stride=stride, padding=_pair(padding), dilation=dilation, groups=groups)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out.squeeze(0) if input.ndim == 3 else out


def _string_padding(x: Tensor, weight: Tensor, padding: str, stride: tuple, dilation: tuple):
    if padding == "valid":
        return x, (0, 0)
    if padding != "same":
        raise RuntimeError(f"Invalid padding string: '{padding}'")
    if any(s != 1 for s in stride):
        raise RuntimeError("padding='same' is not supported for strided convolutions")
    pads = same_padding(tuple(weight.shape[2:]), dilation)
    extra = tuple((0, hi - lo) for lo, hi in pads)
    if any(e for _, e in extra):  # odd total: the extra row/column goes at the end, as in torch
        x = apply("pad", x, pads=((0, 0), (0, 0), *extra), value=0.0)
    return x, tuple(lo for lo, _ in pads)


def pad(input: Tensor, pad: tuple | list, mode: str = "constant", value: float | None = None) -> Tensor:
    """F.pad: `pad` lists (lo, hi) pairs starting from the LAST dim."""
    if len(pad) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    if len(pad) // 2 > input.ndim:
        raise RuntimeError(f"Padding length should be less than or equal to two times the input dimension but got "
                           f"padding length {len(pad)} and input of dimension {input.ndim}")
    pairs = [(input.ndim - 1 - i, int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(len(pad) // 2)]
    if mode == "constant":
        return _constant_pad(input, pairs, 0.0 if value is None else value)
    if mode not in _NON_CONSTANT:
        raise NotImplementedError(f"Unrecognised padding mode {mode}")
    n = len(pairs)
    if not (1 <= n <= 3 and input.ndim in (n + 1, n + 2)):
        raise NotImplementedError(
            f"Padding size {len(pad)} is not supported for {input.ndim}D input tensor.\n"
            "Supported combinations for non-constant padding:\n"
            "  - 2D or 3D input: padding size = 2 (pads last dimension)\n"
            "  - 3D or 4D input: padding size = 4 (pads last 2 dimensions)\n"
            "  - 4D or 5D input: padding size = 6 (pads last 3 dimensions)")
    out = _index_pad(input, pairs, mode)
    if _NON_CONSTANT[mode] is not None and out.grad_fn is not None:
        out.grad_fn.rename(f"{_NON_CONSTANT[mode]}{n}DBackward0")
    return out


@op("ConstantPadNdBackward0", origin="pad")
def _constant_pad(input: Tensor, pairs: list, value: float) -> Tensor:
    # negative amounts crop, as in torch
    starts, stops = [0] * input.ndim, list(input.shape)
    for d, lo, hi in pairs:
        starts[d] += max(0, -lo)
        stops[d] -= max(0, -hi)
    x = input
    if starts != [0] * input.ndim or stops != list(input.shape):
        x = apply("slice", input, starts=tuple(starts), stops=tuple(stops), steps=(1,) * input.ndim)
    pads = [(0, 0)] * input.ndim
    for d, lo, hi in pairs:
        pads[d] = (max(lo, 0), max(hi, 0))
    if not input.dtype.is_floating_point:
        value = int(value)
    return apply("pad", x, pads=tuple(pads), value=value)


def _index_pad(input: Tensor, pairs: list, mode: str) -> Tensor:
    """reflect/replicate/circular: one gather per padded dim with a constant index."""
    x = input
    for d, lo, hi in pairs:
        n = x.shape[d]
        if mode == "reflect" and (lo >= n or hi >= n):
            raise RuntimeError(f"Argument #4: Padding size should be less than the corresponding input dimension, "
                               f"but got: padding ({lo}, {hi}) at dimension {d} of input {list(input.shape)}")
        if mode == "circular" and (lo > n or hi > n):
            raise RuntimeError("Padding value causes wrapping around more than once.")
        x = index_select(x, d, tensor(_pad_indices(n, lo, hi, mode)))
    return x


def _pad_indices(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    i = np.arange(-lo, n + hi)
    if mode == "reflect":
        i = np.abs(i)
        i = np.where(i >= n, 2 * (n - 1) - i, i)
    elif mode == "replicate":
        i = np.clip(i, 0, n - 1)
    else:
        i = i % n
    return i.astype(np.int64)


@op("Im2ColBackward0", origin="unfold")
def unfold(input: Tensor, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """im2col: (N, C, H, W) -> (N, C*KH*KW, L), columns ordered (c, kh, kw) as in torch."""
    if input.ndim != 4:
        raise NotImplementedError(f"Input Error: Only 4D input Tensors are supported (got {input.ndim}D)")
    kernel, dilation, padding, stride = _pair(kernel_size), _pair(dilation), _pair(padding), _pair(stride)
    x = input
    if padding != (0, 0):
        x = apply("pad", x, pads=((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2), value=0.0)
    cols = apply("unfold", x, kernel=kernel, stride=stride, dilation=dilation)
    n, c, oh, ow, kh, kw = cols.shape
    return cols.permute(0, 1, 4, 5, 2, 3).reshape(n, c * kh * kw, oh * ow)


# ---------------------------------------------------------------- 1-d and transposed convolutions


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """conv2d over (N, C, 1, L) with a (O, I/g, 1, K) kernel."""
    if input.ndim not in (2, 3):
        raise RuntimeError("Expected 2D (unbatched) or 3D (batched) input to conv1d, but got input of size: "
                           f"{list(input.shape)}")
    if weight.ndim != 3:
        raise RuntimeError(f"Expected 3-dimensional weight for conv1d, but got weight of size {list(weight.shape)}")
    padding = padding if isinstance(padding, str) else (0, *_single(padding))
    out = conv2d(input.unsqueeze(-2), weight.unsqueeze(2), bias, (1, *_single(stride)), padding,
                 (1, *_single(dilation)), groups)
    return out.squeeze(-2)


def _spread(x: Tensor, dim: int, stride: int) -> Tensor:
    """stride - 1 zeros between neighbours along dim: (.., n, ..) -> (.., (n - 1) * stride + 1, ..)."""
    if stride == 1:
        return x
    n = x.shape[dim]
    cells = x.unsqueeze(dim + 1)
    pads = [(0, 0)] * cells.ndim
    pads[dim + 1] = (0, stride - 1)
    cells = apply("pad", cells, pads=tuple(pads), value=0.0)
    return cells.reshape(*x.shape[:dim], n * stride, *x.shape[dim + 1:]).narrow(dim, 0, (n - 1) * stride + 1)


def _transposed_kernel(weight: Tensor, groups: int) -> Tensor:
    """(C_in, C_out/g, kh, kw) -> the equivalent forward kernel (C_out, C_in/g, kh, kw), flipped."""
    c_in, c_out_g, kh, kw = weight.shape
    w = weight.reshape(groups, c_in // groups, c_out_g, kh, kw).transpose(1, 2)
    return w.reshape(groups * c_out_g, c_in // groups, kh, kw).flip((2, 3))


def _no_string_padding(name: str, padding) -> None:
    if isinstance(padding, str):
        raise TypeError(f"{name}(): argument 'padding' (position 5) must be tuple of ints, but found element of type "
                        "str at pos 0")


def _check_output_padding(output_padding: tuple, stride: tuple, dilation: tuple) -> None:
    if any(op >= s and op >= d for op, s, d in zip(output_padding, stride, dilation)):
        raise RuntimeError("output padding must be smaller than either stride or dilation, but got "
                           f"output_padding_height: {output_padding[0]} output_padding_width: {output_padding[-1]} "
                           f"stride_height: {stride[0]} stride_width: {stride[-1]} dilation_height: {dilation[0]} "
                           f"dilation_width: {dilation[-1]}")


@op("ConvolutionBackward0", origin="conv_transpose2d")
def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """The gradient of conv2d with respect to its input, as a forward op: the input spread by the
    stride, padded by dilation * (k - 1) - padding (negative crops), then a stride-1 conv2d with
    the flipped kernel. Output size (n - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1."""
    if input.ndim not in (3, 4):
        raise RuntimeError("Expected 3D (unbatched) or 4D (batched) input to conv_transpose2d, but got input of "
                           f"size: {list(input.shape)}")
    if input.shape[-3] != weight.shape[0]:
        raise RuntimeError(f"Given transposed=1, weight of size {list(weight.shape)}, expected input"
                           f"{list(input.shape)} to have {weight.shape[0]} channels, but got {input.shape[-3]} "
                           "channels instead")
    _no_string_padding("conv_transpose2d", padding)
    stride, padding, output_padding, dilation = map(_pair, (stride, padding, output_padding, dilation))
    _check_output_padding(output_padding, stride, dilation)
    x = input.unsqueeze(0) if input.ndim == 3 else input
    x = _spread(_spread(x, 2, stride[0]), 3, stride[1])
    edges = [dilation[i] * (weight.shape[2 + i] - 1) - padding[i] for i in range(2)]
    x = pad(x, (edges[1], edges[1] + output_padding[1], edges[0], edges[0] + output_padding[0]))
    out = conv2d(x, _transposed_kernel(weight, groups), bias, 1, 0, dilation, groups)
    return out.squeeze(0) if input.ndim == 3 else out


def conv_transpose1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    if input.ndim not in (2, 3):
        raise RuntimeError("Expected 2D (unbatched) or 3D (batched) input to conv_transpose1d, but got input of "
                           f"size: {list(input.shape)}")
    _no_string_padding("conv_transpose1d", padding)
    # a height-1 image: stride and dilation 1, no padding along the height
    out = conv_transpose2d(input.unsqueeze(-2), weight.unsqueeze(2), bias, (1, *_single(stride)),
                           (0, *_single(padding)), (0, *_single(output_padding)), groups, (1, *_single(dilation)))
    return out.squeeze(-2)
