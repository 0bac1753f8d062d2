"""Epilogues: the group's elementwise tail applied where a reduction/GEMM/conv holds its result.

A kernel built around an anchor has the anchor's value for one position in a register; the root
is computed at that same position with the anchor read from the register (bias add, relu,
mean's scale). When the root needs the anchor at a *different* position (a permute of a square
result, an expand of a reduced value), one thread's register cannot serve: the group is split,
the anchor kernel writes the anchor to a scratch buffer and a pointwise kernel computes the root.
"""

from __future__ import annotations

from collections.abc import Callable

from ..ir import Group
from .elementwise import emit_pointwise
from .index import Index
from .kernel import Kernel


class SplitEpilogue(Exception):
    """The epilogue cannot run in the anchor's kernel."""


def store_result(k: Kernel, group: Group, at: Index, acc: str, fused: bool) -> None:
    """Store the root (fused) or the anchor itself (not fused) at the anchor's position `at`."""
    anchor, root = group.anchor, group.outputs[0]
    if not fused or root is anchor:
        k.store(anchor, at.flat(), acc)
        return
    if root.type.shape != anchor.type.shape:
        raise SplitEpilogue

    def read(idx: Index) -> str:
        if not at.same_position(idx):
            raise SplitEpilogue
        return acc

    k.store(root, at.flat(), k.value(root, at, {anchor: read}))


def with_epilogue(mod, group: Group, emit_anchor: Callable[[object, Group, bool], None]) -> None:
    """emit_anchor(mod, group, fused): fused if it can be, else anchor kernel + pointwise kernel."""
    try:
        emit_anchor(mod, group, True)
    except SplitEpilogue:
        emit_anchor(mod, group, False)
        emit_pointwise(mod, group, group.outputs[0], [*group.inputs, group.anchor], "_epilogue")


def written(group: Group, fused: bool):
    """The node an anchor kernel writes: the root, or the anchor when the epilogue runs apart."""
    return group.outputs[0] if fused else group.anchor
