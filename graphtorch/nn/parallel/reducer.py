"""DDP's gradient reducer: parameters in buckets, each averaged over ranks once all its gradients exist.

Buckets hold parameters in reverse registration order (the backward produces the last layer's
gradients first), up to bucket_cap_mb each (the first one 1 MiB, as PyTorch), one dtype per
bucket. A post-accumulate-grad hook copies a parameter's .grad into its bucket's flat buffer; a
full bucket starts a non-blocking MPI all-reduce while the backward goes on. Buckets start in
index order on every rank (MPI needs the same order everywhere). When the last one has started,
the reducer waits for all, divides by the world size and sets each .grad.

While graphtorch.compile traces a step, the same state machine runs on traced gradients and
records an all_reduce node per bucket instead (collectives.reduced), so the compiled step calls
MPI_Allreduce from native code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ... import dispatch
from ...autograd.graph import AccumulateGrad
from ...distributed import collectives
from ...distributed.process_group import ProcessGroup
from ...runtime import mpi as _mpi
from ...tensor import Tensor

FIRST_BUCKET_BYTES = 1 << 20  # PyTorch's dist._DEFAULT_FIRST_BUCKET_BYTES

_UNFINISHED = ("Expected to have finished reduction in the prior iteration before starting a new one. This error "
               "indicates that your module has parameters that were not used in producing loss. You can enable "
               "unused parameter detection by passing the keyword argument `find_unused_parameters=True` to "
               "`torch.nn.parallel.DistributedDataParallel`, and by making sure all `forward` function outputs "
               "participate in calculating loss.\nParameter indices which did not receive grad for rank {rank}: "
               "{missing}")


@dataclass
class Bucket:
    params: list  # (index in the module's parameters, Parameter)
    offsets: list[int]  # where each parameter's elements start in the flat buffer
    buffer: np.ndarray
    ready: set = field(default_factory=set)
    request: object = None
    traced: dict = field(default_factory=dict)  # while tracing: position -> traced gradient (or None)


def assign_buckets(params: list, cap_bytes: int, first_cap_bytes: int = FIRST_BUCKET_BYTES) -> list[Bucket]:
    """Parameters (index, Parameter) into buckets, as PyTorch assigns them: last parameters first,
    one dtype per bucket, a bucket closed once it holds its cap (the first of each dtype:
    first_cap_bytes); buckets ordered by the last parameter they hold, the order backward reaches them."""
    filling: dict = {}  # dtype -> its buckets so far, the last one open
    size: dict = {}
    for i, p in reversed(params):
        buckets = filling.setdefault(p.dtype, [[]])
        buckets[-1].append((i, p))
        size[p.dtype] = size.get(p.dtype, 0) + p.numel() * p.dtype.itemsize
        if size[p.dtype] >= (first_cap_bytes if len(buckets) == 1 else cap_bytes):
            buckets.append([])
            size[p.dtype] = 0
    members = sorted((m for buckets in filling.values() for m in buckets if m), key=lambda m: -m[0][0])
    return [_bucket(m) for m in members]


def _bucket(members: list) -> Bucket:
    offsets = np.cumsum([0] + [p.numel() for _, p in members]).tolist()
    return Bucket(members, offsets[:-1], np.zeros(offsets[-1], members[0][1].dtype.np))


class Reducer:
    def __init__(self, params: list, group: ProcessGroup, bucket_cap_mb: float, find_unused_parameters: bool,
                 sync_enabled: Callable[[], bool] = lambda: True):
        self.group, self.find_unused, self.sync_enabled = group, find_unused_parameters, sync_enabled
        self.buckets = assign_buckets(params, int(bucket_cap_mb * (1 << 20)),
                                      min(FIRST_BUCKET_BYTES, int(bucket_cap_mb * (1 << 20))))
        self.where = {id(p): (b, k) for b in self.buckets for k, (_, p) in enumerate(b.params)}
        self.expecting = False  # a forward asked for this iteration's gradients to be averaged
        self.started = False  # some gradient of this iteration has arrived
        self.next_bucket = 0
        self.used: np.ndarray | None = None
        # graphtorch.compile(ddp) traced the forward once and then replays it without running it: from
        # then on every backward (outside no_sync) is averaged, as if its forward had announced it
        self.always = False
        self.handles = [p.register_post_accumulate_grad_hook(self._on_grad) for _, p in params]

    # ---------------------------------------------------------------- one iteration
    def prepare(self, outputs: list[Tensor]) -> None:
        """Called by DDP's forward: the coming backward's gradients are to be averaged."""
        if self.started:
            raise RuntimeError(_UNFINISHED.format(rank=self.group.rank, missing=self._missing()))
        self.always = self.always or dispatch._tracer is not None
        self.expecting = True
        if self.find_unused:
            reached = _reachable_leaves(outputs)
            self.used = np.array([id(p) in reached for b in self.buckets for _, p in b.params], np.int32)
            for b in self.buckets:
                for k, (_, p) in enumerate(b.params):
                    if id(p) not in reached:
                        self._mark(b, k, None)

    def _on_grad(self, param) -> None:
        if not (self.expecting or self.always and self.sync_enabled()) or id(param) not in self.where:
            return  # no_sync(), or a backward that no DDP forward announced
        b, k = self.where[id(param)]
        if k not in b.ready:
            self._mark(b, k, param.grad)
        self._progress()

    def _progress(self) -> None:
        """Let MPI move the started all-reduces along (it progresses only inside MPI calls)."""
        for b in self.buckets[:self.next_bucket]:
            if b.request is not None:
                b.request.Test()
                return

    def _mark(self, b: Bucket, k: int, grad: Tensor | None) -> None:
        self.started = True
        b.ready.add(k)
        if dispatch._tracer is not None:
            b.traced[k] = grad
        else:
            n, at = b.params[k][1].numel(), b.offsets[k]
            b.buffer[at:at + n] = 0 if grad is None else np.asarray(grad._data).reshape(-1)
        while self.next_bucket < len(self.buckets) and self._full(self.buckets[self.next_bucket]):
            self._start(self.buckets[self.next_bucket])
            self.next_bucket += 1
        if self.next_bucket == len(self.buckets):
            self._finish()

    @staticmethod
    def _full(b: Bucket) -> bool:
        return len(b.ready) == len(b.params)

    def _start(self, b: Bucket) -> None:
        if dispatch._tracer is not None:
            self._reduce_traced(b)
        else:
            MPI = _mpi.mpi()
            b.request = self.group.comm.Iallreduce(MPI.IN_PLACE, b.buffer, op=MPI.SUM)

    def _reduce_traced(self, b: Bucket) -> None:
        from ...ops.creation import zeros
        from ...ops.shape import cat

        parts = []
        for k, (_, p) in enumerate(b.params):
            g = b.traced[k]
            parts.append(g.reshape(-1) if g is not None else zeros(p.numel(), dtype=p.dtype))
        flat = cat(parts)
        averaged = collectives.reduced(flat, collectives.ReduceOp.AVG)
        for k, (_, p) in enumerate(b.params):
            b.traced[k] = averaged[b.offsets[k]:b.offsets[k] + p.numel()].reshape(p.shape)

    def _finish(self) -> None:
        globally_used = self._globally_used()
        position = 0
        for b in self.buckets:
            if b.request is not None:
                b.request.Wait()
                np.divide(b.buffer, self.group.size, out=b.buffer)
            for k, (_, p) in enumerate(b.params):
                if globally_used is None or globally_used[position]:
                    p.grad = b.traced[k] if b.traced else \
                        Tensor._wrap(b.buffer[b.offsets[k]:b.offsets[k] + p.numel()].reshape(p.shape).copy())
                position += 1
        self._reset()

    def _reset(self) -> None:
        for b in self.buckets:
            b.ready.clear()
            b.traced.clear()
            b.request = None
        self.expecting = self.started = False
        self.next_bucket = 0

    def _globally_used(self) -> np.ndarray | None:
        """Which parameters some rank used (find_unused_parameters): the others keep their .grad."""
        if self.used is None:
            return None
        MPI = _mpi.mpi()
        flags = self.used.copy()
        self.group.comm.Allreduce(MPI.IN_PLACE, flags, op=MPI.MAX)
        return flags

    def _missing(self) -> list[int]:
        return sorted(i for b in self.buckets for k, (i, _) in enumerate(b.params) if k not in b.ready)


def _reachable_leaves(outputs: list[Tensor]) -> set[int]:
    """id() of every leaf tensor whose AccumulateGrad the outputs' backward graph reaches."""
    stack = [o.grad_fn if o.grad_fn is not None else (o._accumulator() if o.requires_grad else None)
             for o in outputs if isinstance(o, Tensor)]
    seen, leaves = set(), set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, AccumulateGrad):
            leaves.add(id(node.variable))
        stack.extend(nxt for nxt, _ in node.next_functions)
    return leaves
