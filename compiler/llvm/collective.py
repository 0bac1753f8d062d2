"""all_reduce in native code: thread 0 calls the MPI library's MPI_Allreduce, the others wait at
the barrier after the kernel, so a step with collectives is still one native call.

The handles (communicator, datatype, op, MPI_IN_PLACE; runtime/mpi.py HANDLE_SLOTS) are a graph
input read at run time, never constants: they are addresses in this process, and the object code
is cached on disk and shared between ranks. The symbol is bound for the JIT by runtime.mpi.
"""

from __future__ import annotations

from llvmlite import ir

from ...runtime import mpi
from ..ir import Node
from .index import i64
from .module import MPI_ERROR, PTR, LoweringContext
from .opaque import OPAQUE
from .scalar import I64

I32 = ir.IntType(32)


def _mpi_allreduce(module: ir.Module) -> ir.Function:
    fn = module.globals.get("MPI_Allreduce")
    if fn is None:  # int MPI_Allreduce(sendbuf, recvbuf, int count, datatype, op, comm)
        fn = ir.Function(module, ir.FunctionType(I32, [PTR, PTR, I32, PTR, PTR, PTR]), "MPI_Allreduce")
    return fn


def lower_all_reduce(ctx: LoweringContext, node: Node) -> None:
    mpi.bind_symbols()
    x, handles = node.inputs
    count = node.type.numel
    if count > 2**31 - 1:
        raise ctx.unsupported(node, f"has {count} elements, more than MPI's int count allows")
    b = ctx.builder
    with b.if_then(b.icmp_signed("==", ctx.tid, i64(0))):
        comm, datatype, op, in_place = (b.inttoptr(ctx.load(handles, i64(k)), PTR) for k in range(4))
        src, dst = ctx.ptr(x), ctx.ptr(node)
        # the memory plan may compute the result over its input: MPI wants MPI_IN_PLACE then, not two equal pointers
        same = b.icmp_unsigned("==", b.ptrtoint(src, I64), b.ptrtoint(dst, I64))
        send = b.select(same, in_place, src)
        code = b.call(_mpi_allreduce(ctx.module), [send, dst, ir.Constant(I32, count), datatype, op, comm])
        with b.if_then(b.icmp_signed("!=", code, ir.Constant(I32, 0))):
            ctx.error(MPI_ERROR, b.sext(code, I64))


OPAQUE["all_reduce"] = lower_all_reduce
