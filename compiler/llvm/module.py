"""A kernel function per fusion group, and one entry, `run`, that calls them in order.

A small graph is one LLVM module. A large one is split (`split`) into modules of about equal
estimated LLVM work that compile in parallel and link in one engine (runtime.compile_ir): `run`
declares the kernels the other modules define, and the GEMM helpers live in one of them. Kernels
too small to be worth threads run on thread 0 alone, with no barrier between two such neighbours
(`runs_serial`: `work` against PARALLEL_WORK, or a cost model in SERIAL). An input the output overwrites in place (memory plan reuse, donated
inputs) is read through the output's pointer, so LLVM sees one pointer, not two that overlap.

The contract between `build` and the lowerings (elementwise.py, reduction.py, opaque.py here;
gemm.py and conv.py by the matmul/conv engineer) is `LOWERINGS` and `LoweringContext`:

    def lower_matmul(ctx: LoweringContext, group: Group) -> None

A lowering emits the body of the group's kernel function with `ctx.builder`, which is positioned
in that function's entry block; it must leave the builder in a block without a terminator (the
frame adds `ret void`). What the context gives:

- `ctx.module`, `ctx.builder`, `ctx.func`: the llvmlite module, builder and kernel function.
- `ctx.ptr(node)`: the buffer of a group input or of the group's output (an opaque `ptr`;
  C-contiguous, row-major, dense, only 16-byte aligned: never emit `align 32` on it).
  Address elements with `ctx.gep(node, flat_index)` (GEP, inbounds, element type from the dtype).
- `ctx.tid`, `ctx.nthreads`: i64 values of this thread's id and the thread count. Every thread
  runs every kernel: split the outermost loop with `ctx.thread_range(n)`; the frame puts a
  barrier between kernels. `ctx.barrier()` is there for kernels with phases of their own.
- `ctx.loop(start, stop)`: a context manager for `for (i = start; i < stop; ++i)`, yields `i`.
- `ctx.workspace(nbytes, per_thread=False)`: scratch memory (64-byte aligned) valid during this
  kernel only (e.g. GEMM packing panels); per_thread gives each thread its own slice.
- `ctx.const(value, node_or_dtype)`, `ctx.ty(node)`: LLVM constants and element types.
- `ctx.element(node, index)`: index.emit_element: the value of any elementwise/injective member at
  a multi-index of its shape, loading group inputs as needed (epilogues).
- `ctx.index_error(bad_index, dim, size)`: record an out-of-bounds index; the runtime raises
  IndexError after the call. The lowering must still not touch memory out of bounds.

- `index.emit_epilogue(ctx, group, anchor_ptr, (r0, r1), (c0, c1), out_ptr=None)`: the group's
  elementwise epilogue over a block of the anchor's output viewed as (prod(shape[:-1]), shape[-1]),
  in place when out_ptr is anchor_ptr.

`build(graph, groups)` dispatches each Group on `LOWERINGS[group.pattern]` ("single" and the
fusion pass's "opaque:<prim>" / "injective:<prim>" names all go to the "single" lowering).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from llvmlite import ir

from ..dtypes import DType
from ..errors import GraphtorchCompileError
from ..ir import Graph, Group, Node
from ..memory_plan import MemoryPlan
from ..primitives import Kind
from . import index, scalar
from .dedup import kernel_signature, representatives
from .scalar import I64

Lowering = Callable[["LoweringContext", Group], None]
LOWERINGS: dict[str, Lowering] = {}  # filled by elementwise.py, reduction.py, opaque.py, gemm.py, conv.py
PTR = ir.PointerType()

# the status buffer (i64 slots) that the entry shares between threads and with the runtime
STATUS_SLOTS = 16
BARRIER_COUNT, BARRIER_GENERATION = 0, 8  # separate cache lines: waiters spin on the generation
ERROR_CODE, ERROR_INDEX, ERROR_DIM, ERROR_SIZE = 2, 3, 4, 5
INDEX_ERROR = 1
HOST_ERROR = 2  # a host call (host.py) raised: the executable re-raises its exception
MPI_ERROR = 3  # an MPI call returned an error code (ERROR_INDEX holds it): collective.py


ALONE = ("single", "opaque", "injective")  # "single" and the fusion pass's "opaque:<prim>", "injective:<prim>"


def lowering_for(group: Group) -> Lowering:
    """Every ALONE pattern means one node alone: the "single" lowering."""
    pattern = "single" if group.pattern.split(":")[0] in ALONE else group.pattern
    if pattern not in LOWERINGS:
        raise GraphtorchCompileError("GT050", f"group {group.id} has pattern {group.pattern!r}, which the LLVM "
                                     f"backend does not know (known: {', '.join(sorted(LOWERINGS))})",
                                     group.outputs[0].loc, stage="lowered")
    return LOWERINGS[pattern]


class LoweringContext:
    """What a lowering needs to emit one group's kernel: see this module's docstring."""

    def __init__(self, module: ir.Module, func: ir.Function, group: Group, buffers: dict[Node, ir.Value],
                 status: ir.Value, workspace: ir.Value, tid: ir.Value, nthreads: ir.Value, max_threads: int):
        self.module, self.func, self.group = module, func, group
        self._allocas = ir.IRBuilder(func.append_basic_block("allocas"))
        self.builder = ir.IRBuilder(func.append_basic_block("entry"))
        self._buffers, self._status, self._workspace = buffers, status, workspace
        self._inputs = set(group.inputs)
        self.tid, self.nthreads, self.max_threads = tid, nthreads, max_threads
        self.workspace_bytes = 0

    # ---- buffers
    def is_input(self, node: Node) -> bool:
        """Read from its buffer (rather than computed): a group input."""
        return node in self._inputs

    def ptr(self, node: Node) -> ir.Value:
        if node not in self._buffers:
            raise self.unsupported(node, f"has no buffer in group {self.group.id} (not a group input or output)")
        return self._buffers[node]

    def ty(self, node_or_dtype: Node | DType) -> ir.Type:
        """The element type in memory (bool is a byte)."""
        d = node_or_dtype.type.dtype if isinstance(node_or_dtype, Node) else node_or_dtype
        return scalar.mem_type(d)

    def gep(self, node: Node, flat: ir.Value) -> ir.Value:
        return self.builder.gep(self.ptr(node), [flat], inbounds=True, source_etype=self.ty(node))

    def load(self, node: Node, flat: ir.Value) -> ir.Value:
        return scalar.load(self.builder, node.type.dtype, self.gep(node, flat))

    def store(self, node: Node, flat: ir.Value, value: ir.Value) -> None:
        scalar.store(self.builder, node.type.dtype, value, self.gep(node, flat))

    def const(self, value, node_or_dtype: Node | DType) -> ir.Constant:
        d = node_or_dtype.type.dtype if isinstance(node_or_dtype, Node) else node_or_dtype
        return scalar.const(d, value)

    def workspace(self, nbytes: int, per_thread: bool = False) -> ir.Value:
        """Scratch memory, 64-byte aligned, valid until this kernel returns."""
        nbytes = -(-nbytes // 64) * 64
        b = self.builder
        base = b.gep(self._workspace, [index.i64(self.workspace_bytes)], inbounds=True, source_etype=scalar.I8)
        self.workspace_bytes += nbytes * (self.max_threads if per_thread else 1)
        if per_thread:
            base = b.gep(base, [b.mul(self.tid, index.i64(nbytes))], inbounds=True, source_etype=scalar.I8)
        return base

    def alloca(self, ty: ir.Type) -> ir.Value:
        """A stack slot in the entry block, where mem2reg turns it into registers."""
        return self._allocas.alloca(ty)

    # ---- loops and threads
    @contextlib.contextmanager
    def loop(self, start: ir.Value | int, stop: ir.Value | int) -> Iterator[ir.Value]:
        """for (i = start; i < stop; ++i); the builder continues after the loop on exit."""
        b = self.builder
        start, stop = _i64(start), _i64(stop)
        pre = b.block
        head, body, done = (b.append_basic_block(n) for n in ("loop", "body", "endloop"))
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64, name="i")
        i.add_incoming(start, pre)
        b.cbranch(b.icmp_signed("<", i, stop), body, done)
        b.position_at_end(body)
        yield i
        nxt = b.add(i, index.i64(1), flags=("nuw", "nsw"))
        i.add_incoming(nxt, b.block)
        b.branch(head)
        b.position_at_end(done)

    def thread_range(self, n: ir.Value | int, align: int = 1) -> tuple[ir.Value, ir.Value]:
        """This thread's share [lo, hi) of range(n), cut at multiples of `align`."""
        b = self.builder
        n = _i64(n)
        units = b.udiv(b.add(n, index.i64(align - 1)), index.i64(align)) if align > 1 else n

        def cut(t):
            at = b.udiv(b.mul(units, t), self.nthreads)
            at = b.mul(at, index.i64(align)) if align > 1 else at
            return b.select(b.icmp_unsigned("<", at, n), at, n)

        return cut(self.tid), cut(b.add(self.tid, index.i64(1)))

    def barrier(self) -> None:
        self.builder.call(barrier_function(self.module), [self._status, self.nthreads])

    # ---- values and errors
    def element(self, node: Node, idx: index.Index | list[ir.Value], overrides: dict | None = None) -> ir.Value:
        return index.emit_element(self, node, idx, overrides)

    def index_error(self, bad_index: ir.Value, dim: int, size: int) -> None:
        """Record the first out-of-bounds index; the runtime raises IndexError after the call."""
        b = self.builder
        with b.if_then(self.set_error(INDEX_ERROR)):
            b.store(bad_index, self._slot(ERROR_INDEX))
            b.store(index.i64(dim), self._slot(ERROR_DIM))
            b.store(index.i64(size), self._slot(ERROR_SIZE))

    def set_error(self, code: int) -> ir.Value:
        """Record error `code` unless an earlier one is; true when this one was recorded."""
        old = self.builder.cmpxchg(self._slot(ERROR_CODE), index.i64(0), index.i64(code), "monotonic", "monotonic")
        return self.builder.extract_value(old, 1)

    def _slot(self, k: int) -> ir.Value:
        return self.builder.gep(self._status, [index.i64(k)], inbounds=True, source_etype=I64)

    def error(self, code: int, value: ir.Value) -> None:
        """Record the first run-time error `code` (MPI_ERROR, ...) with its value in ERROR_INDEX."""
        with self.builder.if_then(self.set_error(code)):
            self.builder.store(value, self._slot(ERROR_INDEX))

    def unsupported(self, node: Node, why: str) -> GraphtorchCompileError:
        return GraphtorchCompileError("GT050", f"the LLVM backend cannot lower {node.name} ({node.target}): {node.name} {why}",
                                      node.loc, hint="run this graph eagerly, or report the graph (it is in the dump)",
                                      stage="lowered")


