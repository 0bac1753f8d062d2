"""torch.linalg: norms, inv and solve, as compositions of existing primitives.

inv is the `inverse` primitive (its VJP is -A^-T g A^-T); solve is inv(A) @ B, so its gradient
comes from inverse and matmul. The 2-norm keeps torch's zero subgradient at the origin.
"""

from __future__ import annotations

import math

from .autograd.grad_mode import is_grad_enabled
from .compiler.primitives import _pretty
from .dispatch import apply, attach_custom, op
from .ops.elementwise import abs, expand_to, ne, pow, scalar, sqrt, where
from .ops.linalg import matmul
from .ops.reduction import _dims, amax, amin, sum
from .tensor import Tensor


def _check_float(input: Tensor, name: str) -> None:
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"linalg.{name}: Expected a floating point or complex tensor as input. "
                           f"Got {_pretty(input.dtype)}")


def _safe_sqrt(s: Tensor) -> Tensor:
    """sqrt(s) whose gradient is 0 (not NaN) where s == 0, as torch's norm backward gives."""
    zero = expand_to(scalar(0, s.dtype), tuple(s.shape))
    nonzero = ne(s, zero)
    return where(nonzero, sqrt(where(nonzero, s, expand_to(scalar(1, s.dtype), tuple(s.shape)))), zero)


@op("LinalgVectorNormBackward0")
def vector_norm(x: Tensor, ord: float = 2, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """The ord-norm of x over dim (all dims when None), the entries taken as one vector."""
    _check_float(x, "vector_norm")
    if dtype is not None:
        x = x.to(dtype)
    dims = _dims(x, dim)
    if ord == 2:
        return _safe_sqrt(sum(x * x, dims, keepdim))
    if ord == math.inf:
        return amax(abs(x), dims, keepdim)
    if ord == -math.inf:
        return amin(abs(x), dims, keepdim)
    if ord == 0:
        return _count_nonzero(x, dims, keepdim)
    if ord == 1:
        return sum(abs(x), dims, keepdim)
    return pow(sum(pow(abs(x), ord), dims, keepdim), 1.0 / ord)


def _count_nonzero(x: Tensor, dims: tuple, keepdim: bool) -> Tensor:
    """The 0-"norm". Like torch, it has history when x does, but no gradient reaches x."""
    out = sum(ne(x, 0).to(x.dtype), dims, keepdim)
    if is_grad_enabled() and x.requires_grad:
        attach_custom(out, "LinalgVectorNormBackward0", lambda grad, saved: [None], [], [x])
    return out


_MATRIX_ORDS = ("fro", 1, -1, math.inf, -math.inf)


@op("LinalgVectorNormBackward0")
def matrix_norm(A: Tensor, ord="fro", dim=(-2, -1), keepdim: bool = False, *, dtype=None) -> Tensor:
    """The Frobenius norm or an induced 1/inf norm (max/min absolute column/row sum) over dim."""
    _check_float(A, "matrix_norm")
    if A.ndim < 2:
        raise RuntimeError("linalg.matrix_norm: The input tensor A must have at least 2 dimensions.")
    if ord not in _MATRIX_ORDS:
        raise RuntimeError(f"linalg.matrix_norm: Order {ord} not supported (graphtorch has {_MATRIX_ORDS}).")
    if ord == "fro":
        return vector_norm(A, 2, dim, keepdim, dtype=dtype)
    rows, cols = (d % A.ndim for d in dim)
    summed, reduced = (rows, cols) if ord in (1, -1) else (cols, rows)  # 1: column sums, inf: row sums
    sums = sum(abs(A if dtype is None else A.to(dtype)), summed, keepdim=True)
    pick = amax if ord > 0 else amin
    out = pick(sums, reduced, keepdim=True)
    return out if keepdim else apply("reshape", out, shape=tuple(
        s for i, s in enumerate(A.shape) if i not in (rows, cols)))


def norm(A: Tensor, ord=None, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """vector_norm for one dim (or all, flattened, when ord is None), matrix_norm for two."""
    if dim is not None and not isinstance(dim, (tuple, list)):
        dim = (dim,)
    if ord is None:
        return vector_norm(A, 2, dim, keepdim, dtype=dtype)
    if isinstance(ord, str) and dim is not None and len(dim) != 2:
        raise RuntimeError(f"linalg.matrix_norm: dim must be a 2-tuple. Got {' '.join(map(str, dim))}")
    if (dim is not None and len(dim) == 2) or (dim is None and A.ndim == 2):
        return matrix_norm(A, ord, dim or (-2, -1), keepdim, dtype=dtype)
    if dim is None and A.ndim != 1:
        raise RuntimeError(f"linalg.norm: If dim is not specified but ord is, the input must be 1D or 2D. "
                           f"Got {A.ndim}D.")
    return vector_norm(A, ord, dim, keepdim, dtype=dtype)


@op("LinalgInvExBackward0")
def inv(A: Tensor) -> Tensor:
    """The inverse of (batches of) square matrices."""
    _check_float(A, "inv")
    return apply("inverse", A)


@op("LinalgSolveExBackward0")
def solve(A: Tensor, B: Tensor, *, left: bool = True) -> Tensor:
    """X with A X = B (left) or X A = B; B may be a vector (batched like torch)."""
    _check_float(A, "solve")
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise RuntimeError(f"linalg.solve: A must be batches of square matrices, but they are "
                           f"{A.shape[-2] if A.ndim > 1 else 1} by {A.shape[-1]} matrices")
    if A.dtype is not B.dtype:
        raise RuntimeError(f"linalg.solve: Expected A and B to have the same dtype, but found A of type "
                           f"{_pretty(A.dtype)} and B of type {_pretty(B.dtype)} instead")
    if not left:
        return matmul(B, inv(A))
    vector = B.ndim == 1 or (B.ndim == A.ndim - 1 and tuple(B.shape) == tuple(A.shape[:-1]))
    Bm = B.unsqueeze(-1) if vector else B
    if Bm.shape[-2] != A.shape[-1]:
        raise RuntimeError(f"linalg.solve: Incompatible shapes of A and B for the equation AX = B "
                           f"({A.shape[-2]}x{A.shape[-1]} and {Bm.shape[-2]}x{Bm.shape[-1]})")
    X = matmul(inv(A), Bm)
    return X.squeeze(-1) if vector else X


__all__ = ["vector_norm", "matrix_norm", "norm", "inv", "solve"]
