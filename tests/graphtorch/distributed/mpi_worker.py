"""Scenarios that run on every rank under mpiexec (launched by test_mpi.py): `python mpi_worker.py NAME`.

Each scenario asserts on its rank and prints "PASS <name> rank <r>"; the test counts those lines.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import graphtorch as torch
import graphtorch.distributed as dist
import graphtorch.nn as nn
import graphtorch.nn.functional as F
from graphtorch.distributed.collectives import reduced
from graphtorch.nn.parallel import DistributedDataParallel as DDP

SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


def values(rank: int, shape=(5, 3), dtype=np.float64) -> np.ndarray:
    """Each rank's data: distinct per rank, reproducible anywhere (for the numpy oracle)."""
    rng = np.random.default_rng(100 + rank)
    return (rng.standard_normal(shape) * 4).astype(dtype) if np.dtype(dtype).kind == "f" else \
        rng.integers(-9, 10, shape).astype(dtype)


def everyone(shape=(5, 3), dtype=np.float64) -> np.ndarray:
    return np.stack([values(r, shape, dtype) for r in range(dist.get_world_size())])


# ---------------------------------------------------------------- collectives against numpy


@scenario
def collectives():
    rank, size = dist.get_rank(), dist.get_world_size()
    assert dist.is_initialized() and dist.get_backend() == "mpi"
    oracle = {dist.ReduceOp.SUM: np.sum, dist.ReduceOp.PRODUCT: np.prod, dist.ReduceOp.MIN: np.min,
              dist.ReduceOp.MAX: np.max, dist.ReduceOp.AVG: np.mean}
    for dtype in (np.float32, np.float64, np.int64, np.int32):
        for op, fn in oracle.items():
            if op is dist.ReduceOp.AVG and np.dtype(dtype).kind != "f":
                continue
            t = torch.from_numpy(values(rank, dtype=dtype))
            data_before = t._data
            assert dist.all_reduce(t, op=op) is None
            assert t._data is data_before  # in place, MPI wrote the tensor's own buffer
            np.testing.assert_allclose(t.numpy(), fn(everyone(dtype=dtype), axis=0).astype(dtype), rtol=1e-6)
    _async_ops(rank, size)
    _broadcast_and_gathers(rank, size)
    dist.barrier()
    dist.barrier(async_op=True).wait()


def _async_ops(rank, size):
    t = torch.from_numpy(values(rank))
    work = dist.all_reduce(t, op=dist.ReduceOp.AVG, async_op=True)
    assert work.wait() and work.is_completed()
    np.testing.assert_allclose(t.numpy(), everyone().mean(0), rtol=1e-12)
    version = t._version[0]
    dist.all_reduce(t)
    assert t._version[0] == version + 1  # autograd sees the in-place write


def _broadcast_and_gathers(rank, size):
    for src in range(size):
        t = torch.from_numpy(values(rank))
        dist.broadcast(t, src=src)
        np.testing.assert_array_equal(t.numpy(), values(src))
    t = torch.from_numpy(values(rank))
    dist.broadcast(t, src=size - 1, async_op=True).wait()
    np.testing.assert_array_equal(t.numpy(), values(size - 1))

    out = torch.empty(size * 5, 3, dtype=torch.float64)
    dist.all_gather_into_tensor(out, torch.from_numpy(values(rank)))
    np.testing.assert_array_equal(out.numpy(), everyone().reshape(size * 5, 3))
    parts = [torch.zeros(5, 3, dtype=torch.float64) for _ in range(size)]
    dist.all_gather(parts, torch.from_numpy(values(rank)), async_op=True).wait()
    for r in range(size):
        np.testing.assert_array_equal(parts[r].numpy(), values(r))

    for op, fn in ((dist.ReduceOp.SUM, np.sum), (dist.ReduceOp.MAX, np.max), (dist.ReduceOp.AVG, np.mean)):
        full = torch.from_numpy(values(rank, (size * 2, 3)))
        mine = torch.empty(2, 3, dtype=torch.float64)
        dist.reduce_scatter_tensor(mine, full, op=op)
        expected = fn(everyone((size * 2, 3)), axis=0)[rank * 2:rank * 2 + 2]
        np.testing.assert_allclose(mine.numpy(), expected, rtol=1e-12)


@scenario
def bad_input():
    t = torch.ones(4, 4)
    expect(ValueError, "must be contiguous", lambda: dist.all_reduce(t.t()))
    expect(ValueError, "AVG needs a floating-point tensor", lambda: dist.all_reduce(torch.ones(3, dtype=torch.int64),
                                                                                     op=dist.ReduceOp.AVG))
    expect(ValueError, "src=7 is not a rank", lambda: dist.broadcast(t, src=7))
    expect(ValueError, "world_size", lambda: dist.all_gather_into_tensor(torch.ones(3), torch.ones(2)))
    expect(ValueError, "unknown reduce op", lambda: dist.all_reduce(t, op="median"))
    expect(ValueError, "initialize the default process group twice", lambda: dist.init_process_group("mpi"))
    # shapes that differ between ranks: a clear error on every rank, not a hang or a truncation
    rank = dist.get_rank()
    expect(RuntimeError, "mismatched collective", lambda: dist.all_reduce(torch.ones(3 + rank)))
    expect(RuntimeError, "rank 0: barrier()", lambda: dist.barrier() if rank == 0 else dist.broadcast(torch.ones(2)))
    dist.all_reduce(torch.ones(2))  # and the group still works afterwards
    expect(ValueError, "device_ids", lambda: DDP(nn.Linear(2, 2), device_ids=[0]))
    expect(RuntimeError, "doesn't have any parameter that requires a gradient",
           lambda: DDP(nn.Linear(2, 2).requires_grad_(False)))
    expect(RuntimeError, "mismatched collective", lambda: DDP(nn.Linear(2, 2 + rank)))  # replicas differ


