"""The meaning of each elementwise primitive on one scalar, in LLVM IR, per dtype.

Every rule here mirrors the numpy kernel in primitives.py (the oracle), including its NaN/inf
corners: maximum/minimum propagate NaN and return the second operand on a tie of 0.0 and -0.0
(numpy does; llvm.maximum would order -0.0 below 0.0), round is half-to-even (llvm.roundeven),
float floor_divide/remainder follow numpy's divmod, integer division by zero gives 0, comparisons
with NaN are false except `ne`. Floats get only the `contract` fast-math flag (FMA may form);
never `fast`, which implies no-NaNs.

Registers hold bool as i1; memory holds it as one byte (numpy's layout): see load/store.
"""

from __future__ import annotations

from llvmlite import ir

from .. import dtypes as dt
from ..dtypes import DType
from . import vecmath
from .intrinsics import function, intrinsic, type_suffix

CONTRACT = ("contract",)
I1, I8, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(64)
_FLOAT_TYPES = {"float32": ir.FloatType(), "float64": ir.DoubleType(), "float16": ir.HalfType()}
_LIBM_SUFFIX = {"float32": "f", "float64": ""}


def reg_type(d: DType) -> ir.Type:
    """The type a value of dtype `d` has in registers."""
    if d is dt.bool_:
        return I1
    return _FLOAT_TYPES.get(d.name) or ir.IntType(8 * d.itemsize)


def mem_type(d: DType) -> ir.Type:
    """The type of one element of dtype `d` in a buffer."""
    return I8 if d is dt.bool_ else reg_type(d)


def const(d: DType, value) -> ir.Constant:
    if d is dt.bool_:
        return ir.Constant(I1, int(bool(value)))
    if d.is_floating_point:
        return ir.Constant(reg_type(d), float(value))
    bits = 8 * d.itemsize
    return ir.Constant(reg_type(d), int(value) & ((1 << bits) - 1))


def load(b: ir.IRBuilder, d: DType, ptr: ir.Value) -> ir.Value:
    v = b.load(ptr, typ=mem_type(d))
    return b.icmp_unsigned("!=", v, ir.Constant(I8, 0)) if d is dt.bool_ else v


def store(b: ir.IRBuilder, d: DType, value: ir.Value, ptr: ir.Value) -> None:
    b.store(b.zext(value, I8) if d is dt.bool_ else value, ptr)


def fptrunc(b: ir.IRBuilder, x: ir.Value, to: ir.Type) -> ir.Value:
    """Narrow a float; double -> half goes through float, since LLVM's direct conversion is a
    compiler-rt call (__truncdfhf2) that is not in this process (rarely, one more rounding)."""
    if isinstance(to, ir.HalfType) and isinstance(x.type, ir.DoubleType):
        x = b.fptrunc(x, ir.FloatType())
    return b.fptrunc(x, to)


def libm(b: ir.IRBuilder, name: str, d: DType, x: ir.Value) -> ir.Value:
    """A libm call (tanh, erf...) in the precision of `d`; half computes in float."""
    if d is dt.float16:
        return b.fptrunc(libm(b, name, dt.float32, b.fpext(x, reg_type(dt.float32))), x.type)
    fn = function(b.module, name + _LIBM_SUFFIX[d.name], x.type, [x.type])
    return b.call(fn, [x])


# ---------------------------------------------------------------- unary

_FLOAT_INTRINSICS = {"exp": "exp", "log": "log", "sqrt": "sqrt", "sin": "sin", "cos": "cos",
                     "floor": "floor", "ceil": "ceil", "round": "roundeven", "abs": "fabs"}


def _unary_float(b, name, d, x):
    if d is dt.float32 and name in vecmath.FUNCTIONS:  # inline polynomials: the loop vectorizes
        return vecmath.FUNCTIONS[name](b, x)
    if name in _FLOAT_INTRINSICS:
        return intrinsic(b, _FLOAT_INTRINSICS[name], x)
    if name == "tanh":
        return libm(b, "tanh", d, x)
    if name == "erf":  # the numpy kernel computes erf in double (math.erf): so do we, bit for bit
        wide = b.fpext(x, ir.DoubleType()) if d is not dt.float64 else x
        y = libm(b, "erf", dt.float64, wide)
        return b.fptrunc(y, x.type) if d is not dt.float64 else y
    if name == "neg":
        return b.fneg(x)
    if name == "sigmoid":  # as the kernel: exp of -|x| only, so no overflow
        one = const(d, 1.0)
        e = intrinsic(b, "exp", b.fneg(intrinsic(b, "fabs", x)))
        denom = b.fadd(one, e)
        return b.select(b.fcmp_ordered(">=", x, const(d, 0.0)), b.fdiv(one, denom), b.fdiv(e, denom))
    if name == "sign":  # NaN, -0.0 and 0.0 give 0.0 (the kernel follows torch: sign(NaN) = 0)
        pos = b.uitofp(b.fcmp_ordered(">", x, const(d, 0.0)), x.type)
        neg = b.uitofp(b.fcmp_ordered("<", x, const(d, 0.0)), x.type)
        return b.fsub(pos, neg)
    raise KeyError(name)