def _i64(v: ir.Value | int) -> ir.Value:
    return index.i64(v) if isinstance(v, int) else v


def barrier_function(module: ir.Module) -> ir.Function:
    """gt.barrier(status, n): all n threads wait here until the last arrives (spin, then yield)."""
    fn = module.globals.get("gt.barrier")
    if fn is not None:
        return fn
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, I64]), "gt.barrier")
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    status, n = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    arrive, last, wait, spin, done = (fn.append_basic_block(x) for x in ("arrive", "last", "wait", "spin", "done"))
    b.cbranch(b.icmp_signed("<=", n, index.i64(1)), done, arrive)
    b.position_at_end(arrive)
    count = b.gep(status, [index.i64(BARRIER_COUNT)], inbounds=True, source_etype=I64)
    gen_ptr = b.gep(status, [index.i64(BARRIER_GENERATION)], inbounds=True, source_etype=I64)
    gen = b.load_atomic(gen_ptr, "acquire", 8, typ=I64)  # read before arriving: the last thread bumps it after
    old = b.atomic_rmw("add", count, index.i64(1), "acq_rel")
    b.cbranch(b.icmp_signed("==", old, b.sub(n, index.i64(1))), last, wait)
    b.position_at_end(last)
    b.atomic_rmw("xchg", count, index.i64(0), "monotonic")  # (store_atomic needs typed pointers in llvmlite)
    b.atomic_rmw("add", gen_ptr, index.i64(1), "acq_rel")
    b.ret_void()
    b.position_at_end(wait)
    spins = b.phi(I64)
    spins.add_incoming(index.i64(0), arrive)
    released = b.icmp_signed("!=", b.load_atomic(gen_ptr, "acquire", 8, typ=I64), gen)
    b.cbranch(released, done, spin)
    b.position_at_end(spin)
    # spin briefly (the other thread is usually a few microseconds behind), then give the core away:
    # on a shared machine a thread spinning forever steals the core the late thread needs
    with b.if_else(b.icmp_signed("<", spins, index.i64(4000))) as (then, otherwise):
        with then:
            b.call(scalar.function(module, "llvm.x86.sse2.pause", ir.VoidType(), []), [])
        with otherwise:
            b.call(scalar.function(module, "sched_yield", ir.IntType(32), []), [])
    spins.add_incoming(b.add(spins, index.i64(1)), b.block)
    b.branch(wait)
    b.position_at_end(done)
    b.ret_void()
    return fn


