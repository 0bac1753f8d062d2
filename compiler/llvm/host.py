"""Primitives with no generated kernel run their numpy kernel through a host call.

A matrix inverse, a sort or a factorization is rare in a graph and small next to the GEMMs around
it; generating LLVM for each would add code without adding speed. Such a node lowers to one call,
on thread 0, of runtime.host_calls' `gt_host_call(key, table)`: the key names the node's primitive,
attributes and types (a stable hash, so the IR text and its disk cache do not depend on the
process), the table holds the input pointers and then the output's. The callback runs the same
numpy kernel as eager mode and the interpreter, so the result is the same bits. An exception in it
(a singular matrix, say) is recorded in the status words and raised after the
call by the executable.
"""

from __future__ import annotations

import ctypes
import hashlib

import numpy as np
from llvmlite import ir

from ...runtime import host_calls
from ..ir import Node
from .index import i64
from .module import HOST_ERROR, PTR, LoweringContext

_I32 = ir.IntType(32)


def lower_host(ctx: LoweringContext, node: Node) -> None:
    """Emit `if (tid == 0 && gt_host_call(key, {inputs..., output}) != 0) status = HOST_ERROR`."""
    key = register_callback(node)
    b = ctx.builder
    operands = [*node.inputs, node]
    table = ctx.workspace(8 * len(operands))
    with b.if_then(b.icmp_signed("==", ctx.tid, i64(0))):
        for k, n in enumerate(operands):
            b.store(ctx.ptr(n), b.gep(table, [i64(k)], inbounds=True, source_etype=PTR))
        failed = b.call(_declare(ctx.module), [i64(key), table])
        with b.if_then(b.icmp_signed("!=", failed, ir.Constant(_I32, 0))):
            ctx.set_error(HOST_ERROR)


def _declare(module: ir.Module) -> ir.Function:
    if host_calls.SYMBOL in module.globals:
        return module.globals[host_calls.SYMBOL]
    return ir.Function(module, ir.FunctionType(_I32, [ir.IntType(64), PTR]), host_calls.SYMBOL)


def register_callback(node: Node) -> int:
    """The node's key, with the callback that runs its numpy kernel registered under it."""
    specs = [(tuple(n.type.shape), np.dtype(n.type.dtype.np)) for n in [*node.inputs, node]]
    attrs = dict(node.attrs)
    text = repr((node.target, sorted(attrs.items()), [(s, d.str) for s, d in specs]))
    key = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1  # a positive i64
    kernel = node.prim.kernel

    def call(table) -> None:
        arrays = [_array(table[k], shape, dtype) for k, (shape, dtype) in enumerate(specs)]
        np.copyto(arrays[-1], kernel(*arrays[:-1], **attrs), casting="unsafe")

    host_calls.register(key, call)
    return key


def _array(address: int | None, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """The C-contiguous buffer at `address` as an array (no copy)."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes == 0:
        return np.empty(shape, dtype)
    raw = (ctypes.c_char * nbytes).from_address(address)
    return np.frombuffer(raw, dtype=dtype).reshape(shape)
