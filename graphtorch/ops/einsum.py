"""torch.einsum, as permutes, sums and batched matmuls (so it traces to the GEMM path).

Each operand first loses its repeated letters (a diagonal) and the letters no one else needs (a sum);
then operands are contracted left to right, two at a time: the letters both keep are batch dims, the
letters both have and nobody needs later are the GEMM's inner dim.
"""

from __future__ import annotations

import math

from ..tensor import Tensor
from .shape import diagonal, permute


def einsum(equation: str, *operands) -> Tensor:
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    terms, output = _parse(equation.replace(" ", ""), operands)
    pairs = [_prepare(t, term, output, terms[:k] + terms[k + 1:]) for k, (t, term) in enumerate(zip(operands, terms))]
    x, letters = pairs[0]
    for k, (y, other) in enumerate(pairs[1:], start=1):
        later = set(output).union(*[p[1] for p in pairs[k + 1:]])
        x, letters = _contract(x, letters, y, other, later)
    x, letters = _sum_out(x, letters, set(output))
    return permute(x, *[letters.index(c) for c in output]) if letters else x


def _parse(equation: str, operands) -> tuple[list[str], str]:
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise RuntimeError(f"einsum(): {'more' if len(operands) > len(terms) else 'fewer'} operands were provided "
                         "than specified in the equation")
    width = max((t.ndim - len(term.replace("...", "")) for t, term in zip(operands, terms) if "..." in term),
                default=0)
    ell = "".join(chr(ord("A") + i) for i in range(width))  # ellipsis dims as upper-case letters
    terms = [term.replace("...", ell[width - (t.ndim - len(term.replace("...", ""))):]) for t, term in
             zip(operands, terms)]
    for t, term in zip(operands, terms):
        if len(term) != t.ndim:
            raise RuntimeError(f"einsum(): the number of subscripts in the equation ({len(term)}) does not match "
                               f"the number of dimensions ({t.ndim}) for operand {terms.index(term)}"
                               f"{'' if '...' in lhs else ' and no ellipsis was given'}")
    if arrow:
        return terms, rhs.replace("...", ell)
    counts = "".join(terms)
    return terms, ell + "".join(sorted(c for c in set(counts) if counts.count(c) == 1 and c.islower()))


def _prepare(t: Tensor, term: str, output: str, others: list[str]) -> tuple[Tensor, str]:
    """Take the diagonal of repeated letters, and sum out letters that only this operand has."""
    letters = term
    for c in dict.fromkeys(term):
        while letters.count(c) > 1:
            i, j = letters.index(c), letters.index(c, letters.index(c) + 1)
            t = diagonal(t, 0, i, j)  # the diagonal becomes the last dim
            letters = "".join(x for k, x in enumerate(letters) if k not in (i, j)) + c
    return _sum_out(t, letters, set(output).union(*others))


def _sum_out(t: Tensor, letters: str, keep: set[str]) -> tuple[Tensor, str]:
    dims = [k for k, c in enumerate(letters) if c not in keep]
    if not dims:
        return t, letters
    return t.sum(dims), "".join(c for c in letters if c in keep)


def _contract(a: Tensor, la: str, b: Tensor, lb: str, later: set[str]) -> tuple[Tensor, str]:
    batch = [c for c in la if c in lb and c in later]
    inner = [c for c in la if c in lb and c not in later]
    left, right = [c for c in la if c not in lb], [c for c in lb if c not in la]
    size = {c: max(a.shape[la.index(c)] if c in la else 1, b.shape[lb.index(c)] if c in lb else 1) for c in la + lb}
    a = _as_matrix(a, la, batch, left, inner, size)
    b = _as_matrix(b, lb, batch, inner, right, size)
    out = (a @ b).reshape(*[size[c] for c in batch + left + right])
    return out, "".join(batch + left + right)


def _as_matrix(t: Tensor, letters: str, batch: list, rows: list, cols: list, size: dict) -> Tensor:
    """t as (prod(batch), prod(rows), prod(cols)), size-1 dims broadcast to `size`."""
    order = batch + rows + cols
    t = permute(t, *[letters.index(c) for c in order]).expand(*[size[c] for c in order])
    n = lambda cs: math.prod(size[c] for c in cs)
    return t.reshape(n(batch), n(rows), n(cols))
