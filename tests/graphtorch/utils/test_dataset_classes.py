"""Dataset, TensorDataset, ConcatDataset, Subset, random_split and the samplers."""

import pytest

import graphtorch
from graphtorch.utils.data import (
    BatchSampler,
    ChainDataset,
    ConcatDataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    random_split,
)


def test_tensor_dataset_indexes_every_tensor():
    ds = TensorDataset(graphtorch.arange(6).reshape(3, 2), graphtorch.tensor([7, 8, 9]))
    x, y = ds[1]
    assert len(ds) == 3 and x.tolist() == [2, 3] and y.item() == 8
    with pytest.raises(AssertionError, match="Size mismatch between tensors"):
        TensorDataset(graphtorch.zeros(3), graphtorch.zeros(4))


def test_concat_and_add():
    a, b = TensorDataset(graphtorch.arange(3)), TensorDataset(graphtorch.arange(10, 12))
    both = a + b
    assert isinstance(both, ConcatDataset) and len(both) == 5
    assert [both[i][0].item() for i in range(5)] == [0, 1, 2, 10, 11]
    assert both[-1][0].item() == 11 and both.cumulative_sizes == [3, 5]
    with pytest.raises(ValueError, match="absolute value of index should not exceed dataset length"):
        both[-6]
    with pytest.raises(AssertionError, match="datasets should not be an empty iterable"):
        ConcatDataset([])


def test_chain_of_iterables():
    class Count(IterableDataset):
        def __init__(self, n):
            self.n = n

        def __iter__(self):
            return iter(range(self.n))

    chained = Count(2) + Count(3)
    assert isinstance(chained, ChainDataset) and list(chained) == [0, 1, 0, 1, 2]


def test_subset_reads_through_its_indices():
    ds = Subset(TensorDataset(graphtorch.arange(10)), [9, 0, 4])
    assert len(ds) == 3 and [ds[i][0].item() for i in range(3)] == [9, 0, 4]


@pytest.mark.parametrize("lengths, sizes", [([3, 7], [3, 7]), ([0.3, 0.7], [3, 7]), ([0.25, 0.25, 0.5], [3, 2, 5])])
def test_random_split_sizes_and_disjointness(lengths, sizes):
    parts = random_split(range(10), lengths, generator=graphtorch.Generator().manual_seed(1))
    assert [len(p) for p in parts] == sizes
    seen = [p[i] for p in parts for i in range(len(p))]
    assert sorted(seen) == list(range(10))


def test_random_split_is_reproducible_and_checks_lengths():
    graphtorch.manual_seed(3)
    a = random_split(range(10), [5, 5])[0].indices
    graphtorch.manual_seed(3)
    assert random_split(range(10), [5, 5])[0].indices == a
    with pytest.raises(ValueError, match="Sum of input lengths does not equal the length of the input dataset"):
        random_split(range(10), [5, 6])
    with pytest.raises(ValueError, match="Fraction at index 0 is not between 0 and 1"):
        random_split(range(10), [1.5, -0.5])


def test_samplers():
    assert list(SequentialSampler(range(4))) == [0, 1, 2, 3]
    g = graphtorch.Generator().manual_seed(0)
    perm = list(RandomSampler(range(8), generator=g))
    assert sorted(perm) == list(range(8))
    draws = list(RandomSampler(range(3), replacement=True, num_samples=50))
    assert len(draws) == 50 and set(draws) <= {0, 1, 2}
    long = list(RandomSampler(range(4), num_samples=10))
    assert len(long) == 10 and sorted(long[:4]) == [0, 1, 2, 3]
    assert sorted(SubsetRandomSampler([5, 7, 9])) == [5, 7, 9]
    assert list(BatchSampler(range(7), 3, drop_last=False)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert len(BatchSampler(range(7), 3, drop_last=True)) == 2


def test_sampler_argument_errors():
    with pytest.raises(ValueError, match="num_samples should be a positive integer value, but got num_samples=0"):
        RandomSampler(range(3), num_samples=0)
    with pytest.raises(TypeError, match="replacement should be a boolean value"):
        RandomSampler(range(3), replacement=1)
    with pytest.raises(ValueError, match="batch_size should be a positive integer value, but got batch_size=0"):
        BatchSampler(range(3), 0, False)


def test_weighted_sampler_follows_the_weights():
    graphtorch.manual_seed(0)
    draws = list(WeightedRandomSampler([0.0, 1.0, 3.0], 4000))
    assert draws.count(0) == 0 and 2.5 < draws.count(2) / draws.count(1) < 3.5
    picked = list(WeightedRandomSampler([1.0, 0.0, 1.0, 1.0], 3, replacement=False))
    assert sorted(picked) == [0, 2, 3]
