"""Index mapping in CUDA C: the value of any elementwise/injective member at a position of its shape.

The one mechanism behind every fused kernel, as llvm/index.py is for the CPU: an elementwise group
evaluates its root at each position of the root's shape; a reduction evaluates its prologue at
positions of the anchor's input and its epilogue at positions of its output; a GEMM loads its
operands and applies its epilogue through it. Walking back from a value to its inputs, an
elementwise op keeps the position, an injective op maps it (expand drops broadcast dims, permute
reorders, slice scales and shifts, pad/concat select, gather reads the index, unfold maps window
coordinates), and a group input is loaded from its buffer.

A position is an `Index`: a multi-index, a flat row-major offset, or both (C expressions); each
form is computed from the other only when a consumer needs it, so an elementwise chain over
contiguous buffers costs no division at all.
"""

from __future__ import annotations

from collections.abc import Callable

from ..dtypes import row_major_strides as strides  # one definition for every backend
from ..ir import Node
from ..primitives import Kind
from . import scalar
from .kernel import Kernel, cuda_unsupported


class Index:
    """A position in a tensor of `shape`: `dims` (one C expression per dim) and/or `flat`."""

    def __init__(self, k: Kernel, shape: tuple[int, ...], *, dims: list[str] | None = None, flat: str | None = None):
        self.k, self.shape = k, tuple(shape)
        self._dims, self._flat = (list(dims) if dims is not None else None), flat

    def flat(self) -> str:
        if self._flat is None:
            terms = [d if st == 1 else f"{_paren(d)} * {st}"
                     for d, st, n in zip(self._dims, strides(self.shape), self.shape) if n != 1 and d != "0"]
            self._flat = self.k.let(self.k.index_t, " + ".join(terms) or "0", "f")
        return self._flat

    def dims(self) -> list[str]:
        if self._dims is None:
            self._dims = unflatten(self.k, self._flat, self.shape)
        return self._dims

    def same_position(self, other: Index) -> bool:
        """True when both name the same position by the same expressions (checked statically)."""
        if self is other:
            return True
        if self._flat is not None and self._flat == other._flat:
            return True
        return self._dims is not None and self._dims == other._dims


def _paren(expr: str) -> str:
    """`expr` safe to put beside `*`, `/` or `%`."""
    if expr.isidentifier() or expr.isdigit() or _wrapped(expr):
        return expr
    return f"({expr})"


def _wrapped(expr: str) -> bool:
    """True for "(...)" where the first parenthesis closes at the end."""
    depth = 0
    for j, ch in enumerate(expr):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            return j == len(expr) - 1 and ch == ")"
    return False


def unflatten(k: Kernel, flat: str, shape: tuple[int, ...]) -> list[str]:
    dims: list[str] = []
    rest = flat
    for d in range(len(shape) - 1, -1, -1):
        if shape[d] == 1:
            dims.append("0")
        elif d == 0 or all(s == 1 for s in shape[:d]):
            dims.append(rest)
        else:
            dims.append(k.let(k.index_t, f"{_paren(rest)} % {shape[d]}", "d"))
            rest = k.let(k.index_t, f"{_paren(rest)} / {shape[d]}", "q")
    return dims[::-1]


Override = Callable[[Index], str]


class Env:
    """One evaluation: where values come from, and the values already computed at a position."""

    def __init__(self, k: Kernel, overrides: dict[Node, Override] | None = None):
        self.k = k
        self.overrides = overrides or {}
        self.memo: dict[tuple[Node, int], str] = {}
        self._keep: list[Index] = []  # keeps memo keys' Index objects alive (ids are not reused)


def value(env: Env, node: Node, idx: Index) -> str:
    """The C value (a name or literal, register type) of `node` at `idx`."""
    key = (node, id(idx))
    if key not in env.memo:
        env._keep.append(idx)
        env.memo[key] = _compute(env, node, idx)
    return env.memo[key]


def at(env: Env, node: Node, dims: list[str]) -> str:
    return value(env, node, Index(env.k, node.type.shape, dims=dims))


def _compute(env: Env, node: Node, idx: Index) -> str:
    if node in env.overrides:
        return env.overrides[node](idx)
    k = env.k
    if k.has_buffer(node):
        return k.load(node, idx.flat())
    if node.op != "call":
        raise cuda_unsupported(node, "it is neither a group input nor computed in the group")
    kind, name, d = node.prim.kind, node.target, node.type.dtype
    if name == "full":
        return scalar.literal(d, node.attrs["value"])
    if name == "iota":
        return k.let(scalar.ctype(d), f"(({scalar.ctype(d)}){idx.dims()[node.attrs['dim']]})", "v")
    if kind is Kind.ELEMENTWISE:
        args = [value(env, i, idx) for i in node.inputs]
        in_dtype = node.inputs[-1].type.dtype  # where(c, a, b): the operand dtype is a's and b's
        return k.let(scalar.ctype(d), scalar.emit(name, args, in_dtype, d, node.attrs), "v")
    if kind is Kind.INJECTIVE:
        return _INJECTIVE[name](env, node, idx)
    raise cuda_unsupported(node, f"it is a {kind.value} op, which cannot be computed per element")


