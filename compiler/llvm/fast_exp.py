"""exp in plain float32 arithmetic for the row kernels (attention, softmax): no libm call, so the
loops over a row vectorize. It is not bit-exact with expf (2 ulp at worst), which is why the
elementwise `exp` primitive keeps libm's (compiler/llvm/scalar.py) and only kernels whose results
are compared within a tolerance use this one.
"""

from __future__ import annotations

import math

from llvmlite import ir

from . import scalar

# exp(x) = 2^n * e^r with n = round(x / ln 2) and |r| <= ln 2 / 2 (Cody and Waite: ln 2 in two parts,
# so r is exact), e^r by its Taylor series to r^7 (truncation below 5e-9; rounding makes it 2 ulp at worst)
_LN2_HI, _LN2_LO, _LOG2E = 0.693359375, -2.12194440e-4, 1.4426950408889634
_TAYLOR = [1 / math.factorial(k) for k in range(8)]
_EXP_LO, _EXP_HI = -87.0, 88.0  # below: 0 (float32's normal range ends at e^-87.3); above: inf


def fast_exp(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """float32 exp in plain arithmetic (no call, so loops over it vectorize), within 2 ulp of expf
    on [-87, 88]; 0 below (e^-87 is float32's smallest normal: subnormal results flush), inf
    above, NaN for NaN. Probabilities exp(score - max) are always <= 1, far from either end."""
    f = ir.FloatType()
    c = lambda v: ir.Constant(f, v)
    xc = b.select(b.fcmp_ordered("<", x, c(_EXP_LO)), c(_EXP_LO), b.select(b.fcmp_ordered(">", x, c(_EXP_HI)), c(_EXP_HI), x))
    n = scalar.intrinsic(b, "roundeven", b.fmul(xc, c(_LOG2E)))
    r = b.fsub(b.fsub(xc, b.fmul(n, c(_LN2_HI))), b.fmul(n, c(_LN2_LO)))
    poly = c(_TAYLOR[-1])
    for coef in reversed(_TAYLOR[:-1]):
        poly = b.fadd(b.fmul(poly, r), c(coef))
    bits = b.shl(b.add(b.fptosi(n, ir.IntType(32)), ir.Constant(ir.IntType(32), 127)), ir.Constant(ir.IntType(32), 23))
    y = b.fmul(poly, b.bitcast(bits, f))
    y = b.select(b.fcmp_ordered("<", x, c(_EXP_LO)), c(0.0), b.select(b.fcmp_ordered(">", x, c(_EXP_HI)), c(math.inf), y))
    return b.select(b.fcmp_unordered("uno", x, x), x, y)
