"""Identical kernels compile once.

A model with repeated blocks (a transformer's layers, a ResNet's stages) fuses into groups that
compute the same thing on buffers of the same shapes: their LLVM functions would be the same
code under different names. LLVM's optimization and codegen are most of a cold compile, so each
distinct kernel is emitted once and the others call it (module.py `build_module`).

Two groups get the same kernel when everything the lowering reads is equal: the pattern, each
member's primitive, attributes and type and where its operands come from (another member, or the
k-th kernel argument), the arguments' types, the in-place and noalias flags of each argument, the
anchor's position and the thread count that sizes per-thread workspace. The lowering reads nothing
else of a group (no names, ids, locations or constant values: constants are arguments).
"""

from __future__ import annotations

from ..ir import Group, Node, freeze


def kernel_signature(group: Group, args: list[Node], flags: list[tuple[bool, bool]], max_threads: int) -> tuple:
    """Equal for two groups exactly when their lowered kernels are the same code."""
    member = {n: j for j, n in enumerate(group.nodes)}
    arg = {n: k for k, n in enumerate(args)}
    body = tuple((n.target, freeze(n.attrs), n.type,
                  tuple(("member", member[i]) if i in member else ("arg", arg[i]) for i in n.inputs))
                 for n in group.nodes)
    return (group.pattern, body, tuple(n.type for n in args), tuple(flags), member.get(group.anchor),
            tuple(member[o] for o in group.outputs), max_threads)


def representatives(groups: list[Group], signatures: dict[Group, tuple]) -> dict[Group, Group]:
    """Each group's first group (in order) with the same signature: the one whose kernel it calls."""
    first: dict[tuple, Group] = {}
    return {g: first.setdefault(signatures[g], g) for g in groups}
