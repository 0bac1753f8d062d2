"""Emitted CUDA C made ready for the CPU emulation (emulation_header.py), line for line.

- every `__shared__ T name[A][B];` becomes `static gt_shared<T, A, B> name("name");` (one object
  per kernel, shared by the fibers of a block, as shared memory is);
- every access `name[i][j]` becomes `name.read(__LINE__, i, j)`, `name.write(__LINE__, i, j) = ...`
  or `name.update(__LINE__, i, j) += ...`, so the race detector sees who touched what, where;
- after the source, a `gt_launch_<kernel>` entry per kernel hands its pointer arguments to the
  emulator with the launch geometry.

No line is added or split: `#line 1` before the source makes `__LINE__` and g++'s messages
count lines of the emitted text the user dumps.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_KERNEL = re.compile(r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(([^)]*)\)')
_DECLARATION = re.compile(r"__shared__\s+([\w ]+?)\s+(\w+)\s*((?:\[\s*\d+\s*\])+)\s*;")
_COOPERATES = re.compile(r"__syncthreads|__syncwarp|__shfl_\w*sync|__ballot_sync|__any_sync|__all_sync|__shared__")
_COMPOUND = re.compile(r"\s*(?:[-+*/%&|^]|<<|>>)=|\s*(?:\+\+|--)")
_ASSIGN = re.compile(r"\s*=(?!=)")
_ADDRESS_OF = re.compile(r"(?:^|[^\w)\]&\s])\s*&$")  # a unary &, not `a & b` or `a && b`


@dataclass(frozen=True)
class KernelInfo:
    name: str
    params: int  # pointer parameters, the status words included
    cooperative: bool  # uses shared memory, barriers or warp collectives: its threads run as fibers
    head: str  # the comment line naming the kernel's group and shape


def kernels_of(source: str) -> dict[str, KernelInfo]:
    """Every `extern "C" __global__` kernel of an emitted module, in source order."""
    out = {}
    heads = list(_KERNEL.finditer(source))
    for k, m in enumerate(heads):
        body = source[m.end(): heads[k + 1].start() if k + 1 < len(heads) else len(source)]
        params = [p for p in m.group(2).split(",") if p.strip()]
        comment = next((line for line in source[:m.start()].splitlines()[::-1] if line.startswith(f"// {m.group(1)}")), "")
        out[m.group(1)] = KernelInfo(m.group(1), len(params), bool(_COOPERATES.search(body)), comment[3:])
    return out


def for_emulation(source: str) -> str:
    """`source` with shared memory instrumented, then a launch entry per kernel."""
    kernels = kernels_of(source)
    lines = source.split("\n")
    shared: set[str] = set()
    for n, line in enumerate(lines):
        if _KERNEL.search(line):
            shared = set()  # a kernel's arrays are its own
        code, sep, comment = line.partition("//")
        code = _DECLARATION.sub(functools.partial(_declare, shared=shared), code)
        lines[n] = _accesses(code, shared) + sep + comment
    entries = [f'extern "C" int gt_launch_{k.name}(void** gt_args, const unsigned* gt_geometry) {{ return gt_emu::launch('
               f"[](void** gt_a) {{ gt_emu::apply({k.name}, gt_a); }}, gt_args, gt_geometry, {int(k.cooperative)}); }}"
               for k in kernels.values()]
    return "#line 1 \"module.cu\"\n" + "\n".join(lines) + "\n" + "\n".join(entries) + "\n"


def _declare(m: re.Match, shared: set[str]) -> str:
    ctype, name, dims = m.group(1), m.group(2), re.findall(r"\d+", m.group(3))
    shared.add(name)
    return f'static gt_shared<{ctype}, {", ".join(dims)}> {name}("{name}");'


def _accesses(code: str, shared: set[str]) -> str:
    """Rewrite each subscripted shared array in one line of code (subscripts may hold other accesses)."""
    if not shared:
        return code
    pattern = re.compile(r"(?<![\w.])(" + "|".join(sorted(shared)) + r")\s*\[")
    out, at = [], 0
    while m := pattern.search(code, at):
        before = code[:m.start()].rstrip()
        if _ADDRESS_OF.search(before):
            raise ValueError(f"the emulation cannot follow a pointer into shared array {m.group(1)}: {code.strip()}")
        subscripts, end = _subscripts(code, m.end() - 1)
        index = ", ".join(_accesses(s, shared) for s in subscripts)
        if _COMPOUND.match(code, end) or before.endswith(("++", "--")):
            method = "update"
        elif _ASSIGN.match(code, end):
            method = "write"
        else:
            method = "read"
        out += [code[at:m.start()], f"{m.group(1)}.{method}(__LINE__, {index})"]
        at = end
    return "".join(out) + code[at:]


def _subscripts(code: str, at: int) -> tuple[list[str], int]:
    """The bracketed expressions of `a[..][..]` starting at code[at] == '[', and where they end."""
    found = []
    while at < len(code) and code[at] == "[":
        depth, start = 0, at
        for at in range(start, len(code)):
            depth += {"[": 1, "]": -1}.get(code[at], 0)
            if depth == 0:
                break
        else:
            raise ValueError(f"unbalanced brackets in: {code.strip()}")
        found.append(code[start + 1:at])
        at += 1
        while at < len(code) and code[at] == " " and code[at + 1:at + 2] == "[":
            at += 1
    return found, at
