"""DataLoader: torch's batching and errors, shuffling under manual_seed, and worker processes."""

import os

import numpy as np
import pytest
import torch
from data_helpers import assert_same_batch, to_torch

import graphtorch
from graphtorch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    SequentialSampler,
    TensorDataset,
    get_worker_info,
)


class Pairs(Dataset):
    """Sample i is (float vector, int label, name): exercises tensors, ints and strings."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return graphtorch.full((2,), float(i)), i, f"s{i}"


class TorchPairs(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return to_torch(Pairs()[i])


class Stream(IterableDataset):
    """0..n-1, split between workers by get_worker_info() as torch's docs show."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(start, self.n, step))

    def __len__(self):
        return self.n


def batches(loader):
    return [[t.tolist() if isinstance(t, graphtorch.Tensor) else t for t in b] for b in loader]


@pytest.mark.parametrize("batch_size, drop_last", [(1, False), (3, False), (3, True), (10, False), (4, True)])
def test_sequential_batches_equal_torch(batch_size, drop_last):
    ours = list(DataLoader(Pairs(), batch_size=batch_size, drop_last=drop_last))
    theirs = list(torch.utils.data.DataLoader(TorchPairs(), batch_size=batch_size, drop_last=drop_last))
    assert len(ours) == len(theirs) == len(DataLoader(Pairs(), batch_size=batch_size, drop_last=drop_last))
    for a, b in zip(ours, theirs):
        assert_same_batch(a, b)


def test_no_batching_converts_samples_like_torch():
    ours = list(DataLoader(Pairs(), batch_size=None))
    theirs = list(torch.utils.data.DataLoader(TorchPairs(), batch_size=None))
    assert len(ours) == 10
    for a, b in zip(ours, theirs):
        assert_same_batch(a, b)


def test_batch_sampler_equals_torch():
    order = [[3, 1], [0], [9, 8, 7]]
    ours = list(DataLoader(Pairs(), batch_sampler=order))
    theirs = list(torch.utils.data.DataLoader(TorchPairs(), batch_sampler=order))
    for a, b in zip(ours, theirs):
        assert_same_batch(a, b)
    assert len(DataLoader(Pairs(), batch_sampler=BatchSampler(SequentialSampler(range(10)), 4, True))) == 2


def test_shuffle_is_a_permutation_and_reproducible_under_manual_seed():
    ds = TensorDataset(graphtorch.arange(20))
    graphtorch.manual_seed(7)
    first = [b[0].tolist() for b in DataLoader(ds, batch_size=6, shuffle=True)]
    second = [b[0].tolist() for b in DataLoader(ds, batch_size=6, shuffle=True)]
    graphtorch.manual_seed(7)
    again = [b[0].tolist() for b in DataLoader(ds, batch_size=6, shuffle=True)]
    assert [len(b) for b in first] == [6, 6, 6, 2]
    assert sorted(sum(first, [])) == list(range(20))
    assert first == again and first != second
    assert first != [list(range(i, min(i + 6, 20))) for i in range(0, 20, 6)]


def test_shuffle_with_generator_and_drop_last():
    ds = TensorDataset(graphtorch.arange(20))
    runs = [[b[0].tolist() for b in DataLoader(ds, batch_size=6, shuffle=True, drop_last=True,
                                               generator=graphtorch.Generator().manual_seed(3))] for _ in range(2)]
    assert runs[0] == runs[1] and [len(b) for b in runs[0]] == [6, 6, 6]
    assert len(set(sum(runs[0], []))) == 18


def test_iterable_dataset_batches_like_torch():
    ours = [b.tolist() for b in DataLoader(Stream(7), batch_size=3)]
    theirs = [b.tolist() for b in torch.utils.data.DataLoader(range(7), batch_size=3)]
    assert ours == theirs == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3, drop_last=True)] == [[0, 1, 2], [3, 4, 5]]
    assert len(DataLoader(Stream(7), batch_size=3)) == 3
    assert [int(x) for x in DataLoader(Stream(3), batch_size=None)] == [0, 1, 2]


def test_workers_give_the_same_batches_as_the_main_process():
    ds = Pairs()
    graphtorch.manual_seed(11)
    single = batches(DataLoader(ds, batch_size=3, shuffle=True))
    graphtorch.manual_seed(11)
    multi = batches(DataLoader(ds, batch_size=3, shuffle=True, num_workers=2))
    assert single == multi
    assert batches(DataLoader(ds, batch_size=4, num_workers=2, prefetch_factor=1)) == batches(DataLoader(ds, batch_size=4))


def _record_worker(worker_id):
    info = get_worker_info()
    assert info.id == worker_id and info.num_workers == 2
    os.environ["GT_TEST_WORKER"] = str(worker_id)


