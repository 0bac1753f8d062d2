"""A progress bar over epochs: tqdm when it is installed (the `examples` extra), else a plain range."""

from __future__ import annotations

from collections.abc import Iterable

try:
    from tqdm import trange
except ImportError:
    trange = None


class _Plain:
    """range(n) with tqdm's set_postfix, so the training loops read the same either way."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):
        return iter(range(self.n))

    def set_postfix(self, **values) -> None:
        pass


def epochs(n: int, desc: str, enabled: bool = True) -> Iterable[int]:
    if trange is None or not enabled:
        return _Plain(n)
    return trange(n, desc=desc, leave=False)
