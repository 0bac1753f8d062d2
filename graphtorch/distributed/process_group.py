"""The default process group: MPI's world communicator, and what happens when a rank fails.

Rank and world size come from MPI (mpiexec starts the processes). A rank that raises an uncaught
exception prints its traceback and aborts the communicator, which makes mpiexec end every rank
at once, instead of the others hanging in their next collective.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field

import numpy as np

from ..runtime import mpi as _mpi

_NOT_INITIALIZED = ("Default process group has not been initialized, please make sure to call "
                    "init_process_group.")
BACKENDS = ("mpi",)


@dataclass
class ProcessGroup:
    comm: object  # mpi4py's Comm
    rank: int
    size: int
    handle_tensors: dict = field(default_factory=dict)  # (dtype name, op) -> int64 Tensor (runtime.mpi.handles)

    def handles(self, dtype_name: str, op: str):
        """The handles a compiled all_reduce reads: made outside any trace, so a trace lifts them
        as a run-time input instead of baking addresses into the code."""
        key = (dtype_name, op)
        if key not in self.handle_tensors:
            from .. import dispatch
            from ..tensor import Tensor

            saved, dispatch._tracer = dispatch._tracer, None
            try:
                self.handle_tensors[key] = Tensor._wrap(_mpi.handles(self.comm, dtype_name, op))
            finally:
                dispatch._tracer = saved
        return self.handle_tensors[key]


_world: ProcessGroup | None = None
_previous_excepthook = None


def is_available() -> bool:
    """True when mpi4py (and so an MPI library) can be imported; `import mpi4py` does not start MPI."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def init_process_group(backend: str | None = None, init_method: str | None = None, timeout=None,
                       world_size: int = -1, rank: int = -1, store=None, group_name: str = "",
                       pg_options=None, device_id=None) -> None:
    """Join the job mpiexec started: rank and world size come from MPI (init_method and store are
    not needed; world_size and rank, when given, must agree with MPI's)."""
    global _world
    if _world is not None:
        raise ValueError("trying to initialize the default process group twice!")
    name = (backend or "mpi").lower()
    if name not in BACKENDS:
        raise ValueError(f"Invalid backend: {backend!r}. graphtorch.distributed supports {BACKENDS} "
                         "(run the script under mpiexec)")
    MPI = _mpi.mpi()
    comm = MPI.COMM_WORLD
    for what, given, actual in (("world_size", world_size, comm.Get_size()), ("rank", rank, comm.Get_rank())):
        if given not in (-1, None) and given != actual:
            raise ValueError(f"init_process_group: {what}={given} but MPI says {actual} (mpiexec -n decides both)")
    comm.Set_errhandler(MPI.ERRORS_RETURN)  # an MPI error is a Python exception here, then an abort
    _world = ProcessGroup(comm, comm.Get_rank(), comm.Get_size())
    _install_abort_on_error()


def destroy_process_group(group=None) -> None:
    global _world
    if _world is None:
        raise ValueError(_NOT_INITIALIZED)
    _world = None
    _restore_excepthook()


def is_initialized() -> bool:
    return _world is not None


def world() -> ProcessGroup:
    if _world is None:
        raise ValueError(_NOT_INITIALIZED)
    return _world


def get_rank(group=None) -> int:
    return world().rank


def get_world_size(group=None) -> int:
    return world().size


def get_backend(group=None) -> str:
    world()
    return "mpi"


# ---------------------------------------------------------------- failure: abort, don't hang


def _install_abort_on_error() -> None:
    global _previous_excepthook
    if _previous_excepthook is None:
        _previous_excepthook = sys.excepthook
        sys.excepthook = _abort_on_error


def _restore_excepthook() -> None:
    global _previous_excepthook
    if _previous_excepthook is not None:
        sys.excepthook = _previous_excepthook
        _previous_excepthook = None


def _abort_on_error(exc_type, exc, tb) -> None:
    """An uncaught exception on one rank: say which rank, print it, abort the whole job."""
    group = _world
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    if group is None:
        sys.__excepthook__(exc_type, exc, tb)
        return
    sys.stderr.write(f"[rank {group.rank}] {text}")
    sys.stderr.write(f"[rank {group.rank}] aborting the job (MPI_Abort) after this uncaught exception\n")
    sys.stderr.flush()
    sys.stdout.flush()
    group.comm.Abort(1)
    os._exit(1)  # not reached: Abort ends the process


def check_same_everywhere(group: ProcessGroup, signature: tuple) -> None:
    """Raise a clear error on every rank when the ranks are not all calling the same collective
    on tensors of the same shape and dtype (MPI itself would hang or truncate): one all-reduce
    (MAX) of each rank's fingerprint h and -h, equal everywhere iff max(h) == min(h)."""
    MPI = _mpi.mpi()
    both = _fingerprints.get(signature)
    if both is None:
        h = int(np.frombuffer(_fingerprint(repr(signature)), np.int64)[0]) >> 1  # >> 1: -h fits
        both = _fingerprints[signature] = np.array([h, -h], np.int64)
    both = both.copy()
    group.comm.Allreduce(MPI.IN_PLACE, both, op=MPI.MAX)
    if both[0] == -both[1]:
        return
    everyone = group.comm.allgather(describe(signature))
    lines = "\n".join(f"  rank {r}: {w}" for r, w in enumerate(everyone))
    raise RuntimeError(f"mismatched collective on rank {group.rank}: the ranks called different collectives "
                       f"or passed tensors of different shapes or dtypes:\n{lines}")


_fingerprints: dict[tuple, np.ndarray] = {}


def describe(signature: tuple) -> str:
    """("all_reduce", (shape, dtype), ..., "op=SUM") as all_reduce(float32[3, 2], op=SUM)."""
    name, *parts = signature
    text = [f"{np.dtype(p[1]).name}{list(p[0])}" if isinstance(p, tuple) else str(p) for p in parts]
    return f"{name}({', '.join(text)})"


def _fingerprint(text: str) -> bytes:
    import hashlib

    return hashlib.blake2b(text.encode(), digest_size=8).digest()