# ---------------------------------------------------------------- the module


@dataclass
class Layout:
    """Where each buffer comes from: the `void **` table the entry reads."""

    slots: dict[Node, int]  # graph inputs, constants, graph outputs -> table slot
    offsets: dict[Node, int]  # arena-resident values -> byte offset
    n_slots: int
    workspace_bytes: int = 0
    constants: list[Node] = field(default_factory=list)
    parallel: bool = False  # some kernel runs on every thread (else the runtime calls `run` on one)
    timed: bool = False  # status words STATUS_SLOTS + k accumulate thread 0's cycles in kernel k

    STATUS, WORKSPACE, ARENA, FIRST = 0, 1, 2, 3


def make_layout(graph: Graph, groups: list[Group], plan: MemoryPlan) -> Layout:
    slots: dict[Node, int] = {}
    computed = {o for g in groups for o in g.outputs} | set(plan.views)
    constants = []
    for n in graph.inputs:
        slots[n] = Layout.FIRST + len(slots)
    for g in groups:
        for i in g.inputs:
            if i.op == "constant" and i not in slots:
                slots[i] = Layout.FIRST + len(slots)
                constants.append(i)
            elif i.op == "call" and i not in computed:
                raise GraphtorchCompileError("GT042", f"group {g.id} reads {i.name}, which no group computes",
                                             i.loc, stage="lowered")
    for o, i in plan.donated.items():  # written over its input: the same table entry
        slots[o] = slots[i]
    for o in graph.outputs:
        if o in computed and o not in slots:
            slots[o] = Layout.FIRST + len(slots)
    offsets = {n: off for n, off in plan.offsets.items() if n not in slots}
    return Layout(slots, offsets, Layout.FIRST + len(slots), constants=constants)