def expect(error, text, fn):
    try:
        fn()
    except error as e:
        assert text in str(e), f"{text!r} not in {e!r}"
    else:
        raise AssertionError(f"expected {error.__name__} with {text!r}")


# ---------------------------------------------------------------- the all_reduce primitive and compile


@scenario
def primitive():
    """The all_reduce primitive eagerly, in the interpreter and in native code (a compiled function
    calling dist.all_reduce), all equal to numpy's sum."""
    rank = dist.get_rank()
    expected = everyone().sum(0)
    for backend in ("interpreter", "llvm"):
        def fn(x):
            y = x * 2
            dist.all_reduce(y)
            return y + 1

        compiled = torch.compile(fn, backend=backend)
        for _ in range(3):  # the first call runs eagerly, the second traces, the third replays
            out = compiled(torch.from_numpy(values(rank)))
            np.testing.assert_allclose(out.numpy(), expected * 2 + 1, rtol=1e-12)
    assert any(n.target == "all_reduce" for n in _graph_nodes(compiled))
    # its derivative: every rank's x reaches every rank's output, so dx = world_size * dy
    x = torch.from_numpy(values(rank, (3,))).requires_grad_()
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    (reduced(x * 1) * weights).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), dist.get_world_size() * weights.numpy())
    for op, fn in (("max", np.max), ("min", np.min), ("product", np.prod), ("avg", np.mean)):
        x = torch.from_numpy(values(rank, (4,)))
        t = torch.compile(lambda x, op=op: _reduced(x * 1, op))
        for _ in range(3):
            np.testing.assert_allclose(t(x).numpy(), fn(everyone((4,)), axis=0), rtol=1e-12)


@scenario
def runtime_binding():
    """runtime/mpi.py: the library mpi4py loaded, the handles array, MPI_Allreduce through ctypes."""
    from mpi4py import MPI

    from graphtorch.runtime import mpi

    assert "libmpi.so" in mpi.library_path()
    h = mpi.handles(MPI.COMM_WORLD, "float64", "sum")
    assert h.dtype == np.int64 and h.shape == (len(mpi.HANDLE_SLOTS),)
    assert h[0] == MPI._handleof(MPI.COMM_WORLD) and h[3] == int(MPI.IN_PLACE)
    out = np.empty((5, 3))
    mpi.allreduce(values(dist.get_rank()), out, h)
    np.testing.assert_allclose(out, everyone().sum(0), rtol=1e-12)
    expect(TypeError, "MPI has no datatype for complex64", lambda: mpi.handles(MPI.COMM_WORLD, "complex64", "sum"))
    expect(ValueError, "unknown reduction 'mean'", lambda: mpi.handles(MPI.COMM_WORLD, "float32", "mean"))
    expect(RuntimeError, "MPI_Allreduce failed with MPI error code", lambda: mpi.check(MPI.ERR_COUNT, "MPI_Allreduce"))


def _reduced(x, op):
    dist.all_reduce(x, op=dist.ReduceOp[op.upper()], async_op=True).wait()
    return x


def _graph_nodes(compiled_fn):
    entry = next(iter(compiled_fn.entries.values()))
    return entry.forward.artifacts.optimized.nodes