def _unary_int(b, name, d, x):
    zero = const(d, 0)
    if d is dt.bool_ and name in ("abs", "sign"):
        return x
    if name == "neg":
        return b.sub(zero, x)
    if name == "abs":
        return intrinsic(b, "abs", x, ir.Constant(I1, 0)) if d.is_signed else x
    if name == "sign":
        gt = b.icmp_signed(">", x, zero) if d.is_signed else b.icmp_unsigned(">", x, zero)
        lt = b.icmp_signed("<", x, zero) if d.is_signed else ir.Constant(I1, 0)
        return b.sub(b.zext(gt, x.type), b.zext(lt, x.type))
    raise KeyError(name)


def is_true(b: ir.IRBuilder, d: DType, x: ir.Value) -> ir.Value:
    """x != 0 as i1 (NaN is true, as bool(nan) in numpy)."""
    if d is dt.bool_:
        return x
    if d.is_floating_point:
        return b.fcmp_unordered("!=", x, const(d, 0.0))
    return b.icmp_unsigned("!=", x, const(d, 0))


# ---------------------------------------------------------------- binary


def _minmax(b, name, d, x, y):
    if d.is_floating_point:  # numpy's rule, not llvm.maximum's: a NaN x or y wins, ties (0.0, -0.0) give y
        op = ">" if name == "maximum" else "<"
        return b.select(b.or_(b.fcmp_ordered(op, x, y), b.fcmp_unordered("uno", x, x)), x, y)
    if d is dt.bool_:
        return b.or_(x, y) if name == "maximum" else b.and_(x, y)
    op = ">" if name == "maximum" else "<"
    cmp = b.icmp_signed(op, x, y) if d.is_signed else b.icmp_unsigned(op, x, y)
    return b.select(cmp, x, y)


def _float_divmod(b, d, x, y):
    """numpy's npy_divmod: (floor quotient, remainder with the sign of y)."""
    zero, one, half = const(d, 0.0), const(d, 1.0), const(d, 0.5)
    mod = b.frem(x, y)
    div = b.fdiv(b.fsub(x, mod), y)
    fix = b.and_(b.fcmp_unordered("!=", mod, zero),
                 b.xor(b.fcmp_ordered("<", y, zero), b.fcmp_ordered("<", mod, zero)))
    mod = b.select(fix, b.fadd(mod, y), b.select(b.fcmp_ordered("==", mod, zero), intrinsic(b, "copysign", zero, y), mod))
    div = b.select(fix, b.fsub(div, one), div)
    floor = intrinsic(b, "floor", div)
    floor = b.select(b.fcmp_ordered(">", b.fsub(div, floor), half), b.fadd(floor, one), floor)
    q = b.select(b.fcmp_ordered("==", div, zero), intrinsic(b, "copysign", zero, b.fdiv(x, y)), floor)
    by_zero = b.fcmp_ordered("==", y, zero)
    return b.select(by_zero, b.fdiv(x, y), q), b.select(by_zero, b.frem(x, y), mod)


def _int_divmod(b, d, x, y):
    """Floor division and remainder; division by zero gives 0 (numpy), INT_MIN // -1 wraps."""
    zero, one = const(d, 0), const(d, 1)
    by_zero = b.icmp_unsigned("==", y, zero)
    if not d.is_signed:
        safe = b.select(by_zero, one, y)
        return (b.select(by_zero, zero, b.udiv(x, safe)), b.select(by_zero, zero, b.urem(x, safe)))
    int_min = const(d, 1 << (8 * d.itemsize - 1))
    overflow = b.and_(b.icmp_signed("==", x, int_min), b.icmp_signed("==", y, const(d, -1)))
    safe = b.select(b.or_(by_zero, overflow), one, y)
    q, r = b.sdiv(x, safe), b.srem(x, safe)
    fix = b.and_(b.icmp_signed("!=", r, zero), b.xor(b.icmp_signed("<", r, zero), b.icmp_signed("<", safe, zero)))
    q = b.select(fix, b.sub(q, one), q)
    r = b.select(fix, b.add(r, safe), r)
    return b.select(by_zero, zero, q), b.select(b.or_(by_zero, overflow), zero, r)


_CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _binary(b, name, d, x, y):
    f = d.is_floating_point
    if name in _CMP:
        op = _CMP[name]
        if f:
            return b.fcmp_unordered(op, x, y) if name == "ne" else b.fcmp_ordered(op, x, y)
        return b.icmp_signed(op, x, y) if d.is_signed else b.icmp_unsigned(op, x, y)
    if name in ("maximum", "minimum"):
        return _minmax(b, name, d, x, y)
    if name in ("floor_divide", "remainder"):
        q, r = (_float_divmod if f else _int_divmod)(b, d, x, y)
        return q if name == "floor_divide" else r
    if d is dt.bool_:  # numpy's bool add is or, mul is and
        ops = {"add": b.or_, "mul": b.and_, "logical_and": b.and_, "logical_or": b.or_}
        return ops[name](x, y)
    if f:
        ops = {"add": b.fadd, "sub": b.fsub, "mul": b.fmul, "div": b.fdiv}
        if name == "pow":
            return intrinsic(b, "pow", x, y)
        return ops[name](x, y, flags=CONTRACT)
    if name == "pow":
        return _ipow(b, d, x, y)
    return {"add": b.add, "sub": b.sub, "mul": b.mul}[name](x, y)


def _ipow(b, d, x, y):
    """Integer power by squaring (wrapping); a negative exponent gives 0 unless |x| == 1."""
    t = x.type
    fn = function(b.module, f"gt.ipow.{type_suffix(t)}", t, [t, t])
    if not fn.blocks:
        fn.linkage = "internal"
        base, exp = fn.args
        fb = ir.IRBuilder(fn.append_basic_block("entry"))
        loop, body, done = (fn.append_basic_block(n) for n in ("loop", "body", "done"))
        fb.branch(loop)
        fb.position_at_end(loop)
        acc = fb.phi(t)
        bb = fb.phi(t)
        e = fb.phi(t)
        acc.add_incoming(const(d, 1), fn.blocks[0])
        bb.add_incoming(base, fn.blocks[0])
        e.add_incoming(exp, fn.blocks[0])
        fb.cbranch(fb.icmp_signed(">", e, const(d, 0)) if d.is_signed else fb.icmp_unsigned(">", e, const(d, 0)), body, done)
        fb.position_at_end(body)
        odd = fb.trunc(e, I1)
        acc.add_incoming(fb.select(odd, fb.mul(acc, bb), acc), body)
        bb.add_incoming(fb.mul(bb, bb), body)
        e.add_incoming(fb.lshr(e, const(d, 1)), body)
        fb.branch(loop)
        fb.position_at_end(done)
        if d.is_signed:  # x ** -k: 1 for x == 1, +-1 for x == -1, else 0 (truncated 1/x**k)
            neg = fb.icmp_signed("<", exp, const(d, 0))
            one = fb.icmp_signed("==", base, const(d, 1))
            mone = fb.icmp_signed("==", base, const(d, -1))
            sign = fb.select(fb.trunc(exp, I1), const(d, -1), const(d, 1))
            inv = fb.select(one, const(d, 1), fb.select(mone, sign, const(d, 0)))
            fb.ret(fb.select(neg, inv, acc))
        else:
            fb.ret(acc)
    return b.call(fn, [x, y])


# ---------------------------------------------------------------- casts


def cast(b: ir.IRBuilder, src: DType, dst: DType, x: ir.Value) -> ir.Value:
    """numpy's astype: floats truncate toward zero; anything to bool is x != 0."""
    if src is dst:
        return x
    if dst is dt.bool_:
        return is_true(b, src, x)
    to = reg_type(dst)
    if src.is_floating_point and dst.is_floating_point:
        return b.fpext(x, to) if src.itemsize < dst.itemsize else fptrunc(b, x, to)
    if src.is_floating_point:  # through a saturating i64, then wrap: -1.0 -> uint8 255 like C
        wide = b.call(function(b.module, f"llvm.fptosi.sat.i64.{type_suffix(x.type)}", I64, [x.type]), [x])
        return wide if dst.itemsize == 8 else b.trunc(wide, to)
    unsigned = not src.is_signed  # bool counts as unsigned
    if dst.is_floating_point:
        return b.uitofp(x, to) if unsigned else b.sitofp(x, to)
    if to.width < x.type.width:
        return b.trunc(x, to)
    if to.width > x.type.width:
        return b.zext(x, to) if unsigned else b.sext(x, to)
    return x


# ---------------------------------------------------------------- dispatch


def emit(b: ir.IRBuilder, name: str, args: list[ir.Value], in_dtype: DType, out_dtype: DType, attrs: dict) -> ir.Value:
    """The value of elementwise primitive `name` applied to scalar `args` (all of `in_dtype`)."""
    if name == "copy":
        return args[0]
    if name == "cast":
        return cast(b, in_dtype, out_dtype, args[0])
    if name == "where":
        return b.select(args[0], args[1], args[2])
    if name == "logical_not":
        return b.not_(is_true(b, in_dtype, args[0]))
    if len(args) == 1:
        if in_dtype.is_floating_point:
            return _unary_float(b, name, in_dtype, args[0])
        return _unary_int(b, name, in_dtype, args[0])
    return _binary(b, name, in_dtype, *args)
