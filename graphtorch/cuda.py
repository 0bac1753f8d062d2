"""torch.cuda: device queries. Without the CUDA backend there is no CUDA device."""

from __future__ import annotations


def is_available() -> bool:
    return False


def device_count() -> int:
    return 0


def manual_seed(seed: int) -> None:
    """Seeds nothing: there is no CUDA generator without a device (torch does the same)."""


def manual_seed_all(seed: int) -> None:
    """Seeds nothing: there is no CUDA generator without a device (torch does the same)."""
