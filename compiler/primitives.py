"""The primitive op set: the contract between eager mode, the tracer, the passes and the backends.

Every user-level op (softmax, linear, conv with padding modes, losses...) decomposes into these.
Each primitive is defined here once with
  - its type rule `infer(*input_types, **attrs) -> TensorType` (shapes and dtypes are static),
  - its numpy kernel `kernel(*arrays, **attrs) -> ndarray` (eager mode and the interpreter),
  - its pattern kind, which fusion reads.
VJP rules live in graphtorch/autograd_rules.py (written with tensor ops); lowerings live with
each backend. Primitives are strict: elementwise inputs have identical shapes and dtypes, the
user-level ops insert the `expand` and `cast` nodes that broadcasting and promotion need.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import dtypes as dt
from . import pooling
from .dtypes import DType, TensorType


class Kind(enum.Enum):
    ELEMENTWISE = "elementwise"  # fuses with anything
    INJECTIVE = "injective"  # layout: fuses into consumers
    REDUCTION = "reduction"  # takes elementwise producers
    OUT_FUSABLE = "out-fusable"  # matmul/conv: takes an elementwise epilogue
    OPAQUE = "opaque"  # stands alone


@dataclass(frozen=True)
class Primitive:
    name: str
    kind: Kind
    infer: Callable[..., TensorType]
    kernel: Callable[..., np.ndarray]
    doc: str
    may_alias: bool = False  # the eager kernel may return a view of input 0
    data_dependent: bool = False  # the output shape depends on values: cannot be traced
    attrs: tuple[str, ...] = field(default=())

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"


PRIMITIVES: dict[str, Primitive] = {}


def _register(name, kind, infer, kernel, doc, *, attrs=(), may_alias=False, data_dependent=False):
    PRIMITIVES[name] = Primitive(name, kind, infer, kernel, doc, may_alias, data_dependent, attrs)


def check(cond: bool, msg: str) -> None:
    """RuntimeError(msg) unless cond. Type rules that eager ops run on every call test first and
    call check(False, f"...") inside the branch, so the message is formatted only on failure."""
    if not cond:
        raise RuntimeError(msg)


def _norm_dim(d: int, ndim: int) -> int:
    n = max(ndim, 1)
    if not -n <= d < n:  # an IndexError, as torch raises
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {d})")
    return d % n


# ---------------------------------------------------------------- elementwise


def _same(types, what):
    t0 = types[0]
    for t in types[1:]:  # messages formatted only on failure: every eager binary op runs this
        if t.shape != t0.shape:
            check(False, f"{what}: shapes differ {t0.shape} vs {t.shape} (expand first)")
        if t.dtype is not t0.dtype:
            check(False, f"{what}: dtypes differ {t0.dtype} vs {t.dtype} (cast first)")
    return t0


def _unary(name, fn, doc, floating_only=True):
    def infer(x: TensorType) -> TensorType:
        if floating_only:
            check(x.dtype.is_floating_point, f'"{name}" not implemented for \'{_pretty(x.dtype)}\'')
        return x

    _register(name, Kind.ELEMENTWISE, infer, fn, doc)


def _binary(name, fn, doc, out_dtype=None, allowed: Callable[[DType], bool] = lambda d: True):
    def infer(a: TensorType, b: TensorType) -> TensorType:
        t = _same((a, b), name)
        check(allowed(t.dtype), f'"{name}" not implemented for \'{_pretty(t.dtype)}\'')
        return TensorType(t.shape, out_dtype or t.dtype)

    _register(name, Kind.ELEMENTWISE, infer, fn, doc)


def _pretty(d: DType) -> str:
    return {"float32": "Float", "float64": "Double", "float16": "Half", "int64": "Long",
            "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool"}[d.name]


def _sigmoid(x):
    # exp of a non-positive number only: no overflow for large |x|
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


_erf_scalar = np.frompyfunc(math.erf, 1, 1)


def _erf(x):
    return np.asarray(_erf_scalar(x)).astype(x.dtype)  # frompyfunc gives a Python float for 0-d input


def _sign(x):
    return np.sign(x, where=x == x, out=np.zeros_like(x)) if x.dtype != np.bool_ else x.copy()  # sign(NaN) = 0


_unary("exp", np.exp, "e**x")
_unary("log", np.log, "natural logarithm")
_unary("sqrt", np.sqrt, "square root")
_unary("abs", np.abs, "absolute value", floating_only=False)
_unary("sign", _sign, "-1, 0 or 1", floating_only=False)
_unary("sin", np.sin, "sine")
_unary("cos", np.cos, "cosine")
_unary("tanh", np.tanh, "hyperbolic tangent")
_unary("sigmoid", _sigmoid, "1 / (1 + e**-x), computed without overflow")
_unary("erf", _erf, "the error function (exact GELU)")
_unary("floor", np.floor, "round down")
_unary("ceil", np.ceil, "round up")
_unary("round", np.round, "round half to even")
_register("neg", Kind.ELEMENTWISE, lambda x: x, np.negative, "-x")
_register("logical_not", Kind.ELEMENTWISE,
          lambda x: TensorType(x.shape, dt.bool_), np.logical_not, "not x (x cast to bool)")
_register("copy", Kind.ELEMENTWISE, lambda x: x, lambda x: np.array(x, order="C"), "a fresh contiguous copy (clone, contiguous)")


def _is_num(d: DType) -> bool:
    return d is not dt.bool_


_binary("add", np.add, "a + b")
_binary("sub", np.subtract, "a - b", allowed=_is_num)
_binary("mul", np.multiply, "a * b")
_binary("div", np.divide, "a / b (floating point)", allowed=lambda d: d.is_floating_point)
_binary("pow", np.power, "a ** b", allowed=_is_num)
_binary("maximum", np.maximum, "max(a, b), NaN propagates")
_binary("minimum", np.minimum, "min(a, b), NaN propagates")
_binary("floor_divide", np.floor_divide, "floor(a / b)", allowed=_is_num)
_binary("remainder", np.remainder, "a - floor(a / b) * b (the sign of b)", allowed=_is_num)
for _name, _fn in [("eq", np.equal), ("ne", np.not_equal), ("lt", np.less),
                   ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal)]:
    _binary(_name, _fn, f"a {_name} b, as bool", out_dtype=dt.bool_)
_binary("logical_and", np.logical_and, "a and b (bool inputs)", out_dtype=dt.bool_,
        allowed=lambda d: d is dt.bool_)
_binary("logical_or", np.logical_or, "a or b (bool inputs)", out_dtype=dt.bool_,
        allowed=lambda d: d is dt.bool_)


def _where_infer(c, a, b):
    if c.dtype is not dt.bool_:
        check(False, f"where expected condition to be a boolean tensor, but got a tensor with dtype {_pretty(c.dtype)}")
    if c.shape != a.shape:
        check(False, f"where: condition shape {c.shape} differs from {a.shape}")
    return _same((a, b), "where")


_BLEND_MIN_SIZE = 4096  # below this np.where's single call beats the blend's five


def _where(c, a, b):
    """np.where's values, bit for bit; on large inputs as an integer blend b ^ ((a ^ b) & mask):
    np.where branches per element and runs ~5x slower on an unpredictable condition (relu's)."""
    if c.size < _BLEND_MIN_SIZE or a.dtype != b.dtype or a.dtype.itemsize not in (1, 2, 4, 8):
        return np.where(c, a, b)
    bits = np.dtype(f"u{a.dtype.itemsize}")
    ai, bi = a.view(bits), b.view(bits)
    mask = -c.view(np.uint8).astype(bits)  # all ones where c, else 0
    out = np.bitwise_xor(ai, bi)
    out &= mask
    out ^= bi
    return out.view(a.dtype)


_register("where", Kind.ELEMENTWISE, _where_infer, _where, "c ? a : b")
_register("cast", Kind.ELEMENTWISE, lambda x, *, dtype: TensorType(x.shape, dtype),
          lambda x, *, dtype: x.astype(dtype.np), "convert to dtype (floats truncate toward 0)",
          attrs=("dtype",))


# ---------------------------------------------------------------- sources


def _source_infer(*, shape, dtype, **_):
    return TensorType(tuple(shape), dtype)


def _full(*, shape, value, dtype):
    return np.full(shape, value, dtype.np)


def _iota(*, shape, dim, dtype):
    idx = np.arange(shape[dim], dtype=dtype.np).reshape([-1 if d == dim else 1 for d in range(len(shape))])
    return np.ascontiguousarray(np.broadcast_to(idx, shape))


_register("full", Kind.ELEMENTWISE, _source_infer, _full, "a tensor filled with value",
          attrs=("shape", "value", "dtype"))
_register("iota", Kind.ELEMENTWISE, _source_infer, _iota, "the index along dim, broadcast to shape",
          attrs=("shape", "dim", "dtype"))


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """A counter-based hash: the same bits in numpy, LLVM and CUDA from (key + index)."""
    with np.errstate(over="ignore"):  # wrapping uint64 arithmetic is the point
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _rand(key, *, shape, dtype):
    n = int(np.prod(shape, dtype=np.int64))
    counters = key.astype(np.uint64) + np.arange(n, dtype=np.uint64)
    bits = splitmix64(counters)
    if dtype is dt.float64:
        out = (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53
    else:
        out = ((bits >> np.uint64(40)).astype(np.float64) * 2.0**-24).astype(dtype.np)
    return out.reshape(shape)


def _rand_infer(key, *, shape, dtype):
    check(key.dtype is dt.int64 and key.shape == (), "rand: key must be an int64 scalar")
    check(dtype.is_floating_point, f'"rand" not implemented for \'{_pretty(dtype)}\'')
    return TensorType(tuple(shape), dtype)


_register("rand", Kind.OPAQUE, _rand_infer, _rand,
          "uniform [0, 1) from splitmix64(key + i): reproducible across backends",
          attrs=("shape", "dtype"))


# ---------------------------------------------------------------- layout (injective)


def _expand_infer(x, *, shape):
    shape = tuple(shape)
    if len(shape) < x.ndim:
        check(False, f"expand: rank {x.ndim} to {len(shape)}")
    for s, t in zip(x.shape, shape[len(shape) - x.ndim:]):
        if s != t and s != 1:
            check(False, f"The expanded size of the tensor ({t}) must match the existing size ({s}) at non-singleton dimension")
    return TensorType(shape, x.dtype)


def numel(shape) -> int:
    return math.prod(shape)


def _reshape_infer(x, *, shape):
    shape = tuple(shape)
    if numel(shape) != numel(x.shape):
        check(False, f"shape '{list(shape)}' is invalid for input of size {numel(x.shape)}")
    return TensorType(shape, x.dtype)


def _permute_infer(x, *, dims):
    if sorted(dims) != list(range(x.ndim)):
        check(False, f"permute: dims {tuple(dims)} are not a permutation of {x.ndim} dims")
    return TensorType(tuple(x.shape[d] for d in dims), x.dtype)


def _slice_infer(x, *, starts, stops, steps):
    check(len(starts) == len(stops) == len(steps) == x.ndim, "slice: one start/stop/step per dim")
    shape = []
    for n, a, b, s in zip(x.shape, starts, stops, steps):
        if not (s > 0 and 0 <= a <= b <= n):
            check(False, f"slice: [{a}:{b}:{s}] out of range for size {n}")
        shape.append(max(0, -(-(b - a) // s)))
    return TensorType(tuple(shape), x.dtype)


def _slice(x, *, starts, stops, steps):
    return x[tuple(slice(a, b, s) for a, b, s in zip(starts, stops, steps))]


def _pad_infer(x, *, pads, value):
    check(len(pads) == x.ndim and all(lo >= 0 and hi >= 0 for lo, hi in pads), "pad: (lo, hi) >= 0 per dim")
    return TensorType(tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, pads)), x.dtype)


def _pad(x, *, pads, value):
    return np.pad(x, pads, constant_values=np.array(value, x.dtype))


def _concat_infer(*xs, dim):
    t0 = xs[0]
    check(all(t.dtype is t0.dtype for t in xs), "concat: dtypes differ (cast first)")
    for t in xs:
        same = t.ndim == t0.ndim and all(a == b for i, (a, b) in enumerate(zip(t.shape, t0.shape)) if i != dim)
        if not same:
            check(False, f"Sizes of tensors must match except in dimension {dim}. Expected {list(t0.shape)} but got {list(t.shape)}")
    shape = list(t0.shape)
    shape[dim] = sum(t.shape[dim] for t in xs)
    return TensorType(tuple(shape), t0.dtype)


def _gather_infer(x, idx, *, dim):
    check(idx.dtype is dt.int64, f"gather(): Expected dtype int64 for index, got {idx.dtype}")
    check(idx.ndim == x.ndim, "Index tensor must have the same number of dimensions as input tensor")
    for d, (a, b) in enumerate(zip(idx.shape, x.shape)):
        if d != dim and a > b:
            check(False, f"Size does not match at dimension {d} expected index {list(idx.shape)} to be smaller than self {list(x.shape)} apart from dimension {dim}")
    return TensorType(idx.shape, x.dtype)


def check_index_bounds(idx: np.ndarray, size: int, dim: int) -> None:
    if idx.size and (idx.min() < -size or idx.max() >= size):
        bad = idx[(idx < -size) | (idx >= size)].flat[0]
        raise IndexError(f"index {bad} is out of bounds for dimension {dim} with size {size}")


def _gather(x, idx, *, dim):
    check_index_bounds(idx, x.shape[dim], dim)
    # torch.gather reads only the leading idx.shape[d] entries of the other dims
    x = x[tuple(slice(0, n) if d != dim else slice(None) for d, n in enumerate(idx.shape))]
    return np.take_along_axis(x, idx, axis=dim)


def _window_out(size, k, s, d):
    return (size - d * (k - 1) - 1) // s + 1


def _unfold_infer(x, *, kernel, stride, dilation):
    if x.ndim != 4:
        check(False, f"unfold: expected (N, C, H, W), got {x.shape}")
    n, c, h, w = x.shape
    oh, ow = (_window_out(sz, k, s, d) for sz, k, s, d in zip((h, w), kernel, stride, dilation))
    check(oh > 0 and ow > 0, f"Given input size: ({c}x{h}x{w}). Calculated output size: ({c}x{oh}x{ow}). Output size is too small")
    return TensorType((n, c, oh, ow, *kernel), x.dtype)


def _unfold(x, *, kernel, stride, dilation):
    out = _unfold_infer(TensorType(x.shape, dt.from_numpy(x.dtype)), kernel=kernel, stride=stride, dilation=dilation)
    sn, sc, sh, sw = x.strides
    strides = (sn, sc, sh * stride[0], sw * stride[1], sh * dilation[0], sw * dilation[1])
    return np.lib.stride_tricks.as_strided(x, out.shape, strides, writeable=False)


_register("expand", Kind.INJECTIVE, _expand_infer, lambda x, *, shape: np.broadcast_to(x, shape),
          "broadcast size-1 dims to shape; new dims lead, as in torch.expand", attrs=("shape",), may_alias=True)
_register("reshape", Kind.INJECTIVE, _reshape_infer, lambda x, *, shape: np.reshape(x, shape),
          "same elements in row-major order, new shape", attrs=("shape",), may_alias=True)
_register("permute", Kind.INJECTIVE, _permute_infer, lambda x, *, dims: np.transpose(x, dims),
          "reorder dims", attrs=("dims",), may_alias=True)
_register("slice", Kind.INJECTIVE, _slice_infer, _slice, "x[start:stop:step] on every dim (step > 0)",
          attrs=("starts", "stops", "steps"), may_alias=True)
_register("pad", Kind.INJECTIVE, _pad_infer, _pad, "constant padding, (lo, hi) per dim",
          attrs=("pads", "value"))
_register("concat", Kind.INJECTIVE, _concat_infer, lambda *xs, dim: np.concatenate(xs, axis=dim),
          "join along dim", attrs=("dim",))
_register("gather", Kind.INJECTIVE, _gather_infer, _gather, "out[i][j] = x[idx[i][j]][j] along dim (torch.gather)",
          attrs=("dim",))
_register("unfold", Kind.INJECTIVE, _unfold_infer, _unfold,
          "sliding windows: (N,C,H,W) -> (N,C,OH,OW,KH,KW); im2col without the copy",
          attrs=("kernel", "stride", "dilation"), may_alias=True)


# ---------------------------------------------------------------- reductions


def _reduce_infer(name):
    def infer(x, *, dims, keepdim):
        for d in dims:
            if not 0 <= d < max(x.ndim, 1):
                check(False, f"{name}: dim {d} out of range")
            if x.ndim and x.shape[d] == 0 and name not in ("sum", "prod"):
                check(False, f"{name}(): Expected reduction dim {d} to have non-zero size.")
        shape = tuple(1 if i in dims else s for i, s in enumerate(x.shape)) if keepdim else \
            tuple(s for i, s in enumerate(x.shape) if i not in dims)
        return TensorType(shape, x.dtype)
    return infer


def _reduction(name, fn, doc):
    def kernel(x, *, dims, keepdim):
        return np.asarray(fn(x, axis=tuple(dims), keepdims=keepdim), dtype=x.dtype)
    _register(name, Kind.REDUCTION, _reduce_infer(name), kernel, doc, attrs=("dims", "keepdim"))


_reduction("sum", np.sum, "sum over dims")
_reduction("prod", np.prod, "product over dims")
_reduction("max", np.max, "maximum over dims, NaN propagates")
_reduction("min", np.min, "minimum over dims, NaN propagates")


def _arg_infer(x, *, dim, keepdim):
    t = _reduce_infer("argmax")(x, dims=(dim,) if x.ndim else (), keepdim=keepdim)
    return TensorType(t.shape, dt.int64)


def _argreduce(fn):
    def kernel(x, *, dim, keepdim):
        if x.ndim == 0:
            return np.zeros((), np.int64)
        out = fn(x, axis=dim)
        return np.expand_dims(out, dim) if keepdim else np.asarray(out)
    return kernel


_register("argmax", Kind.REDUCTION, _arg_infer, _argreduce(np.argmax), "index of the first maximum (NaN wins)",
          attrs=("dim", "keepdim"))
_register("argmin", Kind.REDUCTION, _arg_infer, _argreduce(np.argmin), "index of the first minimum (NaN wins)",
          attrs=("dim", "keepdim"))
_register("cumsum", Kind.OPAQUE, lambda x, *, dim: x,
          lambda x, *, dim: np.cumsum(x, axis=dim, dtype=x.dtype) if x.ndim else x.copy(), "running sum along dim",
          attrs=("dim",))


# ---------------------------------------------------------------- matmul and convolution


def _matmul_infer(a, b):
    check(a.dtype is b.dtype, f"expected m1 and m2 to have the same dtype, but got: {a.dtype.name} != {b.dtype.name}")
    if not (a.ndim >= 2 and a.ndim == b.ndim and a.shape[:-2] == b.shape[:-2]):
        check(False, f"matmul: batch dims must be equal (expand first): {a.shape} @ {b.shape}")
    if a.shape[-1] != b.shape[-2]:
        check(False, f"mat1 and mat2 shapes cannot be multiplied ({a.shape[-2]}x{a.shape[-1]} and {b.shape[-2]}x{b.shape[-1]})")
    return TensorType(a.shape[:-1] + b.shape[-1:], a.dtype)


def _conv2d_infer(x, w, *, stride, padding, dilation, groups):
    if x.ndim != 4 or w.ndim != 4:
        check(False, f"conv2d: expected 4-D input and weight, got {x.shape} and {w.shape}")
    check(x.dtype is w.dtype, f"Input type ({x.dtype}) and weight type ({w.dtype}) should be the same")
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    check(c == cg * groups,
          f"Given groups={groups}, weight of size {list(w.shape)}, expected input{list(x.shape)} to have {cg * groups} channels, but got {c} channels instead")
    check(o % groups == 0, f"out_channels ({o}) must be divisible by groups ({groups})")
    hp, wp = h + 2 * padding[0], wd + 2 * padding[1]
    check(hp >= dilation[0] * (kh - 1) + 1 and wp >= dilation[1] * (kw - 1) + 1,
          f"Calculated padded input size per channel: ({hp} x {wp}). Kernel size: ({kh} x {kw}). Kernel size can't be greater than actual input size")
    oh = _window_out(hp, kh, stride[0], dilation[0])
    ow = _window_out(wp, kw, stride[1], dilation[1])
    return TensorType((n, o, oh, ow), x.dtype)


def _conv2d(x, w, *, stride, padding, dilation, groups):
    if _scatter_is_smaller(x.shape, w.shape, stride, padding, dilation):
        return _conv2d_scatter(x, w, stride, padding, dilation, groups)
    x = np.pad(x, ((0, 0), (0, 0), (padding[0], padding[0]), (padding[1], padding[1])))
    win = _unfold(x, kernel=w.shape[2:], stride=stride, dilation=dilation)  # N,C,OH,OW,KH,KW
    wm = w.reshape(groups, w.shape[0] // groups, -1)  # G, O/G, C/G*KH*KW
    # im2col is a strided copy whose speed is set by its innermost contiguous run: copy along OW
    # (one GEMM per image) when rows are longer than the kernel, along KW (one tall GEMM) otherwise
    return (_conv2d_per_image if win.shape[3] >= win.shape[5] else _conv2d_one_gemm)(win, wm)


def _conv2d_per_image(win, wm):
    n, c, oh, ow, kh, kw = win.shape
    groups = wm.shape[0]
    cols = win.transpose(0, 1, 4, 5, 2, 3).reshape(n, groups, -1, oh * ow)  # N, G, C/G*KH*KW, OH*OW
    return np.matmul(wm, cols).reshape(n, -1, oh, ow)  # N, G, O/G, OH*OW is already N, O, OH, OW


def _conv2d_one_gemm(win, wm):
    n, c, oh, ow, kh, kw = win.shape
    groups, og = wm.shape[:2]
    cols = win.reshape(n, groups, c // groups, oh, ow, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6)
    out = np.matmul(cols.reshape(groups, n * oh * ow, -1), wm.transpose(0, 2, 1))  # G, N*OH*OW, O/G
    out = out.reshape(groups, n, oh, ow, og).transpose(1, 0, 4, 2, 3)
    return np.ascontiguousarray(out).reshape(n, groups * og, oh, ow)


def _conv_out(size, k, s, p, d) -> int:
    return _window_out(size + 2 * p, k, s, d)


def _scatter_is_smaller(x_shape, w_shape, stride, padding, dilation) -> bool:
    """Whether the per-tap products (N*O*KH*KW*H*W) are fewer than im2col's columns
    (N*C*KH*KW*OH*OW): so for a heavily padded convolution with fewer output than input
    channels, such as the input gradient of a stride-1 convolution. N and KH*KW cancel."""
    (_, c, h, wd), (o, _, kh, kw) = x_shape, w_shape
    oh = _conv_out(h, kh, stride[0], padding[0], dilation[0])
    ow = _conv_out(wd, kw, stride[1], padding[1], dilation[1])
    return o * h * wd < c * oh * ow


def _conv2d_scatter(x, w, stride, padding, dilation, groups):
    """conv2d as one GEMM of every tap's weights with the unpadded input, then each tap's product
    added at its shifted output positions (col2im): no padded copy and no im2col columns."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    oh, ow = (_conv_out(h, kh, stride[0], padding[0], dilation[0]), _conv_out(wd, kw, stride[1], padding[1], dilation[1]))
    xm = x.reshape(n, groups, cg, h * wd).transpose(1, 2, 0, 3).reshape(groups, cg, n * h * wd)
    wm = w.reshape(groups, og, cg, kh * kw).transpose(0, 3, 1, 2).reshape(groups, kh * kw * og, cg)
    taps = _matmul(wm, xm).reshape(groups, kh, kw, og, n, h, wd)
    out = np.zeros((groups, og, n, oh, ow), x.dtype)
    for i in range(kh):
        rows, urows = _tap_span(i, oh, h, stride[0], padding[0], dilation[0])
        for j in range(kw):
            cols, ucols = _tap_span(j, ow, wd, stride[1], padding[1], dilation[1])
            out[:, :, :, rows, cols] += taps[:, i, j, :, :, urows, ucols]
    return np.ascontiguousarray(out.transpose(2, 0, 1, 3, 4)).reshape(n, o, oh, ow)


def _tap_span(i: int, out: int, size: int, s: int, p: int, d: int) -> tuple[slice, slice]:
    """The outputs y whose tap i reads inside the input (u = y*s + i*d - p in [0, size)), and those u."""
    lo = max(0, -(-(p - i * d) // s))
    hi = min(out, (size - 1 + p - i * d) // s + 1) if size - 1 + p - i * d >= 0 else 0
    hi = max(hi, lo)
    u = lo * s + i * d - p
    return slice(lo, hi), slice(u, u + (hi - lo - 1) * s + 1 if hi > lo else u, s)


def _matmul(a, b):
    # numpy 2.4 leaves BLAS for transposed views (200x slower at 100x200): hand it contiguous operands
    return np.matmul(np.ascontiguousarray(a), np.ascontiguousarray(b))


_register("matmul", Kind.OUT_FUSABLE, _matmul_infer, _matmul, "(..., M, K) @ (..., K, N), equal batch dims")
_register("conv2d", Kind.OUT_FUSABLE, _conv2d_infer, _conv2d,
          "cross-correlation, zero padding, no bias (bias is an elementwise epilogue)",
          attrs=("stride", "padding", "dilation", "groups"))


# ---------------------------------------------------------------- pooling (windowed reductions, pooling.py)

_register("max_pool", Kind.OPAQUE, pooling.pool_infer, pooling.max_pool,
          "max over each window, read in place (padding never read; NaN wins)", attrs=pooling.POOL_ATTRS)
_register("max_pool_index", Kind.OPAQUE, pooling.index_infer, pooling.max_pool_index,
          "flat index h*W+w of each window's max (torch's return_indices)", attrs=pooling.POOL_ATTRS)
_register("max_pool_grad", Kind.OPAQUE, pooling.max_grad_infer, pooling.max_pool_grad,
          "(x, g): g added at each window's argmax, recomputed from x (relu: then 0 where x <= 0)",
          attrs=pooling.MAX_GRAD_ATTRS)
_register("avg_pool", Kind.OPAQUE, pooling.pool_infer, pooling.avg_pool,
          "sum of each window's taps inside the input / divisor (torch's avg_pool rule)", attrs=pooling.AVG_ATTRS)
_register("avg_pool_grad", Kind.OPAQUE, pooling.avg_grad_infer, pooling.avg_pool_grad,
          "g / divisor added over each window: the adjoint of avg_pool", attrs=pooling.AVG_ATTRS + ("size",))


# ---------------------------------------------------------------- opaque


def _fold_infer(cols, *, size, stride, dilation):
    check(cols.ndim == 6, "fold: expected (N, C, OH, OW, KH, KW)")
    n, c, oh, ow, kh, kw = cols.shape
    want = _unfold_infer(TensorType((n, c, *size), cols.dtype), kernel=(kh, kw), stride=stride, dilation=dilation)
    if want.shape != cols.shape:
        check(False, f"fold: windows {cols.shape} do not tile {tuple(size)}")
    return TensorType((n, c, *size), cols.dtype)


def _fold(cols, *, size, stride, dilation):
    n, c, oh, ow, kh, kw = cols.shape
    out = np.zeros((n, c, *size), cols.dtype)
    for i in range(kh):
        for j in range(kw):
            r, s = i * dilation[0], j * dilation[1]
            out[:, :, r:r + stride[0] * (oh - 1) + 1:stride[0], s:s + stride[1] * (ow - 1) + 1:stride[1]] += cols[..., i, j]
    return out


def _scatter_add_infer(base, idx, src, *, dim):
    check(idx.dtype is dt.int64, f"scatter_add(): Expected dtype int64 for index, got {idx.dtype}")
    check(base.dtype is src.dtype, "scatter_add(): Expected self.dtype to be equal to src.dtype")
    check(idx.ndim == base.ndim == src.ndim, "Index tensor must have the same number of dimensions as self tensor")
    return base


def _scatter_add(base, idx, src, *, dim):
    check_index_bounds(idx, base.shape[dim], dim)
    out = np.array(base)
    pos = list(np.indices(idx.shape, sparse=True))
    pos[dim] = idx
    np.add.at(out, tuple(pos), src[tuple(slice(0, n) for n in idx.shape)])
    return out


def _nonzero_infer(x):
    raise RuntimeError("nonzero: the output shape depends on the values")


def _square(name: str, x) -> None:
    check(x.ndim >= 2 and x.shape[-1] == x.shape[-2],
          f"{name}: A must be batches of square matrices, but they are {x.shape[-2]} by {x.shape[-1]} matrices")
    check(x.dtype.is_floating_point, f"{name}: Expected a floating point tensor, got {x.dtype}")


def _square_infer(name: str, shape=lambda s: s):
    def infer(x):
        _square(name, x)
        return TensorType(shape(x.shape), x.dtype)
    return infer


def _inverse(x):
    try:
        return np.linalg.inv(x).astype(x.dtype)
    except np.linalg.LinAlgError:
        raise RuntimeError("linalg.inv: The diagonal element 1 is zero, the inversion could not be completed because the input matrix is singular.") from None


_register("fold", Kind.OPAQUE, _fold_infer, _fold, "sum windows back into (N,C,H,W): the adjoint of unfold",
          attrs=("size", "stride", "dilation"))
_register("scatter_add", Kind.OPAQUE, _scatter_add_infer, _scatter_add,
          "base with src added at idx along dim (torch.scatter_add)", attrs=("dim",))
_register("nonzero", Kind.OPAQUE, _nonzero_infer, lambda x: np.argwhere(x).astype(np.int64),
          "indices of non-zero elements (eager only)", data_dependent=True)
_register("inverse", Kind.OPAQUE, _square_infer("linalg.inv"), _inverse, "matrix inverse over the last two dims")


# ---------------------------------------------------------------- sorts, scans and factorizations
# (no generated kernel: the LLVM backend runs these numpy kernels from the native code)


def _along(x: np.ndarray, dim: int, fn) -> np.ndarray:
    """fn over 1-D lines: x with `dim` moved last, fn applied to the last axis, moved back."""
    return np.moveaxis(fn(np.moveaxis(x, dim, -1)), -1, dim) if x.ndim else fn(x.reshape(1)).reshape(())


def _argsort(x, *, dim, descending):
    """Stable; NaN is the largest value (torch's order). Descending sorts the reversed line
    ascending and reverses the result, which keeps ties in their original order."""
    def line(a):
        if not descending:
            return np.argsort(a, axis=-1, kind="stable")
        n = a.shape[-1]
        return (n - 1 - np.argsort(a[..., ::-1], axis=-1, kind="stable"))[..., ::-1]
    return _along(x, dim, line).astype(np.int64)


def _cumextreme_index(x, *, dim, largest):
    """Index of the running max (or min) along dim; a later equal value or a NaN takes over."""
    def line(a):
        out = np.empty(a.shape, np.int64)
        best = np.zeros(a.shape[:-1], np.int64)
        for j in range(a.shape[-1]):
            cur = np.take_along_axis(a, best[..., None], -1)[..., 0]
            new = a[..., j]
            beats = (new >= cur) if largest else (new <= cur)
            best = np.where(beats | np.isnan(new) if a.dtype.kind == "f" else beats, j, best)
            out[..., j] = best
        return out
    return _along(x, dim, line)


def _det(x):
    return np.asarray(np.linalg.det(x), dtype=x.dtype)


def _slogdet_infer(x):
    _square("linalg.slogdet", x)
    return TensorType((*x.shape[:-2], 2), x.dtype)


def _slogdet(x):
    sign, logabs = np.linalg.slogdet(x)
    return np.stack([sign, logabs], -1).astype(x.dtype)


def _cholesky(x):
    try:
        return np.linalg.cholesky(x).astype(x.dtype)
    except np.linalg.LinAlgError:
        raise RuntimeError("linalg.cholesky: The factorization could not be completed because the input is not "
                           "positive-definite.") from None


_register("argsort", Kind.OPAQUE, lambda x, *, dim, descending: TensorType(x.shape, dt.int64), _argsort,
          "indices that sort x along dim (stable; NaN largest)", attrs=("dim", "descending"))
_register("cumprod", Kind.OPAQUE, lambda x, *, dim: x,
          lambda x, *, dim: np.cumprod(x, axis=dim, dtype=x.dtype) if x.ndim else x.copy(),
          "running product along dim", attrs=("dim",))
_register("cumextreme_index", Kind.OPAQUE, lambda x, *, dim, largest: TensorType(x.shape, dt.int64),
          _cumextreme_index, "index of the running max/min along dim (cummax, cummin)", attrs=("dim", "largest"))
_register("det", Kind.OPAQUE, _square_infer("linalg.det", lambda s: s[:-2]), _det, "determinant of the last two dims")
_register("slogdet", Kind.OPAQUE, _slogdet_infer, _slogdet, "(sign, log|det|) stacked in a last dim of 2")
_register("cholesky", Kind.OPAQUE, _square_infer("linalg.cholesky"), _cholesky,
          "lower Cholesky factor of a symmetric positive-definite matrix")


QR_MODES = ("reduced", "complete", "r")


def _matrices(name: str, x) -> tuple[int, int]:
    """(rows, cols) of a batch of float matrices, or torch's error for linalg.`name`."""
    check(x.ndim >= 2, f"linalg.{name}: The input tensor A must have at least 2 dimensions.")
    check(x.dtype.is_floating_point,
          f"linalg.{name}: Expected a floating point or complex tensor as input. Got {_pretty(x.dtype)}")
    return x.shape[-2], x.shape[-1]


def _qr_infer(x, *, mode, part):
    m, n = _matrices("qr", x)
    check(mode in QR_MODES, f"qr received unrecognized mode '{mode}' but expected one of 'reduced' (default), "
          "'r', or 'complete'")
    k = m if mode == "complete" else min(m, n)
    return TensorType((*x.shape[:-2], *((m, k) if part == "Q" else (k, n))), x.dtype)


def _qr(x, *, mode, part):
    q, r = np.linalg.qr(x, mode="reduced" if mode == "r" else mode)
    return (q if part == "Q" else r).astype(x.dtype)


def _svd_infer(x, *, full_matrices, part):
    m, n = _matrices("svd", x)  # torch names svd for svdvals too
    k = min(m, n)
    shape = {"U": (m, m if full_matrices else k), "S": (k,), "Vh": (n if full_matrices else k, n)}[part]
    return TensorType((*x.shape[:-2], *shape), x.dtype)


def _svd(x, *, full_matrices, part):
    if part == "S":
        return np.linalg.svd(x, compute_uv=False).astype(x.dtype)
    u, _, vh = np.linalg.svd(x, full_matrices=full_matrices)
    return (u if part == "U" else vh).astype(x.dtype)


_register("qr", Kind.OPAQUE, _qr_infer, _qr, "Q or R (`part`) of the QR factorization; mode as torch.linalg.qr",
          attrs=("mode", "part"))
_register("svd", Kind.OPAQUE, _svd_infer, _svd,
          "U, S or Vh (`part`) of the singular value decomposition (S descending)", attrs=("full_matrices", "part"))

# ---------------------------------------------------------------- collectives (graphtorch.distributed)

ALL_REDUCE_OPS = ("sum", "max", "min", "product")


def _all_reduce_infer(x: TensorType, handles: TensorType, *, op: str) -> TensorType:
    from ..runtime.mpi import HANDLE_SLOTS

    check(op in ALL_REDUCE_OPS, f"all_reduce: op must be one of {ALL_REDUCE_OPS}, got {op!r}")
    check(handles.shape == (len(HANDLE_SLOTS),) and handles.dtype is dt.int64,
          f"all_reduce: handles must be int64 of shape ({len(HANDLE_SLOTS)},) ({', '.join(HANDLE_SLOTS)}), "
          f"got {handles.dtype} of shape {handles.shape}")
    return x


def _all_reduce(x, handles, *, op):
    from ..runtime import mpi

    out = np.empty_like(x, order="C")
    mpi.allreduce(np.ascontiguousarray(x), out, handles)
    return out


_register("all_reduce", Kind.OPAQUE, _all_reduce_infer, _all_reduce,
          "MPI_Allreduce of x over the communicator in handles (its MPI communicator, datatype, op, IN_PLACE "
          "addresses, fed at run time); op names the reduction", attrs=("op",))


def _softmax_infer(x, *, log):
    check(x.ndim >= 1 and x.dtype.is_floating_point, f"softmax: expected a floating tensor of rank >= 1, got {x}")
    return x


def _softmax(x, *, log):
    m = x.max(-1, keepdims=True) if x.shape[-1] else x[..., :1]
    shifted = x - m
    e = np.exp(shifted)
    total = e.sum(-1, keepdims=True)
    return shifted - np.log(total) if log else e / total


# a row kernel: max, then exp and sum, then the result, each row read in cache (not a chain of
# two reductions and two elementwise kernels); softmax over another dim stays composed
_register("softmax", Kind.OPAQUE, _softmax_infer, _softmax, "softmax over the last dim (log: log_softmax), one "
          "kernel per row", attrs=("log",))


def _layer_norm_infer(x, w, b, *, eps):
    check(x.ndim >= 1 and x.dtype.is_floating_point and x.dtype is w.dtype is b.dtype
          and w.shape == b.shape == x.shape[-1:],
          f"layer_norm: expected x (..., N) and weight, bias (N,) of one floating dtype, got {x}, {w}, {b}")
    return x


def _normalized(x, eps):
    """((x - mean) * rstd, rstd) per row of the last dim."""
    centered = x - x.mean(-1, keepdims=True)
    inv_std = 1 / np.sqrt((centered * centered).mean(-1, keepdims=True) + x.dtype.type(eps))
    return centered * inv_std, inv_std


def _layer_norm(x, w, b, *, eps):
    if not x.shape[-1]:  # empty rows: nothing to normalize (and no mean of nothing to warn about)
        return x.copy()
    return _normalized(x, eps)[0] * w + b


def _layer_norm_grad_infer(x, w, g, *, eps, wrt):
    check(wrt in ("x", "w"), f"layer_norm_grad: wrt must be 'x' or 'w', got {wrt!r}")
    check(g.shape == x.shape and g.dtype is x.dtype, f"layer_norm_grad: g {g} must match x {x}")
    return _layer_norm_infer(x, w, w, eps=eps)


def _layer_norm_grad(x, w, g, *, eps, wrt):
    """wrt="x": rstd (g w - mean(g w) - xhat mean(g w xhat)); wrt="w": g xhat (dw before the sum over rows)."""
    if not x.shape[-1]:
        return x.copy()
    xhat, inv_std = _normalized(x, eps)
    if wrt == "w":
        return g * xhat
    gw = g * w
    return inv_std * (gw - gw.mean(-1, keepdims=True) - xhat * (gw * xhat).mean(-1, keepdims=True))


_register("layer_norm", Kind.OPAQUE, _layer_norm_infer, _layer_norm, "(x - mean) / sqrt(var + eps) * w + b over "
          "the last dim, one kernel per row", attrs=("eps",))
_register("layer_norm_grad", Kind.OPAQUE, _layer_norm_grad_infer, _layer_norm_grad, "layer_norm's input gradient for "
          "an output gradient g (wrt x), or g * xhat (wrt w: summed over rows it is the weight's), one kernel per row",
          attrs=("eps", "wrt"))


def _register_attention() -> None:
    from . import attention  # its own file: the fused attention primitives and their numpy kernels

    attention.register()


_register_attention()


def table() -> str:
    """The primitive set as a Markdown table, grouped by kind (docs/primitives.md is this)."""
    lines = ["| kind | primitive | attributes | meaning |", "| --- | --- | --- | --- |"]
    for kind in Kind:
        for p in PRIMITIVES.values():
            if p.kind is kind:
                lines.append(f"| {kind.value} | `{p.name}` | {', '.join(p.attrs)} | {p.doc} |")
    return "\n".join(lines)
