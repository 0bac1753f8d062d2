"""One kernel being written: its C statements, its buffer parameters, and how it is launched.

A pattern emitter (elementwise.py, reduction.py, gemm.py, conv.py, single.py) asks the module for a
`Kernel`, writes statements into it (`let`, `line`, `block`), reads values through the index
emitter (`kernel.value(node, index)`), and ends it with `finish(...)`, which renders the function
and records its launch.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import GraphtorchCompileError
from ..ir import Group, Node, format_node
from . import scalar


@dataclass(frozen=True)
class Launch:
    """One kernel launch: `args` are buffer numbers (CudaModule.buffers); the status words are appended."""

    kernel: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    args: tuple[int, ...]
    group: int
    cooperative: bool = True  # threads of a block work together (shared memory, barriers, shuffles)


def cuda_unsupported(node: Node, why: str) -> GraphtorchCompileError:
    return GraphtorchCompileError("GT050", f"the CUDA backend cannot lower {node.name} ({node.target}): {why}",
                                  node.loc, hint="compile for the CPU backend, or run this graph eagerly",
                                  stage="lowered")


class Kernel:
    """Statements of one `extern "C" __global__` function over some of the module's buffers."""

    def __init__(self, module, group: Group, name: str, nodes: list[Node], index_t: str):
        self.module, self.group, self.name, self.index_t = module, group, name, index_t
        self.nodes = list(dict.fromkeys(nodes))  # buffer parameters, in order; the last one is written
        self.params: dict[Node, str] = {}
        for n in self.nodes:  # "%conv1.weight" -> b_conv1_weight; a clash gets a number
            name = "b_" + re.sub(r"\W", "_", n.name.lstrip("%"))
            while name in self.params.values():
                name += "_"
            self.params[n] = name
        self.lines: list[str] = []
        self.depth = 1
        self._count = 0

    # ---- writing
    def fresh(self, prefix: str = "t") -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def line(self, text: str) -> None:
        self.lines.append("  " * self.depth + text)

    def let(self, ctype: str, expr: str, prefix: str = "t") -> str:
        """`const T name = expr;`: a name for a value (literals and names are returned as they are)."""
        if expr.isidentifier() or _is_number(expr):
            return expr
        name = self.fresh(prefix)
        self.line(f"const {ctype} {name} = {expr};")
        return name

    @contextlib.contextmanager
    def block(self, header: str) -> Iterator[None]:
        self.line(header + " {")
        self.depth += 1
        yield
        self.depth -= 1
        self.line("}")

    def grid_stride(self, n: int | str, var: str = "i") -> contextlib.AbstractContextManager:
        t = self.index_t
        return self.block(f"for ({t} {var} = (({t})blockIdx.x * blockDim.x + threadIdx.x); {var} < {n}; "
                          f"{var} += ({t})blockDim.x * gridDim.x)")

    # ---- buffers and values
    def has_buffer(self, node: Node) -> bool:
        """True for the buffers this kernel reads (the written one is computed, not loaded)."""
        return node in self.params and node is not self.nodes[-1]

    def ptr(self, node: Node) -> str:
        if node not in self.params:
            raise cuda_unsupported(node, f"it has no buffer in group {self.group.id}")
        return self.params[node]

    def load(self, node: Node, flat: str) -> str:
        d = node.type.dtype
        expr = f"({self.ptr(node)}[{flat}] != 0)" if d.name == "bool" else f"{self.ptr(node)}[{flat}]"
        return self.let(scalar.ctype(d), expr, "x")

    def store(self, node: Node, flat: str, value: str) -> None:
        d = node.type.dtype
        self.line(f"{self.ptr(node)}[{flat}] = {f'({scalar.mtype(d)}){value}' if d.name == 'bool' else value};")

    def value(self, node: Node, idx, overrides=None) -> str:
        from .index import Env, value

        return value(Env(self, overrides), node, idx)

    def index_error(self, bad: str, dim: int, size: int) -> None:
        self.line(f"gt_index_error(gt_status, {bad}, {dim}, {size});")

    # ---- the end
    def finish(self, grid: tuple[int, int, int], block: tuple[int, int, int], *, cooperative: bool = True,
               comment: str = "") -> None:
        """Render the function and append its launch; a launch with no threads (empty tensors) is dropped."""
        out = self.nodes[-1]
        restrict = self.module.no_alias(self.nodes)
        params = []
        for n in self.nodes:
            const = "" if n is out else "const "
            r = " __restrict__" if restrict.get(n, False) else ""
            params.append(f"{const}{scalar.mtype(n.type.dtype)}*{r} {self.params[n]}")
        params.append("long long* __restrict__ gt_status")
        bounds = f"__launch_bounds__({block[0] * block[1] * block[2]}) "
        head = [f"// {self.name}: group {self.group.id} ({self.group.pattern}){comment}"]
        head += [f"//   {format_node(n)}" + (f"  [{n.origin}]" if n.origin else "") for n in self.group.nodes]
        text = "\n".join([*head, f'extern "C" __global__ void {bounds}{self.name}(',
                          "    " + ",\n    ".join(params) + ") {", *self.lines, "}"])
        self.module.add_kernel(text, self, grid, block, cooperative)


def _is_number(s: str) -> bool:
    try:
        float(s.rstrip("fL"))
        return True
    except ValueError:
        return False
