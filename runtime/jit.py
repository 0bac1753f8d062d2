"""Turn LLVM IR text into native code in this process.

The host target machine (its CPU name and features, so AVX2/FMA are used where present), the new
pass manager at O2 with loop and SLP vectorization, then an object file that an MCJIT engine loads.
O2, not O3: the kernels ran equally fast (per-kernel timings of the LeNet, MLP and sin-MLP train
steps), and optimize + codegen of the LeNet inference module took 0.65 s instead of 0.95 s.
Compiling through an object (rather than letting the engine compile the module) is what makes the
disk cache possible: a cache hit skips optimization and codegen and only loads the object.

MCJIT takes ownership of the target machine it is given and frees it with the engine, so every
engine gets a fresh one (reusing one crashes the process: TOOLCHAIN.md).

A large graph arrives as several parts (compiler/llvm/module.py `split`): modules that call each
other's external functions, each optimized on its own, in parallel (this process and forked
workers, one per core, take the next part from a shared queue when done), cached as its own
object, and all loaded into one engine, which links them. A LeNet training step's cold compile
takes about half the time of the whole rather than all of it.
"""

from __future__ import annotations

import itertools
import os
import select
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import llvmlite
import llvmlite.binding as llvm

from .cache import ObjectCache, default_cache

_init_lock = threading.Lock()
_initialized = False


class JITError(RuntimeError):
    """LLVM rejected the IR or failed to compile or load it; `.llvm_message` has LLVM's text."""

    def __init__(self, what: str, llvm_message: str):
        super().__init__(what)
        self.llvm_message = llvm_message


def _initialize() -> None:
    global _initialized
    with _init_lock:
        if not _initialized:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            _initialized = True


def host_target_machine() -> llvm.TargetMachine:
    """A new target machine for this CPU (a new one each time: MCJIT engines own theirs)."""
    _initialize()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
                                        opt=3, reloc="pic", codemodel="default", jit=True)


def host_signature() -> str:
    """What the compiled code depends on besides its IR: versions and the CPU."""
    _initialize()
    return "|".join([llvmlite.__version__, ".".join(map(str, llvm.llvm_version_info)), llvm.get_process_triple(),
                     llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()])


@dataclass(frozen=True)
class Part:
    """One module's text and how to optimize it. unroll=False skips LLVM's loop unroller, which
    is a third of the compile time of a training step and speeds up few kernels (see
    compiler/llvm/module.py `split`)."""

    text: str
    unroll: bool = True
    cost: float = 0.0  # estimated LLVM work, to deal parts to cores (0: the text's length stands in)

    @property
    def weight(self) -> float:
        return self.cost or len(self.text)


@dataclass(frozen=True)
class LazyPart:
    """A Part whose text is made on demand (`render()`: printing an llvmlite module takes as long
    as a fifth of compiling it): with several parts, each is printed by the process that compiles
    it, so the printing runs in parallel too."""

    render: Callable[[], str]
    unroll: bool = True
    cost: float = 0.0

    @property
    def weight(self) -> float:
        return self.cost or 1.0

    def part(self) -> Part:
        return Part(self.render(), self.unroll, self.cost)


def optimize(module: llvm.ModuleRef, tm: llvm.TargetMachine, unroll: bool = True) -> None:
    pto = llvm.create_pipeline_tuning_options(speed_level=2)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = unroll
    pto.loop_interleaving = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(module, pb)


def _parse(ir_text: str) -> llvm.ModuleRef:
    _initialize()
    try:
        module = llvm.parse_assembly(ir_text)
        module.verify()
    except RuntimeError as e:
        raise JITError("LLVM rejected the generated module", str(e)) from None
    return module


