"""torch.linalg: norms, inverse, solve, determinants and the Cholesky factor.

det, slogdet and cholesky are primitives (numpy's LAPACK kernels; the LLVM backend calls them
from the native code); the rest are compositions, so their gradients come from those primitives.
"""

from __future__ import annotations

from .compiler.primitives import _norm_dim, _pretty
from .dispatch import apply, op
from .ops.linalg import inverse, matmul
from .ops.reduction import amax, amin, return_types, sum, vector_norm
from .ops.shape import slice_dim
from .tensor import Tensor


def _check_float(A: Tensor, name: str) -> None:
    if not A.dtype.is_floating_point:
        raise RuntimeError(f"linalg.{name}: Expected a floating point or complex tensor as input. "
                           f"Got {_pretty(A.dtype)}")


def inv(A) -> Tensor:
    """The inverse of (batches of) square matrices; unlike Tensor.inverse, integers are refused (torch's)."""
    _check_float(A, "inv")
    return inverse(A)


def norm(A, ord=None, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """A vector norm over dim (or all of A), or a matrix norm when ord or a 2-tuple dim says so."""
    if isinstance(dim, int):
        dim = (dim,)
    if isinstance(ord, str) and dim is not None and len(dim) != 2:
        raise RuntimeError(f"linalg.matrix_norm: dim must be a 2-tuple. Got {' '.join(map(str, dim))}")
    if ord is not None and dim is None:  # torch: the matrix norm of a 2-D A, the vector norm of a 1-D one
        if A.ndim not in (1, 2):
            raise RuntimeError("linalg.norm: If dim is not specified but ord is, the input must be 1D or 2D. "
                               f"Got {A.ndim}D.")
        dim = (-2, -1) if A.ndim == 2 else None
    if isinstance(ord, str) or (ord is not None and isinstance(dim, (tuple, list)) and len(dim) == 2):
        return matrix_norm(A, "fro" if ord is None else ord, dim if dim is not None else (-2, -1), keepdim,
                           dtype=dtype)
    if ord is None and dim is None:
        return vector_norm(A.flatten(), 2, None, keepdim, dtype=dtype).reshape(*([1] * A.ndim if keepdim else []))
    return vector_norm(A, 2 if ord is None else ord, dim, keepdim, dtype=dtype)


def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim: bool = False, *, dtype=None) -> Tensor:
    """'fro', and the induced 1, -1, inf, -inf norms (max/min over columns or rows of the absolute sums)."""
    if A.ndim < 2:
        raise RuntimeError("linalg.matrix_norm: The input tensor A must have at least 2 dimensions.")
    rows, cols = (_norm_dim(d, A.ndim) for d in dim)
    if ord == "fro":
        return vector_norm(A, 2, (rows, cols), keepdim, dtype=dtype)
    if ord not in (1, -1, float("inf"), float("-inf")):
        raise RuntimeError(f"linalg.matrix_norm: Order {ord} not supported.")
    over, across = (rows, cols) if ord in (1, -1) else (cols, rows)  # 1: column sums, inf: row sums
    sums = sum(A.abs() if dtype is None else A.to(dtype).abs(), over, keepdim=True)
    extreme = (amax if ord > 0 else amin)(sums, across, keepdim=True)
    return extreme if keepdim else extreme.squeeze((rows, cols) if rows < cols else (cols, rows))


@op("LinalgDetBackward0")
def det(A) -> Tensor:
    return apply("det", A)


@op("LinalgSlogdetBackward0")
def slogdet(A):
    both = apply("slogdet", A)
    last = both.ndim - 1
    sign, logabs = (slice_dim(both, last, k, k + 1, 1).squeeze(-1) for k in (0, 1))
    return return_types("slogdet", sign, logabs)  # sign has a zero gradient (the rule reads only logabs)


def logdet(A) -> Tensor:
    """log det A: NaN where the determinant is negative, -inf where it is zero (torch's)."""
    from .ops.elementwise import where

    sign, logabs = slogdet(A)
    return where(sign.lt(0), float("nan"), logabs)


@op("LinalgCholeskyExBackward0")
def cholesky(A, *, upper: bool = False) -> Tensor:
    lower = apply("cholesky", A)
    return lower.transpose(-2, -1) if upper else lower


def solve(A, B, *, left: bool = True) -> Tensor:
    """X with A X = B (left) or X A = B; B may be a vector."""
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise RuntimeError("linalg.solve: A must be batches of square matrices, but they are "
                           f"{A.shape[-2] if A.ndim > 1 else 1} by {A.shape[-1]} matrices")
    if A.dtype is not B.dtype:
        raise RuntimeError(f"linalg.solve: Expected A and B to have the same dtype, but found A of type "
                           f"{_pretty(A.dtype)} and B of type {_pretty(B.dtype)} instead")
    if not left:
        return solve(A.transpose(-2, -1), B.transpose(-2, -1)).transpose(-2, -1)
    vector = B.ndim == 1 or (B.ndim == A.ndim - 1 and tuple(B.shape) == tuple(A.shape[:-1]))
    rows, cols = (B.shape[-1], 1) if vector else tuple(B.shape[-2:])
    if rows != A.shape[-1]:
        raise RuntimeError("linalg.solve: Incompatible shapes of A and B for the equation AX = B "
                           f"({A.shape[-2]}x{A.shape[-1]} and {rows}x{cols})")
    X = matmul(inverse(A), B.unsqueeze(-1) if vector else B)
    return X.squeeze(-1) if vector else X


__all__ = ["norm", "vector_norm", "matrix_norm", "inv", "det", "slogdet", "logdet", "cholesky", "solve"]
