"""Elementwise/broadcast chains: one grid-stride kernel that computes the root at every position.

Each thread takes positions i, i + (all threads), ...; the root's value at i comes from the index
emitter (index.py), which maps i back through expand/reshape/permute/slice/pad/concat/gather/unfold
to the group's input buffers. No thread cooperates with another: the CPU check runs these too.
"""

from __future__ import annotations

from ..ir import Group, Node
from .index import Index

BLOCK = 256
MAX_BLOCKS = 65535  # the grid-stride loop covers the rest


def grid_1d(n: int, block: int = BLOCK) -> tuple[int, int, int]:
    return (min(-(-n // block), MAX_BLOCKS), 1, 1)


def emit_pointwise(mod, group: Group, root: Node, reads: list[Node], suffix: str = "") -> None:
    """A kernel writing `root` at every position, reading the buffers of `reads`."""
    k = mod.kernel(group, [*reads, root], suffix)
    n = root.type.numel
    with k.grid_stride(n):
        k.store(root, "i", k.value(root, Index(k, root.type.shape, flat="i")))
    k.finish(grid_1d(n), (BLOCK, 1, 1), cooperative=False)


def emit_group(mod, group: Group) -> None:
    emit_pointwise(mod, group, group.outputs[0], group.inputs)
