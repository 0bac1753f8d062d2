"""Turn LLVM IR text into native code in this process.

The host target machine (its CPU name and features, so AVX2/FMA are used where present), the new
pass manager at O2 with loop and SLP vectorization, then an object file that an MCJIT engine loads.
O2, not O3: the kernels ran equally fast (per-kernel timings of the LeNet, MLP and sin-MLP train
steps), and optimize + codegen of the LeNet inference module took 0.65 s instead of 0.95 s.
Compiling through an object (rather than letting the engine compile the module) is what makes the
disk cache possible: a cache hit skips optimization and codegen and only loads the object.

MCJIT takes ownership of the target machine it is given and frees it with the engine, so every
engine gets a fresh one (reusing one crashes the process: TOOLCHAIN.md).
"""

from __future__ import annotations

import threading
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


def optimize(module: llvm.ModuleRef, tm: llvm.TargetMachine) -> None:
    pto = llvm.create_pipeline_tuning_options(speed_level=2)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = True
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
    """Native code loaded in this process; alive as long as this object is."""

    ir_text: str
    from_cache: bool
    _engine: llvm.ExecutionEngine
    _optimized: llvm.ModuleRef | None = None
    _addresses: dict[str, int] = field(default_factory=dict)

    def address(self, name: str) -> int:
        if name not in self._addresses:
            addr = self._engine.get_function_address(name)
            if not addr:
                raise JITError(f"no function {name!r} in the compiled module", "")
            self._addresses[name] = addr
        return self._addresses[name]

    def optimized_ir(self) -> str:
        return str(self._optimized_module())

    def assembly(self) -> str:
        return host_target_machine().emit_assembly(self._optimized_module())

    def _optimized_module(self) -> llvm.ModuleRef:
        if self._optimized is None:  # a cache hit skipped optimization: redo it for the dump
            self._optimized = _parse(self.ir_text)
            optimize(self._optimized, host_target_machine())
        return self._optimized


def compile_ir(ir_text: str, *, options: str = "", cache: ObjectCache | None | bool = True) -> NativeModule:
    """Optimize and load `ir_text`; the object comes from (and goes to) the disk cache unless cache=False."""
    store = default_cache() if cache is True else (cache or None)
    key = ObjectCache.key(ir_text, host_signature(), options) if store else ""
    obj = store.load(key) if store else None
    optimized = None
    if obj is None:
        optimized = _parse(ir_text)
        tm = host_target_machine()
        optimize(optimized, tm)
        try:
            obj = tm.emit_object(optimized)
        except RuntimeError as e:
            raise JITError("LLVM failed to generate machine code", str(e)) from None
        if store:
            store.store(key, obj)
    try:
        engine = _load_object(obj)
    except JITError:
        if optimized is not None:
            raise
        store.discard(key)  # a valid entry that does not load (a foreign build): rebuild it
        return compile_ir(ir_text, options=options, cache=False)
    return NativeModule(ir_text, optimized is None, engine, optimized)


def _load_object(obj: bytes) -> llvm.ExecutionEngine:
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), host_target_machine())
    try:
        engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        engine.finalize_object()
    except RuntimeError as e:
        raise JITError("the compiled object could not be loaded", str(e)) from None
    return engine
