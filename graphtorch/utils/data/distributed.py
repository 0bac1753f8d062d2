"""DistributedSampler: each rank's share of a dataset's indices, the same lists PyTorch's gives.

With shuffle, the order is torch.randperm(n) from a CPU generator seeded with seed + epoch, which
is the Mersenne Twister (mt19937) with PyTorch's Fisher-Yates variant: reproduced here bit for bit,
so a job mixing graphtorch and torch ranks, or resuming from either, sees the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized

import numpy as np

from .sampler import Sampler

__all__ = ["DistributedSampler", "torch_randperm"]

_MT_N = 624


def _mt19937_key(seed: int) -> np.ndarray:
    """mt19937's state after seeding with a 32-bit value (PyTorch keeps the seed's low 32 bits)."""
    key = np.empty(_MT_N, np.uint32)
    x = seed & 0xFFFFFFFF
    key[0] = x
    for j in range(1, _MT_N):
        x = (1812433253 * (x ^ (x >> 30)) + j) & 0xFFFFFFFF
        key[j] = x
    return key


def torch_randperm(n: int, seed: int) -> list[int]:
    """torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist() on the CPU:
    for i < n - 1, swap i with i + (next 32-bit draw % (n - i))."""
    bits = np.random.MT19937()
    bits.state = {"bit_generator": "MT19937", "state": {"key": _mt19937_key(seed), "pos": _MT_N}}
    draws = bits.random_raw(max(n - 1, 0)).tolist()
    order = list(range(n))
    for i, r in enumerate(draws):
        z = i + r % (n - i)
        order[i], order[z] = order[z], order[i]
    return order


class DistributedSampler(Sampler):
    """Rank `rank`'s indices of `dataset`: every num_replicas-th of the (shuffled) list, padded by
    repeating its start so every rank gets num_samples (or cut short, with drop_last)."""

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        if num_replicas is None or rank is None:
            from ... import distributed as dist

            if not dist.is_available():
                raise RuntimeError("Requires distributed package to be available")
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        if rank >= num_replicas or rank < 0:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.epoch, self.drop_last, self.shuffle, self.seed = 0, drop_last, shuffle, seed
        n = len(dataset)
        if drop_last and n % num_replicas != 0:
            self.num_samples = math.ceil((n - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        indices = torch_randperm(n, self.seed + self.epoch) if self.shuffle else list(range(n))
        if not self.drop_last:
            padding = self.total_size - len(indices)
            if padding <= len(indices):
                indices += indices[:padding]
            else:
                indices += (indices * math.ceil(padding / len(indices)))[:padding]
        else:
            indices = indices[:self.total_size]
        assert len(indices) == self.total_size
        return iter(indices[self.rank:self.total_size:self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Shuffle differently in each epoch (the same way on every rank): call before each epoch."""
        self.epoch = epoch
