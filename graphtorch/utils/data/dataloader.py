"""DataLoader: batches from a dataset, in the main process or in worker processes.

The main process owns the sampler, so the order of batches never depends on the number of
workers: with the same seed, num_workers=0 and num_workers=N give the same batches in the same
order. Each iterator first draws a base seed from `generator` (the default generator when None),
as torch does; worker i seeds graphtorch, `random` and numpy's global RNG with base_seed + i.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import queue
import sys
from collections.abc import Callable, Iterator
from typing import Any

from ...ops.random import Generator
from ._collate import default_collate, default_convert
from ._fetch import IterableFetcher, MapFetcher
from ._worker import ExceptionWrapper, IterableEnd, Resume, worker_loop
from .dataset import Dataset, IterableDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler, fresh_seed

_POLL_S = 5.0  # how often a waiting main process checks that its workers are alive


class _InfiniteConstantSampler(Sampler):
    """The sampler of iterable datasets: the fetcher ignores indices, only counts them."""

    def __iter__(self) -> Iterator[None]:
        while True:
            yield None


class DataLoader:
    """Combines a dataset and a sampler, and iterates over batches (torch.utils.data.DataLoader)."""

    _frozen = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset", "persistent_workers")

    def __init__(self, dataset: Dataset, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler: Sampler | None = None, batch_sampler: Sampler | None = None, num_workers: int = 0,
                 collate_fn: Callable | None = None, pin_memory: bool = False, drop_last: bool = False,
                 timeout: float = 0, worker_init_fn: Callable | None = None, multiprocessing_context=None,
                 generator: Generator | None = None, *, prefetch_factor: int | None = None,
                 persistent_workers: bool = False) -> None:
        _check_worker_options(num_workers, timeout, prefetch_factor, persistent_workers)
        is_iterable = isinstance(dataset, IterableDataset)
        if is_iterable:
            _check_iterable_options(shuffle, sampler, batch_sampler)
        shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                                 "and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with drop_last")
        if sampler is None:
            if is_iterable:
                sampler = _InfiniteConstantSampler()
            else:
                sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.sampler, self.batch_sampler, self.generator = sampler, batch_sampler, generator
        self.num_workers, self.timeout, self.pin_memory = num_workers, timeout, pin_memory  # pin: CPU only, a no-op
        self.worker_init_fn, self.multiprocessing_context = worker_init_fn, multiprocessing_context
        self.prefetch_factor = 2 if num_workers > 0 and prefetch_factor is None else prefetch_factor
        self.collate_fn = collate_fn or (default_collate if batch_sampler is not None else default_convert)
        self.persistent_workers = persistent_workers
        self._is_iterable = is_iterable
        self._iterator = None
        self._initialized = True

    def __setattr__(self, name: str, value) -> None:
        if getattr(self, "_initialized", False) and name in self._frozen:
            raise ValueError(f"{name} attribute should not be set after {type(self).__name__} is initialized")
        super().__setattr__(name, value)

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    def __iter__(self) -> Iterator:
        if self.num_workers == 0:
            return _SingleProcessIter(self)
        if not self.persistent_workers:
            return _MultiProcessIter(self)
        if self._iterator is None:
            self._iterator = _MultiProcessIter(self)
        else:
            self._iterator.reset(self)
        return self._iterator

    def __len__(self) -> int:
        if not self._is_iterable:
            return len(self._index_sampler)
        n = len(self.dataset)
        if self.batch_size is None:
            return n
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


def _check_worker_options(num_workers, timeout, prefetch_factor, persistent_workers) -> None:
    if num_workers < 0:
        raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable multiprocessing.")
    if timeout < 0:
        raise ValueError("timeout option should be non-negative")
    if num_workers == 0 and prefetch_factor is not None:
        raise ValueError("prefetch_factor option could only be specified in multiprocessing.let num_workers > 0 "
                         "to enable multiprocessing, otherwise set prefetch_factor to None.")
    if prefetch_factor is not None and prefetch_factor < 0:
        raise ValueError("prefetch_factor option should be non-negative")
    if persistent_workers and num_workers == 0:
        raise ValueError("persistent_workers option needs num_workers > 0")


def _check_iterable_options(shuffle, sampler, batch_sampler) -> None:
    if shuffle not in {False, None}:
        raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle option, but got "
                         f"shuffle={shuffle}")
    if sampler is not None:
        raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler option, but got "
                         f"sampler={sampler}")
    if batch_sampler is not None:
        raise ValueError(f"DataLoader with IterableDataset: expected unspecified batch_sampler option, but got "
                         f"batch_sampler={batch_sampler}")


class _SingleProcessIter:
    def __init__(self, loader: DataLoader) -> None:
        self._base_seed = fresh_seed(loader.generator)  # drawn as with workers, so shuffles match
        fetcher_type = IterableFetcher if loader._is_iterable else MapFetcher
        self._fetcher = fetcher_type(loader.dataset, loader._auto_collation, loader.collate_fn, loader.drop_last)
        self._sampler_iter = iter(loader._index_sampler)

    def __iter__(self) -> _SingleProcessIter:
        return self

    def __next__(self) -> Any:
        return self._fetcher.fetch(next(self._sampler_iter))


class _MultiProcessIter:
    """Keeps prefetch_factor tasks per worker in flight, round-robin, and yields results in task
    order. Mirrors torch's _MultiProcessingDataLoaderIter, so iterable datasets interleave workers
    the same way."""

    def __init__(self, loader: DataLoader) -> None:
        self._base_seed = fresh_seed(loader.generator)
        self._num_workers, self._prefetch = loader.num_workers, loader.prefetch_factor
        self._timeout, self._persistent = loader.timeout, loader.persistent_workers
        ctx = _context(loader.multiprocessing_context)
        self._data_queue = ctx.Queue()
        self._done_event = ctx.Event()
        self._index_queues, self._workers = [], []
        self._shut_down = False
        for worker_id in range(self._num_workers):
            index_queue = ctx.Queue()
            index_queue.cancel_join_thread()
            seed = self._base_seed + worker_id
            w = ctx.Process(target=worker_loop, daemon=True, args=(
                loader._is_iterable, loader.dataset, index_queue, self._data_queue, self._done_event,
                loader._auto_collation, loader.collate_fn, loader.drop_last, seed, loader.worker_init_fn,
                worker_id, self._num_workers))
            w.start()
            self._index_queues.append(index_queue)
            self._workers.append(w)
        self.reset(loader, first=True)

    def reset(self, loader: DataLoader, first: bool = False) -> None:
        self._sampler_iter = iter(loader._index_sampler)
        self._send_idx = self._rcvd_idx = 0
        self._task_info: dict[int, tuple] = {}  # task id -> (worker id,) or (worker id, data)
        self._active = [True] * self._num_workers
        self._worker_cycle = itertools.cycle(range(self._num_workers))
        if not first:  # persistent workers: every worker acknowledges the new epoch
            for q in self._index_queues:
                q.put(Resume())
            for _ in range(self._num_workers):
                while not isinstance(self._get_data()[0], Resume):
                    pass  # a stale answer from the previous epoch
        for _ in range(self._prefetch * self._num_workers):
            self._put_task()

    def __iter__(self) -> _MultiProcessIter:
        return self

    def __next__(self) -> Any:
        while True:
            if not self._skip_to_pending():
                if not self._persistent:
                    self._shutdown()
                raise StopIteration
            info = self._task_info[self._rcvd_idx]
            if len(info) == 2:  # already arrived out of order
                del self._task_info[self._rcvd_idx]
                self._rcvd_idx += 1
                return self._process(info[1])
            task_id, data = self._get_data()
            if isinstance(data, IterableEnd):
                self._active[data.worker_id] = False
                self._put_task()
                continue
            if task_id != self._rcvd_idx:
                self._task_info[task_id] += (data,)
                continue
            del self._task_info[task_id]
            self._rcvd_idx += 1
            return self._process(data)

    def _skip_to_pending(self) -> bool:
        """Advance past tasks that will never be answered (their worker's iterable ended)."""
        while self._rcvd_idx < self._send_idx:
            info = self._task_info[self._rcvd_idx]
            if len(info) == 2 or self._active[info[0]]:
                return True
            del self._task_info[self._rcvd_idx]
            self._rcvd_idx += 1
        return False

    def _process(self, data):
        self._put_task()
        if isinstance(data, ExceptionWrapper):
            data.reraise()
        return data

    def _put_task(self) -> None:
        try:
            index = next(self._sampler_iter)
        except StopIteration:
            return
        for _ in range(self._num_workers):
            worker_id = next(self._worker_cycle)
            if self._active[worker_id]:
                break
        else:
            return
        self._index_queues[worker_id].put((self._send_idx, index))
        self._task_info[self._send_idx] = (worker_id,)
        self._send_idx += 1

    def _get_data(self) -> tuple:
        while True:
            try:
                return self._data_queue.get(timeout=self._timeout or _POLL_S)
            except queue.Empty:
                if self._timeout > 0:
                    self._shutdown()
                    raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds") from None
                dead = [str(w.pid) for w, active in zip(self._workers, self._active) if active and not w.is_alive()]
                if dead:
                    self._shutdown()
                    raise RuntimeError(f"DataLoader worker (pid(s) {', '.join(dead)}) exited unexpectedly") from None

    def _shutdown(self) -> None:
        if self._shut_down:
            return
        self._shut_down = True
        self._done_event.set()
        for q in self._index_queues:
            q.put(None)
        for w in self._workers:
            w.join(timeout=_POLL_S)
            if w.is_alive():
                w.terminate()
        for q in (*self._index_queues, self._data_queue):
            q.cancel_join_thread()
            q.close()

    def __del__(self) -> None:
        if getattr(self, "_workers", None):
            self._shutdown()


def _context(requested):
    if requested is None:
        # fork shares the dataset with workers without pickling it; spawn elsewhere
        return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)
    if isinstance(requested, str):
        return multiprocessing.get_context(requested)
    return requested