def build_module(graph: Graph, groups: list[Group], plan: MemoryPlan, *, name: str = "graph",
                 max_threads: int = 1, timed: bool = False) -> tuple[list[tuple[ir.Module, bool, int]], Layout]:
    """The modules (see `split`), each with whether to unroll it and its estimated cost: one kernel per group, and
    `void run(void **table, i64 tid, i64 nthreads)` in the first, which calls the others' kernels
    (external functions there). timed: `run` adds the cycles thread 0 spends in (and waiting after)
    kernel k to status word STATUS_SLOTS + k."""
    layout = make_layout(graph, groups, plan)
    layout.timed = timed
    args_of = {g: list(dict.fromkeys([*g.inputs, *g.outputs])) for g in groups}
    flags_of = {g: _arg_flags(g, args_of[g], layout) for g in groups}
    same = representatives(groups, {g: kernel_signature(g, args_of[g], flags_of[g], max_threads) for g in groups})
    plan = split([g for g in groups if same[g] is g])
    part_of = plan.part_of
    modules = [ir.Module(name=name if k == 0 else f"{name}.part{k}") for k in range(len(plan.unroll))]
    for m in modules:
        m.triple = ""  # the JIT sets the host's
    entry = ir.Function(modules[0], ir.FunctionType(ir.VoidType(), [PTR, I64, I64]), "run")
    table, tid, nthreads = entry.args
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    slot = lambda k: b.load(b.gep(table, [index.i64(k)], inbounds=True, source_etype=PTR), typ=PTR)
    status, workspace, arena = slot(Layout.STATUS), slot(Layout.WORKSPACE), slot(Layout.ARENA)

    def buffer(node):
        if node in layout.slots:
            return slot(layout.slots[node])
        return b.gep(arena, [index.i64(layout.offsets[node])], inbounds=True, source_etype=scalar.I8)

    serial = serial_kernels(groups)
    layout.parallel = not all(serial)
    called: dict[Group, ir.Function] = {}  # a distinct kernel -> the function `run` calls for it
    for k, group in enumerate(groups):
        nodes, rep = args_of[group], same[group]
        if rep not in called:
            called[rep] = _kernel(modules[part_of[rep]], rep, nodes, flags_of[rep], layout, max_threads)
            if part_of[rep]:  # defined in another part: exported there, declared here
                called[rep].linkage = "external"
                called[rep] = ir.Function(modules[0], called[rep].ftype, called[rep].name)
        kernel = called[rep] if rep is group else _alias(modules[0], group, called[rep])
        if k and not (serial[k] and serial[k - 1]):  # thread 0 runs a run of serial kernels in order
            wait = _cycles(b) if timed else None
            b.call(barrier_function(modules[0]), [status, nthreads])
            if timed:  # waiting for the slowest thread is the previous kernel's time
                _add_cycles(b, status, tid, STATUS_SLOTS + k - 1, wait)
        args = [buffer(n) for n in nodes] + [status, workspace]
        start = _cycles(b) if timed else None
        if serial[k]:
            with b.if_then(b.icmp_signed("==", tid, index.i64(0))):
                b.call(kernel, args + [index.i64(0), index.i64(1)])
        else:
            b.call(kernel, args + [tid, nthreads])
        if timed:
            _add_cycles(b, status, tid, STATUS_SLOTS + k, start)
    b.ret_void()
    _share_helpers(modules, plan.helper_home)
    return list(zip(modules, plan.unroll, plan.costs)), layout


