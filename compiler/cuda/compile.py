"""CUDA C to PTX and cubin: NVRTC in-process when installed (the `cuda` extra), else nvcc.

NVRTC needs no GPU and no driver (~50-100 ms for a module); nvcc (~0.7 s) is the fallback and also
builds one fat binary for several architectures (the tests' check that every kernel compiles for
sm_80 and sm_90). Results are cached on disk by a hash of (compiler, version, arch, source).
A failure is a GraphtorchCompileError GT051 naming the kernel, its group and the user's line; the
raw compiler log goes to the dump directory, never to the user unwrapped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ...runtime.cache import default_cache
from ..dump import write_text
from ..errors import GraphtorchCompileError
from .emit import CudaModule

ARCHS = ("sm_80", "sm_90")
_OPTIONS = ["-std=c++17"]  # NVRTC optimizes by default and rejects -O3


@dataclass
class Compiled:
    arch: str
    cubin: bytes | None  # None when only PTX was asked for
    ptx: str | None  # None from nvcc unless a dump asked for it
    compiler: str  # "nvrtc 13.5", "nvcc 13.0"
    seconds: float
    cached: bool = False


class _Failed(Exception):
    def __init__(self, log: str):
        super().__init__(log)
        self.log = log


# ---------------------------------------------------------------- the compilers


def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        return None
    return nvrtc


def nvcc_path() -> str | None:
    return shutil.which("nvcc") or (str(Path("/usr/local/cuda/bin/nvcc")) if Path("/usr/local/cuda/bin/nvcc").exists() else None)


def compilers() -> list[str]:
    """The CUDA compilers this process can use, preferred first: "nvrtc", "nvcc"."""
    return [c for c, ok in (("nvrtc", _nvrtc() is not None), ("nvcc", nvcc_path() is not None)) if ok]


def _version(compiler: str) -> str:
    if compiler == "nvrtc":
        _, major, minor = _nvrtc().nvrtcVersion()
        return f"nvrtc {major}.{minor}"
    out = subprocess.run([nvcc_path(), "--version"], capture_output=True, text=True).stdout
    m = re.search(r"release (\d+\.\d+)", out)
    return f"nvcc {m.group(1) if m else '?'}"


def _check(result) -> object:
    err, *rest = result
    if int(err) != 0:
        raise RuntimeError(f"NVRTC: {err}")
    return rest[0] if len(rest) == 1 else rest


def _run_nvrtc(source: str, arch: str, name: str, want_cubin: bool) -> tuple[bytes | None, str]:
    nvrtc = _nvrtc()
    prog = _check(nvrtc.nvrtcCreateProgram(source.encode(), f"{name}.cu".encode(), 0, [], []))
    try:
        opts = [f"--gpu-architecture={arch if want_cubin else arch.replace('sm_', 'compute_')}".encode()]
        opts += [o.encode() for o in _OPTIONS]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        if int(err) != 0:
            size = _check(nvrtc.nvrtcGetProgramLogSize(prog))
            log = b" " * size
            nvrtc.nvrtcGetProgramLog(prog, log)
            raise _Failed(log.rstrip(b"\x00").decode(errors="replace"))
        ptx = b" " * _check(nvrtc.nvrtcGetPTXSize(prog))
        _check(nvrtc.nvrtcGetPTX(prog, ptx))
        cubin = None
        if want_cubin:
            cubin = b" " * _check(nvrtc.nvrtcGetCUBINSize(prog))
            _check(nvrtc.nvrtcGetCUBIN(prog, cubin))
        return cubin, ptx.rstrip(b"\x00").decode()
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def run_nvcc(source: str, archs: tuple[str, ...] | list[str], output: str = "cubin", name: str = "graph") -> bytes:
    """nvcc on `source`: "cubin" or "ptx" for one arch, "fatbin" for several (one invocation)."""
    with tempfile.TemporaryDirectory(prefix="gt-nvcc-") as tmp:
        cu, out = Path(tmp) / f"{name}.cu", Path(tmp) / f"{name}.{output}"
        cu.write_text(source)
        if output == "fatbin":
            arch = [f"-gencode=arch=compute_{a[3:]},code={a}" for a in archs]
        else:
            (only,) = archs
            arch = [f"-arch={only}"]
        cmd = [nvcc_path(), f"--{output}", *arch, *_OPTIONS, "-o", str(out), str(cu)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        if done.returncode != 0:
            raise _Failed((done.stderr + done.stdout).replace(str(cu), f"{name}.cu"))
        return out.read_bytes()


# ---------------------------------------------------------------- the entry points


def compile_source(source: str, *, arch: str = "sm_90", name: str = "graph", cubin: bool = True,
                   compiler: str | None = None, dump: str | Path | None = None, cache: bool = True,
                   module: CudaModule | None = None) -> Compiled:
    """Compile a translation unit for `arch` ("sm_80", "sm_90", ...) to a cubin (and PTX).

    compiler: "nvrtc" or "nvcc"; None takes the first of compilers(). dump: a directory that gains
    <name>.cu, <name>.<arch>.ptx and, on failure, <name>.<arch>.log. module: the CudaModule the
    source came from, to name the user's line in an error.
    """
    available = compilers()
    compiler = compiler or (available[0] if available else None)
    if compiler not in available:
        raise GraphtorchCompileError("GT052", f"no CUDA compiler{f' {compiler!r}' if compiler else ''} is available "
                                     f"to compile graph {name!r} for {arch}", stage="lowered",
                                     hint="pip install 'graphtorch[cuda]' (NVRTC), or put nvcc on PATH")
    if dump:
        write_text(str(dump), f"{name}.cu", source)
    version = _version(compiler)
    store = default_cache() if cache else None
    key = store.key("cuda", version, arch, str(cubin), source) if store else ""
    want_ptx = compiler == "nvrtc" or dump is not None or not cubin
    hit = _from_cache(store, key, want_ptx) if store else None
    if hit is not None:
        result = Compiled(arch, hit[0], hit[1], version, 0.0, cached=True)
    else:
        start = time.perf_counter()
        try:
            if compiler == "nvrtc":
                binary, ptx = _run_nvrtc(source, arch, name, cubin)
            else:
                binary = run_nvcc(source, [arch], "cubin", name) if cubin else None
                ptx = run_nvcc(source, [arch], "ptx", name).decode() if want_ptx else None
        except _Failed as e:
            raise _compile_error(e.log, source, name, arch, version, dump, module) from None
        result = Compiled(arch, binary, ptx, version, time.perf_counter() - start)
        if store:
            store.store(key, (binary or b"") + b"\x00GTPTX\x00" + (ptx or "").encode())
    if dump and result.ptx:
        write_text(str(dump), f"{name}.{arch}.ptx", result.ptx)
    return result


def _from_cache(store, key: str, want_ptx: bool) -> tuple[bytes | None, str | None] | None:
    blob = store.load(key)
    if blob is None:
        return None
    binary, _, ptx = blob.partition(b"\x00GTPTX\x00")
    if want_ptx and not ptx:
        return None
    return binary or None, ptx.decode() or None


def compile_module(module: CudaModule, **options) -> Compiled:
    """compile_source(module.source, name=module.name, ...): see there."""
    return compile_source(module.source, name=module.name, module=module, **options)


def _compile_error(log: str, source: str, name: str, arch: str, version: str, dump, module) -> GraphtorchCompileError:
    if dump:
        write_text(str(dump), f"{name}.{arch}.log", log)
    first = next((ln.strip() for ln in log.splitlines() if "error" in ln), log.strip()[:200])
    kernel, loc = _kernel_at(source, log, module)
    where = f" in kernel {kernel}" if kernel else ""
    seen = f"the source and the log are in {dump}" if dump else "pass dump=DIR to keep the source and the log"
    return GraphtorchCompileError("GT051", f"the CUDA C for graph {name!r} does not compile for {arch} "
                                  f"({version}){where}: {first}", loc, stage="lowered",
                                  hint=f"a graphtorch bug: {seen}, and please report them")


def _kernel_at(source: str, log: str, module: CudaModule | None) -> tuple[str | None, str | None]:
    """The kernel holding the first error's line, and the user's line of its group's root."""
    m = re.search(r"\.cu\((\d+)\): error", log)
    if not m:
        return None, None
    lines = source.splitlines()[: int(m.group(1))]
    for line in reversed(lines):
        k = re.match(r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(', line)
        if k:
            name = k.group(1)
            return name, (module.kernel_locs.get(name) if module else None)
    return None, None
