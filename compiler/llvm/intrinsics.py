"""Declaring LLVM intrinsics and libm functions once per module, and calling them.

Its own module because both the scalar rules (scalar.py) and the vector polynomials they call
(vecmath.py) need it: scalar -> vecmath -> intrinsics, one way.
"""

from __future__ import annotations

from llvmlite import ir


def function(module: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    """An intrinsic or libm function, declared once per module."""
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, args), name)
    return fn


def type_suffix(t: ir.Type) -> str:
    """The overload suffix LLVM's intrinsic names take: f32, f64, f16, i8..."""
    return {"float": "f32", "double": "f64", "half": "f16"}.get(str(t)) or f"i{t.width}"


def intrinsic(b: ir.IRBuilder, name: str, *args: ir.Value, fastmath=()) -> ir.Value:
    t = args[0].type
    fn = function(b.module, f"llvm.{name}.{type_suffix(t)}", t, [a.type for a in args])
    return b.call(fn, list(args), fastmath=fastmath)
