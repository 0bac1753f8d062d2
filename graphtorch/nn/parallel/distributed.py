"""DistributedDataParallel: one model replica per rank, gradients averaged across ranks.

At wrap, rank 0's parameters and buffers are broadcast, so every replica starts equal; each
forward announces the coming backward to the reducer (reducer.py), whose hooks average the
gradients in buckets while the backward runs. After backward every rank holds the same .grad,
so the same optimizer step keeps the replicas equal.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ...autograd.grad_mode import is_grad_enabled, no_grad
from ...distributed import collectives
from ...distributed.process_group import world
from ..modules.module import Module
from .reducer import Reducer

DEFAULT_BUCKET_CAP_MB = 25


class DistributedDataParallel(Module):
    def __init__(self, module: Module, device_ids=None, output_device=None, dim: int = 0,
                 broadcast_buffers: bool = True, process_group=None, bucket_cap_mb: float | None = None,
                 find_unused_parameters: bool = False, check_reduction: bool = False,
                 gradient_as_bucket_view: bool = False, static_graph: bool = False) -> None:
        super().__init__()
        group = world()
        if device_ids is not None or output_device is not None:
            raise ValueError("DistributedDataParallel device_ids and output_device arguments only work with "
                             "single-device/multiple-device GPU modules or CPU modules, but got device_ids "
                             f"{device_ids}, output_device {output_device}, and module parameters on the CPU "
                             "(graphtorch.distributed runs on CPU tensors: leave both None)")
        params = [(i, p) for i, p in enumerate(module.parameters()) if p.requires_grad]
        if not params:
            raise RuntimeError("DistributedDataParallel is not needed when a module doesn't have any parameter "
                               "that requires a gradient.")
        if bucket_cap_mb is not None and bucket_cap_mb <= 0:
            raise ValueError(f"bucket_cap_mb must be positive, got {bucket_cap_mb}")
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.require_backward_grad_sync = True
        self.bucket_bytes_cap = int((bucket_cap_mb or DEFAULT_BUCKET_CAP_MB) * (1 << 20))
        _broadcast_from_rank0(module)
        self.reducer = Reducer(params, group, bucket_cap_mb or DEFAULT_BUCKET_CAP_MB, find_unused_parameters,
                               lambda: self.require_backward_grad_sync)

    def forward(self, *inputs, **kwargs):
        from ... import dispatch

        if dispatch._tracer is not None:  # a compiled step with or without the all-reduce: retrace on a change
            dispatch._tracer.add_guard("DistributedDataParallel.no_sync()", lambda: self.require_backward_grad_sync)
        if self.broadcast_buffers:
            _sync_buffers(self.module)
        out = self.module(*inputs, **kwargs)
        if is_grad_enabled() and self.require_backward_grad_sync:
            from ...compiled import flatten

            self.reducer.prepare(flatten(out)[0])
        return out

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward passes inside accumulate local gradients without averaging them; the first
        backward after the block averages the accumulated sum."""
        before = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = before


def _broadcast_from_rank0(module: Module) -> None:
    with no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            collectives.broadcast(t, 0)


def _sync_buffers(module: Module) -> None:
    """Every replica runs with rank 0's buffers (running statistics), as PyTorch's broadcast_buffers."""
    buffers = list(module.buffers())
    if not buffers or world().size == 1:
        return
    from ... import dispatch

    with no_grad():
        for b in buffers:
            if dispatch._tracer is not None:
                # inside a compiled step: an all-reduce of rank 0's values and everyone else's zeros
                keep = b if world().rank == 0 else b * 0
                b.copy_(collectives.reduced(keep, collectives.ReduceOp.SUM))
            else:
                collectives.broadcast(b, 0)
