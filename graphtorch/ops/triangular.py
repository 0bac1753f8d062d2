"""Triangular parts of (batches of) matrices: tril/triu, as a where over an index mask.

The mask is built from two `iota` nodes (row and column numbers), so the op traces into plain
elementwise primitives, fuses, and differentiates through `where` with no rule of its own.
"""

from __future__ import annotations

from .. import dtypes as dt
from ..dispatch import apply, op
from ..tensor import Tensor
from .elementwise import expand_to, scalar


def _keep_mask(input: Tensor, diagonal: int, lower: bool, name: str) -> Tensor:
    """True where tril (lower) / triu keeps the entry: column - row <= / >= diagonal."""
    if input.ndim < 2:
        raise RuntimeError(f"{name}: input tensor must have at least 2 dimensions")
    rows, cols = input.shape[-2:]
    row = apply("iota", shape=(rows, cols), dim=0, dtype=dt.int64)
    col = apply("iota", shape=(rows, cols), dim=1, dtype=dt.int64)
    offset = apply("sub", col, row)
    bound = expand_to(scalar(int(diagonal), dt.int64), (rows, cols))
    return expand_to(apply("le" if lower else "ge", offset, bound), tuple(input.shape))


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
