"""Resampling: F.interpolate (nearest, linear/bilinear/trilinear, align_corners) and pixel_shuffle.

Interpolation is separable: one pass per spatial dim, each a constant-index gather (index_select)
and, for the linear modes, a blend of two neighbours with constant weights. So it traces to known
primitives, and its gradient scatters back through the gathers as torch's does.
"""

from __future__ import annotations

import math

import numpy as np

from ..dispatch import op
from ..ops.creation import tensor
from ..ops.indexing import index_select
from ..tensor import Tensor

_LINEAR = {"linear": 3, "bilinear": 4, "trilinear": 5}


def _output_sizes(input: Tensor, size, scale_factor) -> tuple[list[int], list[float | None]]:
    """Each spatial dim's output size, and the scale torch maps coordinates with (None: in / out)."""
    dims = input.ndim - 2
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is not None:
        sizes = list(size) if isinstance(size, (tuple, list)) else [size] * dims
        if len(sizes) != dims:
            raise ValueError(f"Input and output must have the same number of spatial dimensions, but got input with "
                             f"spatial dimensions of {list(input.shape[2:])} and output size of {size}. Please provide "
                             "input tensor in (N, C, d1, d2, ...,dK) format and output size in (o1, o2, ...,oK) format.")
        return [int(s) for s in sizes], [None] * dims
    if scale_factor is None:
        raise ValueError("either size or scale_factor should be defined")
    factors = list(scale_factor) if isinstance(scale_factor, (tuple, list)) else [scale_factor] * dims
    return [math.floor(n * f) for n, f in zip(input.shape[2:], factors)], [1.0 / f for f in factors]


def _source(out: int, n: int, scale: float | None, align_corners: bool, nearest: bool) -> np.ndarray:
    """The input coordinate each output position reads (torch's area_pixel_compute_source_index)."""
    i = np.arange(out, dtype=np.float64)
    if align_corners:
        return i * ((n - 1) / (out - 1)) if out > 1 else np.zeros(out)
    scale = n / out if scale is None else scale
    if nearest:
        return np.minimum(np.floor(i * scale), n - 1)
    return np.maximum((i + 0.5) * scale - 0.5, 0.0)


def _resample_dim(x: Tensor, dim: int, out: int, scale: float | None, mode: str, align_corners: bool) -> Tensor:
    n = x.shape[dim]
    src = _source(out, n, scale, align_corners, mode == "nearest")
    lo = np.minimum(np.floor(src).astype(np.int64), n - 1)
    if mode == "nearest":
        return index_select(x, dim, tensor(lo))
    hi = np.minimum(lo + 1, n - 1)
    shape = [1] * x.ndim
    shape[dim] = out
    frac = tensor((src - lo).reshape(shape), dtype=x.dtype)
    below, above = index_select(x, dim, tensor(lo)), index_select(x, dim, tensor(hi))
    return below + (above - below) * frac


def _check_mode(input: Tensor, mode: str, align_corners: bool | None) -> None:
    if mode == "nearest":
        if align_corners is not None:
            raise ValueError("align_corners option can only be set with the interpolating modes: linear | bilinear | "
                             "bicubic | trilinear")
        if input.ndim not in (3, 4, 5):
            raise NotImplementedError(f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {input.ndim}D) "
                                      "for the modes: nearest | linear | bilinear | bicubic | trilinear | area | "
                                      f"nearest-exact (got {mode})")
    elif mode in _LINEAR:
        if input.ndim != _LINEAR[mode]:
            raise NotImplementedError(f"Got {input.ndim}D input, but {mode} mode needs {_LINEAR[mode]}D input")
    else:
        raise NotImplementedError(f"graphtorch: interpolate(mode={mode!r}) is not supported; use nearest, linear, "
                                  "bilinear or trilinear")


def interpolate(input: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners: bool | None = None,
                recompute_scale_factor: bool | None = None, antialias: bool = False) -> Tensor:
    _check_mode(input, mode, align_corners)
    if antialias:
        raise NotImplementedError("graphtorch: interpolate(antialias=True) is not supported")
    sizes, scales = _output_sizes(input, size, scale_factor)
    if recompute_scale_factor:
        scales = [None] * len(sizes)
    out = _interpolate(input, sizes, scales, mode, bool(align_corners))
    if out.grad_fn is not None and out.grad_fn.name() == "UpsampleBackward0":  # torch's name: UpsampleBilinear2D...
        out.grad_fn.rename(f"Upsample{mode.capitalize()}{len(sizes)}DBackward0")
    return out


@op("UpsampleBackward0", origin="interpolate")
def _interpolate(input: Tensor, sizes: list, scales: list, mode: str, align_corners: bool) -> Tensor:
    out = input
    for d, (n, scale) in enumerate(zip(sizes, scales)):
        out = _resample_dim(out, d + 2, n, scale, mode, align_corners)
    return out


def upsample(input: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners: bool | None = None):
    return interpolate(input, size, scale_factor, mode, align_corners)


@op("PixelShuffleBackward0", origin="pixel_shuffle")
def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
    """(*, C r^2, H, W) -> (*, C, H r, W r)."""
    r = upscale_factor
    if input.ndim < 3:
        raise RuntimeError(f"pixel_shuffle expects input to have at least 3 dimensions, but got input with "
                           f"{input.ndim} dimension(s)")
    *batch, c, h, w = input.shape
    if c % (r * r):
        raise RuntimeError(f"pixel_shuffle expects its input's 'channel' dimension to be divisible by the square of "
                           f"upscale_factor, but input.size(-3)={c} is not divisible by {r * r}")
    k = len(batch)
    x = input.reshape(*batch, c // (r * r), r, r, h, w)
    x = x.permute(*range(k), k, k + 3, k + 1, k + 4, k + 2)
    return x.reshape(*batch, c // (r * r), h * r, w * r)


@op("PixelUnshuffleBackward0", origin="pixel_unshuffle")
def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:
    """(*, C, H r, W r) -> (*, C r^2, H, W), pixel_shuffle's inverse."""
    r = downscale_factor
    if input.ndim < 3:
        raise RuntimeError(f"pixel_unshuffle expects input to have at least 3 dimensions, but got input with "
                           f"{input.ndim} dimension(s)")
    *batch, c, h, w = input.shape
    if h % r or w % r:
        raise RuntimeError(f"pixel_unshuffle expects height to be divisible by downscale_factor, but input.size(-2)="
                           f"{h} is not divisible by {r}" if h % r else
                           f"pixel_unshuffle expects width to be divisible by downscale_factor, but input.size(-1)="
                           f"{w} is not divisible by {r}")
    k = len(batch)
    x = input.reshape(*batch, c, h // r, r, w // r, r)
    x = x.permute(*range(k), k, k + 2, k + 4, k + 1, k + 3)
    return x.reshape(*batch, c * r * r, h // r, w // r)
