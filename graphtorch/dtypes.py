"""PyTorch's dtype names and type promotion, over the DType objects the compiler also uses."""

from __future__ import annotations

import numpy as np

from .compiler.dtypes import (
    ALL,
    DType,
    bool_,
    float16,
    float32,
    float64,
    from_numpy,
    int8,
    int16,
    int32,
    int64,
    uint8,
)

__all__ = ["DType", "ALL", "bool_", "float16", "float32", "float64", "int8", "int16", "int32", "int64",
           "uint8", "from_numpy", "promote_types", "result_type", "get_default_dtype", "set_default_dtype",
           "scalar_dtype"]

_default_float = float32


def get_default_dtype() -> DType:
    return _default_float


def set_default_dtype(d: DType) -> None:
    global _default_float
    if not d.is_floating_point:
        raise TypeError(f"only floating-point types are supported as the default type, got {d}")
    _default_float = d


def promote_types(a: DType, b: DType) -> DType:
    """The smallest dtype both convert to without losing category (torch.promote_types)."""
    if a is b:
        return a
    if a.category != b.category:
        hi, lo = (a, b) if a.category > b.category else (b, a)
        return hi
    return from_numpy(np.promote_types(a.np, b.np))


def scalar_dtype(v) -> DType:
    """The dtype a Python number takes when it stands alone: bool, int64, or the default float."""
    if isinstance(v, (bool, np.bool_)):
        return bool_
    if isinstance(v, (int, np.integer)):
        return int64
    return _default_float


def _number_keeps(d: DType, number) -> bool:
    """Whether a Python int or float leaves dtype `d` as it is: it never promotes a tensor within
    its category, and an int never promotes a floating tensor (bools and numpy scalars: the
    general rule)."""
    kind = type(number)
    return (kind is float and d.is_floating_point) or (kind is int and d is not bool_)


def _combine(higher: DType | None, lower: DType | None) -> DType | None:
    # at::native::result_type: a higher-priority group wins unless a lower one has a higher category
    if higher is None:
        return lower
    if lower is None or higher.is_floating_point:
        return higher
    if higher is bool_ or lower.is_floating_point:
        return promote_types(higher, lower)
    return higher


def result_type(*operands) -> DType:
    """torch.result_type over tensors and Python scalars: dimensioned tensors, then zero-dim
    tensors, then scalars, each group promoted within itself, combined by category."""
    first = getattr(operands[0], "_dtype", None) if operands else None
    if first is not None and all(getattr(x, "_dtype", None) is first for x in operands):
        return first  # tensors of one dtype (the common case, every eager op asks): nothing to promote
    if first is not None and len(operands) == 2 and _number_keeps(first, operands[1]):
        return first  # a tensor and a Python number of its category or lower (`x + 1.0`): the tensor's dtype
    dim = zero = wrapped = None
    for x in operands:
        if hasattr(x, "dtype") and hasattr(x, "ndim"):
            if x.ndim:
                dim = x.dtype if dim is None else promote_types(dim, x.dtype)
            else:
                zero = x.dtype if zero is None else promote_types(zero, x.dtype)
        else:
            d = scalar_dtype(x)
            wrapped = d if wrapped is None else promote_types(wrapped, d)
    return _combine(dim, _combine(zero, wrapped))
