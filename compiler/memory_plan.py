"""The static memory plan: where each intermediate value lives in one arena.

Over the kernel (group) order, each group's output is live from the step that writes it to the
last step that reads it. Values whose lifetimes do not overlap share memory: blocks are placed
first-fit by offset, largest first. An elementwise kernel may write its output over an input that
dies at that kernel (same shape and item size): every element is read before it is written at the
same index, so no copy and no second buffer are needed (a kernel with several outputs computes
all of them at an index before it stores any, so each output may take one dying input).

A kernel that only reshapes a value in the arena is no kernel: its output is a view, the same
bytes at the same offset (`views`), and the value it reads lives as long as the view is read.

Graph inputs, constants and graph outputs are not in the arena: inputs and constants belong to the
caller, outputs are allocated per call so results handed to the user are never overwritten. The
exception is a donated input (a parameter or optimizer state that the graph updates): its new
value is written over it, by the same rule as in-place reuse, instead of into a fresh output that
the caller would copy back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .ir import Graph, Group, Node
from .primitives import Kind


@dataclass
class MemoryPlan:
    offsets: dict[Node, int]  # arena-resident values -> byte offset in the arena
    intervals: dict[Node, tuple[int, int]]  # value -> (first, last) step that uses it
    inplace: dict[Node, Node]  # value -> the input whose memory it overwrites
    arena_bytes: int  # the arena's size: what this plan allocates
    peak_bytes: int  # the most bytes live at one step: the best any placement can do
    alignment: int = 64
    sizes: dict[Node, int] = field(default_factory=dict)
    donated: dict[Node, Node] = field(default_factory=dict)  # graph output -> the graph input it is written over
    views: dict[Node, Node] = field(default_factory=dict)  # a reshape's output -> the arena value it reads in place

    def report(self) -> str:
        lines = [f"arena {self.arena_bytes} bytes, peak live {self.peak_bytes} bytes, "
                 f"{len(self.offsets)} buffers, {len(self.inplace)} in place"]
        for n, off in sorted(self.offsets.items(), key=lambda kv: kv[1]):
            first, last = self.intervals[n]
            reuse = f"  (in place of {self.inplace[n].name})" if n in self.inplace else ""
            reuse = f"  (a view of {self.views[n].name})" if n in self.views else reuse
            lines.append(f"  {n.name:>6} : {str(n.type):<24} @ {off:>10}  steps {first}..{last}{reuse}")
        lines += [f"  output {o.name} is written over input {i.name}" for o, i in self.donated.items()]
        return "\n".join(lines)


def nbytes(node: Node) -> int:
    return node.type.numel * node.type.dtype.itemsize


def _round_up(n: int, a: int) -> int:
    return -(-n // a) * a


def plan_memory(graph: Graph, groups: list[Group], *, alignment: int = 64,
                donate: list[tuple[Node, Node]] = ()) -> MemoryPlan:
    """Plan the arena for `groups` run in list order. `donate`: (graph output, graph input) pairs
    whose output may overwrite the input; those that are safe end up in `donated`."""
    outputs = set(graph.outputs)
    intervals = _intervals(groups)
    views = _views(groups, outputs)
    for view, source in views.items():  # the source lives as long as its views are read
        intervals[source] = (intervals[source][0], max(intervals[source][1], intervals[view][1]))
    resident = [o for g in groups for o in g.outputs if o not in outputs and o not in views]
    inplace = _inplace_pairs(groups, intervals, set(resident))

    # a block is one piece of memory: a value plus the values written over it in place
    owner = {n: n for n in resident}
    for out, src in inplace.items():
        owner[out] = owner[src]
    span: dict[Node, tuple[int, int]] = {}
    for n in resident:
        first, last = intervals[n]
        b = owner[n]
        lo, hi = span.get(b, (first, last))
        span[b] = (min(lo, first), max(hi, last))
    block_offsets = _place({b: _round_up(nbytes(b), alignment) for b in span}, span)
    offsets = {n: block_offsets[owner[n]] for n in resident}
    offsets.update((view, offsets[source]) for view, source in views.items())
    arena = max((block_offsets[b] + _round_up(nbytes(b), alignment) for b in span), default=0)
    return MemoryPlan(offsets, intervals, inplace, arena, _peak(span, len(groups), alignment), alignment,
                      {n: nbytes(n) for n in [*resident, *views]}, _donations(graph, groups, donate), views)


def _views(groups: list[Group], outputs: set[Node]) -> dict[Node, Node]:
    """Each group that only reshapes an arena value (not a graph output, and not read from a graph
    input) -> the arena value under it (through views of views)."""
    computed = {o for g in groups for o in g.outputs}
    views: dict[Node, Node] = {}
    for g in groups:
        (out, *more), x = g.outputs, g.inputs[0] if len(g.inputs) == 1 else None
        if more or x is None or out in outputs or x in outputs or x not in computed:
            continue
        if all(n.op == "call" and n.target == "reshape" for n in g.nodes):
            views[out] = views.get(x, x)
    return views


def _donations(graph: Graph, groups: list[Group], donate: list[tuple[Node, Node]]) -> dict[Node, Node]:
    """The pairs where the output's kernel is elementwise, reads the input at the same shape and is
    the input's last reader: every element is read before it is written, as for in-place reuse."""
    last_read: dict[Node, int] = {}
    step_of: dict[Node, int] = {}
    for step, g in enumerate(groups):
        step_of.update((o, step) for o in g.outputs)
        for i in g.inputs:
            last_read[i] = step
    out: dict[Node, Node] = {}
    for o, i in donate:
        step = step_of.get(o)
        if step is None or graph.outputs.count(o) != 1 or i in out.values() or o in out:
            continue
        g = groups[step]
        if (i in g.inputs and last_read[i] == step and _reads_elementwise(g, i)
                and i.type.shape == o.type.shape and i.type.dtype.itemsize == o.type.dtype.itemsize):
            out[o] = i
    return out


