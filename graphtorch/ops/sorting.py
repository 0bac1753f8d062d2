"""Sorting and order statistics: sort, argsort, msort, topk, kthvalue, median.

One primitive, `argsort` (stable, NaN largest), gives the order; the values are a gather with it,
so their gradient is gather's (each value's gradient goes back to the element it came from).
"""

from __future__ import annotations

from .. import dtypes as dt
from ..compiler.primitives import _norm_dim
from ..dispatch import apply, op
from ..tensor import Tensor
from .reduction import return_types
from .shape import slice_dim


def _order(input: Tensor, dim: int, descending: bool) -> Tensor:
    return apply("argsort", input, dim=_norm_dim(dim, input.ndim), descending=bool(descending))


def _pick(input: Tensor, dim: int, indices: Tensor) -> Tensor:
    return input if input.ndim == 0 else apply("gather", input, indices, dim=_norm_dim(dim, input.ndim))


@op("SortBackward0")
def sort(input, dim: int = -1, descending: bool = False, stable: bool = False):
    """Always stable (torch's unstable sort may order ties either way)."""
    idx = _order(input, dim, descending)
    return return_types("sort", _pick(input, dim, idx), idx)


def argsort(input, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
    return _order(input, dim, descending)


def msort(input) -> Tensor:
    return sort(input, 0).values


def _size(input: Tensor, dim: int) -> int:
    return input.shape[_norm_dim(dim, input.ndim)] if input.ndim else 1


@op("TopkBackward0")
def topk(input, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    if not 0 <= k <= _size(input, dim):
        raise RuntimeError("selected index k out of range")
    idx = _order(input, dim, largest)
    if input.ndim:
        idx = slice_dim(idx, _norm_dim(dim, input.ndim), 0, k, 1)
    return return_types("topk", _pick(input, dim, idx), idx)


@op("KthvalueBackward0")
def kthvalue(input, k: int, dim: int = -1, keepdim: bool = False):
    """The k-th smallest value (k from 1) along dim, and its index."""
    if not 1 <= k <= _size(input, dim):
        raise RuntimeError(f"kthvalue(): selected number k out of range for dimension {_norm_dim(dim, max(input.ndim, 1))}")
    return _select_rank(input, dim, k - 1, keepdim, "kthvalue")


@op("MedianBackward1")
def median(input, dim: int | None = None, keepdim: bool = False):
    """The lower median, as torch: the value at rank (n - 1) // 2 of the sorted line."""
    if dim is None:
        flat = apply("reshape", input, shape=(input.numel(),))
        return _select_rank(flat, 0, (input.numel() - 1) // 2, False, "median").values
    return _select_rank(input, dim, (_size(input, dim) - 1) // 2, keepdim, "median")


def _select_rank(input: Tensor, dim: int, rank: int, keepdim: bool, name: str):
    idx = _order(input, dim, False)
    if input.ndim:
        d = _norm_dim(dim, input.ndim)
        idx = slice_dim(idx, d, rank, rank + 1, 1)
        values = _pick(input, dim, idx)
        if not keepdim:
            shape = tuple(s for i, s in enumerate(input.shape) if i != d)
            values, idx = apply("reshape", values, shape=shape), apply("reshape", idx, shape=shape)
        return return_types(name, values, idx)
    return return_types(name, input.clone(), apply("full", shape=(), value=0, dtype=dt.int64))