# ---------------------------------------------------------------- DDP equals one process on the combined batch


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.fc1 = nn.Linear(3 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def batches(steps: int, per_rank: int, size: int):
    g = np.random.default_rng(7)
    for _ in range(steps):
        x = g.standard_normal((per_rank * size, 1, 10, 10)).astype(np.float32)
        y = g.integers(0, 4, per_rank * size)
        yield torch.from_numpy(x), torch.from_numpy(y)


def train_both(compiled: str | None, steps: int = 4, per_rank: int = 3, bucket_cap_mb: float = 0.001):
    """DDP on this rank's slice vs one model on the whole batch, from the same start. compiled:
    None (eager), "step" (the whole train step) or "module" (graphtorch.compile(ddp))."""
    rank, size = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(rank)  # different on purpose: the wrap must broadcast rank 0's weights
    ddp = DDP(Small(), bucket_cap_mb=bucket_cap_mb)
    reference = Small()
    reference.load_state_dict(ddp.module.state_dict())
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)

    model = torch.compile(ddp) if compiled == "module" else ddp

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    run = torch.compile(step) if compiled == "step" else step
    for x, y in batches(steps, per_rank, size):
        run(x[rank * per_rank:(rank + 1) * per_rank], y[rank * per_rank:(rank + 1) * per_rank])
        ref_opt.zero_grad()
        F.cross_entropy(reference(x), y).backward()
        ref_opt.step()
    for (name, p), q in zip(ddp.module.named_parameters(), reference.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    return run, ddp


@scenario
def ddp_eager():
    _, ddp = train_both(compiled=None)
    assert len(ddp.reducer.buckets) > 1  # bucket_cap_mb=0.001: several buckets
    assert list(ddp.state_dict())[0] == "module.conv.weight"


@scenario
def ddp_compiled():
    dumps = Path(tempfile.mkdtemp())
    os.environ["GRAPHTORCH_DUMP_DIR"] = str(dumps)
    try:
        run, _ = train_both(compiled="step", steps=5)
        optimized = (dumps / "optimized.txt").read_text()
        assert "= all_reduce(%" in optimized
        # the handles are a run-time input of the graph, not constants
        assert "%mpi_handles_sum_float32 : i64[4] = input" in optimized.replace("int64", "i64")
        assert 'call i32 @"MPI_Allreduce"' in (dumps / "forward.ll").read_text()
    finally:
        del os.environ["GRAPHTORCH_DUMP_DIR"]
        shutil.rmtree(dumps)
    nodes = _graph_nodes(run)
    assert sum(n.target == "all_reduce" for n in nodes) > 1, "one all_reduce node per bucket"
    entry = next(iter(run.entries.values()))
    assert entry.backward is None  # the whole step, backward and all-reduce included, is one graph
    assert "MPI_Allreduce" in entry.forward.executable.native.ir_text
    text = torch.explain(run, *next(batches(1, 3, dist.get_world_size())))
    assert "all_reduce" in str(text)


@scenario
def ddp_compiled_module():
    """graphtorch.compile(ddp): compiled forward and backward graphs, the averaging from the hooks."""
    train_both(compiled="module", steps=4)


@scenario
def ddp_compiled_no_sync():
    """A compiled step run inside and outside no_sync() equals the eager one: the trace is guarded."""
    rank, size = dist.get_rank(), dist.get_world_size()
    runs = []
    for compiled in (False, True):
        torch.manual_seed(0)
        ddp = DDP(Small())
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)

        def step(x, y, ddp=ddp, opt=opt):
            opt.zero_grad()
            loss = F.cross_entropy(ddp(x), y)
            loss.backward()
            opt.step()
            return loss

        run = torch.compile(step) if compiled else step
        for k, (x, y) in enumerate(batches(6, 2, size)):
            mine = slice(rank * 2, rank * 2 + 2)
            with ddp.no_sync() if k in (2, 4) else contextlib.nullcontext():
                run(x[mine], y[mine])
        runs.append([p.detach().numpy().copy() for p in ddp.parameters()])
    for eager, compiled in zip(*runs):
        np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)


@scenario
def ddp_no_sync_and_unused():
    rank, size = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    ddp = DDP(Small(), bucket_cap_mb=0.001)
    reference = Small()
    reference.load_state_dict(ddp.module.state_dict())
    (x, y), (x2, y2) = batches(2, 2, size)
    mine = slice(rank * 2, rank * 2 + 2)
    with ddp.no_sync():
        F.cross_entropy(ddp(x[mine]), y[mine]).backward()
    local = ddp.module.fc2.bias.grad.numpy().copy()
    F.cross_entropy(ddp(x2[mine]), y2[mine]).backward()  # averages the accumulated sum
    for xb, yb in ((x, y), (x2, y2)):
        F.cross_entropy(reference(xb), yb).backward()
    np.testing.assert_allclose(ddp.module.fc2.bias.grad.numpy(), reference.fc2.bias.grad.numpy(), rtol=1e-5, atol=1e-7)
    assert size == 1 or not np.allclose(local, reference.fc2.bias.grad.numpy())

    # a parameter no output uses: an error without find_unused_parameters, fine with it
    model = Small()
    model.extra = nn.Linear(2, 2)
    ddp = DDP(model, find_unused_parameters=True)
    F.cross_entropy(ddp(x[mine]), y[mine]).backward()
    assert model.extra.weight.grad is None and model.fc2.weight.grad is not None
    strict = DDP(_with_extra(), bucket_cap_mb=0.001)
    F.cross_entropy(strict(x[mine]), y[mine]).backward()
    expect(RuntimeError, "Expected to have finished reduction", lambda: strict(x[mine]))


def _with_extra():
    model = Small()
    model.extra = nn.Linear(2, 2)
    return model


# ---------------------------------------------------------------- failure


@scenario
def failing_rank():
    """The last rank raises; the others wait in a collective that never completes."""
    if dist.get_rank() == dist.get_world_size() - 1:
        time.sleep(0.2)
        raise ZeroDivisionError(f"boom on rank {dist.get_rank()}")
    dist.barrier()
    time.sleep(60)


if __name__ == "__main__":
    name = sys.argv[1]
    dist.init_process_group(backend="mpi")
    SCENARIOS[name]()
    print(f"PASS {name} rank {dist.get_rank()}", flush=True)
    dist.destroy_process_group()
