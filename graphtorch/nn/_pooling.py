"""Pooling: max/avg, 1-d and 2-d, plain and adaptive, as the windowed-reduction primitives.

Every op here checks its arguments as torch does, works out the window geometry (output size,
ceil_mode) and calls one primitive (compiler/pooling.py: max_pool, max_pool_index, avg_pool),
which reads the input in place; 1-d pooling is 2-d pooling over (.., 1, L).
"""

from __future__ import annotations

from ..dispatch import apply, op
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
    _check_positive(k, s, d)
    h, w = input.shape[-2:]
    out = tuple(pool_output_size(n, *a, ceil_mode) for n, a in zip((h, w), zip(k, s, p, d)))
    if min(out) < 1:
        c = input.shape[-3]
        raise RuntimeError(f"Given input size: ({c}x{h}x{w}). Calculated output size: ({c}x{out[0]}x{out[1]}). "
                           "Output size is too small")
    return k, s, p, d, out


def _check_positive(k, s, d) -> None:
    """torch's checks, in its order and words."""
    if 0 in s:
        raise RuntimeError("stride should not be zero")
    for what, (a, b), (na, nb) in [("kernel size", k, ("kH", "kW")), ("stride", s, ("dH", "dW")),
                                   ("dilation", d, ("dilationH", "dilationW"))]:
        if a <= 0 or b <= 0:
            raise RuntimeError(f"{what} should be greater than zero, but got {na}: {a} {nb}: {b}")


def _attrs(k, s, p, d, out, adaptive: bool = False) -> dict:
    """The pooling primitives' window attributes (compiler/pooling.py)."""
    return dict(out=tuple(out), kernel=tuple(k), stride=tuple(s), padding=tuple(p), dilation=tuple(d),
                adaptive=adaptive)


def _batched(input: Tensor) -> Tensor:
    return input.unsqueeze(0) if input.ndim == 3 else input


def _unbatched(input: Tensor, out: Tensor) -> Tensor:
    return out.squeeze(0) if input.ndim == 3 else out


@op("MaxPool2DWithIndicesBackward0", origin="max_pool2d")
def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    k, s, p, d, out = _geometry(input, kernel_size, stride, padding, dilation, ceil_mode)
    for pi, ki, di in zip(p, k, d):
        if pi > ((ki - 1) * di + 1) // 2:
            raise RuntimeError(f"pad should be at most half of effective kernel size, but got pad={pi}, "
                               f"kernel_size={ki} and dilation={di}")
    return _max_pool(input, _attrs(k, s, p, d, out), return_indices)


def _max_pool(input: Tensor, attrs: dict, return_indices: bool):
    x = _batched(input)
    values = _unbatched(input, apply("max_pool", x, **attrs))
    if not return_indices:
        return values
    return values, _unbatched(input, apply("max_pool_index", x, **attrs))


@op("AvgPool2DBackward0", origin="avg_pool2d")
def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    k, s, p, d, out = _geometry(input, kernel_size, stride, padding, 1, ceil_mode)
    for pi, ki in zip(p, k):
        if pi > ki // 2:
            raise RuntimeError(f"pad should be at most half of effective kernel size, but got pad={pi}, "
                               f"kernel_size={ki} and dilation=1")
    if divisor_override is not None and divisor_override == 0:
        raise RuntimeError("divisor must be not zero")
    attrs = _attrs(k, s, p, d, out)
    result = apply("avg_pool", _batched(input), **attrs, count_include_pad=bool(count_include_pad),
                   divisor=int(divisor_override or 0))
    return _unbatched(input, result)


def _adaptive_size(input: Tensor, output_size, name: str) -> tuple[int, int]:
    if input.ndim not in (3, 4):
        got = "but got" if name.startswith("adaptive_avg") else "but got:"  # torch's two spellings
        raise RuntimeError(f"{name}(): Expected 3D or 4D tensor, {got} {list(input.shape)}")
    h, w = input.shape[-2:]
    out = tuple(n if o is None else o for o, n in zip(_pair(output_size), (h, w)))
    if min(out) < 0:
        raise RuntimeError(f"{name}: elements of output_size must be greater than or equal to 0 but received "
                           f"{{{out[0]}, {out[1]}}}")
    return out


def _adaptive_attrs(out) -> dict:
    return _attrs((0, 0), (0, 0), (0, 0), (1, 1), out, adaptive=True)


@op("AdaptiveAvgPool2DBackward0", origin="adaptive_avg_pool2d")
def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    out = _adaptive_size(input, output_size, "adaptive_avg_pool2d")
    result = apply("avg_pool", _batched(input), **_adaptive_attrs(out), count_include_pad=False, divisor=0)
    return _unbatched(input, result)


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
    """Windows [floor(i n / out), ceil((i + 1) n / out)) per dim, any sizes, indices included."""
    out = _adaptive_size(input, output_size, "adaptive_max_pool2d")
    return _max_pool(input, _adaptive_attrs(out), return_indices)
