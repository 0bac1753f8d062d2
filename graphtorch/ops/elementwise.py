"""Elementwise ops: broadcasting and type promotion in front of the strict primitives."""

from __future__ import annotations

import numbers

import numpy as np

from .. import dispatch
from .. import dtypes as dt
from ..compiler.primitives import PRIMITIVES
from ..dispatch import apply, op
from ..tensor import Tensor


def broadcast_shapes(*shapes) -> tuple[int, ...]:
    sized = [s for s in shapes if len(s)]  # a 0-d shape (a Python number's) broadcasts to anything
    if not sized or all(s == sized[0] for s in sized):  # the common case, no broadcasting
        return tuple(sized[0]) if sized else ()
    ndim = max((len(s) for s in shapes), default=0)
    out = [1] * ndim
    for s in shapes:
        for i, n in enumerate(s, ndim - len(s)):
            if out[i] == 1:
                out[i] = n
            elif n != 1 and n != out[i]:
                a, b = out[i], n
                raise RuntimeError(f"The size of tensor a ({a}) must match the size of tensor b ({b}) at "
                                   f"non-singleton dimension {i}")
    return tuple(out)


def scalar(value, dtype: dt.DType) -> Tensor:
    """A Python number as a 0-d tensor of `dtype` (a `full` node when tracing)."""
    return constant(value, dtype, ())


_FULL, _EXPAND = PRIMITIVES["full"].kernel, PRIMITIVES["expand"].kernel


def constant(value, dtype: dt.DType, shape) -> Tensor:
    """A Python number broadcast to `shape` as a `dtype` tensor: `full` then `expand`. Eagerly
    those two kernels run without their dispatch (a fresh constant needs no type check, history
    or aliasing): they cost more than the small op that uses the constant."""
    shape = tuple(shape)
    if dispatch._tracer is not None:
        full = apply("full", shape=(), value=_coerce(value, dtype), dtype=dtype)
        return full if not shape else apply("expand", full, shape=shape)
    data = _FULL(shape=(), value=_coerce(value, dtype), dtype=dtype)
    return Tensor._wrap(_EXPAND(data, shape=shape) if shape else data)  # a view: CUDA ops see a host scalar


def _coerce(value, dtype):
    if dtype is dt.bool_:
        return bool(value)
    if dtype.is_floating_point:
        return float(value)
    # torch wraps out-of-range integers (uint8 tensor - 1 counts modulo 256)
    return int(np.array(int(value), np.int64).astype(dtype.np))


def as_operand(x, dtype: dt.DType, shape=()) -> Tensor:
    """A tensor or Python number as a `dtype` tensor broadcast to `shape` (a prefix of a
    tensor's own shape, or () for a 0-d scalar, keeps it as it is)."""
    if isinstance(x, Tensor):
        return expand_to(cast(x, dtype), shape) if shape else cast(x, dtype)
    if isinstance(x, numbers.Number) or hasattr(x, "dtype"):
        return constant(x, dtype, shape)
    raise TypeError(f"unsupported operand type: {type(x).__name__}")


def cast(x: Tensor, dtype: dt.DType) -> Tensor:
    return x if x.dtype is dtype else apply("cast", x, dtype=dtype)


def expand_to(x: Tensor, shape) -> Tensor:
    shape = tuple(shape)
    return x if x.shape == shape else apply("expand", x, shape=shape)


def _shape(x) -> tuple:
    return tuple(x.shape) if isinstance(x, Tensor) else ()


def _check_tensors(prim, args) -> None:
    if not any(isinstance(a, Tensor) for a in args):
        raise TypeError(f"{prim}(): argument 'input' must be Tensor, not {type(args[0]).__name__}")


def elementwise(prim: str, *args, dtype: dt.DType | None = None) -> Tensor:
    """Promote `args` to a common dtype (or `dtype`), broadcast them, and apply `prim`."""
    _check_tensors(prim, args)
    dtype = dtype or dt.result_type(*args)
    shape = broadcast_shapes(*(_shape(a) for a in args))
    return apply(prim, *[as_operand(a, dtype, shape) for a in args])


def _float_dtype(*args) -> dt.DType:
    d = dt.result_type(*args)
    return d if d.is_floating_point else dt.get_default_dtype()


# ---------------------------------------------------------------- arithmetic


@op("AddBackward0")
def add(input, other, *, alpha=1):
    if alpha != 1:
        other = mul(other, alpha)
    dtype = dt.result_type(input, other)
    return elementwise("add", input, other, dtype=dtype) if dtype is not dt.bool_ else logical_or(input, other)