def _cycles(b: ir.IRBuilder) -> ir.Value:
    return b.call(scalar.function(b.module, "llvm.readcyclecounter", I64, []), [])


def _add_cycles(b: ir.IRBuilder, status: ir.Value, tid: ir.Value, word: int, start: ir.Value) -> None:
    with b.if_then(b.icmp_signed("==", tid, index.i64(0))):
        ptr = b.gep(status, [index.i64(word)], inbounds=True, source_etype=I64)
        b.store(b.add(b.load(ptr, typ=I64), b.sub(_cycles(b), start)), ptr)


# LLVM's cost per kernel (optimize + codegen, the unroller off), in units of about 7 ms, measured
# by kind on the LeNet training step; the GEMM helpers (packing, micro-kernel) count once, at what
# balanced the two halves' CPU time there (1.1 s each instead of 0.7 and 1.3)
COST = {"elementwise": 2, "reduction": 3, "matmul": 7, "conv2d": 17, "single": 4, "opaque": 4, "injective": 4}
HELPER_COST = 100
ENTRY_COST = 12  # `run`, in part 0: a long straight line of calls
SPLIT_MIN_COST = 40  # below this, forking a worker costs about what it saves
# modules a large graph is split into (besides the unrolled one). The cores take them from a shared
# queue (runtime.jit), so a core that finished early takes the next one. 4 modules compiled no faster
# than 2 (the GPT step: same CPU time, noisy wall time) and moved kernels out of part 0, where LLVM
# specializes a kernel on the constant thread arguments `run` passes (45 kernels' code changed)
PARTS = 2
# a kernel in the unrolled module costs LLVM about 3x its COST (the LeNet step's 8 unrolled kernels,
# COST 28: 0.205 s, against 0.44 s for each half at COST 176 and 205), so it counts 3x when the
# modules are balanced
UNROLLED_COST_FACTOR = 3
# Only these kernels ran faster with LLVM's loop unroller, which costs a third of a training
# step's compile time: opaque and injective ops alone (gather, scatter_add: 14.3 vs 12.3 ms for
# the LeNet step) and reductions over a few elements each (unfold windows: 700 vs 470 us for
# LeNet inference's first pool when max-pool was an unfold + max); they get a module where it runs
SHORT_REDUCTION = 16  # reduced elements per output