# ---------------------------------------------------------------- injective ops: output position -> input position


def _expand(env, node, idx):
    (x,) = node.inputs
    if x.type.shape == node.type.shape:
        return value(env, x, idx)
    lead = node.type.ndim - x.type.ndim
    out = idx.dims()
    return at(env, x, ["0" if s == 1 else out[lead + j] for j, s in enumerate(x.type.shape)])


def _reshape(env, node, idx):
    (x,) = node.inputs
    return value(env, x, Index(env.k, x.type.shape, flat=idx.flat()))


def _permute(env, node, idx):
    (x,) = node.inputs
    out = idx.dims()
    dims = ["0"] * x.type.ndim
    for i, d in enumerate(node.attrs["dims"]):
        dims[d] = out[i]
    return at(env, x, dims)


def _slice(env, node, idx):
    (x,) = node.inputs
    if x.type.shape == node.type.shape:
        return value(env, x, idx)
    a = node.attrs
    dims = []
    for d, start, step in zip(idx.dims(), a["starts"], a["steps"]):
        d = f"{d} * {step}" if step != 1 else d
        dims.append(f"({d} + {start})" if start else d)
    return at(env, x, dims)


def _pad(env, node, idx):
    (x,) = node.inputs
    k, d = env.k, node.type.dtype
    pad_value = scalar.literal(d, node.attrs["value"])
    if x.type.numel == 0:
        return pad_value
    inside, dims = [], []
    for p, (lo, hi), n in zip(idx.dims(), node.attrs["pads"], x.type.shape):
        if lo == 0 and hi == 0:
            dims.append(p)
            continue
        q = k.let(k.index_t, f"{p} - {lo}", "p")
        ok = k.let("bool", f"{q} >= 0 && {q} < {n}", "in")
        inside.append(ok)
        dims.append(k.let(k.index_t, f"{ok} ? {q} : 0", "p"))  # outside reads element 0: never out of bounds
    v = at(env, x, dims)
    return k.let(scalar.ctype(d), f"({' && '.join(inside)}) ? {v} : {pad_value}", "v") if inside else v


def _concat(env, node, idx):
    dim = node.attrs["dim"]
    parts = [x for x in node.inputs if x.type.shape[dim] > 0]
    k, out = env.k, idx.dims()
    at_dim = k.let(k.index_t, out[dim], "c")
    lo, picks = 0, []
    for x in parts:
        hi = lo + x.type.shape[dim]
        mine = k.let("bool", f"{at_dim} >= {lo} && {at_dim} < {hi}", "in")
        local = k.let(k.index_t, f"{mine} ? {at_dim} - {lo} : 0", "c")
        picks.append((mine, at(env, x, out[:dim] + [local] + out[dim + 1:])))
        lo = hi
    result = picks[-1][1]
    for mine, v in reversed(picks[:-1]):
        result = k.let(scalar.ctype(node.type.dtype), f"{mine} ? {v} : {result}", "v")
    return result


def _gather(env, node, idx):
    x, index_node = node.inputs
    dim = node.attrs["dim"]
    n, k = x.type.shape[dim], env.k
    raw = value(env, index_node, idx)
    wrapped = k.let("long long", f"{raw} < 0 ? {raw} + {n}LL : {raw}", "g")
    bad = k.let("bool", f"(unsigned long long){wrapped} >= {n}ULL", "bad")  # negative after wrapping: huge
    with k.block(f"if ({bad})"):
        k.index_error(raw, dim, n)
    if n == 0:
        return scalar.literal(node.type.dtype, 0)
    safe = k.let(k.index_t, f"{bad} ? 0 : ({k.index_t}){wrapped}", "g")
    out = idx.dims()
    return at(env, x, out[:dim] + [safe] + out[dim + 1:])


def _unfold(env, node, idx):
    (x,) = node.inputs
    a = node.attrs
    n, c, oh, ow, kh, kw = idx.dims()
    (s0, s1), (d0, d1) = a["stride"], a["dilation"]
    return at(env, x, [n, c, f"({oh} * {s0} + {kh} * {d0})", f"({ow} * {s1} + {kw} * {d1})"])


_INJECTIVE = {"expand": _expand, "reshape": _reshape, "permute": _permute, "slice": _slice, "pad": _pad,
              "concat": _concat, "gather": _gather, "unfold": _unfold}
