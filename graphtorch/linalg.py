"""torch.linalg: norms, inverse, solve, determinants and the Cholesky, QR and singular value
decompositions.

det, slogdet, cholesky, qr and svd are primitives (numpy's LAPACK kernels; the LLVM backend calls
them from the native code; qr's and svd's backward rules are in linalg_grads.py); the rest are
compositions, so their gradients come from those primitives.
"""

from __future__ import annotations

from . import linalg_grads  # noqa: F401  (registers the qr and svd backward rules)
from .compiler.primitives import QR_MODES, _norm_dim, _pretty
from .dispatch import apply, op
from .ops.linalg import inverse, matmul
from .ops.reduction import _return_type, amax, amin, return_types, sum, vector_norm
from .ops.shape import slice_dim
from .tensor import Tensor

QRResult = _return_type("linalg_qr", ("Q", "R"))  # torch.return_types.linalg_qr
SVDResult = _return_type("linalg_svd", ("U", "S", "Vh"))


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
    """'fro', 'nuc', 2 and -2 (from the singular values), and the induced 1, -1, inf, -inf norms
    (max/min over columns or rows of the absolute sums)."""
    if A.ndim < 2:
        raise RuntimeError("linalg.matrix_norm: The input tensor A must have at least 2 dimensions.")
    rows, cols = (_norm_dim(d, A.ndim) for d in dim)
    if rows == cols:
        raise RuntimeError(f"linalg.matrix_norm: dims must be different. Got ({dim[0]}, {dim[1]})")
    if ord == "fro":
        return vector_norm(A, 2, (rows, cols), keepdim, dtype=dtype)
    if ord in ("nuc", 2, -2):
        return _spectral_norm(A, ord, rows, cols, keepdim, dtype)
    if ord not in (1, -1, float("inf"), float("-inf")):
        raise RuntimeError(f"linalg.matrix_norm: Order {ord} not supported.")
    over, across = (rows, cols) if ord in (1, -1) else (cols, rows)  # 1: column sums, inf: row sums
    sums = sum(A.abs() if dtype is None else A.to(dtype).abs(), over, keepdim=True)
    extreme = (amax if ord > 0 else amin)(sums, across, keepdim=True)
    return extreme if keepdim else extreme.squeeze((rows, cols) if rows < cols else (cols, rows))


def _spectral_norm(A, ord, rows: int, cols: int, keepdim: bool, dtype) -> Tensor:
    """The sum ('nuc'), largest (2) or smallest (-2) singular value of the (rows, cols) matrices."""
    rest = [d for d in range(A.ndim) if d not in (rows, cols)]
    s = svdvals((A if dtype is None else A.to(dtype)).permute(*rest, rows, cols))
    out = sum(s, -1) if ord == "nuc" else (amax if ord == 2 else amin)(s, -1)
    if not keepdim:
        return out
    for d in sorted((rows, cols)):
        out = out.unsqueeze(d)
    return out


def qr(A, mode: str = "reduced"):
    """(Q, R) with A = QR, Q orthonormal columns, R upper triangular; mode 'r' gives an empty Q."""
    if mode not in QR_MODES:  # before the shape checks, as torch
        raise RuntimeError(f"qr received unrecognized mode '{mode}' but expected one of 'reduced' (default), "
                           "'r', or 'complete'")
    r = apply("qr", A, mode=mode, part="R")
    q = apply("qr", A, mode=mode, part="Q") if mode != "r" else _empty(A)
    return QRResult(q, r)


def _empty(A) -> Tensor:
    from .ops.creation import zeros

    return zeros(0, dtype=A.dtype)


def svd(A, full_matrices: bool = True, *, driver=None):
    """(U, S, Vh) with A = U diag(S) Vh, S descending; columns of U and rows of Vh are unique only up
    to sign (as in torch, whose LAPACK may pick other signs)."""
    parts = (apply("svd", A, full_matrices=bool(full_matrices), part=p) for p in ("U", "S", "Vh"))
    return SVDResult(*parts)


def svdvals(A, *, driver=None) -> Tensor:
    """The singular values of (batches of) matrices, descending."""
    return apply("svd", A, full_matrices=False, part="S")


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


__all__ = ["norm", "vector_norm", "matrix_norm", "inv", "det", "slogdet", "logdet", "cholesky", "solve", "qr", "svd",
           "svdvals"]