@op("SubBackward0")
def sub(input, other, *, alpha=1):
    dtype = dt.result_type(input, other)
    if dtype is dt.bool_:
        raise RuntimeError("Subtraction, the `-` operator, with two bool tensors is not supported. "
                           "Use the `^` or `logical_xor()` operator instead.")
    if alpha != 1:
        other = mul(other, alpha)
        dtype = dt.result_type(input, other)
    return elementwise("sub", input, other, dtype=dtype)


@op("RsubBackward1")
def rsub(input, other):
    return sub(other, input)


@op("MulBackward0")
def mul(input, other):
    dtype = dt.result_type(input, other)
    return elementwise("mul", input, other, dtype=dtype) if dtype is not dt.bool_ else logical_and(input, other)


@op("DivBackward0")
def div(input, other, *, rounding_mode=None):
    if rounding_mode == "floor":
        return floor_divide(input, other)
    if rounding_mode == "trunc":
        return trunc(elementwise("div", input, other, dtype=_float_dtype(input, other))).to(dt.result_type(input, other))
    return elementwise("div", input, other, dtype=_float_dtype(input, other))


true_divide = divide = div
multiply = mul
subtract = sub


@op("FloorDivideBackward0")
def floor_divide(input, other):
    return elementwise("floor_divide", input, other)


@op("RemainderBackward0")
def remainder(input, other):
    return elementwise("remainder", input, other)


fmod = remainder


def pow(input, exponent):
    # torch names the backward by which operands are tensors
    if not isinstance(exponent, Tensor):
        return _pow_scalar(input, exponent)
    return _pow_tensors(input, exponent) if isinstance(input, Tensor) else _rpow_scalar(input, exponent)


def _pow(input, exponent):
    if isinstance(exponent, numbers.Number) and isinstance(input, Tensor):
        if exponent == 2 and input.dtype.is_floating_point:
            return mul(input, input)
        if exponent == 1:
            return input.clone()
        if exponent == 0.5 and input.dtype.is_floating_point:
            return sqrt(input)
    return elementwise("pow", input, exponent)


_pow_scalar = op("PowBackward0", "pow")(_pow)
_pow_tensors = op("PowBackward1", "pow")(_pow)
_rpow_scalar = op("PowBackward2", "pow")(_pow)


@op("MaximumBackward0")
def maximum(input, other):
    return elementwise("maximum", input, other)


@op("MinimumBackward0")
def minimum(input, other):
    return elementwise("minimum", input, other)


def neg(input):
    if input.dtype is dt.bool_:
        raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported. If you are trying to "
                           "invert a mask, use the `~` or `logical_not()` operator instead.")
    return apply("neg", input)


negative = neg


def _float_unary(prim):
    def fn(input):
        return apply(prim, cast(input, _float_dtype(input)))
    fn.__name__ = prim
    return fn


exp = _float_unary("exp")
log = _float_unary("log")
sqrt = _float_unary("sqrt")
sin = _float_unary("sin")
cos = _float_unary("cos")
tanh = _float_unary("tanh")
sigmoid = _float_unary("sigmoid")
erf = _float_unary("erf")


def abs(input):
    _refuse_bool(input, "abs_cpu")
    return apply("abs", input)


def _refuse_bool(input, kernel: str) -> None:
    if input.dtype is dt.bool_:
        raise NotImplementedError(f'"{kernel}" not implemented for \'Bool\'')


absolute = abs


def sign(input):
    return apply("sign", input)


def _keep_int(prim):
    def fn(input):
        _refuse_bool(input, f"{prim}_vml_cpu")
        return input.clone() if not input.dtype.is_floating_point else apply(prim, input)
    fn.__name__ = prim
    return fn


floor = _keep_int("floor")
ceil = _keep_int("ceil")


def round(input, decimals: int = 0):
    _refuse_bool(input, "round_vml_cpu")
    if not input.dtype.is_floating_point:
        return input.clone()
    if decimals:
        scale = 10.0 ** decimals
        return div(apply("round", mul(input, scale)), scale)
    return apply("round", input)


def trunc(input):
    if not input.dtype.is_floating_point:
        return input.clone()
    return where(lt(input, 0), ceil(input), floor(input))


@op("RsqrtBackward0")
def rsqrt(input):
    return reciprocal(sqrt(input))


@op("ReciprocalBackward0")
def reciprocal(input):
    return div(1.0, input) if input.dtype.is_floating_point else div(1.0, input.to(dt.get_default_dtype()))


