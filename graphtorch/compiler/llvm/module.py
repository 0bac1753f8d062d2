"""One LLVM module per graph: a kernel function per fusion group, one entry that runs them in order.

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

`build(graph, groups)` dispatches each Group on `LOWERINGS[group.pattern]` ("single" and the
fusion pass's "opaque:<prim>" / "injective:<prim>" names all go to the "single" lowering).
"""
