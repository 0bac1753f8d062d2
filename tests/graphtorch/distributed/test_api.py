"""graphtorch.distributed in one process, without mpiexec: errors before init, the backend name,
the all_reduce primitive's type rule, DDP's buckets, and the post-accumulate-grad hook DDP uses."""

import sys

import numpy as np
import pytest

import graphtorch as gt
import graphtorch.distributed as dist
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.primitives import PRIMITIVES
from graphtorch.nn.parallel.reducer import assign_buckets

torch = pytest.importorskip("torch")


def test_without_mpi4py_it_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # an import of it fails, as when it is not installed
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    assert not dist.is_available()
    with pytest.raises(RuntimeError, match=r"needs mpi4py and an MPI library: pip install 'graphtorch\[distributed\]'"):
        dist.init_process_group(backend="mpi")
    assert not dist.is_initialized()


def test_wrong_backend_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Invalid backend: 'nccl'.*supports \('mpi',\)"):
        dist.init_process_group(backend="nccl")
    assert not dist.is_initialized()


@pytest.mark.parametrize("name", ["get_rank", "get_world_size", "barrier"])
def test_before_init_the_error_is_torchs(name):
    with pytest.raises(ValueError) as ours:
        getattr(dist, name)()
    with pytest.raises(ValueError) as theirs:
        getattr(torch.distributed, name)()
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("call", [dist.destroy_process_group, lambda: dist.all_reduce(gt.ones(2))])
def test_before_init_other_calls_say_so_too(call):
    # (torch's destroy_process_group raises a bare AssertionError here)
    with pytest.raises(ValueError, match="Default process group has not been initialized"):
        call()


def test_ddp_needs_a_process_group():
    with pytest.raises(ValueError, match="has not been initialized"):
        gt.nn.parallel.DistributedDataParallel(gt.nn.Linear(2, 2))


def test_reduce_op_names_are_torchs():
    assert [op.name for op in dist.ReduceOp] == ["SUM", "AVG", "PRODUCT", "MIN", "MAX"]
    assert all(hasattr(torch.distributed.ReduceOp, op.name) for op in dist.ReduceOp)


def test_all_reduce_type_rule():
    infer = PRIMITIVES["all_reduce"].infer
    x = TensorType((3, 2), gt.float32)
    assert infer(x, TensorType((4,), gt.int64), op="sum") == x
    with pytest.raises(RuntimeError, match=r"handles must be int64 of shape \(4,\) \(communicator, datatype, op, in_place\), got torch.int64 of shape \(3,\)"):
        infer(x, TensorType((3,), gt.int64), op="sum")
    with pytest.raises(RuntimeError, match="op must be one of"):
        infer(x, TensorType((4,), gt.int64), op="mean")


class Param:
    def __init__(self, n, dtype=gt.float32):
        self.n, self.dtype = n, dtype

    def numel(self):
        return self.n


def test_buckets_last_parameters_first_capped_one_dtype_each():
    params = [(0, Param(100)), (1, Param(300)), (2, Param(50, gt.float64)), (3, Param(200))]
    buckets = assign_buckets(params, cap_bytes=1000, first_cap_bytes=800)
    # 3 fills the first float32 bucket (800 bytes), 1 overfills the next one alone, 0 starts a third;
    # float64's first bucket (2) is open at the end; buckets come in the order backward reaches them
    assert [[i for i, _ in b.params] for b in buckets] == [[3], [2], [1], [0]]
    assert [b.buffer.dtype for b in buckets] == [np.float32, np.float64, np.float32, np.float32]
    two = assign_buckets([(0, Param(10)), (1, Param(20))], cap_bytes=1000, first_cap_bytes=1000)
    assert [[i for i, _ in b.params] for b in two] == [[1, 0]] and two[0].offsets == [0, 20]


def test_post_accumulate_grad_hook_matches_torch():
    seen = {}
    for lib in (gt, torch):
        w = lib.ones(3, requires_grad=True)
        calls = []
        handle = w.register_post_accumulate_grad_hook(lambda p, calls=calls: calls.append(p.grad.tolist()))
        (w * 2).sum().backward()
        (w * 3).sum().backward()
        handle.remove()
        (w * 4).sum().backward()
        seen[lib.__name__] = calls
        with pytest.raises(RuntimeError, match="post accumulate grad hooks cannot be registered on non-leaf"):
            (w * 1).register_post_accumulate_grad_hook(print)
    assert seen["graphtorch"] == seen["torch"] == [[2.0] * 3, [5.0] * 3]
