"""torch.utils: data loading (graphtorch.utils.data)."""

from . import data

__all__ = ["data"]
