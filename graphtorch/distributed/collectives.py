"""Collectives on tensors, in place, over MPI: MPI reads and writes the tensor's own numpy buffer.

Every collective first checks that all ranks are calling the same one on the same shapes and
dtypes (one tiny all-reduce; process_group.check_same_everywhere), so a mismatch is an error on
every rank instead of a hang. `async_op=True` starts the non-blocking MPI variant and returns a
Work whose wait() completes it. Inside graphtorch.compile, all_reduce records the all_reduce
primitive, which the compiled code runs by calling MPI_Allreduce itself.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import numpy as np

from .. import dispatch
from ..runtime import mpi as _mpi
from ..tensor import Tensor
from .process_group import check_same_everywhere, world


class ReduceOp(enum.Enum):
    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"

    def __repr__(self) -> str:
        return f"<RedOpType.{self.name}: {list(ReduceOp).index(self)}>"


class Work:
    """A started collective: wait() blocks until it is done (and its result is in the tensors)."""

    def __init__(self, request=None, finish: Callable[[], None] | None = None):
        self._request, self._finish, self._done = request, finish, False

    def wait(self, timeout=None) -> bool:
        if not self._done:
            if self._request is not None:
                self._request.Wait()
            self._done = True
            if self._finish is not None:
                self._finish()
        return True

    def is_completed(self) -> bool:
        if not self._done and self._request is not None and self._request.Test():
            self.wait()
        return self._done or self._request is None

    def is_success(self) -> bool:
        return self.is_completed()


def _run(start: Callable, finish: Callable[[], None] | None, async_op: bool) -> Work | None:
    """start(blocking) runs the MPI call, or starts it and returns its request."""
    if async_op:
        return Work(start(False), finish)
    start(True)
    if finish is not None:
        finish()
    return None


def buffer_of(t, what: str) -> np.ndarray:
    """The numpy array MPI reads and writes: the tensor's own, never a copy."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{what}: expected a Tensor, got {type(t).__name__}")
    if t._data is None:
        raise RuntimeError(f"{what} on a traced tensor: only all_reduce can be compiled")
    if t.is_cuda:
        raise RuntimeError(f"{what}: the MPI backend works on CPU tensors, got a tensor on {t.device}")
    a = t._data
    if not (isinstance(a, np.ndarray) and a.flags.c_contiguous and a.flags.writeable):
        raise ValueError(f"{what}: Tensors must be contiguous (and own writable memory); call .contiguous() first")
    return a


def _signature(name: str, *tensors: Tensor, extra: str | None = None) -> tuple:
    """What every rank must agree on (process_group.describe prints it)."""
    parts = (name, *((t._data.shape, t._data.dtype.str) for t in tensors))
    return parts if extra is None else (*parts, extra)


def _bump(*tensors: Tensor) -> None:
    for t in tensors:
        t._version[0] += 1  # written in place: autograd's saved-tensor checks see it


# ---------------------------------------------------------------- all_reduce


def all_reduce(tensor: Tensor, op: ReduceOp = ReduceOp.SUM, group=None, async_op: bool = False) -> Work | None:
    """Reduce `tensor` over all ranks; every rank gets the result, in place."""
    op = _reduce_op(op)
    if dispatch._tracer is not None and tensor._data is None:
        _traced_all_reduce(tensor, op)
        return Work() if async_op else None  # in the graph the collective is done when the next node runs
    g = world()
    buf = buffer_of(tensor, "all_reduce")
    mpi_op = _mpi_op(op, tensor, "all_reduce")
    check_same_everywhere(g, _signature("all_reduce", tensor, extra=f"op={op.name}"))
    MPI = _mpi.mpi()

    def start(blocking):
        return (g.comm.Allreduce if blocking else g.comm.Iallreduce)(MPI.IN_PLACE, buf, op=mpi_op)

    def finish():
        if op is ReduceOp.AVG:
            np.divide(buf, g.size, out=buf)
        _bump(tensor)
    return _run(start, finish, async_op)


def _reduce_op(op) -> ReduceOp:
    if isinstance(op, ReduceOp):
        return op
    if isinstance(op, str) and op.upper() in ReduceOp.__members__:
        return ReduceOp[op.upper()]
    raise ValueError(f"unknown reduce op {op!r}: expected one of {', '.join(ReduceOp.__members__)}")


def _mpi_op(op: ReduceOp, tensor: Tensor, what: str):
    """MPI's op for `op` (AVG is a SUM, divided afterwards: floating point only)."""
    if op is ReduceOp.AVG and not tensor.dtype.is_floating_point:
        raise ValueError(f"{what}: ReduceOp.AVG needs a floating-point tensor, got {tensor.dtype}")
    return getattr(_mpi.mpi(), _mpi.MPI_OPS["sum" if op is ReduceOp.AVG else op.value])


def _traced_all_reduce(tensor: Tensor, op: ReduceOp) -> None:
    """Inside graphtorch.compile: an all_reduce node, written back into `tensor`."""
    from ..autograd.grad_mode import no_grad

    with no_grad():
        tensor.copy_(reduced(tensor, op))