def wants_unroll(group: Group) -> bool:
    kind = group.pattern.split(":")[0]
    if kind in ALONE:
        return True
    a = group.anchor
    if kind != "reduction" or a is None or "dims" not in a.attrs:
        return False
    shape = a.inputs[0].type.shape
    return math.prod(shape[d] for d in a.attrs["dims"]) <= SHORT_REDUCTION


@dataclass
class Split:
    part_of: dict[Group, int]  # kernel -> module
    unroll: list[bool]  # per module: whether LLVM's loop unroller runs
    costs: list[int]  # per module: estimated LLVM work (runtime.compile_ir deals modules to cores by it)
    helper_home: int = 0  # the module that defines the GEMM helpers


def split(groups: list[Group], parts: int = PARTS) -> Split:
    """Which module each kernel goes to, whether each module gets the loop unroller, and each
    module's estimated LLVM cost.

    A small graph is one module, unrolled. A larger one spreads its kernels over up to `parts`
    modules of about equal estimated work (biggest kernels first, each to the lightest module; the
    module that takes the first GEMM or convolution also takes the helpers they share), plus one
    more, unrolled, for the kernels that gain from it (`wants_unroll`), counted with part 0 (the core that compiles the
    smaller of the others takes it too). Modules left without kernels are dropped.
    """
    kind = {g: g.pattern.split(":")[0] for g in groups}
    cost = {g: COST.get(kind[g], 4) for g in groups}
    if sum(cost.values()) < SPLIT_MIN_COST:
        return Split(dict.fromkeys(groups, 0), [True], [sum(cost.values())])
    unroll = {g for g in groups if wants_unroll(g)}
    unrolled = sum(cost[g] for g in unroll) * UNROLLED_COST_FACTOR
    load = [ENTRY_COST + unrolled] + [0] * (parts - 1)
    part_of, home = {}, None
    for g in sorted(groups, key=lambda g: -cost[g]):
        if g in unroll:
            part_of[g] = parts
            continue
        part_of[g] = k = load.index(min(load))
        load[k] += cost[g]
        if kind[g] in ("matmul", "conv2d") and home is None:
            load[k] += HELPER_COST
            home = k
    load[0] -= unrolled
    used = sorted({0} | set(part_of.values()))  # renumbered densely, the unrolled part last
    renumber = {k: i for i, k in enumerate(used)}
    costs = [load[k] if k < parts else unrolled for k in used]
    return Split({g: renumber[k] for g, k in part_of.items()}, [k == parts for k in used], costs,
                 renumber.get(home, 0))


def _share_helpers(modules: list[ir.Module], home: int) -> None:
    """A helper (GEMM packing, micro-kernel, barrier) that several parts emitted keeps its body in
    module `home` (or the first that has one), exported; the others call it through a declaration.
    The helpers are never inlined anyway, so a call across modules costs what a call within one
    does."""
    defined: dict[str, list[ir.Function]] = {}
    for m in modules:
        for fn in m.functions:
            if fn.blocks:
                defined.setdefault(fn.name, []).append(fn)
    for copies in defined.values():
        if len(copies) > 1:
            keep = next((fn for fn in copies if fn.module is modules[home]), copies[0])
            keep.linkage = ""
            for fn in copies:
                if fn is not keep:
                    fn.blocks, fn.linkage = [], ""


