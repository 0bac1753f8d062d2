"""graphtorch.distributed: PyTorch's torch.distributed API over MPI (mpi4py).

Run a script under `mpiexec -n N python script.py`; `init_process_group(backend="mpi")` takes the
rank and world size from MPI. Needs the optional extra: pip install 'graphtorch[distributed]'.
"""

from .collectives import (
    ReduceOp,
    Work,
    all_gather,
    all_gather_into_tensor,
    all_reduce,
    barrier,
    broadcast,
    reduce_scatter_tensor,
)
from .process_group import (
    destroy_process_group,
    get_backend,
    get_rank,
    get_world_size,
    init_process_group,
    is_available,
    is_initialized,
)

__all__ = ["ReduceOp", "Work", "all_gather", "all_gather_into_tensor", "all_reduce", "barrier", "broadcast",
           "reduce_scatter_tensor", "destroy_process_group", "get_backend", "get_rank", "get_world_size",
           "init_process_group", "is_available", "is_initialized"]