class WhoLoads(Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        info = get_worker_info()
        return i, info.id, os.getpid(), os.environ.get("GT_TEST_WORKER"), info.seed, float(graphtorch.rand(()))


def test_workers_are_processes_with_info_init_fn_and_seeds():
    graphtorch.manual_seed(0)
    rows = list(DataLoader(WhoLoads(), batch_size=None, num_workers=2, worker_init_fn=_record_worker))
    assert [r[0] for r in rows] == list(range(6))
    assert [r[1] for r in rows] == [0, 1, 0, 1, 0, 1]  # round-robin
    assert {r[2] for r in rows}.isdisjoint({os.getpid()}) and len({r[2] for r in rows}) == 2
    assert [r[3] for r in rows] == ["0", "1"] * 3
    assert rows[1][4] == rows[0][4] + 1
    graphtorch.manual_seed(0)
    again = list(DataLoader(WhoLoads(), batch_size=None, num_workers=2))
    assert [r[5] for r in again] == [r[5] for r in rows]  # worker RNGs are seeded from the main seed


def test_iterable_dataset_with_workers_interleaves_like_torch():
    ours = [b.tolist() for b in DataLoader(Stream(9), batch_size=2, num_workers=2)]

    class TorchStream(torch.utils.data.IterableDataset):
        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            return iter(range(info.id, 9, info.num_workers))

    theirs = [b.tolist() for b in torch.utils.data.DataLoader(TorchStream(), batch_size=2, num_workers=2)]
    assert ours == theirs


def test_persistent_workers_serve_several_epochs():
    loader = DataLoader(Stream(5), batch_size=2, num_workers=2, persistent_workers=True)
    first = [b.tolist() for b in loader]
    assert first == [b.tolist() for b in loader] and sorted(sum(first, [])) == list(range(5))
    loader = DataLoader(Pairs(), batch_size=4, num_workers=2, persistent_workers=True)
    assert batches(loader) == batches(loader) == batches(DataLoader(Pairs(), batch_size=4))


class Failing(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        if i == 2:
            raise KeyError(f"no sample {i}")
        return i


def test_worker_errors_are_raised_in_the_main_process():
    with pytest.raises(KeyError, match="Caught KeyError in DataLoader worker process 0"):
        list(DataLoader(Failing(), batch_size=None, num_workers=2))


@pytest.mark.parametrize("kwargs, message", [
    (dict(sampler=[0, 1], shuffle=True), "sampler option is mutually exclusive with shuffle"),
    (dict(batch_sampler=[[0]], batch_size=2), "batch_sampler option is mutually exclusive with batch_size"),
    (dict(batch_sampler=[[0]], drop_last=True), "batch_sampler option is mutually exclusive"),
    (dict(batch_size=None, drop_last=True), "batch_size=None option disables auto-batching"),
    (dict(num_workers=-1), "num_workers option should be non-negative"),
    (dict(timeout=-1), "timeout option should be non-negative"),
    (dict(prefetch_factor=2), "prefetch_factor option could only be specified in multiprocessing"),
    (dict(persistent_workers=True), "persistent_workers option needs num_workers > 0"),
])
def test_argument_conflicts_raise_torchs_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataLoader(Pairs(), **kwargs)
    with pytest.raises(ValueError, match=message):
        torch.utils.data.DataLoader(TorchPairs(), **kwargs)


def test_iterable_dataset_refuses_samplers_and_shuffle():
    with pytest.raises(ValueError, match="expected unspecified shuffle option, but got shuffle=True"):
        DataLoader(Stream(3), shuffle=True)
    with pytest.raises(ValueError, match="expected unspecified sampler option"):
        DataLoader(Stream(3), sampler=[0])


def test_frozen_attributes():
    loader = DataLoader(Pairs())
    with pytest.raises(ValueError, match="batch_size attribute should not be set after DataLoader is initialized"):
        loader.batch_size = 4


def test_numpy_samples_become_tensors():
    class Arrays(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return np.full((2,), i, dtype=np.float32), np.int64(i)

    x, y = next(iter(DataLoader(Arrays(), batch_size=3)))
    assert x.dtype == graphtorch.float32 and x.shape == (3, 2) and y.dtype == graphtorch.int64


class Slow(Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        import time

        time.sleep(1)
        return i


def test_timeout_raises_torchs_error():
    with pytest.raises(RuntimeError, match="DataLoader timed out after 0.2 seconds"):
        list(DataLoader(Slow(), batch_size=None, num_workers=1, timeout=0.2))


def _failing_init(worker_id):
    raise ValueError(f"bad init in {worker_id}")


def test_worker_init_errors_reach_the_main_process():
    with pytest.raises(ValueError, match="bad init in 0"):
        list(DataLoader(Pairs(), batch_size=2, num_workers=1, worker_init_fn=_failing_init))


def test_collated_batches_own_their_memory():
    x = graphtorch.zeros(4, 2)
    batch = next(iter(DataLoader(TensorDataset(x), batch_size=4)))[0]
    batch.add_(1)
    assert float(x.sum()) == 0 and float(batch.sum()) == 8
