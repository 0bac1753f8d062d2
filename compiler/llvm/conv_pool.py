"""The "conv2d_pool" group (compiler/conv_pool.py): conv + epilogue + max_pool in one kernel.

The batch goes through in chunks of images (conv_pool.chunk_size): conv.py's lowering, whichever
the cost model picks, computes the chunk's activation into this kernel's scratch, then
pooling.py's scan pools it into the output. Both phases split work over all threads, with a
barrier between them; the scratch is one chunk, so it stays in cache and the full-size activation
is never written.
"""

from __future__ import annotations

import copy

from ..conv_pool import batch_slice, chunk_size
from ..ir import Group, Node
from .conv import lower_conv2d
from .index import i64
from .module import COST, LOWERINGS, LoweringContext
from .pooling import _Max, _scan


def lower_conv_pool(ctx: LoweringContext, group: Group) -> None:
    sliced = batch_slice(group, chunk_size(group))
    act, pool, x = sliced.conv.outputs[0], sliced.pool, group.anchor.inputs[0]
    scratch = ctx.workspace(act.type.numel * act.type.dtype.itemsize)
    b, n = ctx.builder, group.anchor.type.shape[0]
    x_step = sliced.inputs[x].type.numel
    with ctx.loop(0, n // sliced.chunk) as c:
        buffers = {clone: ctx.ptr(orig) for orig, clone in sliced.inputs.items()}
        buffers[sliced.inputs[x]] = ctx.gep(x, b.mul(c, i64(x_step)))
        buffers[act] = scratch
        sub = _sub_context(ctx, sliced.conv, buffers)
        lower_conv2d(sub, sliced.conv)
        ctx.workspace_bytes = sub.workspace_bytes  # the conv's scratch stays reserved
        ctx.barrier()  # the chunk's activation is complete
        buffers[pool] = ctx.gep(group.outputs[0], b.mul(c, i64(pool.type.numel)))
        pool_group = Group(group.id, "single", [pool], [act], [pool])
        sub = _sub_context(ctx, pool_group, buffers)
        _scan(sub, _Max(sub, pool, act, want="value"))
        ctx.workspace_bytes = sub.workspace_bytes
        ctx.barrier()  # the next chunk overwrites the scratch


def _sub_context(ctx: LoweringContext, group: Group, buffers: dict[Node, object]) -> LoweringContext:
    """ctx emitting into the same function for another group over other buffers."""
    sub = copy.copy(ctx)
    sub.group, sub._buffers, sub._inputs = group, buffers, set(group.inputs)
    return sub


LOWERINGS["conv2d_pool"] = lower_conv_pool
COST.setdefault("conv2d_pool", COST["conv2d"] + 2)
