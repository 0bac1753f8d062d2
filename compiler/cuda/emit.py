"""`emit(graph, groups)`: one CUDA C translation unit for a graph plus the launch list that runs it.

Every buffer lives in one device arena: the intermediates where the memory plan put them
(memory_plan.py: values with disjoint lifetimes share bytes, an elementwise kernel may write over
an input that dies there), then the graph's inputs, constants and outputs, then scratch buffers
(a reduction's value when its epilogue must run as a second kernel). A kernel gets a pointer per
buffer it touches and the status words last; the runtime appends the status pointer.

Pattern emitters (elementwise.py, reduction.py, gemm.py/conv.py, single.py) write the kernels;
this module only routes groups to them and keeps the books.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import GraphtorchCompileError
from ..ir import Graph, Group, Node
from ..memory_plan import plan_memory
from ..sibling_fusion import one_output_per_group
from .kernel import Kernel, Launch
from .prelude import INT32_INDEX_LIMIT, PRELUDE
from .scalar import UnsupportedDType

ALIGN = 256  # cudaMalloc's alignment: every buffer starts on one


@dataclass(frozen=True)
class Buffer:
    name: str  # the graph value's name: "%7", "%x"
    kind: str  # "temp" (plan-placed), "input", "constant", "output", "scratch"
    offset: int  # bytes from the arena's start
    nbytes: int
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name


@dataclass
class CudaModule:
    """What the runtime needs: the source, the launches in order, the arena layout."""

    name: str
    source: str
    launches: list[Launch]
    buffers: list[Buffer]
    arena_bytes: int
    inputs: list[int]  # buffer number of each graph input, in graph.inputs order
    outputs: list[int]  # buffer number of each graph output
    constants: dict[int, np.ndarray] = field(default_factory=dict)  # buffer number -> value (uploaded once)
    kernel_groups: dict[str, int] = field(default_factory=dict)  # kernel name -> group id
    kernel_locs: dict[str, str | None] = field(default_factory=dict)  # kernel name -> its root's user line


def emit(graph: Graph, groups: list[Group], *, name: str = "graph") -> CudaModule:
    """Render every group of `graph` (run in list order) as CUDA C kernels plus their launches; a
    multi-output group as one kernel per output (sibling_fusion.py)."""
    groups = one_output_per_group(groups)
    builder = _ModuleBuilder(graph, groups, name)
    for group in groups:
        try:
            _emitter_for(group)(builder, group)
        except UnsupportedDType as e:
            root = group.outputs[0]
            raise GraphtorchCompileError("GT050", f"the CUDA backend cannot lower {root.name} ({root.target}): {e}",
                                         root.loc, hint="cast to float32 first, or use the CPU backend",
                                         stage="lowered") from None
    return builder.finish()


def _emitter_for(group: Group):
    from . import conv, elementwise, gemm, pooling, reduction, single

    kind = group.pattern.split(":")[0]
    if kind in ("single", "opaque", "injective"):
        return single.emit_single
    table = {"elementwise": elementwise.emit_group, "reduction": reduction.emit_group,
             "matmul": gemm.emit_matmul, "conv2d": conv.emit_conv2d, "conv2d_pool": pooling.emit_conv_pool}
    if kind not in table:
        raise GraphtorchCompileError("GT050", f"group {group.id} has pattern {group.pattern!r}, which the CUDA backend "
                                     f"does not know (known: {', '.join(sorted(table))}, single)",
                                     group.outputs[0].loc, stage="lowered")
    return table[kind]


def _round_up(n: int, a: int = ALIGN) -> int:
    return -(-n // a) * a


class _ModuleBuilder:
    def __init__(self, graph: Graph, groups: list[Group], name: str):
        self.graph, self.groups, self.name = graph, groups, name
        biggest = max((n.type.numel for n in graph.nodes), default=0)
        self.index_t = "int" if biggest < INT32_INDEX_LIMIT else "long long"
        self.buffers: list[Buffer] = []
        self.number: dict[Node, int] = {}
        self.constants: dict[int, np.ndarray] = {}
        self.kernels: list[str] = []
        self.launches: list[Launch] = []
        self.kernel_groups: dict[str, int] = {}
        self.kernel_locs: dict[str, str | None] = {}
        self._kernel_count = 0
        self._layout()

    # ---- buffers
    def _layout(self) -> None:
        computed = {g.outputs[0] for g in self.groups}
        plan = plan_memory(self.graph, self.groups, alignment=ALIGN)
        outside = set(self.graph.inputs) | set(self.graph.outputs)
        for node, off in sorted(plan.offsets.items(), key=lambda kv: kv[1]):
            if node not in outside:
                self._add(node, "temp", off)
        self.end = _round_up(plan.arena_bytes)
        for n in self.graph.inputs:
            self.buffer(n, "input")
        for g in self.groups:
            for i in g.inputs:
                if i.op == "constant" and i not in self.number:
                    self.constants[self.buffer(i, "constant")] = i.value
                elif i.op == "call" and i not in computed:
                    raise GraphtorchCompileError("GT050", f"group {g.id} reads {i.name}, which no group computes",
                                                 i.loc, stage="lowered")
        for o in self.graph.outputs:
            if o not in self.number:
                kind = "constant" if o.op == "constant" else "output"
                number = self.buffer(o, kind)
                if kind == "constant":
                    self.constants[number] = o.value

    def _add(self, node: Node, kind: str, offset: int) -> int:
        t = node.type
        self.number[node] = len(self.buffers)
        self.buffers.append(Buffer(node.name, kind, offset, t.numel * t.dtype.itemsize, t.shape, t.dtype.np.name))
        return self.number[node]

    def buffer(self, node: Node, kind: str = "scratch") -> int:
        """The buffer number of `node`, placed at the arena's end if it has none yet."""
        if node not in self.number:
            self._add(node, kind, self.end)
            self.end += _round_up(max(self.buffers[-1].nbytes, 1))
        return self.number[node]

    def no_alias(self, nodes: list[Node]) -> dict[Node, bool]:
        """Per kernel parameter: True when no other parameter's bytes overlap it (__restrict__ is safe)."""
        spans = {n: (self.buffers[self.number[n]].offset, self.buffers[self.number[n]].nbytes) for n in nodes}
        out = {}
        for n, (lo, size) in spans.items():
            out[n] = all(m is n or not (lo < olo + osize and olo < lo + size) for m, (olo, osize) in spans.items())
        return out

    # ---- kernels
    def kernel(self, group: Group, nodes: list[Node], suffix: str = "") -> Kernel:
        """A new kernel over `nodes` (the last one is the one it writes); scratch buffers are made as needed."""
        for n in nodes:
            self.buffer(n)
        pattern = group.pattern.replace(":", "_")
        self._kernel_count += 1
        return Kernel(self, group, f"k{self._kernel_count}_g{group.id}_{pattern}{suffix}", nodes, self.index_t)

    def add_kernel(self, text: str, k: Kernel, grid, block, cooperative: bool) -> None:
        self.kernels.append(text)
        self.kernel_groups[k.name] = k.group.id
        self.kernel_locs[k.name] = k.group.outputs[0].loc
        if min(grid) > 0:
            args = tuple(self.number[n] for n in k.nodes)
            self.launches.append(Launch(k.name, tuple(grid), tuple(block), args, k.group.id, cooperative))

    def finish(self) -> CudaModule:
        head = [f"// graphtorch: graph {self.name!r}, {len(self.groups)} groups, {len(self.kernels)} kernels",
                f"typedef {self.index_t} gt_index;", PRELUDE]
        source = "\n".join(head) + "\n" + "\n\n".join(self.kernels) + "\n"
        return CudaModule(self.name, source, self.launches, self.buffers, _round_up(max(self.end, 1)),
                          [self.number[n] for n in self.graph.inputs], [self.number[o] for o in self.graph.outputs],
                          self.constants, self.kernel_groups, self.kernel_locs)