@dataclass
class NativeModule:
    """Native code loaded in this process; alive as long as this object is.

    `parts` are the modules it was compiled from (one, or several that call each other's
    external functions); `ir_text` is all of their texts, one after the other."""

    parts: list[Part]
    from_cache: bool
    _engine: llvm.ExecutionEngine
    _addresses: dict[str, int] = field(default_factory=dict)
    _optimized: list[llvm.ModuleRef] | None = None

    @property
    def ir_text(self) -> str:
        return "\n".join(p.text for p in self.parts)

    def address(self, name: str) -> int:
        if name not in self._addresses:
            addr = self._engine.get_function_address(name)
            if not addr:
                raise JITError(f"no function {name!r} in the compiled module", "")
            self._addresses[name] = addr
        return self._addresses[name]

    def optimized_ir(self) -> str:
        return "\n".join(str(m) for m in self._optimized_modules())

    def assembly(self) -> str:
        return "\n".join(host_target_machine().emit_assembly(m) for m in self._optimized_modules())

    def _optimized_modules(self) -> list[llvm.ModuleRef]:
        if self._optimized is None:  # optimized in a worker or skipped by a cache hit: redo it for the dump
            self._optimized = []
            for part in self.parts:
                module = _parse(part.text)
                optimize(module, host_target_machine(), part.unroll)
                self._optimized.append(module)
        return self._optimized


def compile_ir(ir_text: str | Sequence[str | Part], *, options: str = "", cache: ObjectCache | None | bool = True
               ) -> NativeModule:
    """Optimize and load `ir_text`, or several modules linked into one engine (a kernel in one may
    call an external function defined in another). Parts missing from the disk cache compile in
    parallel, one per core; each object comes from (and goes to) the cache unless cache=False."""
    parts = [p if isinstance(p, (Part, LazyPart)) else Part(p)
             for p in ([ir_text] if isinstance(ir_text, str) else ir_text)]
    store = default_cache() if cache is True else (cache or None)
    if any(isinstance(p, LazyPart) for p in parts):
        parts, objects, missing = _render_and_compile(parts, store, options)
        keys = [_key(p, options) if store else "" for p in parts]
    else:
        keys = [_key(p, options) if store else "" for p in parts]
        objects = [store.load(key) if store else None for key in keys]
        missing = [i for i, obj in enumerate(objects) if obj is None]
        for i, obj in zip(missing, compile_objects([parts[i] for i in missing])):
            objects[i] = obj
            if store:
                store.store(keys[i], obj)
    try:
        engine = _load_objects(objects)
    except JITError:
        if not store or len(missing) == len(parts):
            raise
        for i, key in enumerate(keys):  # a valid entry that does not load (a foreign build): rebuild them
            if i not in missing:
                store.discard(key)
        return compile_ir(parts, options=options, cache=False)
    return NativeModule(parts, not missing, engine)


def _key(part: Part, options: str) -> str:
    return ObjectCache.key(part.text, host_signature(), options, f"unroll={part.unroll}")


def _render_and_compile(parts: list[Part | LazyPart], store: ObjectCache | None, options: str
                        ) -> tuple[list[Part], list[bytes], list[int]]:
    """Each part printed, looked up in the cache and compiled if missing, by whichever process
    claims it first from a shared queue (`_PartQueue`, heaviest first): this one takes the heaviest
    part, forked workers (one per other core) the next ones, and each takes another when it is done.
    The estimated costs (Part.weight) miss by 2x for some kernels and another process may hold a
    core, so dealing lanes up front left one process idle while the other still compiled.
    The parts as text, their objects, and which missed the cache."""
    order = sorted(range(len(parts)), key=lambda i: -parts[i].weight)
    n_workers = min(os.cpu_count() or 1, len(parts)) - 1 if _can_fork(len(parts)) else 0
    queue = _PartQueue(order[1:] if n_workers else [])
    work = lambda: [b for i in queue.claimed() for b in [str(i).encode(), *_encode(_ready(parts[i], store, options))]]
    workers = [_fork(work) for _ in range(n_workers)]
    done: list[tuple[Part, bytes, bool] | None] = [None] * len(parts)
    for i in itertools.chain(order[:1], queue.claimed()) if n_workers else order:
        done[i] = _ready(parts[i], store, options)
    queue.close()
    for worker in workers:
        blobs = worker.result() or []
        for k in range(0, len(blobs), 4):
            i = int(blobs[k])
            done[i] = _decode(blobs[k + 1:k + 4], parts[i])
    for i, d in enumerate(done):  # a failed worker's parts (its results are lost): redone here
        done[i] = d or _ready(parts[i], store, options)
    return [d[0] for d in done], [d[1] for d in done], [i for i, d in enumerate(done) if not d[2]]


