"""DistributedSampler against torch's: the same index lists for every combination, no process group needed."""

import itertools

import pytest

from graphtorch.utils.data import DistributedSampler
from graphtorch.utils.data.distributed import torch_randperm

torch = pytest.importorskip("torch")
from torch.utils.data.distributed import DistributedSampler as TorchSampler  # noqa: E402


class Sized:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


@pytest.mark.parametrize("n", [0, 1, 5, 10, 11, 37])
@pytest.mark.parametrize("replicas", [1, 2, 3, 4])
def test_index_lists_equal_torch(n, replicas):
    for shuffle, drop_last, seed, epoch in itertools.product([False, True], [False, True], [0, 7, 2**33 + 5], [0, 3]):
        for rank in range(replicas):
            ours = DistributedSampler(Sized(n), replicas, rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
            theirs = TorchSampler(Sized(n), replicas, rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
            ours.set_epoch(epoch)
            theirs.set_epoch(epoch)
            assert len(ours) == len(theirs)
            assert list(ours) == list(theirs), (n, replicas, rank, shuffle, drop_last, seed, epoch)


def test_padding_repeats_the_list_when_short():
    ours = [list(DistributedSampler(Sized(2), 7, r, shuffle=False)) for r in range(7)]
    theirs = [list(TorchSampler(Sized(2), 7, r, shuffle=False)) for r in range(7)]
    assert ours == theirs == [[0], [1], [0], [1], [0], [1], [0]]


@pytest.mark.parametrize("n,seed", [(1797, 0), (100, 2**32 + 9), (2, 1)])
def test_randperm_is_torch_randperm(n, seed):
    assert torch_randperm(n, seed) == torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def test_epochs_shuffle_differently_and_reproducibly():
    s = DistributedSampler(Sized(50), 2, 0, seed=3)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first
    s.set_epoch(0)
    assert list(s) == first


@pytest.mark.parametrize("rank", [-1, 2])
def test_invalid_rank_is_torch_error(rank):
    with pytest.raises(ValueError) as ours:
        DistributedSampler(Sized(4), 2, rank)
    with pytest.raises(ValueError) as theirs:
        TorchSampler(Sized(4), 2, rank)
    assert str(ours.value) == str(theirs.value)


def test_without_process_group_says_so():
    import graphtorch.distributed as dist

    error, text = (ValueError, "Default process group has not been initialized") if dist.is_available() else \
        (RuntimeError, "Requires distributed package to be available")  # torch's two errors
    with pytest.raises(error, match=text):
        DistributedSampler(Sized(4))
