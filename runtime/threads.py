"""A persistent pool of Python threads for native kernels, and the thread-count setting.

ctypes releases the GIL during a native call, so plain Python threads run compiled code in
parallel. Each worker waits on its own queue; a parallel run hands `fn(tid, n)` to workers
1..n-1 and runs tid 0 on the calling thread, then waits for all of them. The workers live as
long as the process, so a run costs two queue hand-offs per worker (~10-30 us), not a thread start.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable

_num_threads = os.cpu_count() or 1


def set_num_threads(n: int) -> None:
    """The number of threads compiled code uses (like torch.set_num_threads)."""
    global _num_threads
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads expects a positive integer, but got {n!r}")
    _num_threads = n


def get_num_threads() -> int:
    return _num_threads


class ThreadPool:
    def __init__(self) -> None:
        self._inboxes: list[queue.SimpleQueue] = []
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()  # one parallel run at a time: the done queue is shared

    def run(self, fn: Callable[[int, int], None], n: int) -> None:
        """Call fn(tid, n) for tid in 0..n-1, in parallel; return when all have returned."""
        if n <= 1:
            fn(0, 1)
            return
        with self._lock:
            self._grow(n - 1)
            for tid in range(1, n):
                self._inboxes[tid - 1].put((fn, tid, n))
            error: BaseException | None = None
            try:
                fn(0, n)
            except BaseException as e:  # still wait for the workers: they use the same buffers
                error = e
            for _ in range(n - 1):
                result = self._done.get()
                error = error or result
        if error is not None:
            raise error

    def _grow(self, workers: int) -> None:
        while len(self._inboxes) < workers:
            inbox: queue.SimpleQueue = queue.SimpleQueue()
            threading.Thread(target=self._work, args=(inbox,), daemon=True,
                             name=f"graphtorch-worker-{len(self._inboxes) + 1}").start()
            self._inboxes.append(inbox)

    def _work(self, inbox: queue.SimpleQueue) -> None:
        while True:
            fn, tid, n = inbox.get()
            try:
                fn(tid, n)
                self._done.put(None)
            except BaseException as e:
                self._done.put(e)


_pool = ThreadPool()


def pool() -> ThreadPool:
    return _pool