class _PartQueue:
    """Part indices in a pipe, one byte each, that this process and its forked workers read one at
    a time: a one-byte read from a pipe is atomic, so every index goes to exactly one process."""

    def __init__(self, indices: list[int]):
        if any(i > 255 for i in indices):
            raise ValueError(f"a part queue holds indices below 256, got {max(indices)}")
        self.read_fd, write_fd = os.pipe()
        _write_all(write_fd, bytes(indices))  # a few bytes: far below the pipe's buffer
        os.close(write_fd)  # an empty queue then reads as end of file

    def claimed(self) -> Iterator[int]:
        while token := os.read(self.read_fd, 1):
            yield token[0]

    def close(self) -> None:
        os.close(self.read_fd)


def _ready(part: Part | LazyPart, store: ObjectCache | None, options: str) -> tuple[Part, bytes, bool]:
    """(the part as text, its object, whether the object came from the cache)."""
    part = part.part() if isinstance(part, LazyPart) else part
    key = _key(part, options) if store else ""
    obj = store.load(key) if store else None
    if obj is not None:
        return part, obj, True
    obj = _compile_object(part)
    if store:
        store.store(key, obj)
    return part, obj, False


def _encode(ready: tuple[Part, bytes, bool]) -> list[bytes]:
    part, obj, hit = ready
    return [part.text.encode(), obj, b"1" if hit else b"0"]


def _decode(blobs: list[bytes], like: Part | LazyPart) -> tuple[Part, bytes, bool]:
    return Part(blobs[0].decode(), like.unroll, like.cost), blobs[1], blobs[2] == b"1"


def compile_objects(parts: Sequence[Part]) -> list[bytes]:
    """Object code for each part, compiled in parallel the way `_render_and_compile` does (this
    process and forked workers taking parts from a shared queue; llvmlite serializes every LLVM call
    in a process behind one lock, so threads would take turns). A worker that fails for any reason
    has its parts redone here, where a bad module raises its JITError."""
    return _render_and_compile(list(parts), None, "")[1]


def _compile_object(part: Part) -> bytes:
    module = _parse(part.text)
    tm = host_target_machine()
    optimize(module, tm, part.unroll)
    try:
        return tm.emit_object(module)
    except RuntimeError as e:
        raise JITError("LLVM failed to generate machine code", str(e)) from None


def _can_fork(n_texts: int) -> bool:
    return n_texts > 1 and hasattr(os, "fork") and sys.platform.startswith("linux") and (os.cpu_count() or 1) > 1


class _Worker:
    """A forked process compiling some parts; its results (byte strings: objects, texts) arrive
    through a pipe, each after its length (8 bytes, little-endian), behind a leading b"\\x01"."""

    TIMEOUT_S = 300.0

    def __init__(self, pid: int, fd: int):
        self.pid, self.fd = pid, fd

    def result(self) -> list[bytes] | None:
        """The results, or None when the worker failed, died or took too long (the caller redoes them)."""
        chunks, deadline = [], time.monotonic() + self.TIMEOUT_S
        try:
            while True:
                ready, _, _ = select.select([self.fd], [], [], max(deadline - time.monotonic(), 0))
                if not ready:
                    os.kill(self.pid, signal.SIGKILL)
                    return None
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(self.fd)
            _, status = os.waitpid(self.pid, 0)
        blob = b"".join(chunks)
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and blob[:1] == b"\x01"):
            return None
        objects, at = [], 1
        while at < len(blob):
            size = int.from_bytes(blob[at:at + 8], "little")
            objects.append(blob[at + 8:at + 8 + size])
            at += 8 + size
        return objects


def _fork(work: Callable[[], list[bytes]]) -> _Worker:
    """Run `work` in a forked child that sends back its byte strings."""
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns about forking with threads: the child only runs LLVM
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: compile, write the objects, and leave without running any cleanup
        os.close(read_fd)
        code = 1
        try:
            blobs = work()
            _write_all(write_fd, b"\x01" + b"".join(len(o).to_bytes(8, "little") + o for o in blobs))
            code = 0
        except BaseException:  # noqa: B036 - anything at all: the parent redoes the work and reports it
            pass
        os._exit(code)
    os.close(write_fd)
    return _Worker(pid, read_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _load_objects(objects: list[bytes]) -> llvm.ExecutionEngine:
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), host_target_machine())
    try:
        for obj in objects:
            engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        engine.finalize_object()
    except RuntimeError as e:
        raise JITError("the compiled object could not be loaded", str(e)) from None
    return engine
