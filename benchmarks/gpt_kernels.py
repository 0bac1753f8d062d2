"""The tiny GPT training step's kernel times, grouped by what each kernel computes: per pattern
(the fusion group's kind and the sorted set of its primitives), how many kernels, their total
microseconds, slowest first. The table issue 15's GPT figure was tracked with.

Run alone: python3 -m benchmarks.gpt_kernels [--quick] [rows]
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict


def kernel_table(steps: int = 30) -> tuple[float, list[tuple[str, int, float]]]:
    """(ms per compiled step, [(pattern, kernels, total us)] slowest first) for the GPT workload."""
    import graphtorch

    from . import transformer as tr

    os.environ["GRAPHTORCH_KERNEL_TIMES"] = "1"  # read when the executable is built
    name, builder, make_step, make_opt = tr.WORKLOADS[0]
    x, y = (graphtorch.from_numpy(a) for a in tr._data(name))
    step = graphtorch.compile(tr._steps(graphtorch, name, builder, make_step, make_opt))
    for _ in range(3):  # the eager warm-up, the compile, one compiled call
        step(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    ms = (time.perf_counter() - start) / steps * 1e3
    entry = next(iter(step.entries.values()))
    count: dict[str, int] = defaultdict(int)
    total: dict[str, float] = defaultdict(float)
    for group, us in entry.forward.executable.kernel_times():
        pattern = f"{group.pattern}:{','.join(sorted({n.target for n in group.nodes}))}"
        count[pattern] += 1
        total[pattern] += us
    return ms, sorted(((p, count[p], total[p]) for p in total), key=lambda row: -row[2])


def main(rows: int = 20, steps: int = 30) -> None:
    ms, table = kernel_table(steps)
    kernels = sum(n for _, n, _ in table)
    print(f"tiny GPT step kernels: {ms:.3f} ms/step (timed build), {kernels} kernels, "
          f"{sum(us for *_, us in table):.0f} us in kernels", flush=True)
    for pattern, n, us in table[:rows]:
        print(f"  {n:4d} {us:8.1f} us  {pattern[:110]}", flush=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--quick"]
    main(int(args[0]) if args else 20, 10 if "--quick" in sys.argv else 30)
