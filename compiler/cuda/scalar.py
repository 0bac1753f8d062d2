"""The meaning of each elementwise primitive on one scalar, as a CUDA C expression, per dtype.

Every rule mirrors the numpy kernel in primitives.py (the oracle) and the LLVM backend's
llvm/scalar.py: maximum/minimum propagate NaN (fmaxf does not: written out in the prelude),
round is half-to-even (rint), float floor_divide/remainder follow numpy's divmod, integer
division by zero gives 0, integer arithmetic wraps (done in unsigned long long: signed overflow is
undefined in C), casts from float to int go through a saturating long long as LLVM's fptosi.sat.

Registers hold bool as C++ `bool`; buffers hold it as one byte (numpy's layout).
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes as dt
from ..dtypes import DType

_CTYPES = {"float32": "float", "float64": "double", "int64": "long long", "int32": "int", "int16": "short",
           "int8": "signed char", "uint8": "unsigned char", "bool": "bool"}


class UnsupportedDType(TypeError):
    pass


def ctype(d: DType) -> str:
    """The C type of a value of dtype `d` in registers."""
    if d.name not in _CTYPES:
        raise UnsupportedDType(f"the CUDA backend has no {d.name} (float16 is not supported yet)")
    return _CTYPES[d.name]


def mtype(d: DType) -> str:
    """The C type of one element of dtype `d` in a buffer."""
    return "unsigned char" if d is dt.bool_ else ctype(d)


def literal(d: DType, value) -> str:
    """An exact C literal of `value` in dtype `d` (inf/NaN as bit patterns)."""
    if d is dt.bool_:
        return "true" if bool(value) else "false"
    if d.is_floating_point:
        v = float(np.asarray(value, d.np))
        if math.isfinite(v):
            return repr(v) + ("f" if d is dt.float32 else "")
        bits = np.asarray(v, d.np).view(np.uint32 if d is dt.float32 else np.uint64).item()
        return f"__int_as_float(0x{bits:08x})" if d is dt.float32 else f"__longlong_as_double(0x{bits:016x}LL)"
    bits = 8 * d.itemsize
    v = int(value) & ((1 << bits) - 1)
    if d.is_signed and v >= 1 << (bits - 1):
        v -= 1 << bits
    if d is dt.int64:
        return "(-9223372036854775807LL - 1)" if v == -(1 << 63) else f"{v}LL"
    if d is dt.int32:
        return "(-2147483647 - 1)" if v == -(1 << 31) else str(v)
    return f"(({ctype(d)}){v})"


def is_true(d: DType, x: str) -> str:
    """x != 0 (NaN is true, as bool(nan) in numpy)."""
    return x if d is dt.bool_ else f"({x} != 0)"


def _wrap(d: DType, op: str, a: str, b: str) -> str:
    return f"(({ctype(d)})((unsigned long long){a} {op} (unsigned long long){b}))"


_FLOAT_FUNCS = {"exp": "exp", "log": "log", "sqrt": "sqrt", "sin": "sin", "cos": "cos", "tanh": "tanh",
                "floor": "floor", "ceil": "ceil", "round": "rint", "abs": "fabs", "sigmoid": "gt_sigmoid"}


def _unary(name: str, d: DType, x: str) -> str:
    t = ctype(d)
    if d.is_floating_point:
        if name in _FLOAT_FUNCS:  # C++ overloads: exp(float) is expf
            return f"{_FLOAT_FUNCS[name]}({x})"
        if name == "erf":  # the numpy kernel computes erf in double (math.erf)
            return f"(({t})erf((double){x}))"
        if name == "neg":
            return f"(-{x})"
        if name == "sign":  # NaN, -0.0 and 0.0 give 0.0 (the kernel follows torch: sign(NaN) = 0)
            return f"(({t})(({x} > 0) - ({x} < 0)))"
    elif d is dt.bool_ and name in ("abs", "sign"):
        return x
    elif name == "neg":
        return f"(({t})(0ULL - (unsigned long long){x}))"
    elif name == "abs":
        return f"({x} < 0 ? ({t})(0ULL - (unsigned long long){x}) : {x})" if d.is_signed else x
    elif name == "sign":
        return f"(({t})(({x} > 0) - ({x} < 0)))" if d.is_signed else f"(({t})({x} > 0))"
    raise KeyError(f"{name} on {d.name}")


_CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_ARITH = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def _binary(name: str, d: DType, a: str, b: str) -> str:
    if name in _CMP:  # C comparisons with NaN are false except !=, as numpy's
        return f"({a} {_CMP[name]} {b})"
    if name in ("logical_and", "logical_or"):
        return f"({a} {'&&' if name == 'logical_and' else '||'} {b})"
    if d is dt.bool_:  # numpy's bool add/maximum is or, mul/minimum is and
        return f"({a} || {b})" if name in ("add", "maximum") else f"({a} && {b})"
    if name in ("maximum", "minimum"):
        return f"gt_{name[:3]}({a}, {b})"
    if name in ("floor_divide", "remainder"):
        return f"gt_{name}({a}, {b})"
    if name == "pow":
        return f"pow({a}, {b})" if d.is_floating_point else f"gt_ipow({a}, {b})"
    if d.is_floating_point:
        return f"({a} {_ARITH[name]} {b})"
    return _wrap(d, _ARITH[name], a, b)


def cast(src: DType, dst: DType, x: str) -> str:
    """numpy's astype: floats truncate toward zero (saturating, as PTX cvt.rzi); anything to bool is x != 0."""
    if src is dst:
        return x
    if dst is dt.bool_:
        return is_true(src, x)
    if src.is_floating_point and not dst.is_floating_point:
        return f"(({ctype(dst)})(long long){x})"
    return f"(({ctype(dst)}){x})"


def emit(name: str, args: list[str], in_dtype: DType, out_dtype: DType, attrs: dict) -> str:
    """The C expression of elementwise primitive `name` applied to `args` (all of `in_dtype`)."""
    if name == "copy":
        return args[0]
    if name == "cast":
        return cast(in_dtype, out_dtype, args[0])
    if name == "where":
        return f"({args[0]} ? {args[1]} : {args[2]})"
    if name == "logical_not":
        return f"(!{is_true(in_dtype, args[0])})"
    if len(args) == 1:
        return _unary(name, in_dtype, args[0])
    return _binary(name, in_dtype, *args)
