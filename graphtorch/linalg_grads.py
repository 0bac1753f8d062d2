"""Backward rules of the qr and svd primitives (real matrices), as PyTorch defines them.

Each primitive gives one factor (`part`), and each rule gives that factor's share of dA: both
backward formulas are linear in the factors' gradients, so the shares add up to the whole. A rule
recomputes the other factors from A (one host call each; CSE merges repeats in a compiled graph).
"""

from __future__ import annotations

from . import dtypes as dt
from .autograd_rules import rule, zeros
from .dispatch import apply
from .ops.indexing import triu
from .ops.linalg import inverse
from .ops.shape import cat, narrow
from .tensor import Tensor


def _t(x: Tensor) -> Tensor:
    return x.transpose(-2, -1)


def _upper_mirrored(x: Tensor) -> Tensor:
    """The symmetric matrix with x's upper triangle (diagonal included) on both sides."""
    return triu(x) + _t(triu(x, 1))


def _qr_square_grad(gq: Tensor | None, gr: Tensor | None, q: Tensor, r: Tensor) -> Tensor:
    """dA for A = QR with R square (m >= n): with X = Q^T dA R^-1, dR = (triu(X) + tril(X, -1)^T) R
    and dQ = dA R^-1 - Q (dR R^-1), so gA = (gQ + Q sym(triu(M))) R^-T, M = gR R^T - Q^T gQ."""
    m = -(_t(q) @ gq) if gq is not None else None
    if gr is not None:
        m = gr @ _t(r) if m is None else m + gr @ _t(r)
    ga = q @ _upper_mirrored(m)
    return (ga if gq is None else ga + gq) @ _t(inverse(r))


@rule("qr", "LinalgQrBackward0", save=(0,), save_output=True)
def _qr(g, s, attrs, t):
    a, mine = s
    mode, part = attrs["mode"], attrs["part"]
    if mode == "r":
        raise RuntimeError("The derivative of linalg.qr depends on Q, which is not computed when mode='r'. Please use "
                           "linalg.qr(A, mode='reduced') if you are going to differentiate through linalg.qr.")
    rows, cols = a.shape[-2], a.shape[-1]
    if mode == "complete" and rows > cols:
        raise RuntimeError("The QR decomposition is not differentiable when mode='complete' and nrows > ncols.")
    other = apply("qr", a, mode=mode, part="R" if part == "Q" else "Q")
    q, r = (mine, other) if part == "Q" else (other, mine)
    gq, gr = (g, None) if part == "Q" else (None, g)
    if rows >= cols:
        return (_qr_square_grad(gq, gr, q, r),)
    # A = Q [R1 R2] with R1 square: X = A[:, :m] = Q R1 is a square QR, Y = A[:, m:] = Q R2 reads Q
    r1 = narrow(r, -1, 0, rows)
    if gr is None:
        return (cat([_qr_square_grad(gq, None, q, r1), zeros((*a.shape[:-1], cols - rows), a.dtype)], -1),)
    gr1, gr2 = narrow(gr, -1, 0, rows), narrow(gr, -1, rows, cols - rows)
    y = narrow(a, -1, rows, cols - rows)
    return (cat([_qr_square_grad(y @ _t(gr2), gr1, q, r1), q @ gr2], -1),)


def _reduced_svd(a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return tuple(apply("svd", a, full_matrices=False, part=p) for p in ("U", "S", "Vh"))


def _skew_over_gaps(x: Tensor, s: Tensor) -> Tensor:
    """(X - X^T) / E with E_jk = s_k^2 - s_j^2 off the diagonal (the diagonal of X - X^T is 0)."""
    sq = s * s
    gaps = sq.unsqueeze(-2) - sq.unsqueeze(-1)
    k = s.shape[-1]
    shape = (*s.shape, k)
    eye = apply("eq", apply("iota", shape=shape, dim=len(shape) - 2, dtype=dt.int64),
                apply("iota", shape=shape, dim=len(shape) - 1, dtype=dt.int64))
    return (x - _t(x)) / (gaps + eye.to(s.dtype))


@rule("svd", "LinalgSvdBackward0", save=(0,))
def _svd(g, s, attrs, t):
    """dA = U [skew(U^T gU)/E S + S skew(V^T gV)/E + diag(gS)] V^T + (I - UU^T) gU S^-1 V^T
    + U S^-1 gV^T (I - VV^T); with full_matrices, only the first min(m, n) columns of U (rows of
    Vh) count, as in torch."""
    (a,) = s
    u, sv, vh = _reduced_svd(a)
    k = sv.shape[-1]
    part = attrs["part"]
    if part == "S":
        return ((u * g.unsqueeze(-2)) @ vh,)
    if part == "U":
        gu = narrow(g, -1, 0, k)
        inner = _skew_over_gaps(_t(u) @ gu, sv) * sv.unsqueeze(-2)
        return (u @ inner @ vh + ((gu - u @ (_t(u) @ gu)) / sv.unsqueeze(-2)) @ vh,)
    gvh = narrow(g, -2, 0, k)
    inner = sv.unsqueeze(-1) * _skew_over_gaps(vh @ _t(gvh), sv)
    return (u @ inner @ vh + u @ ((gvh - (gvh @ _t(vh)) @ vh) / sv.unsqueeze(-1)),)