# elements (or multiply-adds / 16): a kernel with less work runs on thread 0 alone, with no barrier
# between it and a neighbour that does too; splitting it would cost more in barriers (a few us
# each, far more when another process holds the other core) than it saves
PARALLEL_WORK = 1 << 17
WORK: dict[str, Callable[[Node], int]] = {}  # primitive -> its work, where tensor sizes misjudge it (attention)
# group pattern -> whether its kernel runs on thread 0 alone, where a cost model knows better than
# `work` (gemm.py: a GEMM's time per flop is far from an elementwise loop's per element)
SERIAL: dict[str, Callable[[Group], bool]] = {}


def serial_kernels(groups: list[Group]) -> list[bool]:
    """Which kernels run on thread 0 alone. A cost model (SERIAL) splits a kernel only in an
    executable that the size rule already runs on threads: waking the pool on every call cost the
    sin-MLP step, all small kernels but three 50-us GEMMs, more than splitting those saved
    (0.21 -> 0.37 ms per step, two cores)."""
    if all(work(g) < PARALLEL_WORK for g in groups):
        return [True] * len(groups)
    serial = [runs_serial(g) for g in groups]
    for lo, hi in _serial_runs(serial):
        if _split_between(groups[lo:hi], lo == 0, hi == len(groups)):
            serial[lo:hi] = [False] * (hi - lo)
    return serial


# a run of at most BETWEEN_SPLIT_KERNELS small elementwise kernels between two split ones is split
# too when together they have at least BETWEEN_SPLIT_WORK elements: the barriers around the run are
# its neighbours', there anyway, and each thread then reads the rows the split kernel before it
# wrote on its own core (the LSTM's gate kernel, 32x64 with five sigmoid/tanh per element, 6.2 us
# on thread 0 alone; its backward's two kernels per step)
BETWEEN_SPLIT_KERNELS, BETWEEN_SPLIT_WORK = 2, 1 << 12
# in an executable that runs threads, an elementwise kernel with this many elements splits: its
# inputs are mostly outputs of split kernels, half of them in the other core's cache, and thread 0
# alone pays for every line that crosses (the LSTM step's two 256x64 Adam updates: 75 -> 41 us together)
ELEMENTWISE_SPLIT_WORK = 1 << 14


def _serial_runs(serial: list[bool]) -> list[tuple[int, int]]:
    """The maximal runs [lo, hi) of serial kernels."""
    runs, lo = [], None
    for k, alone in enumerate([*serial, False]):
        if alone and lo is None:
            lo = k
        elif not alone and lo is not None:
            runs.append((lo, k))
            lo = None
    return runs


def _split_between(run: list[Group], first: bool, last: bool) -> bool:
    return (not first and not last and len(run) <= BETWEEN_SPLIT_KERNELS
            and all(g.pattern == "elementwise" for g in run) and sum(work(g) for g in run) >= BETWEEN_SPLIT_WORK)


def runs_serial(group: Group) -> bool:
    """Whether `group`'s kernel is too small to be worth a barrier: thread 0 runs it alone."""
    decide = SERIAL.get(group.pattern)
    if decide is not None:
        return decide(group)
    return work(group) < (ELEMENTWISE_SPLIT_WORK if group.pattern == "elementwise" else PARALLEL_WORK)


def work(group: Group) -> int:
    """A rough size of a kernel's work, to decide whether threads pay off."""
    anchor, root = group.anchor, group.outputs[0]
    if anchor is not None and anchor.prim.kind is Kind.OUT_FUSABLE:  # before WORK: conv2d_pool's root is its pool
        a, b = anchor.inputs
        depth = b.type.numel // b.type.shape[0] if anchor.target == "conv2d" else a.type.shape[-1]
        return anchor.type.numel * depth // 16
    if root.op == "call" and root.target in WORK:
        return WORK[root.target](root)
    sizes = [group.outputs[0].type.numel] + [i.type.numel for i in group.inputs]
    return max(sizes) if sizes else 0


