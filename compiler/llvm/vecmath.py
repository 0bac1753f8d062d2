"""Float32 exp, log, tanh, sigmoid and erf as straight-line LLVM IR, so that loops vectorize.

A libm call (tanhf, erf) in a kernel's loop body stops LLVM's loop vectorizer, which has no vector
math library here: a float32 tanh cost about 10 ns per element, one lane at a time. Each function
below is a range reduction and a polynomial built from fma, integer bit operations and selects
only (no branches, no calls), so the loop vectorizer runs it on 8 or 16 lanes at once.

The polynomials are Taylor series with exact coefficients on reduced ranges, cut where the next
term is below a hundredth of an ulp, and for erf Chebyshev interpolants (of its Taylor series and
of math.erfc) computed at import and turned into power series: no pasted constants to trust.

Accuracy, measured against float64 numpy by tests/compiler/test_llvm_vecmath.py over dense
sweeps, random bit patterns and the edge values (0, -0, +-inf, NaN, subnormals, huge |x|): at
most 1 ulp for exp and log, 2 for tanh and erf, 2.5 for sigmoid (its e/(1+e) rounds three
times). NaN gives NaN; infinities, zeros (their sign included) and subnormals give what numpy
gives. The numpy kernels (eager mode) use libm, which is correctly rounded or within
1 ulp, so compiled float32 results of these five ops may differ from eager by a couple of ulp.
float64 keeps libm (the scalar calls are bit-exact with numpy).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from llvmlite import ir

from .intrinsics import intrinsic

F32, I32 = ir.FloatType(), ir.IntType(32)

LOG2E = 1.4426950408889634
LN2_HI = 0.693359375  # 355/512: n * LN2_HI is exact for |n| < 2**15, so x - n*ln2 loses nothing
LN2_LO = math.log(2) - LN2_HI
EXP_MIN, EXP_MAX = -104.0, 89.0  # e**x is 0 below and inf above, in float32
TANH_SERIES_BELOW = 0.625  # |x| under this: the odd Taylor series; above: through exp(-2|x|)
ERF_SERIES_BELOW = 1.0
FLOAT_MIN_NORMAL = 2.0**-126


def _c(v: float) -> ir.Constant:
    return ir.Constant(F32, float(v))


def _fma(b: ir.IRBuilder, x: ir.Value, y: ir.Value, z: ir.Value) -> ir.Value:
    return intrinsic(b, "fma", x, y, z)


def _poly(b: ir.IRBuilder, x: ir.Value, coeffs: list[float]) -> ir.Value:
    """coeffs[0] + coeffs[1]*x + ... by Horner's rule, one fma per term."""
    acc = _c(coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = _fma(b, acc, x, _c(c))
    return acc


def _pow2(b: ir.IRBuilder, k: ir.Value) -> ir.Value:
    """2**k for an i32 k in [-126, 127], built in the exponent field."""
    return b.bitcast(b.shl(b.add(k, ir.Constant(I32, 127)), ir.Constant(I32, 23)), F32)


def _is_nan(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return b.fcmp_unordered("uno", x, x)


# ---------------------------------------------------------------- exp


EXP_TAYLOR = [1.0 / math.factorial(k) for k in range(8)]  # |r| <= ln2/2: r**8/8! < 0.05 ulp


def exp(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """e**x = 2**n * e**r with n = round(x / ln2) and |r| <= ln2/2; <= 1 ulp."""
    nan = _is_nan(b, x)
    xc = b.select(b.fcmp_ordered("<", x, _c(EXP_MIN)), _c(EXP_MIN), x)
    xc = b.select(b.fcmp_ordered(">", xc, _c(EXP_MAX)), _c(EXP_MAX), xc)
    xc = b.select(nan, _c(0.0), xc)  # keeps fptosi below defined; the NaN is put back at the end
    n = intrinsic(b, "roundeven", b.fmul(xc, _c(LOG2E)))
    r = _fma(b, n, _c(-LN2_LO), _fma(b, n, _c(-LN2_HI), xc))
    k = b.fptosi(n, I32)  # in [-150, 128]: two factors 2**(k/2) keep each one a normal float
    half = b.ashr(k, ir.Constant(I32, 1))
    y = b.fmul(b.fmul(_poly(b, r, EXP_TAYLOR), _pow2(b, half)), _pow2(b, b.sub(k, half)))
    return b.select(nan, x, y)


# ---------------------------------------------------------------- log

# log(1+f) = 2 atanh(s) with s = f/(2+f); 2 atanh(s) = 2s + s*R(z), z = s*s, R = sum 2 z**k/(2k+1)
LOG_R = [0.0] + [2.0 / (2 * k + 1) for k in range(1, 6)]  # |s| <= 0.172: z**6 terms < 1e-10


def _mantissa_exponent(b: ir.IRBuilder, x: ir.Value) -> tuple[ir.Value, ir.Value]:
    """(m, e) with x = m * 2**e, m in [sqrt(1/2), sqrt(2)); subnormals scaled up by 2**23 first."""
    sub = b.fcmp_ordered("<", x, _c(FLOAT_MIN_NORMAL))
    bits = b.bitcast(b.select(sub, b.fmul(x, _c(2.0**23)), x), I32)
    e = b.sub(b.and_(b.lshr(bits, ir.Constant(I32, 23)), ir.Constant(I32, 0xFF)), ir.Constant(I32, 127))
    e = b.sub(e, b.select(sub, ir.Constant(I32, 23), ir.Constant(I32, 0)))
    m = b.bitcast(b.or_(b.and_(bits, ir.Constant(I32, 0x7FFFFF)), ir.Constant(I32, 0x3F800000)), F32)
    big = b.fcmp_ordered(">", m, _c(math.sqrt(2.0)))
    return b.select(big, b.fmul(m, _c(0.5)), m), b.add(e, b.zext(big, I32))


def log(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """e*ln2 + log(m), log(m) = f - s*(f - R) with f = m - 1 exact: the large term f carries no
    rounding; <= 1 ulp."""
    m, e = _mantissa_exponent(b, x)
    f = b.fsub(m, _c(1.0))
    s = b.fdiv(f, b.fadd(f, _c(2.0)))
    log1p = b.fsub(f, b.fmul(s, b.fsub(f, _poly(b, b.fmul(s, s), LOG_R))))
    ef = b.sitofp(e, F32)
    y = _fma(b, ef, _c(LN2_HI), _fma(b, ef, _c(LN2_LO), log1p))
    y = b.select(b.fcmp_ordered("==", x, _c(math.inf)), x, y)
    y = b.select(b.fcmp_unordered("<", x, _c(0.0)), _c(math.nan), y)  # negatives and NaN
    return b.select(b.fcmp_ordered("==", x, _c(0.0)), _c(-math.inf), y)


# ---------------------------------------------------------------- tanh, sigmoid


def tanh_taylor(terms: int) -> list[float]:
    """Coefficients of x, x**3, x**5, ... of tanh, exactly: 2**2n (2**2n - 1) B_2n / (2n)!."""
    bern = [Fraction(1)]
    for m in range(1, 2 * terms + 1):
        bern.append(-sum(math.comb(m + 1, k) * bern[k] for k in range(m)) / (m + 1))
    return [float(4**n * (4**n - 1) * bern[2 * n] / math.factorial(2 * n)) for n in range(1, terms + 1)]


TANH_TAYLOR = tanh_taylor(11)  # |x| < 0.625: each term is 0.16x the one before; x**23 < 0.01 ulp


def tanh(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """The series near 0 (where 1 - e**-2|x| would cancel), else (1 - e)/(1 + e) with e = e**-2|x|
    and the sign of x; <= 2 ulp."""
    a = intrinsic(b, "fabs", x)
    z = b.fmul(x, x)
    series = _fma(b, b.fmul(x, z), _poly(b, z, TANH_TAYLOR[1:]), x)
    e = exp(b, b.fmul(a, _c(-2.0)))
    far = b.fdiv(b.fsub(_c(1.0), e), b.fadd(_c(1.0), e))
    y = b.select(b.fcmp_ordered("<", a, _c(TANH_SERIES_BELOW)), series, far)
    return intrinsic(b, "copysign", y, x)  # tanh(-0.0) is -0.0, which the series' fma loses


def sigmoid(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """As the numpy kernel: e = e**-|x|, then 1/(1+e) or e/(1+e), so nothing overflows; <= 2 ulp."""
    e = exp(b, b.fneg(intrinsic(b, "fabs", x)))
    denom = b.fadd(_c(1.0), e)
    return b.select(b.fcmp_ordered(">=", x, _c(0.0)), b.fdiv(_c(1.0), denom), b.fdiv(e, denom))


# ---------------------------------------------------------------- erf

# erf(x) = 2/sqrt(pi) sum (-1)**n x**(2n+1) / (n! (2n+1)), summed far past float64 precision
ERF_TAYLOR = [2 / math.sqrt(math.pi) * (-1) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(30)]
ERFC_RANGE = (1.0, 4.0)  # erf(x) rounds to 1 in float32 from x = 3.92
# The fewest terms that keep erf within its bound with a margin (test_llvm_vecmath measures it):
# 6 and 15 give <= 1.13 and 0.92 ulp; 5 and 14 give 3.2 and 1.6 ulp
ERF_SERIES_TERMS = 6
ERFC_TERMS = 15


def economized(f, lo: float, hi: float, terms: int) -> list[float]:
    """Power-series coefficients (in x, x in [lo, hi]) of f's Chebyshev interpolant of `terms`
    terms: as accurate as the interpolant, and Horner's rule takes one fma per term where
    Clenshaw's recurrence takes two. Computed here rather than pasted: the only input is f."""
    fit = np.polynomial.Chebyshev.interpolate(np.vectorize(f), terms - 1, domain=[lo, hi])
    return fit.convert(kind=np.polynomial.Polynomial).coef.tolist()


def _erf_series_rest(z: float) -> float:
    """Q(z) with erf(a) = a (c0 + z Q(z)), z = a*a: the Taylor series past its first term."""
    return math.fsum(c * z ** (n - 1) for n, c in enumerate(ERF_TAYLOR) if n)


ERF_SERIES = economized(_erf_series_rest, 0.0, 1.0, ERF_SERIES_TERMS)
# in t = x - 2.5 (exact in float32 for x in [1, 4]) rather than in x: the coefficients stay small
# and t adds no rounding (u = (2x - 5)/3 on [-1, 1] did: 0.6 ulp of erf near x = 1)
ERFC = economized(lambda t: math.erfc(2.5 + t), -1.5, 1.5, ERFC_TERMS)


def erf(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """The series below |x| = 1, else 1 - erfc(x) (|x| clamped to 4, where erfc is below 2e-8); the
    sign of x; <= 2 ulp. Both are polynomials by Horner's rule (economized Chebyshev interpolants):
    no exp, so the tail costs 15 fma."""
    a = intrinsic(b, "fabs", x)
    z = b.fmul(a, a)
    # a*c0 + a*(z*Q(z)) with c0 = 2/sqrt(pi) split in two floats: the large term rounds only once
    c0_hi = float(np.float32(ERF_TAYLOR[0]))
    rest = _fma(b, z, _poly(b, z, ERF_SERIES), _c(ERF_TAYLOR[0] - c0_hi))
    series = _fma(b, a, _c(c0_hi), b.fmul(a, rest))
    lo, hi = ERFC_RANGE
    clamped = b.select(b.fcmp_ordered(">", a, _c(hi)), _c(hi), a)
    tail = b.fsub(_c(1.0), _poly(b, b.fsub(clamped, _c((lo + hi) / 2)), ERFC))
    y = b.select(b.fcmp_ordered("<", a, _c(ERF_SERIES_BELOW)), series, tail)
    return intrinsic(b, "copysign", y, x)


FUNCTIONS = {"exp": exp, "log": log, "tanh": tanh, "sigmoid": sigmoid, "erf": erf}
