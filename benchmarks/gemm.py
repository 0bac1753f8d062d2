"""python3 -m benchmarks.gemm: the generated fp32 GEMM against numpy's matmul (OpenBLAS), one thread each.

The machine is shared and noisy, so the two are timed alternately, round after round, and each
figure is a median over the rounds; the ratio is the median of the per-round ratios.
OpenBLAS reads its thread count once at import: without OPENBLAS_NUM_THREADS=1 already set, this
script runs itself again in a child process with it set.
"""

from __future__ import annotations

import ctypes
import os
import statistics
import subprocess
import sys
import time

SIZES = (128, 512, 1024)
_ENV = "OPENBLAS_NUM_THREADS"


def _compiled_gemm(n: int):
    """(our call, numpy's call, (wall, cpu) seconds to build and JIT) for an n x n x n fp32 GEMM."""
    import numpy as np

    from graphtorch.compiler.llvm.gemm import GemmSpec, build_gemm_module, workspace_bytes
    from graphtorch.runtime.jit import compile_ir

    spec = GemmSpec.dense(n, n, n)
    t0, c0 = time.perf_counter(), time.process_time()
    native = compile_ir(str(build_gemm_module(spec)), cache=False)
    fn = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 4, ctypes.c_int64, ctypes.c_int64)(native.address("gemm"))
    seconds = (time.perf_counter() - t0, time.process_time() - c0)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, n, n), dtype=np.float32)
    out, ref = np.empty((n, n), np.float32), np.empty((n, n), np.float32)
    ws = np.empty(workspace_bytes(spec) + 64, np.uint8)
    args = (a.ctypes.data, b.ctypes.data, out.ctypes.data, ws.ctypes.data + (-ws.ctypes.data) % 64, 0, 1)
    fn(*args)
    np.matmul(a, b, out=ref)
    if not np.allclose(out, ref, rtol=1e-4, atol=1e-3):
        raise AssertionError(f"generated GEMM n={n} disagrees with numpy: max error {np.abs(out - ref).max()}")
    keep = (native, a, b, out, ws)  # args holds raw addresses: the buffers must outlive the calls
    return (lambda: fn(*args) or keep), (lambda: np.matmul(a, b, out=ref)), seconds


def _per_call(fn, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main(repeat: int = 15) -> None:
    if os.environ.get(_ENV) != "1":
        subprocess.run([sys.executable, "-m", "benchmarks.gemm", str(repeat)], env={**os.environ, _ENV: "1"},
                       check=True)
        return
    print(f"GEMM fp32, 1 thread: generated vs numpy matmul ({_ENV}=1); medians of {repeat} alternating rounds")
    from graphtorch.runtime.jit import compile_ir

    compile_ir("define void @warmup() {\n  ret void\n}\n", cache=False)  # LLVM's one-time start-up is no GEMM's cost
    for n in SIZES:
        ours, numpy_mm, compile_s = _compiled_gemm(n)
        reps = max(1, int(2e8 // n**3))  # ~5 ms or more per timed batch
        rounds = [(_per_call(ours, reps), _per_call(numpy_mm, reps)) for _ in range(repeat)]
        t_ours = statistics.median(r[0] for r in rounds)
        t_np = statistics.median(r[1] for r in rounds)
        ratio = statistics.median(r[1] / r[0] for r in rounds)
        flops = 2 * n**3
        print(f"gemm n={n:5d}  generated {flops / t_ours / 1e9:6.1f} GFLOP/s ({t_ours * 1e3:8.3f} ms)"
              f"  numpy {flops / t_np / 1e9:6.1f} GFLOP/s ({t_np * 1e3:8.3f} ms)"
              f"  generated/numpy {ratio:5.2f}  compile {compile_s[0] * 1e3:4.0f} ms (cpu {compile_s[1] * 1e3:4.0f} ms)",
              flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
