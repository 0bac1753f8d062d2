"""The "conv2d_pool" group (compiler/conv_pool.py): conv + epilogue + max_pool in one kernel.

The batch goes through in chunks of images (conv_pool.chunk_size), each thread taking whole chunks:
conv.py's lowering, whichever the cost model picks, computes the chunk's activation into the
thread's own scratch, then pooling.py's max kernel (pool_vectors.py's for MaxPool2d(k))
pools it into the output. Both run as if on one thread (`_Alone`), so there is no barrier at all
(a barrier costs milliseconds when another process holds the other core); the scratch is one
chunk, so it stays in cache and the full-size activation is never written.
"""

from __future__ import annotations

import copy

from llvmlite import ir

from ..conv_pool import batch_slice, chunk_size
from ..ir import Group
from .conv import lower_conv2d
from .index import i64
from .module import COST, LOWERINGS, LoweringContext
from .pooling import max_kernel


def lower_conv_pool(ctx: LoweringContext, group: Group) -> None:
    sliced = batch_slice(group, chunk_size(group))
    act, pool, x = sliced.conv.outputs[0], sliced.pool, group.anchor.inputs[0]
    scratch = ctx.workspace(act.type.numel * act.type.dtype.itemsize, per_thread=True)
    b, n = ctx.builder, group.anchor.type.shape[0]
    lo, hi = ctx.thread_range(n // sliced.chunk)
    with ctx.loop(lo, hi) as c:  # this thread's chunks, start to finish: no barrier between threads
        buffers = {clone: ctx.ptr(orig) for orig, clone in sliced.inputs.items()}
        buffers[sliced.inputs[x]] = ctx.gep(x, b.mul(c, i64(sliced.inputs[x].type.numel)))
        buffers[act] = scratch
        buffers[pool] = ctx.gep(group.outputs[0], b.mul(c, i64(pool.type.numel)))
        sub = _alone(ctx, sliced.conv, buffers)
        lower_conv2d(sub, sliced.conv)
        sub = _alone(ctx, Group(group.id, "single", [pool], [act], [pool]), buffers, sub)
        max_kernel(sub, pool, act, "value")
        ctx.workspace_bytes = sub.workspace_bytes


class _Alone(LoweringContext):
    """ctx for code one thread runs by itself: thread 0 of 1 (barriers return at once), and every
    scratch buffer this thread's own."""

    def workspace(self, nbytes: int, per_thread: bool = False) -> ir.Value:
        alone, self.tid = self.tid, self.real_tid
        try:
            return LoweringContext.workspace(self, nbytes, per_thread=True)
        finally:
            self.tid = alone


def _alone(ctx: LoweringContext, group: Group, buffers: dict, previous: _Alone | None = None) -> _Alone:
    """A copy of ctx emitting into the same function, for `group` over `buffers`, run by one thread."""
    sub = copy.copy(ctx)
    sub.__class__ = _Alone
    sub.group, sub._buffers, sub._inputs = group, buffers, set(group.inputs)
    sub.real_tid, sub.tid, sub.nthreads = ctx.tid, i64(0), i64(1)
    if previous is not None:  # after the conv's scratch: the pool must not reuse it while it reads
        sub.workspace_bytes = previous.workspace_bytes
    return sub


LOWERINGS["conv2d_pool"] = lower_conv_pool
COST.setdefault("conv2d_pool", COST["conv2d"] + 2)
