"""python3 -m benchmarks.cuda_emulation: what running emitted CUDA kernels on the CPU costs (the CI price
of hostcheck's emulator): the g++ compile of a module, and the emulated run of a tiled GEMM, a block
reduction and an elementwise kernel. Medians over the repeats; the machine is shared and noisy."""

from __future__ import annotations

import statistics
import time

import numpy as np


def _graph():
    from graphtorch.compiler import dtypes as dt
    from graphtorch.compiler.dtypes import TensorType
    from graphtorch.compiler.ir import Graph

    g = Graph()
    f32 = dt.float32
    a, b = g.input("a", TensorType((128, 128), f32)), g.input("b", TensorType((128, 128), f32))
    x = g.input("x", TensorType((64, 1000), f32))
    g.outputs = [g.call("matmul", [a, b]), g.call("sum", [x], dict(dims=(1,), keepdim=False)), g.call("exp", [x])]
    return g


def _median_s(repeat: int, fn, *args) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(repeat: int = 5) -> None:
    from graphtorch.compiler.cuda import emit
    from graphtorch.compiler.cuda.hostcheck import HostLibrary
    from graphtorch.compiler.fusion import single_groups

    module = emit(_graph(), single_groups(_graph()))
    library = HostLibrary(module.source)  # builds the precompiled header, once per process
    compile_s = _median_s(max(1, repeat // 2), HostLibrary, module.source)
    print(f"cuda emulation: g++ of a {len(module.launches)}-kernel module {compile_s * 1e3:8.1f} ms", flush=True)
    for launch in module.launches:  # the values do not matter for the time: zeroed buffers
        memory = [np.zeros(max(module.buffers[k].nbytes, 8), np.uint8) for k in launch.args] + [np.zeros(4, np.int64)]
        pointers = [m.ctypes.data for m in memory]
        seconds = _median_s(repeat, library.launch, launch.kernel, launch.grid, launch.block, pointers,
                            [m.nbytes for m in memory])
        threads = int(np.prod(launch.grid) * np.prod(launch.block))
        print(f"cuda emulation: {launch.kernel:22s} {threads:6d} threads {seconds * 1e3:8.2f} ms "
              f"({'fibers' if library.kernels[launch.kernel].cooperative else 'plain calls'})", flush=True)


if __name__ == "__main__":
    main()