def reduced(tensor: Tensor, op: ReduceOp = ReduceOp.SUM) -> Tensor:
    """A new tensor: the all-reduce of `tensor` as a graph op (the all_reduce primitive). AVG is
    SUM divided by the world size."""
    g = world()
    _mpi_op(op, tensor, "all_reduce")
    name = "sum" if op is ReduceOp.AVG else op.value
    if tensor.dtype.name not in _mpi.MPI_TYPES:
        raise TypeError(f"all_reduce: MPI has no datatype for {tensor.dtype}")
    handles = g.handles(tensor.dtype.name, name)
    if dispatch._tracer is not None:  # the graph input's name in dumps and explain
        dispatch._tracer.names.setdefault(id(handles), f"mpi_handles_{name}_{tensor.dtype.name}")
    out = dispatch.apply("all_reduce", tensor, handles, op=name)
    return out / g.size if op is ReduceOp.AVG else out


# ---------------------------------------------------------------- broadcast, gather, scatter, barrier


def broadcast(tensor: Tensor, src: int = 0, group=None, async_op: bool = False) -> Work | None:
    """Every rank's `tensor` gets rank `src`'s values."""
    g = world()
    _check_rank(src, g.size, "broadcast", "src")
    buf = buffer_of(tensor, "broadcast")
    check_same_everywhere(g, _signature("broadcast", tensor, extra=f"src={src}"))

    def start(blocking):
        return (g.comm.Bcast if blocking else g.comm.Ibcast)(buf, root=src)
    return _run(start, lambda: _bump(tensor), async_op)


def all_gather_into_tensor(output_tensor: Tensor, input_tensor: Tensor, group=None,
                           async_op: bool = False) -> Work | None:
    """output_tensor (world_size * input's first dim, ...) gets every rank's input, in rank order."""
    g = world()
    out, inp = buffer_of(output_tensor, "all_gather_into_tensor"), buffer_of(input_tensor, "all_gather_into_tensor")
    _check_sizes("all_gather_into_tensor", output_tensor, input_tensor, out.size == inp.size * g.size,
                 f"output_tensor must have world_size ({g.size}) times as many elements as input_tensor")
    check_same_everywhere(g, _signature("all_gather_into_tensor", output_tensor, input_tensor))

    def start(blocking):
        return (g.comm.Allgather if blocking else g.comm.Iallgather)(inp, out)
    return _run(start, lambda: _bump(output_tensor), async_op)


def all_gather(tensor_list: list[Tensor], tensor: Tensor, group=None, async_op: bool = False) -> Work | None:
    """tensor_list[r] gets rank r's `tensor`."""
    g = world()
    inp = buffer_of(tensor, "all_gather")
    if len(tensor_list) != g.size:
        raise ValueError(f"all_gather: tensor_list has {len(tensor_list)} tensors, expected world_size ({g.size})")
    outs = [buffer_of(t, "all_gather") for t in tensor_list]
    for t in tensor_list:
        _check_sizes("all_gather", t, tensor, t.shape == tensor.shape and t.dtype == tensor.dtype,
                     "every tensor in tensor_list must have the input's shape and dtype")
    check_same_everywhere(g, _signature("all_gather", tensor))
    gathered = np.empty((g.size, *inp.shape), inp.dtype)

    def start(blocking):
        return (g.comm.Allgather if blocking else g.comm.Iallgather)(inp, gathered)

    def finish():
        for t, a, part in zip(tensor_list, outs, gathered):
            np.copyto(a, part)
            _bump(t)
    return _run(start, finish, async_op)


def reduce_scatter_tensor(output: Tensor, input: Tensor, op: ReduceOp = ReduceOp.SUM, group=None,
                          async_op: bool = False) -> Work | None:
    """Reduce `input` over ranks; rank r keeps the r-th of world_size equal chunks, in `output`."""
    op = _reduce_op(op)
    g = world()
    out, inp = buffer_of(output, "reduce_scatter_tensor"), buffer_of(input, "reduce_scatter_tensor")
    _check_sizes("reduce_scatter_tensor", output, input, inp.size == out.size * g.size,
                 f"input must have world_size ({g.size}) times as many elements as output")
    mpi_op = _mpi_op(op, input, "reduce_scatter_tensor")
    check_same_everywhere(g, _signature("reduce_scatter_tensor", output, input, extra=f"op={op.name}"))

    def start(blocking):
        return (g.comm.Reduce_scatter_block if blocking else g.comm.Ireduce_scatter_block)(inp, out, op=mpi_op)

    def finish():
        if op is ReduceOp.AVG:
            np.divide(out, g.size, out=out)
        _bump(output)
    return _run(start, finish, async_op)


def barrier(group=None, async_op: bool = False, device_ids=None) -> Work | None:
    g = world()
    check_same_everywhere(g, ("barrier",))

    def start(blocking):
        return g.comm.Barrier() if blocking else g.comm.Ibarrier()
    return _run(start, None, async_op)


def _check_rank(r: int, size: int, what: str, name: str) -> None:
    if not 0 <= r < size:
        raise ValueError(f"{what}: {name}={r} is not a rank of this group (expected 0 <= {name} < {size})")


def _check_sizes(what: str, out: Tensor, inp: Tensor, ok: bool, expected: str) -> None:
    if out.dtype != inp.dtype:
        raise TypeError(f"{what}: output dtype {out.dtype} differs from input dtype {inp.dtype}")
    if not ok:
        raise ValueError(f"{what}: {expected}; got output {list(out.shape)} and input {list(inp.shape)}")
