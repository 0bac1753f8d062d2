"""Matrix products: matmul with PyTorch's broadcasting rules, mm/bmm/mv/dot, inverse."""

from __future__ import annotations

from .. import dispatch
from .. import dtypes as dt
from ..attention_pattern import fused_matmul
from ..dispatch import apply, op
from ..tensor import Tensor
from .elementwise import broadcast_shapes, expand_to

_CPP_NAMES = {"float32": "float", "float64": "double", "float16": "c10::Half", "int64": "long int", "int32": "int",
              "int16": "short int", "int8": "signed char", "uint8": "unsigned char", "bool": "bool"}


def _check_same_dtype(a, b) -> None:
    if a.dtype is not b.dtype:  # torch names the C++ types here
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {_CPP_NAMES[a.dtype.name]} != "
                           f"{_CPP_NAMES[b.dtype.name]}")


@op("MmBackward0")
def mm(input, mat2) -> Tensor:
    if input.ndim != 2 or mat2.ndim != 2:
        bad = input if input.ndim != 2 else mat2
        raise RuntimeError(f"{'self' if bad is input else 'mat2'} must be a matrix")
    _check_same_dtype(input, mat2)
    return apply("matmul", input, mat2)


@op("BmmBackward0")
def bmm(input, mat2) -> Tensor:
    if input.ndim != 3 or mat2.ndim != 3:
        raise RuntimeError("batch1 must be a 3D tensor")
    if input.shape[0] != mat2.shape[0] or input.shape[2] != mat2.shape[1]:
        raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: "
                           f"[{input.shape[0]}, {input.shape[2]}] but got: [{mat2.shape[0]}, {mat2.shape[1]}].")
    _check_same_dtype(input, mat2)
    return apply("matmul", input, mat2)


@op("DotBackward0")
def dot(input, other) -> Tensor:
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    if input.shape[0] != other.shape[0]:
        raise RuntimeError(f"inconsistent tensor size, expected tensor [{input.shape[0]}] and src [{other.shape[0]}] "
                           "to have the same number of elements, but got "
                           f"{input.shape[0]} and {other.shape[0]} elements respectively")
    _check_same_dtype(input, other)
    return apply("matmul", input.reshape(1, -1), other.reshape(-1, 1)).reshape(())


def mv(input, vec) -> Tensor:
    return matmul(input, vec)


@op("MmBackward0")
def matmul(input, other) -> Tensor:
    """torch.matmul: 1-D operands gain and lose a dim, batch dims broadcast."""
    if input.ndim == 0 or other.ndim == 0:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are {input.ndim}D and "
                           f"{other.ndim}D")
    _check_same_dtype(input, other)
    if dispatch._tracer is not None:  # softmax(q k^T) @ v written out: one fused attention op
        fused = fused_matmul(input, other)
        if fused is not None:
            return fused
    if input.ndim == 1 and other.ndim == 1:
        return dot(input, other)
    a = input.reshape(1, -1) if input.ndim == 1 else input
    b = other.reshape(-1, 1) if other.ndim == 1 else other
    if a.shape[-1] != b.shape[-2]:
        rows = a.numel() // a.shape[-1] if a.shape[-1] else a.shape[-2]  # torch folds batch dims into rows
        if other.ndim == 1:
            raise RuntimeError(f"size mismatch, got input ({rows}), mat ({rows}x{a.shape[-1]}), vec ({b.shape[-2]})")
        if other.ndim == 2:
            raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({rows}x{a.shape[-1]} and "
                               f"{b.shape[-2]}x{b.shape[-1]})")
        raise RuntimeError(f"Expected size for first two dimensions of batch2 tensor to be: "
                           f"[{b.shape[0] if b.ndim > 2 else 1}, {a.shape[-1]}] but got: "
                           f"[{b.shape[0] if b.ndim > 2 else 1}, {b.shape[-2]}].")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = expand_to(a.reshape(*([1] * (len(batch) + 2 - a.ndim)), *a.shape), (*batch, *a.shape[-2:]))
    b = expand_to(b.reshape(*([1] * (len(batch) + 2 - b.ndim)), *b.shape), (*batch, *b.shape[-2:]))
    out = apply("matmul", a, b)
    if input.ndim == 1:
        out = out.squeeze(-2)
    if other.ndim == 1:
        out = out.squeeze(-1)
    return out


def outer(input, vec2) -> Tensor:
    return matmul(input.reshape(-1, 1), vec2.reshape(1, -1))


@op("LinalgInvExBackward0")
def inverse(input) -> Tensor:
    if not input.dtype.is_floating_point:
        input = input.to(dt.get_default_dtype())
    return apply("inverse", input)


