"""VJP rules: one per differentiable primitive, written with primitives, in one table.

A rule gets the output gradient `g`, the values it asked to save (`s`: inputs by position,
then the output if `save_output`), the primitive's attributes and the inputs' (shape, dtype,
requires_grad); it returns one gradient per input (None where there is none). Because rules
are ordinary tensor code, running them on tracer tensors records the backward graph: the
compiler needs no rules of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from . import dtypes as dt
from .dispatch import apply


@dataclass(frozen=True)
class Rule:
    name: str  # PyTorch's grad_fn name for the primitive alone
    fn: Callable
    save: tuple[int, ...] = ()
    save_output: bool = False
    # saved input -> the inputs whose gradients read it: saved only when one of them requires grad
    # (as torch: x * 2 does not save x, so x may then be modified in place)
    needed_by: dict[int, tuple[int, ...]] | None = None


RULES: dict[str, Rule] = {}


def rule(prim: str, name: str, save: tuple[int, ...] = (), save_output: bool = False, needed_by=None):
    def deco(fn):
        RULES[prim] = Rule(name, fn, save, save_output, needed_by)
        return fn
    return deco


# ---------------------------------------------------------------- helpers


def full_like(x, value):
    return apply("expand", apply("full", shape=(), value=float(value), dtype=x.dtype), shape=tuple(x.shape))


def zeros(shape, dtype):
    return apply("expand", apply("full", shape=(), value=0.0, dtype=dtype), shape=tuple(shape))


def mul(a, b):
    return apply("mul", a, b)


def to_dtype(x, dtype):
    return x if x.dtype is dtype else apply("cast", x, dtype=dtype)


def mask(cond, dtype):
    return apply("cast", cond, dtype=dtype)


def sum_to(g, shape):
    """Sum `g` down to `shape` (the adjoint of expand)."""
    lead = g.ndim - len(shape)
    dims = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape) if s == 1 and g.shape[i + lead] != 1)
    if dims:
        g = apply("sum", g, dims=dims, keepdim=True)
    return apply("reshape", g, shape=tuple(shape)) if tuple(g.shape) != tuple(shape) else g


def transpose_last(x):
    dims = list(range(x.ndim))
    dims[-1], dims[-2] = dims[-2], dims[-1]
    return apply("permute", x, dims=tuple(dims))


# ---------------------------------------------------------------- elementwise


@rule("add", "AddBackward0")
def _add(g, s, attrs, t):
    return g, g


@rule("sub", "SubBackward0")
def _sub(g, s, attrs, t):
    return g, apply("neg", g)


@rule("mul", "MulBackward0", save=(0, 1), needed_by={0: (1,), 1: (0,)})
def _mul(g, s, attrs, t):
    a, b = s[0], s[1]
    return (mul(g, b) if t[0][2] else None), (mul(g, a) if t[1][2] else None)


@rule("div", "DivBackward0", save=(0, 1), needed_by={0: (1,)})
def _div(g, s, attrs, t):
    a, b = s[0], s[1]
    ga = apply("div", g, b)
    gb = apply("neg", apply("div", mul(ga, a), b)) if t[1][2] else None
    return ga, gb


@rule("pow", "PowBackward1", save=(0, 1), save_output=True)
def _pow(g, s, attrs, t):
    a, b, out = s
    ga = mul(g, mul(b, apply("pow", a, apply("sub", b, full_like(b, 1)))))
    gb = None
    if t[1][2]:
        # d/db a**b = a**b log a, taken as 0 where a == 0 (torch's convention)
        log_a = apply("where", apply("eq", a, full_like(a, 0)), full_like(a, 0), apply("log", a))
        gb = mul(g, mul(out, log_a))
    return ga, gb


def _extreme_vjp(prim):
    def fn(g, s, attrs, t):
        a, b = s[0], s[1]
        # the winner takes the gradient; a tie splits it (torch's maximum/minimum)
        wins = apply(prim, a, b)
        wa = apply("add", mask(wins, g.dtype), mul(mask(apply("eq", a, b), g.dtype), full_like(g, 0.5)))
        wb = apply("sub", full_like(g, 1), wa)
        return mul(g, wa), mul(g, wb)
    return fn


RULES["maximum"] = Rule("MaximumBackward0", _extreme_vjp("gt"), (0, 1))
RULES["minimum"] = Rule("MinimumBackward0", _extreme_vjp("lt"), (0, 1))


@rule("neg", "NegBackward0")
def _neg(g, s, attrs, t):
    return (apply("neg", g),)


@rule("exp", "ExpBackward0", save_output=True)
def _exp(g, s, attrs, t):
    return (mul(g, s[-1]),)


@rule("log", "LogBackward0", save=(0,))
def _log(g, s, attrs, t):
    return (apply("div", g, s[0]),)


@rule("sqrt", "SqrtBackward0", save_output=True)
def _sqrt(g, s, attrs, t):
    return (apply("div", g, mul(s[-1], full_like(g, 2))),)


@rule("abs", "AbsBackward0", save=(0,))
def _abs(g, s, attrs, t):
    return (mul(g, apply("sign", s[0])),)


@rule("sin", "SinBackward0", save=(0,))
def _sin(g, s, attrs, t):
    return (mul(g, apply("cos", s[0])),)


@rule("cos", "CosBackward0", save=(0,))
def _cos(g, s, attrs, t):
    return (apply("neg", mul(g, apply("sin", s[0]))),)


@rule("tanh", "TanhBackward0", save_output=True)
def _tanh(g, s, attrs, t):
    y = s[-1]
    return (mul(g, apply("sub", full_like(y, 1), mul(y, y))),)


@rule("sigmoid", "SigmoidBackward0", save_output=True)
def _sigmoid(g, s, attrs, t):
    y = s[-1]
    return (mul(g, mul(y, apply("sub", full_like(y, 1), y))),)


@rule("erf", "ErfBackward0", save=(0,))
def _erf(g, s, attrs, t):
    x = s[0]
    return (mul(g, mul(full_like(x, 2 / math.sqrt(math.pi)), apply("exp", apply("neg", mul(x, x))))),)


def _zero_grad(name):
    def fn(g, s, attrs, t):
        return tuple(zeros(shape, dtype) if dtype.is_floating_point else None for shape, dtype, _ in t)
    return Rule(name, fn)


for _p, _n in [("sign", "SignBackward0"), ("floor", "FloorBackward0"), ("ceil", "CeilBackward0"),
               ("round", "RoundBackward0"), ("floor_divide", "FloorDivideBackward0")]:
    RULES[_p] = _zero_grad(_n)


@rule("remainder", "RemainderBackward0", save=(0, 1))
def _remainder(g, s, attrs, t):
    a, b = s[0], s[1]
    return g, apply("neg", mul(g, apply("floor_divide", a, b)))


@rule("copy", "CloneBackward0")
def _copy(g, s, attrs, t):
    return (g,)


@rule("cast", "ToCopyBackward0")
def _cast(g, s, attrs, t):
    return (to_dtype(g, t[0][1]) if t[0][1].is_floating_point else None,)


@rule("where", "WhereBackward0", save=(0,))
def _where(g, s, attrs, t):
    c = s[0]
    z = zeros(g.shape, g.dtype)
    # only the branches that need a gradient: relu's zero branch does not (half its backward)
    return (None, apply("where", c, g, z) if t[1][2] else None, apply("where", c, z, g) if t[2][2] else None)


# ---------------------------------------------------------------- layout


@rule("expand", "ExpandBackward0")
def _expand(g, s, attrs, t):
    return (sum_to(g, t[0][0]),)


@rule("reshape", "ViewBackward0")
def _reshape(g, s, attrs, t):
    return (apply("reshape", g, shape=tuple(t[0][0])),)


@rule("permute", "PermuteBackward0")
def _permute(g, s, attrs, t):
    return (apply("permute", g, dims=_inverse_perm(attrs["dims"])),)


@rule("slice", "SliceBackward0")
def _slice(g, s, attrs, t):
    shape = t[0][0]
    for d, step in enumerate(attrs["steps"]):
        if step > 1:  # put step-1 zeros after every element along d
            g = _spread(g, d, step)
    pads = []
    for d, (n, start) in enumerate(zip(shape, attrs["starts"])):
        pads.append((start, n - start - g.shape[d]))
    return (apply("pad", g, pads=tuple(pads), value=0.0),)


def _spread(g, d, step):
    n = g.shape[d]
    x = apply("reshape", g, shape=(*g.shape[:d + 1], 1, *g.shape[d + 1:]))
    pads = [(0, 0)] * x.ndim
    pads[d + 1] = (0, step - 1)
    x = apply("pad", x, pads=tuple(pads), value=0.0)
    x = apply("reshape", x, shape=(*g.shape[:d], n * step, *g.shape[d + 1:]))
    stops = list(x.shape)
    stops[d] = (n - 1) * step + 1
    return apply("slice", x, starts=(0,) * x.ndim, stops=tuple(stops), steps=(1,) * x.ndim)


@rule("pad", "ConstantPadNdBackward0")
def _pad(g, s, attrs, t):
    pads = attrs["pads"]
    return (apply("slice", g, starts=tuple(lo for lo, _ in pads),
                  stops=tuple(lo + n for (lo, _), n in zip(pads, t[0][0])), steps=(1,) * g.ndim),)


@rule("concat", "CatBackward0")
def _concat(g, s, attrs, t):
    d, start, out = attrs["dim"], 0, []
    for shape, _, _ in t:
        starts, stops = [0] * g.ndim, list(g.shape)
        starts[d], stops[d] = start, start + shape[d]
        out.append(apply("slice", g, starts=tuple(starts), stops=tuple(stops), steps=(1,) * g.ndim))
        start += shape[d]
    return tuple(out)


@rule("gather", "GatherBackward0", save=(1,))
def _gather(g, s, attrs, t):
    return apply("scatter_add", zeros(t[0][0], g.dtype), s[1], g, dim=attrs["dim"]), None


@rule("scatter_add", "ScatterAddBackward0", save=(1,))
def _scatter_add(g, s, attrs, t):
    src = apply("gather", g, s[1], dim=attrs["dim"]) if t[2][2] else None
    return g, None, src


@rule("unfold", "Im2ColBackward0")
def _unfold(g, s, attrs, t):
    return (apply("fold", g, size=tuple(t[0][0][2:]), stride=attrs["stride"], dilation=attrs["dilation"]),)


@rule("fold", "Col2ImBackward0")
def _fold(g, s, attrs, t):
    kernel = tuple(t[0][0][4:])
    return (apply("unfold", g, kernel=kernel, stride=attrs["stride"], dilation=attrs["dilation"]),)


# ---------------------------------------------------------------- reductions


def _unreduce(g, shape, dims, keepdim):
    if not keepdim:
        g = apply("reshape", g, shape=tuple(1 if i in dims else n for i, n in enumerate(shape)))
    return apply("expand", g, shape=tuple(shape)) if tuple(g.shape) != tuple(shape) else g


@rule("sum", "SumBackward1")
def _sum(g, s, attrs, t):
    return (_unreduce(g, t[0][0], attrs["dims"], attrs["keepdim"]),)


@rule("prod", "ProdBackward1", save=(0,), save_output=True)
def _prod(g, s, attrs, t):
    x, out = s
    shape, dims, keep = t[0][0], attrs["dims"], attrs["keepdim"]
    return (apply("div", mul(_unreduce(g, shape, dims, keep), _unreduce(out, shape, dims, keep)), x),)


def _extreme_reduce_vjp(g, s, attrs, t):
    # ties share the gradient evenly (torch's amax/amin and full max()/min())
    x, out = s
    shape, dims, keep = t[0][0], attrs["dims"], attrs["keepdim"]
    hit = mask(apply("eq", x, _unreduce(out, shape, dims, keep)), g.dtype)
    count = apply("sum", hit, dims=dims, keepdim=True)
    share = apply("div", _unreduce(g, shape, dims, keep), apply("expand", count, shape=tuple(shape)))
    return (mul(share, hit),)


RULES["max"] = Rule("MaxBackward1", _extreme_reduce_vjp, (0,), True)
RULES["min"] = Rule("MinBackward1", _extreme_reduce_vjp, (0,), True)


@rule("cumsum", "CumsumBackward0")
def _cumsum(g, s, attrs, t):
    d = attrs["dim"]
    total = apply("expand", apply("sum", g, dims=(d,), keepdim=True), shape=tuple(g.shape))
    return (apply("add", apply("sub", total, apply("cumsum", g, dim=d)), g),)


# ---------------------------------------------------------------- matmul, convolution, linalg


@rule("matmul", "MmBackward0", save=(0, 1))
def _matmul(g, s, attrs, t):
    a, b = s[0], s[1]
    ga = apply("matmul", g, transpose_last(b)) if t[0][2] else None
    gb = apply("matmul", transpose_last(a), g) if t[1][2] else None
    return ga, gb


@rule("conv2d", "ConvolutionBackward0", save=(0, 1))
def _conv2d(g, s, attrs, t):
    x, w = s[0], s[1]
    return (conv2d_input_grad(g, w, t[0][0], **attrs) if t[0][2] else None,
            conv2d_weight_grad(g, x, t[1][0], **attrs) if t[1][2] else None)


def conv2d_input_grad(g, w, x_shape, stride, padding, dilation, groups):
    """At stride 1 the input gradient is a convolution of g with the flipped, transposed weight
    (a transposed convolution), so it runs as the backend's conv2d. At stride s the input rows
    (and columns) that share a residue mod s each see every (s / gcd(s, d))-th tap: one such
    convolution per residue pair ("phase"), interleaved, so no inserted zeros are multiplied."""
    o, cg, kh, kw = w.shape
    full = ((kh - 1) * dilation[0] - padding[0], (kw - 1) * dilation[1] - padding[1])
    if tuple(stride) == (1, 1) and min(full) >= 0:
        return apply("conv2d", g, _transposed_weight(w, groups), stride=(1, 1), padding=full, dilation=dilation,
                     groups=groups)
    return _conv2d_input_grad_phases(g, w, x_shape, stride, padding, dilation, groups)


def _transposed_weight(w, groups):
    """(O, C/G, KH, KW) -> (C, O/G, KH, KW), flipped: the weight of the transposed convolution."""
    o, cg, kh, kw = w.shape
    og = o // groups
    wt = apply("reshape", w, shape=(groups, og, cg, kh, kw))
    wt = apply("permute", wt, dims=(0, 2, 1, 3, 4))  # G, C/G, O/G, KH, KW
    wt = apply("reshape", wt, shape=(groups * cg, og, kh, kw))
    return _flip(_flip(wt, 2), 3)


def _flip(x, dim):
    """x reversed along dim (a gather with index size-1-i)."""
    shape, size = tuple(x.shape), x.shape[dim]
    last = apply("expand", apply("full", shape=(), value=float(size - 1), dtype=dt.int64), shape=shape)
    idx = apply("sub", last, apply("iota", shape=shape, dim=dim, dtype=dt.int64))
    if x.is_cuda:  # the index is built on the host: gather needs it beside x
        idx = idx.to(x.device)
    return apply("gather", x, idx, dim=dim)


@dataclass(frozen=True)
class _Phase:
    """The input positions v = v0 + s*k of one residue v0 along one dim: the taps that reach them
    (first, count, every `step`-th) and, in the phase's stride-1 convolution of g (dilation
    `dilation`, padding (count-1)*dilation), the output position of k = 0 (`start`)."""

    first: int
    count: int
    step: int
    dilation: int
    start: int


def _phases(k: int, s: int, d: int, p: int) -> list[_Phase | None]:
    """Per residue v0 < s: x position v = v0 + s*k is padded position u = v + p, reached by tap i
    from output y when y*s + i*d = u, i.e. by the taps with i*d = u (mod s), from y = U - e_i where
    U = u // s and e_i = (i*d - u % s) / s; None where no tap reaches (a gradient of zeros)."""
    phases = []
    step, dilation = s // math.gcd(s, d), d // math.gcd(s, d)
    for v0 in range(s):
        r = (v0 + p) % s
        taps = [i for i in range(k) if (i * d - r) % s == 0]
        phases.append(_Phase(taps[0], len(taps), step, dilation, (v0 + p) // s - (taps[0] * d - r) // s)
                      if taps else None)
    return phases


def _conv2d_input_grad_phases(g, w, x_shape, stride, padding, dilation, groups):
    n, c, h, wd = x_shape
    lh, lw = -(-h // stride[0]), -(-wd // stride[1])  # positions per phase (the last ones cut below)
    rows = []
    for ph in _phases(w.shape[2], stride[0], dilation[0], padding[0]):
        cols = [_phase_grad(g, w, (ph, pw), (lh, lw), groups, (n, c)) for pw in
                _phases(w.shape[3], stride[1], dilation[1], padding[1])]
        rows.append(apply("concat", *[apply("reshape", t, shape=(n, c, lh, 1, lw, 1)) for t in cols], dim=5))
    gx = apply("reshape", apply("concat", *rows, dim=3), shape=(n, c, lh * stride[0], lw * stride[1]))
    if gx.shape[2:] != (h, wd):
        gx = apply("slice", gx, starts=(0, 0, 0, 0), stops=(n, c, h, wd), steps=(1, 1, 1, 1))
    return gx


def _phase_grad(g, w, phases, lengths, groups, nc):
    """The input gradient at one (row, column) phase: (N, C, lh, lw)."""
    fh, fw = phases
    if fh is None or fw is None:
        return _zeros_beside(g, (*nc, *lengths))
    o, cg = w.shape[:2]
    stops = (o, cg, fh.first + (fh.count - 1) * fh.step + 1, fw.first + (fw.count - 1) * fw.step + 1)
    sub = apply("slice", w, starts=(0, 0, fh.first, fw.first), stops=stops, steps=(1, 1, fh.step, fw.step))
    y = apply("conv2d", g, _transposed_weight(sub, groups), stride=(1, 1), groups=groups,
              padding=((fh.count - 1) * fh.dilation, (fw.count - 1) * fw.dilation), dilation=(fh.dilation, fw.dilation))
    return _window(_window(y, 2, fh.start, lengths[0]), 3, fw.start, lengths[1])


def _zeros_beside(x, shape):
    """Zeros of x's dtype on x's device (a full is made on the host)."""
    z = zeros(shape, x.dtype)
    return z.to(x.device) if x.is_cuda else z


def _window(x, dim, start, length):
    """Positions [start, start + length) of x along dim, zero where they fall outside x."""
    size = x.shape[dim]
    lo, hi = min(max(start, 0), size), max(min(start + length, size), 0)
    if hi <= lo:
        return _zeros_beside(x, tuple(length if i == dim else n for i, n in enumerate(x.shape)))
    if (lo, hi) != (0, size):
        starts = tuple(lo if i == dim else 0 for i in range(x.ndim))
        stops = tuple(hi if i == dim else n for i, n in enumerate(x.shape))
        x = apply("slice", x, starts=starts, stops=stops, steps=(1,) * x.ndim)
    before, after = lo - start, start + length - hi
    if before or after:
        x = apply("pad", x, pads=tuple((before, after) if i == dim else (0, 0) for i in range(x.ndim)), value=0.0)
    return x


def conv2d_weight_grad(g, x, w_shape, stride, padding, dilation, groups):
    """The weight gradient is itself a convolution: batch and channels of x swap roles (the images
    become the summed channels) and g is the kernel, with stride and dilation exchanged:
        gw[o, c, i, j] = sum_n conv2d(x^T, g^T)[c, o, i, j]
    so it runs as the backend's conv2d (im2col + GEMM) with no large permuted copy."""
    o, cg, kh, kw = w_shape
    n, c, h, wd = x.shape
    if groups == 1:
        xt = apply("permute", x, dims=(1, 0, 2, 3))  # C, N, H, W
    else:  # channel g*Cg+c' -> batch c', channel g*N+n
        xt = apply("reshape", x, shape=(n, groups, cg, h, wd))
        xt = apply("permute", xt, dims=(2, 1, 0, 3, 4))
        xt = apply("reshape", xt, shape=(cg, groups * n, h, wd))
    gt = apply("permute", g, dims=(1, 0, 2, 3))  # O, N, OH, OW
    gw = apply("conv2d", xt, gt, stride=dilation, padding=padding, dilation=stride, groups=groups)  # C/G, O, >=KH, >=KW
    if tuple(gw.shape[2:]) != (kh, kw):  # rows past the last window that a stride skipped
        gw = apply("slice", gw, starts=(0, 0, 0, 0), stops=(cg, o, kh, kw), steps=(1, 1, 1, 1))
    return apply("permute", gw, dims=(1, 0, 2, 3))


@rule("inverse", "LinalgInvExBackward0", save_output=True)
def _inverse(g, s, attrs, t):
    inv_t = transpose_last(s[-1])
    return (apply("neg", apply("matmul", apply("matmul", inv_t, g), inv_t)),)


@rule("cumprod", "CumprodBackward0", save=(0,))
def _cumprod(g, s, attrs, t):
    """grad_i = sum over j >= i of g_j * prod(x_k for k <= j, k != i): exact with zeros in x. Row i
    of an (n, n) matrix is x with x_i replaced by 1; its running product gives every such product."""
    x, d = s[0], attrs["dim"]
    if x.ndim == 0:
        return (g,)
    last = _to_last(x.ndim, d)
    xl, gl = apply("permute", x, dims=last), apply("permute", g, dims=last)
    n, square = xl.shape[-1], (*xl.shape, xl.shape[-1])
    row = apply("iota", shape=square, dim=xl.ndim - 1, dtype=dt.int64)
    col = apply("iota", shape=square, dim=xl.ndim, dtype=dt.int64)
    as_rows = lambda v: apply("expand", apply("reshape", v, shape=(*v.shape[:-1], 1, n)), shape=square)
    xr = as_rows(xl)
    rows = apply("where", apply("eq", row, col), full_like(xr, 1), xr)
    later = mask(apply("ge", col, row), x.dtype)
    terms = mul(mul(apply("cumprod", rows, dim=xl.ndim), later), as_rows(gl))
    return (apply("permute", apply("sum", terms, dims=(xl.ndim,), keepdim=False), dims=_inverse_perm(last)),)


def _to_last(ndim: int, d: int) -> tuple[int, ...]:
    return tuple(k for k in range(ndim) if k != d) + (d,)


def _inverse_perm(dims: tuple[int, ...]) -> tuple[int, ...]:
    inverse = [0] * len(dims)
    for i, d in enumerate(dims):
        inverse[d] = i
    return tuple(inverse)


def _batched_scalar(v):
    """(...,) -> (..., 1, 1), to scale batches of matrices."""
    return apply("reshape", v, shape=(*v.shape, 1, 1))


@rule("det", "LinalgDetBackward0", save=(0,), save_output=True)
def _det(g, s, attrs, t):
    a, det = s
    scale = _batched_scalar(mul(g, det))
    inv_t = transpose_last(apply("inverse", a))
    return (mul(apply("expand", scale, shape=tuple(inv_t.shape)), inv_t),)


@rule("slogdet", "LinalgSlogdetBackward0", save=(0,))
def _slogdet(g, s, attrs, t):
    (a,) = s
    n = g.ndim - 1
    g_logabs = apply("reshape", apply("slice", g, starts=(0,) * n + (1,), stops=tuple(g.shape[:-1]) + (2,),
                                      steps=(1,) * (n + 1)), shape=tuple(g.shape[:-1]))
    inv_t = transpose_last(apply("inverse", a))
    return (mul(apply("expand", _batched_scalar(g_logabs), shape=tuple(inv_t.shape)), inv_t),)


@rule("cholesky", "LinalgCholeskyExBackward0", save_output=True)
def _cholesky(g, s, attrs, t):
    """gA = sym(L^-T Phi(L^T gL) L^-1), Phi: the lower triangle with its diagonal halved."""
    chol = s[-1]
    shape = tuple(chol.shape)
    row = apply("iota", shape=shape, dim=len(shape) - 2, dtype=dt.int64)
    col = apply("iota", shape=shape, dim=len(shape) - 1, dtype=dt.int64)
    phi = mask(apply("gt", row, col), chol.dtype)
    phi = apply("add", phi, mul(mask(apply("eq", row, col), chol.dtype), full_like(chol, 0.5)))
    p = mul(apply("matmul", transpose_last(chol), g), phi)
    inv = apply("inverse", chol)
    sym = apply("matmul", apply("matmul", transpose_last(inv), p), inv)
    return (mul(apply("add", sym, transpose_last(sym)), full_like(sym, 0.5)),)

@rule("all_reduce", "AllReduceBackward0", save=(1,))
def _all_reduce(g, s, attrs, t):
    # out = sum over ranks of x: each rank's x reaches every rank's out, so dx = sum over ranks of dout
    if attrs["op"] != "sum":
        raise RuntimeError(f"the derivative of all_reduce with op {attrs['op']!r} is not implemented (only 'sum')")
    return apply("all_reduce", g, s[1], op="sum"), None


def _last_columns(x, stop):
    """x[..., :stop]"""
    return apply("slice", x, starts=(0,) * x.ndim, stops=(*x.shape[:-1], stop), steps=(1,) * x.ndim)


@rule("attention", "ScaledDotProductFlashAttentionForCpuBackward0", save=(0, 1, 2, 3), save_output=True)
def _attention(g, s, attrs, t):
    # the logsumexp column is read only by this backward: its gradient is taken as zero
    q, k, v, bias, fwd = s
    dout = _last_columns(g, v.shape[-1])
    delta = apply("sum", mul(dout, _last_columns(fwd, v.shape[-1])), dims=(q.ndim - 1,), keepdim=False)
    grad = lambda wrt: apply("attention_grad", q, k, v, bias, fwd, dout, delta, **attrs, wrt=wrt)  # noqa: E731
    dq = grad("q") if t[0][2] else None
    if t[1][2] and t[2][2]:  # one kernel for both: each block's probabilities and dS computed once
        dkv = grad("kv")
        return dq, _last_columns(dkv, k.shape[-1]), _columns_from(dkv, k.shape[-1]), None
    return dq, grad("k") if t[1][2] else None, grad("v") if t[2][2] else None, None


def _columns_from(x, start):
    """x[..., start:]"""
    return apply("slice", x, starts=(0,) * (x.ndim - 1) + (start,), stops=tuple(x.shape), steps=(1,) * x.ndim)


@rule("attention_probs", "SoftmaxBackward0", save=(0, 1), save_output=True)
def _attention_probs(g, s, attrs, t):
    """softmax's backward, then the scores' matmul's: dS = P (dP - rowsum(P dP)) * scale."""
    q, k, p = s[0], s[1], s[-1]
    shape = tuple(p.shape)
    row = apply("expand", apply("sum", mul(p, g), dims=(p.ndim - 1,), keepdim=True), shape=shape)
    ds = mul(mul(p, apply("sub", g, row)), full_like(p, attrs["scale"]))
    return (apply("matmul", ds, k) if t[0][2] else None, apply("matmul", transpose_last(ds), q) if t[1][2] else None,
            None)


@rule("softmax", "SoftmaxBackward0", save=(0,), save_output=True)
def _softmax(g, s, attrs, t):
    """softmax: dx = p (g - rowsum(p g));  log_softmax: dx = g - softmax(x) rowsum(g), with
    softmax(x) from the row kernel again (its exp vectorizes; exp(out) elementwise calls libm)."""
    x, out = s[0], s[-1]
    last = (out.ndim - 1,)
    if attrs["log"]:
        total = apply("expand", apply("sum", g, dims=last, keepdim=True), shape=tuple(g.shape))
        return (apply("sub", g, mul(apply("softmax", x, log=False), total)),)
    total = apply("expand", apply("sum", mul(out, g), dims=last, keepdim=True), shape=tuple(g.shape))
    return (mul(out, apply("sub", g, total)),)


@rule("layer_norm", "NativeLayerNormBackward0", save=(0, 1))
def _layer_norm(g, s, attrs, t):
    """dx and g * xhat from row kernels (each recomputes the row's mean and rstd from x); dw and db
    are their sums over the leading dims."""
    x, w = s[0], s[1]
    lead = tuple(range(x.ndim - 1))
    column_sum = lambda v: apply("sum", v, dims=lead, keepdim=False) if lead else v  # noqa: E731
    grad = lambda wrt: apply("layer_norm_grad", x, w, g, eps=attrs["eps"], wrt=wrt)  # noqa: E731
    return (grad("x") if t[0][2] else None, column_sum(grad("w")) if t[1][2] else None,
            column_sum(g) if t[2][2] else None)


def differentiable() -> list[str]:
    return sorted(RULES)


__all__ = ["RULES", "Rule", "differentiable"]


# ---------------------------------------------------------------- pooling (compiler/pooling.py)


@rule("max_pool", "MaxPool2DWithIndicesBackward0", save=(0,))
def _max_pool(g, s, attrs, t):
    return (apply("max_pool_grad", s[0], g, **attrs),)


@rule("max_pool_grad", "MaxPool2DWithIndicesBackwardBackward0", save=(0,))
def _max_pool_grad(g, s, attrs, t):
    """Linear in the output gradient: its adjoint reads g at each window's argmax."""
    n, c, h, w = t[0][0]
    index = apply("max_pool_index", s[0], **attrs)
    oh, ow = index.shape[2:]
    tapless = apply("lt", index, full_like(index, 0))  # -1: a dilated window with no tap in the input
    index = apply("where", tapless, full_like(index, 0), index)
    picked = apply("gather", apply("reshape", g, shape=(n, c, h * w)),
                   apply("reshape", index, shape=(n, c, oh * ow)), dim=2)
    picked = apply("reshape", picked, shape=(n, c, oh, ow))
    return None, apply("where", tapless, full_like(picked, 0), picked)


@rule("avg_pool", "AvgPool2DBackward0")
def _avg_pool(g, s, attrs, t):
    return (apply("avg_pool_grad", g, size=tuple(t[0][0][2:]), **attrs),)


@rule("avg_pool_grad", "AvgPool2DBackwardBackward0")
def _avg_pool_grad(g, s, attrs, t):
    return (apply("avg_pool", g, **{k: v for k, v in attrs.items() if k != "size"}),)
