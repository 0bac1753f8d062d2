"""conv2d + bias + relu + max_pool as one group ("conv2d_pool"), for inference.

When a conv2d group's root (its epilogue: bias, relu) is read by a max_pool only (so no backward
keeps the activation), the pass `fuse_conv_pool` merges the pool into the group. The backends then
run the convolution a chunk of images at a time into a scratch buffer that stays in cache and
pool each chunk from there (llvm/conv_pool.py; the CUDA backend runs the conv kernel into scratch,
then the pool kernel): the full-size activation never reaches the memory plan's arena.

`batch_slice` rewrites the group's conv and epilogue for a chunk of the batch: the same nodes
over `chunk` images, with the input x and every batch-sized shape cut to the chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

from .dtypes import TensorType
from .ir import Graph, Group, Node

CHUNK_BYTES = 128 << 10  # activation bytes per chunk: the chunk is pooled while it is in L2


@dataclass
class Sliced:
    """The group's nodes over `chunk` images: clones of the inputs, the conv's epilogue root, the pool."""

    chunk: int
    inputs: dict[Node, Node]  # original group input -> its clone
    conv: Group  # the cloned conv2d group (anchor, epilogue), root = the activation
    pool: Node  # the cloned max_pool, reading the cloned activation


def chunk_size(group: Group) -> int:
    """The largest divisor of the batch whose activation fits CHUNK_BYTES (at least 1)."""
    act = group.outputs[0].inputs[0].type
    n = act.shape[0]
    per_image = act.numel // max(n, 1) * act.dtype.itemsize
    return max([c for c in range(1, n + 1) if n % c == 0 and c * per_image <= CHUNK_BYTES], default=1)


def batch_slice(group: Group, chunk: int) -> Sliced:
    """Clone `group` (conv, epilogue, pool) over `chunk` images; raises RuntimeError when some
    shape in it cannot be cut to the chunk (then the group is not fused)."""
    anchor = group.anchor
    full = tuple(anchor.type.shape)
    cut = (chunk, *full[1:])
    g = Graph()
    env: dict[Node, Node] = {}
    for i in group.inputs:
        shape = (chunk, *i.type.shape[1:]) if i is anchor.inputs[0] else i.type.shape
        env[i] = g.input(i.target if i.op == "input" else i.name.lstrip("%"), TensorType(shape, i.type.dtype))
    for n in group.nodes:
        attrs = {k: (cut if isinstance(v, tuple) and v == full else v) for k, v in n.attrs.items()}
        env[n] = g.call(n.target, [env[i] for i in n.inputs], attrs, n.loc, n.origin)
        if n.type.shape == full and env[n].type.shape != cut:
            raise RuntimeError(f"{n.name} ({n.target}) does not follow the batch")
    nodes = [env[n] for n in group.nodes[:-1]]
    conv = Group(group.id, "conv2d", nodes, [env[i] for i in group.inputs if i in _reads(group.nodes[:-1])],
                 [nodes[-1]], env[anchor])
    return Sliced(chunk, {i: env[i] for i in group.inputs}, conv, env[group.outputs[0]])


def _reads(nodes: list[Node]) -> set[Node]:
    return {i for n in nodes for i in n.inputs}


def fuse_conv_pool(groups: list[Group], users: dict[Node, list[Node]],
                   outputs: set[Node]) -> tuple[list[Group], list[tuple[Node, Node, str]]]:
    """Merge each max_pool group into the conv2d group that feeds it when nothing else reads the
    activation; returns the new groups (renumbered) and (activation, pool, why) per refusal."""
    by_root = {g.outputs[0]: g for g in groups}
    merged: dict[int, Group] = {}
    dropped: set[int] = set()
    refusals = []
    for g in groups:
        pool = g.outputs[0]
        if pool.target != "max_pool" or len(g.nodes) != 1:
            continue
        conv = by_root.get(pool.inputs[0])
        if conv is None or conv.pattern != "conv2d":
            continue
        why = _refusal(conv, pool, users, outputs)
        if why:
            refusals.append((conv.outputs[0], pool, why))
            continue
        merged[conv.id] = Group(conv.id, "conv2d_pool", [*conv.nodes, pool], conv.inputs, [pool], conv.anchor)
        dropped.add(g.id)
    kept = [merged.get(g.id, g) for g in groups if g.id not in dropped]
    return [Group(k, g.pattern, g.nodes, g.inputs, g.outputs, g.anchor) for k, g in enumerate(kept)], refusals


def _refusal(conv: Group, pool: Node, users: dict[Node, list[Node]], outputs: set[Node]) -> str | None:
    act = conv.outputs[0]
    if act in outputs or users.get(act, []) != [pool]:
        return f"the activation {act.name} is read elsewhere too (a backward, an output): it must be written"
    if conv.anchor.inputs[0] not in conv.inputs:
        return "the conv's input has a prologue, which cannot be cut into chunks of images"
    if act.type.shape != conv.anchor.type.shape:
        return "the epilogue changes the conv's shape"
    try:
        batch_slice(Group(conv.id, "conv2d_pool", [*conv.nodes, pool], conv.inputs, [pool], conv.anchor), 1)
    except RuntimeError as e:
        return f"the group cannot be cut into chunks of images: {e}"
    return None