@op("Log1PBackward0")
def log1p(input):
    return log(add(input, 1))


@op("Expm1Backward0")
def expm1(input):
    return sub(exp(input), 1)


@op("Log2Backward0")
def log2(input):
    return div(log(input), 0.6931471805599453)


@op("Log10Backward0")
def log10(input):
    return div(log(input), 2.302585092994046)


@op("SquareBackward0")
def square(input):
    if input.dtype is dt.bool_:  # torch squares as pow(x, 2): integer arithmetic
        input = cast(input, dt.int64)
    return mul(input, input)


@op("ReluBackward0")
def relu(input):
    # not maximum(x, 0): torch's relu passes no gradient at exactly 0, and NaN stays NaN
    if input.dtype is dt.bool_:
        raise RuntimeError("Boolean inputs not supported for relu")
    zero = constant(0, input.dtype, input.shape)
    return apply("where", apply("le", input, zero), zero, input)


@op("ClampBackward1")
def clamp(input, min=None, max=None):
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    # where, not maximum/minimum: the gradient passes in full on min <= x <= max, ties included
    out = input
    if min is not None:
        out = where(lt(out, min), min, out)
    if max is not None:
        out = where(gt(out, max), max, out)
    return out


clip = clamp


def clamp_min(input, min):
    return clamp(input, min=min)


def clamp_max(input, max):
    return clamp(input, max=max)


@op("WhereBackward0")
def where(condition, input=None, other=None):
    if input is None and other is None:
        from .indexing import nonzero

        return nonzero(condition, as_tuple=True)
    dtype = dt.result_type(input, other)
    shape = broadcast_shapes(_shape(condition), _shape(input), _shape(other))
    return apply("where", as_operand(condition, dt.bool_, shape), as_operand(input, dtype, shape),
                 as_operand(other, dtype, shape))


@op("MaskedFillBackward0")
def masked_fill(input, mask, value):
    if mask.dtype is not dt.bool_:
        raise RuntimeError(f"masked_fill_ only supports boolean masks, but got mask with dtype {mask.dtype.name}")
    value = value.to(input.dtype) if isinstance(value, Tensor) else scalar(value, input.dtype)
    return where(mask, value, input)


# ---------------------------------------------------------------- comparison and logic


def _compare_op(prim):
    def fn(input, other):
        _check_tensors(prim, (input, other))
        dtype = dt.result_type(input, other)
        shape = broadcast_shapes(_shape(input), _shape(other))
        return apply(prim, as_operand(input, dtype, shape), as_operand(other, dtype, shape))
    fn.__name__ = prim
    return fn


eq = _compare_op("eq")
ne = _compare_op("ne")
lt = _compare_op("lt")
le = _compare_op("le")
gt = _compare_op("gt")
ge = _compare_op("ge")
less, less_equal, greater, greater_equal, not_equal = lt, le, gt, ge, ne


def _logical(prim):
    def fn(input, other):
        return elementwise(prim, input, other, dtype=dt.bool_)
    fn.__name__ = prim
    return fn


logical_and = _logical("logical_and")
logical_or = _logical("logical_or")


def logical_xor(input, other):
    return elementwise("ne", input, other, dtype=dt.bool_)


def logical_not(input):
    return apply("logical_not", cast(input, dt.bool_))


def isnan(input):
    return ne(input, input)


def isinf(input):
    return eq(abs(input), float("inf")) if input.dtype.is_floating_point else zeros_bool(input)


def isfinite(input):
    return logical_not(logical_or(isnan(input), isinf(input))) if input.dtype.is_floating_point else \
        logical_not(zeros_bool(input))


def zeros_bool(input):
    return constant(False, dt.bool_, input.shape)


def equal(input, other) -> bool:
    return tuple(input.shape) == tuple(other.shape) and bool(eq(input, other).all())


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
    return bool(isclose(input, other, rtol, atol, equal_nan).all())


def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    close = le(abs(sub(input, other)), add(mul(abs(other), rtol), atol))
    close = logical_or(close, eq(input, other))
    if equal_nan:
        close = logical_or(close, logical_and(isnan(input), isnan(other)))
    return close


def check_inplace_cast(result: dt.DType, target: dt.DType) -> None:
    if result.category > target.category:
        names = {0: "Bool", 1: "Long", 2: "Float"}
        from ..compiler.primitives import _pretty

        raise RuntimeError(f"result type {names[result.category] if result.category == 2 else _pretty(result)} "
                           f"can't be cast to the desired output type {_pretty(target)}")