def _reads_elementwise(g: Group, i: Node) -> bool:
    """Element k of the group's output depends on element k of `i` only: every node that depends
    on `i` is elementwise (others may broadcast, e.g. a run-time scalar through an expand)."""
    tainted, changed = {i}, True
    while changed:  # to a fixed point: no reliance on the order of g.nodes
        changed = False
        for n in g.nodes:
            if n not in tainted and any(x in tainted for x in n.inputs):
                if n.prim.kind is not Kind.ELEMENTWISE:
                    return False
                tainted.add(n)
                changed = True
    return True


def _intervals(groups: list[Group]) -> dict[Node, tuple[int, int]]:
    out: dict[Node, tuple[int, int]] = {}
    for step, g in enumerate(groups):
        out.update((o, (step, step)) for o in g.outputs)
    for step, g in enumerate(groups):
        for i in g.inputs:
            if i in out:
                out[i] = (out[i][0], max(out[i][1], step))
    return out


def _inplace_pairs(groups: list[Group], intervals: dict[Node, tuple[int, int]],
                   resident: set[Node]) -> dict[Node, Node]:
    pairs: dict[Node, Node] = {}
    taken: set[Node] = set()
    for step, g in enumerate(groups):
        if not all(n.prim.kind is Kind.ELEMENTWISE for n in g.nodes):
            continue
        for root in (o for o in g.outputs if o in resident):  # a multi-output group: one dying input each
            for x in g.inputs:
                if (x in resident and x not in taken and intervals[x][1] == step
                        and x.type.shape == root.type.shape and x.type.dtype.itemsize == root.type.dtype.itemsize):
                    pairs[root] = x
                    taken.add(x)
                    break
    return pairs


def _place(sizes: dict[Node, int], span: dict[Node, tuple[int, int]]) -> dict[Node, int]:
    """First-fit by offset, largest blocks first, among blocks whose lifetimes overlap."""
    placed: list[tuple[int, int, Node]] = []  # (offset, size, block)
    offsets: dict[Node, int] = {}
    for b in sorted(sizes, key=lambda b: (-sizes[b], span[b][0])):
        lo, hi = span[b]
        busy = sorted((off, sz) for off, sz, o in placed if span[o][0] <= hi and lo <= span[o][1])
        at = 0
        for off, sz in busy:
            if at + sizes[b] <= off:
                break
            at = max(at, off + sz)
        offsets[b] = at
        placed.append((at, sizes[b], b))
    return offsets


def _peak(span: dict[Node, tuple[int, int]], steps: int, alignment: int) -> int:
    live = [0] * max(steps, 1)
    for b, (lo, hi) in span.items():
        for s in range(lo, hi + 1):
            live[s] += _round_up(nbytes(b), alignment)
    return max(live)
