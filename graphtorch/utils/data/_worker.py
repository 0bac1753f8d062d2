"""The loop a DataLoader worker process runs, and what it sends back.

A worker gets (task id, index) pairs on its own queue and puts (task id, batch) on the shared
result queue; the main process reorders them. Batches travel pickled: tensors reduce to their
numpy data only (Tensor.__reduce_ex__), and the pipe is private to this process tree.
"""

from __future__ import annotations

import queue
import random
import sys
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...ops.random import manual_seed
from ._fetch import IterableFetcher, MapFetcher


@dataclass(frozen=True)
class WorkerInfo:
    id: int
    num_workers: int
    seed: int
    dataset: Any


_worker_info: WorkerInfo | None = None
_POLL_S = 0.25  # how often an idle worker checks whether the loader shut down


def get_worker_info() -> WorkerInfo | None:
    """In a DataLoader worker process: its id, the number of workers, its seed and its copy of
    the dataset. None in the main process."""
    return _worker_info


@dataclass(frozen=True)
class IterableEnd:
    """A worker's iterable dataset is exhausted."""
    worker_id: int


@dataclass(frozen=True)
class Resume:
    """Persistent workers: start a new epoch (rebuild the dataset iterator)."""


class ExceptionWrapper:
    """An exception raised in a worker, carried back as text and re-raised in the main process."""

    def __init__(self, where: str) -> None:
        exc_type, exc, _ = sys.exc_info()
        self.exc_type = exc_type
        self.message = f"Caught {exc_type.__name__} {where}.\nOriginal {''.join(traceback.format_exc())}"

    def reraise(self):
        try:
            error = self.exc_type(self.message)
        except Exception:  # an exception type whose constructor wants other arguments
            error = RuntimeError(self.message)
        raise error


def worker_loop(is_iterable: bool, dataset, index_queue, data_queue, done_event, auto_collation: bool,
                collate_fn, drop_last: bool, seed: int, init_fn, worker_id: int, num_workers: int) -> None:
    global _worker_info
    random.seed(seed)
    manual_seed(seed)
    np.random.seed(seed % 2**32)
    _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)
    fetcher_type = IterableFetcher if is_iterable else MapFetcher
    init_error = None
    try:
        if init_fn is not None:
            init_fn(worker_id)
        fetcher = fetcher_type(dataset, auto_collation, collate_fn, drop_last)
    except Exception:
        init_error = ExceptionWrapper(f"in DataLoader worker process {worker_id}")
    ended = False
    while not done_event.is_set():  # the event, not only the None task: it works from a finalizer too
        try:
            task = index_queue.get(timeout=_POLL_S)
        except queue.Empty:
            continue
        if task is None:
            break
        if isinstance(task, Resume):
            data_queue.put((task, None))
            ended = False
            fetcher = fetcher_type(dataset, auto_collation, collate_fn, drop_last)
            continue
        if done_event.is_set() or ended:
            continue  # tasks queued after the end get no answer; the main process skips them
        task_id, index = task
        if init_error is not None:
            data, init_error = init_error, None
        else:
            try:
                data = fetcher.fetch(index)
            except StopIteration:
                data, ended = IterableEnd(worker_id), True
            except Exception:
                data = ExceptionWrapper(f"in DataLoader worker process {worker_id}")
        data_queue.put((task_id, data))
        del data  # drop the batch before blocking on the next task
    # exit even if nobody reads what is still buffered for the main process
    data_queue.cancel_join_thread()
    data_queue.close()
