"""Emitted CUDA C made ready for the CPU emulation (emulation_header.py), line for line.

- every `__shared__ T name[A][B];` becomes `static gt_shared<T, A, B> name("name");` (one object
  per kernel, shared by the fibers of a block, as shared memory is);
- every access `name[i][j]` becomes `name.read(__LINE__, i, j)`, `name.write(__LINE__, i, j) = ...`
  or `name.update(__LINE__, i, j) += ...`, so the race detector sees who touched what, where;
- every subscript of a pointer parameter `b_x[i]` becomes `gt_emu::at(b_x, "b_x", k, __LINE__, i)`:
  a reference checked against the bytes the launch gave parameter k (global memory out of bounds
  is an error, not a corrupted host process);
- after the source, a `gt_launch_<kernel>` entry per kernel hands its pointer arguments and their
  extents to the emulator with the launch geometry.

No line is added or split: `#line 1` before the source makes `__LINE__` and g++'s messages
count lines of the emitted text the user dumps.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_KERNEL = re.compile(r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(([^)]*)\)')
_KERNEL_START = re.compile(r'extern "C" __global__ void')
_DECLARATION = re.compile(r"__shared__\s+([\w ]+?)\s+(\w+)\s*((?:\[\s*\d+\s*\])+)\s*;")
_COOPERATES = re.compile(r"__syncthreads|__syncwarp|__shfl_\w*sync|__ballot_sync|__any_sync|__all_sync|__shared__")
_COMPOUND = re.compile(r"\s*(?:[-+*/%&|^]|<<|>>)=|\s*(?:\+\+|--)")
_ASSIGN = re.compile(r"\s*=(?!=)")
_ADDRESS_OF = re.compile(r"(?:^|[^\w)\]&\s])\s*&$")  # a unary &, not `a & b` or `a && b`


@dataclass(frozen=True)
class KernelInfo:
    name: str
    pointers: tuple[str, ...]  # the pointer parameters' names, the status words included
    cooperative: bool  # uses shared memory, barriers or warp collectives: its threads run as fibers


def kernels_of(source: str) -> dict[str, KernelInfo]:
    """Every `extern "C" __global__` kernel of an emitted module, in source order."""
    out = {}
    heads = list(_KERNEL.finditer(source))
    for k, m in enumerate(heads):
        body = source[m.end(): heads[k + 1].start() if k + 1 < len(heads) else len(source)]
        pointers = tuple(re.findall(r"(\w+)\s*$", p)[0] for p in m.group(2).split(",") if p.strip())
        out[m.group(1)] = KernelInfo(m.group(1), pointers, bool(_COOPERATES.search(body)))
    return out


def for_emulation(source: str) -> str:
    """`source` with shared and global memory accesses instrumented, then a launch entry per kernel."""
    found = list(kernels_of(source).values())
    kernels = iter(found)
    lines = source.split("\n")
    shared: set[str] = set()
    pointers: tuple[str, ...] = ()
    for n, line in enumerate(lines):
        if _KERNEL_START.search(line):
            shared, pointers = set(), next(kernels).pointers  # a kernel's names are its own
        code, sep, comment = line.partition("//")
        code = _DECLARATION.sub(functools.partial(_declare, shared=shared), code)
        lines[n] = _accesses(code, shared, pointers) + sep + comment
    entries = [f'extern "C" int gt_launch_{k.name}(void** gt_args, const unsigned long long* gt_extents, '
               f"const unsigned* gt_geometry) {{ return gt_emu::launch([](void** gt_a) {{ gt_emu::apply({k.name}, gt_a); "
               f"}}, gt_args, gt_extents, {len(k.pointers)}, gt_geometry, {int(k.cooperative)}); }}"
               for k in found]
    return "#line 1 \"module.cu\"\n" + "\n".join(lines) + "\n" + "\n".join(entries) + "\n"


def _declare(m: re.Match, shared: set[str]) -> str:
    ctype, name, dims = m.group(1), m.group(2), re.findall(r"\d+", m.group(3))
    shared.add(name)
    return f'static gt_shared<{ctype}, {", ".join(dims)}> {name}("{name}");'


def _accesses(code: str, shared: set[str], pointers: tuple[str, ...] = ()) -> str:
    """Rewrite each subscripted shared array and pointer parameter in one line of code (subscripts
    may hold other accesses)."""
    names = shared | set(pointers)
    if not names:
        return code
    pattern = re.compile(r"(?<![\w.])(" + "|".join(sorted(names)) + r")\s*\[")
    out, at = [], 0
    while m := pattern.search(code, at):
        name, before = m.group(1), code[:m.start()].rstrip()
        subscripts, end = _subscripts(code, m.end() - 1)
        index = ", ".join(_accesses(s, shared, pointers) for s in subscripts)
        if name in shared:
            out += [code[at:m.start()], f"{name}.{_shared_method(code, before, end, name)}(__LINE__, {index})"]
        else:
            out += [code[at:m.start()], f'gt_emu::at({name}, "{name}", {pointers.index(name)}, __LINE__, {index})']
        at = end
    return "".join(out) + code[at:]


def _shared_method(code: str, before: str, end: int, name: str) -> str:
    """read, write or update: how the shared access ending at code[end] uses the element."""
    if _ADDRESS_OF.search(before):
        raise ValueError(f"the emulation cannot follow a pointer into shared array {name}: {code.strip()}")
    if _COMPOUND.match(code, end) or before.endswith(("++", "--")):
        return "update"
    return "write" if _ASSIGN.match(code, end) else "read"


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
