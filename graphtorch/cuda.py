"""torch.cuda: device queries, answered by the CUDA runtime (False/0 without cuda-python, a driver or a device)."""

from __future__ import annotations


def is_available() -> bool:
    from .runtime import cuda

    return cuda.is_available()


def device_count() -> int:
    from .runtime import cuda

    return cuda.device_count()


def manual_seed(seed: int) -> None:
    """Seeds nothing: there is no CUDA generator without a device (torch does the same)."""


def manual_seed_all(seed: int) -> None:
    """Seeds nothing: there is no CUDA generator without a device (torch does the same)."""
