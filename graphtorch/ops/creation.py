"""Tensor creation: tensor(), zeros/ones/full/empty/eye, arange/linspace, *_like."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import dtypes as dt
from ..cuda_tensor import on_device
from ..tensor import Tensor, check_device


def _size(size) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for s in size:
        if not isinstance(s, (int, np.integer)) and not (isinstance(s, Tensor) and s.numel() == 1):
            raise TypeError(f"empty(): argument 'size' must be tuple of ints, but found element of type "
                            f"{type(s).__name__}")
        if int(s) < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {int(s)}: {[int(x) for x in size]}")
    return tuple(int(s) for s in size)


def _infer_dtype(data) -> dt.DType:
    """The dtype torch.tensor() infers: bool < int64 < default float, over nested sequences."""
    if isinstance(data, Tensor):
        return data.dtype
    if isinstance(data, np.ndarray):
        return dt.from_numpy(data.dtype)
    if isinstance(data, np.generic):
        return dt.from_numpy(data.dtype) if not isinstance(data, np.floating) or data.dtype != np.float64 \
            else dt.float64
    if isinstance(data, (list, tuple)):
        found = dt.bool_
        for item in data:
            found = dt.promote_types(found, _infer_dtype(item)) if found is not dt.bool_ or len(data) else found
        return found if data else dt.get_default_dtype()
    if isinstance(data, numbers.Number):
        return dt.scalar_dtype(data)
    raise TypeError(f"Could not infer dtype of {type(data).__name__}")


def _to_numpy(data, dtype: dt.DType) -> np.ndarray:
    if isinstance(data, Tensor):
        return np.array(data._data, dtype=dtype.np)
    if isinstance(data, (list, tuple)) and any(isinstance(x, Tensor) for x in data):
        data = [_to_numpy(x, dtype) for x in data]
    arr = np.array(data, dtype=dtype.np)
    if arr.dtype == object:
        raise ValueError("expected sequence of equal-length sequences")
    return arr


@on_device
def tensor(data, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    check_device(device)
    dtype = dtype or _infer_dtype(data)
    try:
        arr = _to_numpy(data, dtype)
    except ValueError as e:
        raise ValueError(f"expected sequence of equal-length sequences ({e})") from None
    if requires_grad and not dtype.is_floating_point:
        raise RuntimeError("Only Tensors of floating point and complex dtype can require gradients")
    return Tensor._wrap(arr, requires_grad)


@on_device
def as_tensor(data, dtype=None, device=None) -> Tensor:
    check_device(device)
    if isinstance(data, Tensor):
        return data if dtype is None or dtype is data.dtype else data.to(dtype)
    if isinstance(data, np.ndarray) and (dtype is None or dtype.np == data.dtype):
        return from_numpy(data)
    return tensor(data, dtype=dtype)


asarray = as_tensor


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing `array`'s memory: writes through either are seen by both."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(array).__name__})")
    dt.from_numpy(array.dtype)  # raises for unsupported dtypes
    return Tensor._wrap(array)


def legacy_constructor(dtype: dt.DType, *args) -> Tensor:
    """torch.Tensor(data) / torch.Tensor(2, 3) / torch.Tensor(): float32, data or uninitialized."""
    if not args:
        return Tensor._wrap(np.empty((0,), dtype.np))
    if len(args) == 1 and isinstance(args[0], (list, tuple, np.ndarray, Tensor)) and not (
            isinstance(args[0], tuple) and all(isinstance(a, int) for a in args[0]) and False):
        return tensor(args[0], dtype=dtype)
    return empty(*args, dtype=dtype)


def _new(size, fill, dtype, requires_grad, device=None) -> Tensor:
    check_device(device)
    dtype = dtype or dt.get_default_dtype()
    return Tensor._wrap(np.full(_size(size), fill, dtype.np), requires_grad)


@on_device
def zeros(*size, dtype=None, device=None, requires_grad=False, out=None) -> Tensor:
    return _new(size, 0, dtype, requires_grad, device)


@on_device
def ones(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _new(size, 1, dtype, requires_grad, device)


@on_device
def empty(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device)
    return Tensor._wrap(np.empty(_size(size), (dtype or dt.get_default_dtype()).np), requires_grad)


@on_device
def full(size, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype = dtype or (fill_value.dtype if isinstance(fill_value, Tensor) else dt.scalar_dtype(fill_value))
    return _new(tuple(size) if not isinstance(size, int) else (size,), fill_value, dtype, requires_grad, device)


@on_device
def eye(n: int, m: int | None = None, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device)
    return Tensor._wrap(np.eye(n, m, dtype=(dtype or dt.get_default_dtype()).np), requires_grad)


def _like(fn):
    def like(input, *, dtype=None, device=None, requires_grad=False, **kw):
        device = input.device if device is None else device  # torch: *_like stays on input's device
        return fn(*input.shape, dtype=dtype or input.dtype, device=device, requires_grad=requires_grad, **kw)
    like.__name__ = f"{fn.__name__}_like"
    return like


zeros_like = _like(zeros)
ones_like = _like(ones)
empty_like = _like(empty)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    device = input.device if device is None else device
    return full(input.shape, fill_value, dtype=dtype or input.dtype, device=device, requires_grad=requires_grad)


@on_device
def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device)
    if end is None:
        start, end = 0, start
    start, end, step = (x.item() if isinstance(x, Tensor) else x for x in (start, end, step))
    if step == 0:
        raise RuntimeError("step must be nonzero")
    if (end - start) * step < 0:
        raise RuntimeError("upper bound and lower bound inconsistent with step sign")
    if dtype is None:
        ints = all(isinstance(x, (int, np.integer)) for x in (start, end, step))
        dtype = dt.int64 if ints else dt.get_default_dtype()
    n = math.ceil((end - start) / step)
    # torch computes in double, then casts: start + i * step
    values = start + np.arange(n, dtype=np.float64 if dtype.is_floating_point else np.int64) * step
    return Tensor._wrap(values.astype(dtype.np), requires_grad)


@on_device
def linspace(start, end, steps: int, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    check_device(device)
    dtype = dtype or dt.get_default_dtype()
    if steps < 0:
        raise RuntimeError("number of steps must be non-negative")
    # torch casts start and end to the output dtype, then fills the first half from start and the
    # second half from end, symmetrically, in the output's float type (double for integer outputs)
    work = dtype.np if dtype.is_floating_point else np.dtype(np.float64)
    start, end = work.type(dtype.np.type(start)), work.type(dtype.np.type(end))
    if steps == 1:
        end = start
    step = (end - start) / work.type(steps - 1) if steps > 1 else work.type(0)
    i = np.arange(steps, dtype=work)
    with np.errstate(invalid="ignore"):
        values = np.where(i < steps // 2, start + step * i, end - step * (work.type(steps - 1) - i))
    return Tensor._wrap(values.astype(dtype.np), requires_grad)


def logspace(start, end, steps: int, base: float = 10.0, *, dtype=None) -> Tensor:
    lin = linspace(start, end, steps, dtype=dt.float64)
    return Tensor._wrap((base ** lin._data).astype((dtype or dt.get_default_dtype()).np))
