"""python3 -m benchmarks.small_gemm: the generated GEMM on the tiny GPT's small products, one thread,
its small path (A and B read in place) against the packed path the same shapes took before.

The shapes are the GPT step's (4 heads of 16, 32 tokens, batch 16: 64 batches of 32x32x16 and
32x16x32 with the operand layouts the step produces), a 64x64 weight gradient over 512 rows, and
the 2-layer LSTM's recurrent products (hidden 64, batch 32) forward and backward.
The two paths are timed alternately, round after round; each figure is a median over the rounds.
"""

from __future__ import annotations

import ctypes
import statistics
import sys
import time

# (label, m, n, k, batch, A strides, B strides): strides in elements, (batch, row, column)
SHAPES = (
    ("attn q@k^T  64x 32x32x16", 32, 32, 16, 64, (512, 16, 1), (512, 32, 1)),
    ("attn p@v    64x 32x16x32", 32, 16, 32, 64, (1024, 32, 1), (512, 16, 1)),
    ("attn p^T@dO 64x 32x16x32", 32, 16, 32, 64, (1024, 1, 32), (512, 16, 1)),
    ("attn dO@v^T 64x 32x32x16", 32, 32, 16, 64, (512, 16, 1), (512, 1, 16)),
    ("dW x^T@dy    1x 64x64x512", 64, 64, 512, 1, (32768, 1, 64), (32768, 64, 1)),
    ("lstm h@Whh^T 1x 32x256x64", 32, 256, 64, 1, (2048, 64, 1), (16384, 1, 64)),
    ("lstm dg@Whh  1x 32x64x256", 32, 64, 256, 1, (8192, 256, 1), (16384, 64, 1)),
)


def _kernel(spec, small: bool):
    """A call running the f32 GEMM `spec` on one thread, through the small path or the packed one."""
    import numpy as np

    from graphtorch.compiler.llvm import gemm
    from graphtorch.runtime.jit import compile_ir

    saved, gemm.SMALL_LIMITS = gemm.SMALL_LIMITS, ((spec.m * spec.n, spec.k),) if small else ()
    try:
        native, ws_bytes = compile_ir(str(gemm.build_gemm_module(spec)), cache=False), gemm.workspace_bytes(spec)
    finally:
        gemm.SMALL_LIMITS = saved
    fn = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 4, ctypes.c_int64, ctypes.c_int64)(native.address("gemm"))
    rng = np.random.default_rng(0)
    a = rng.standard_normal(spec.batch * spec.m * spec.k, dtype=np.float32)
    b = rng.standard_normal(spec.batch * spec.k * spec.n, dtype=np.float32)
    out, ws = np.empty(spec.batch * spec.m * spec.n, np.float32), np.empty(ws_bytes + 64, np.uint8)
    args = (a.ctypes.data, b.ctypes.data, out.ctypes.data, ws.ctypes.data + (-ws.ctypes.data) % 64, 0, 1)
    keep = (native, a, b, out, ws)  # args holds raw addresses: the buffers must outlive the calls
    return lambda: fn(*args) or keep


def _per_call(fn, reps: int = 50) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main(repeat: int = 15) -> None:
    from graphtorch.compiler.llvm.gemm import GemmSpec

    print(f"small GEMMs fp32, 1 thread: small path vs packed path; medians of {repeat} alternating rounds")
    for label, m, n, k, batch, a_strides, b_strides in SHAPES:
        spec = GemmSpec(m, n, k, "f32", batch, a_strides, b_strides)
        small, packed = _kernel(spec, True), _kernel(spec, False)
        rounds = [(_per_call(small), _per_call(packed)) for _ in range(repeat)]
        t_small, t_packed = (statistics.median(r[i] for r in rounds) for i in (0, 1))
        gflop = 2 * batch * m * n * k / 1e9
        print(f"{label}  small {gflop / t_small:6.1f} GFLOP/s ({t_small * 1e6:6.1f} us)"
              f"  packed {gflop / t_packed:6.1f} GFLOP/s ({t_packed * 1e6:6.1f} us)", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
