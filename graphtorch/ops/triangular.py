"""Triangles and diagonals of (batches of) matrices: tril/triu, diagonal, diag.

tril/triu are a where over an index mask built from two `iota` nodes (row and column numbers),
so they trace into plain elementwise primitives, fuse, and differentiate through `where` with
no rule of their own. diagonal is a strided slice of the flattened square corner; diag builds a
matrix the same way tril does. (Our diagonal is a copy, not a view as in torch.)
"""

from __future__ import annotations

from .. import dtypes as dt
from ..compiler.primitives import _norm_dim
from ..dispatch import apply, op
from ..tensor import Tensor
from .elementwise import expand_to, scalar
from .shape import cat, permute, slice_dim


def _keep_mask(input: Tensor, diagonal: int, lower: bool, name: str) -> Tensor:
    """True where tril (lower) / triu keeps the entry: column - row <= / >= diagonal."""
    if input.ndim < 2:
        raise RuntimeError(f"{name}: input tensor must have at least 2 dimensions")
    rows, cols = input.shape[-2:]
    return expand_to(_offset_mask(rows, cols, diagonal, "le" if lower else "ge"), tuple(input.shape))


def _triangle(input: Tensor, diagonal: int, lower: bool, name: str) -> Tensor:
    keep = _keep_mask(input, diagonal, lower, name)
    zero = expand_to(scalar(0, input.dtype), tuple(input.shape))
    return apply("where", keep, input, zero)


@op("TrilBackward0")
def tril(input: Tensor, diagonal: int = 0) -> Tensor:
    """The lower triangle of the last two dims: entries with column - row <= diagonal."""
    return _triangle(input, diagonal, True, "tril")


@op("TriuBackward0")
def triu(input: Tensor, diagonal: int = 0) -> Tensor:
    """The upper triangle of the last two dims: entries with column - row >= diagonal."""
    return _triangle(input, diagonal, False, "triu")


def _offset_mask(rows: int, cols: int, diagonal: int, compare: str) -> Tensor:
    """(column - row) `compare` diagonal, over a rows x cols grid."""
    row = apply("iota", shape=(rows, cols), dim=0, dtype=dt.int64)
    col = apply("iota", shape=(rows, cols), dim=1, dtype=dt.int64)
    bound = expand_to(scalar(int(diagonal), dt.int64), (rows, cols))
    return apply(compare, apply("sub", col, row), bound)


@op("DiagonalBackward0")
def diagonal(input: Tensor, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
    """Entries (i, i + offset) of the (dim1, dim2) planes, as a new last dim."""
    d1, d2 = _norm_dim(dim1, input.ndim), _norm_dim(dim2, input.ndim)
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    x = permute(input, *[d for d in range(input.ndim) if d not in (d1, d2)], d1, d2)
    rows, cols = x.shape[-2:]
    r0, c0 = max(-offset, 0), max(offset, 0)
    m = max(min(rows - r0, cols - c0), 0)
    corner = slice_dim(slice_dim(x, x.ndim - 2, min(r0, rows), min(r0, rows) + m, 1), x.ndim - 1,
                       min(c0, cols), min(c0, cols) + m, 1)
    flat = apply("reshape", corner, shape=(*x.shape[:-2], m * m))
    return slice_dim(flat, flat.ndim - 1, 0, m * m, m + 1)


@op("DiagEmbedBackward0")
def _diag_matrix(input: Tensor, offset: int) -> Tensor:
    n = input.shape[0] + abs(offset)
    pad = apply("full", shape=(abs(offset),), value=0, dtype=input.dtype)
    padded = cat([input, pad], 0)
    # entry (i, i + offset) is input[min(i, i + offset)]: padded[row] for offset >= 0, else padded[col]
    values = apply("reshape", padded, shape=(n, 1) if offset >= 0 else (1, n))
    zero = expand_to(scalar(0, input.dtype), (n, n))
    return apply("where", _offset_mask(n, n, offset, "eq"), expand_to(values, (n, n)), zero)


def diag(input: Tensor, diagonal: int = 0) -> Tensor:
    """torch.diag: a vector's diagonal matrix, or a matrix's diagonal."""
    if input.ndim == 1:
        return _diag_matrix(input, int(diagonal))
    if input.ndim == 2:
        return globals()["diagonal"](input, diagonal)
    raise RuntimeError(f"diag(): Supports 1D or 2D tensors. Got {input.ndim}D")
