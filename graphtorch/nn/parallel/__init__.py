"""torch.nn.parallel: DistributedDataParallel over graphtorch.distributed (MPI)."""

from .distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel"]