def kernel_name(group: Group) -> str:
    """The LLVM function of a group's kernel: "kernel3.elementwise" (reports find its code by it)."""
    return f"kernel{group.id}.{group.pattern.replace(':', '.')}"


def _arg_flags(group: Group, nodes: list[Node], layout: Layout) -> list[tuple[bool, bool]]:
    """(read through the output's pointer, noalias) for each kernel argument.

    An input the memory plan computes in place (the output takes its exact bytes) is read through
    the output's pointer: with two pointers to the same bytes LLVM's vectorizer guards the loop
    with an overlap check that sends exact in-place to the scalar loop (relu was 8x slower)."""
    in_place = [_written_over(n, group, layout) is not None for n in nodes]
    distinct = [n for n, same in zip(nodes, in_place) if not same]
    return [(same, not same and not _may_alias(n, distinct, layout)) for n, same in zip(nodes, in_place)]


def _alias(module: ir.Module, group: Group, kernel: ir.Function) -> ir.Function:
    """`group`'s kernel when an identical one exists (dedup.py): a function under its own name (what
    reports look up) that calls that one; LLVM inlines it into `run`."""
    fn = ir.Function(module, kernel.ftype, kernel_name(group))
    fn.linkage = "internal"
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.call(kernel, fn.args)
    b.ret_void()
    return fn


def _kernel(module: ir.Module, group: Group, nodes: list[Node], flags: list[tuple[bool, bool]], layout: Layout,
            max_threads: int) -> ir.Function:
    fnty = ir.FunctionType(ir.VoidType(), [PTR] * (len(nodes) + 2) + [I64, I64])
    fn = ir.Function(module, fnty, kernel_name(group))
    fn.linkage = "internal"
    # each kernel is called once from `run`: inlining them all there gains nothing at run time and
    # made optimizing the LeNet train step 1.6 s instead of 1.15 s
    fn.attributes.add("noinline")
    for arg, node, (_, noalias) in zip(fn.args, nodes, flags):
        arg.name = node.name.lstrip("%")
        if noalias:
            arg.add_attribute("noalias")
    *bufs, status, ws, tid, nthreads = fn.args
    buffers = dict(zip(nodes, bufs))
    buffers.update((n, buffers[_written_over(n, group, layout)]) for n, (in_place, _) in zip(nodes, flags) if in_place)
    ctx = LoweringContext(module, fn, group, buffers, status, ws, tid, nthreads, max_threads)
    lowering_for(group)(ctx, group)
    ctx.builder.ret_void()
    ctx._allocas.branch(fn.blocks[1])
    layout.workspace_bytes = max(layout.workspace_bytes, ctx.workspace_bytes)
    return fn


def _written_over(node: Node, group: Group, layout: Layout) -> Node | None:
    """The output of `group` that takes `node`'s exact bytes (in-place reuse, a donated input)."""
    return next((o for o in group.outputs if o is not node and _same_bytes(node, o, layout)), None)


def _may_alias(node: Node, nodes: list[Node], layout: Layout) -> bool:
    """In-place reuse gives an input and the output the same arena bytes: those get no noalias."""
    if node not in layout.offsets:
        return False
    lo, hi = layout.offsets[node], layout.offsets[node] + _nbytes(node)
    for other in nodes:
        if other is not node and other in layout.offsets:
            olo = layout.offsets[other]
            if olo < hi and lo < olo + _nbytes(other):
                return True
    return False


def _same_bytes(a: Node, b: Node, layout: Layout) -> bool:
    """The same memory: one table slot (a donated input), or one arena range (in-place reuse)."""
    if a in layout.slots or b in layout.slots:
        return layout.slots.get(a) == layout.slots.get(b)
    return a in layout.offsets and b in layout.offsets and layout.offsets[a] == layout.offsets[b] \
        and _nbytes(a) == _nbytes(b)


def _nbytes(node: Node) -> int:
    return max(math.prod(node.type.shape) * node.type.dtype.itemsize, 1)
