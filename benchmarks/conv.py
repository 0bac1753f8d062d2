"""Convolution workloads: a small ResNet (its training step runs in __main__'s training section) and
the conv section, `python3 -m benchmarks --only conv`.

The conv section measures each of LeNet's convolutions and a 3x3 ResNet convolution as kernels:
forward, input gradient and weight gradient, each the mean time of its compiled kernel over a
batch of calls, the least of four batches (GRAPHTORCH_KERNEL_TIMES, thread 0's time in the kernel
and at the barrier after it, so the figure is what the kernel costs the call at the session's
thread count), with the lowering the
cost model chose, and GFLOP/s next to a 512^3 matmul kernel's measured the same way in the same run,
at one thread and at the session's thread count.
Kernel times are per kernel, so they are less noisy than whole-step medians on a shared machine.
"""

from __future__ import annotations

import os

import numpy as np

from . import pooling

# (name, input shape, weight shape, padding): LeNet b64's two convolutions, the ResNet's 3x3
CONVS = [
    ("lenet conv1 5x5 1->6", (64, 1, 32, 32), (6, 1, 5, 5), 0),
    ("lenet conv2 5x5 6->16", (64, 6, 14, 14), (16, 6, 5, 5), 0),
    ("resnet conv 3x3 16->16", (32, 16, 16, 16), (16, 16, 3, 3), 1),
]
GEMM_SIZE = 512


def resnet(torch):
    """3x3 convs with padding 1 and no bias, BatchNorm2d, residual adds, MaxPool2d, AdaptiveAvgPool2d;
    16 channels, for 3x16x16 inputs."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, c: int):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
            self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(x + self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        Block(16), nn.MaxPool2d(2), Block(16),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


def _timed_calls(fn, args, repeat: int, backward: bool, batches: int = 4):
    """Call the compiled fn (the first call of a function runs eagerly), then `batches` batches of
    `repeat` // `batches` timed calls; returns [(group, microseconds)] of its one entry's forward
    and backward executables, each kernel's time the least of its batch means (a batch that
    another process preempted on this shared machine is dropped that way)."""
    for _ in range(2):
        out = fn(*args)
        if backward:
            out.backward()
    entry = next(iter(fn.entries.values()))
    exes = [e.executable for e in (entry.forward, entry.backward) if e is not None]
    best: dict = {}
    for _ in range(batches):
        for exe in exes:
            exe.calls, exe._status[:] = 0, 0  # count only this batch's calls
        for _ in range(max(1, repeat // batches)):
            out = fn(*args)
            if backward:
                out.backward()
        for exe in exes:
            for group, us in exe.kernel_times():
                best[exe, group] = min(us, best.get((exe, group), us))
    return [[(g, us) for (e, g), us in best.items() if e is exe] for exe in exes]


def _conv_times(x_shape, w_shape, padding: int, repeat: int) -> dict[str, tuple[float, str]]:
    """{forward, input grad, weight grad: (microseconds, lowering)} of one conv's kernels."""
    import graphtorch
    import graphtorch.nn.functional as F
    from graphtorch.compiler import conv_lowering

    rng = np.random.default_rng(0)
    x = graphtorch.from_numpy(rng.standard_normal(x_shape).astype(np.float32)).requires_grad_()
    w = graphtorch.from_numpy(rng.standard_normal(w_shape).astype(np.float32)).requires_grad_()
    fn = graphtorch.compile(lambda a, b: F.conv2d(a, b, padding=padding).sum())
    found = {}
    forward, backward = _timed_calls(fn, (x, w), repeat, backward=True)
    for times in (forward, backward):
        for group, us in times:
            if group.pattern == "conv2d":
                out = tuple(group.anchor.type.shape)
                what = "forward" if times is forward else "input grad" if out == tuple(x_shape) else "weight grad"
                found[what] = (us, conv_lowering.choose(group.anchor).name)
    return found


def _gemm_gflops(repeat: int) -> float:
    import graphtorch

    n = GEMM_SIZE
    rng = np.random.default_rng(0)
    a, b = (graphtorch.from_numpy(rng.standard_normal((n, n)).astype(np.float32)) for _ in range(2))
    fn = graphtorch.compile(lambda p, q: p @ q)
    (times,) = _timed_calls(fn, (a, b), repeat, backward=False)
    us = sum(t for g, t in times if g.pattern == "matmul")
    return 2 * n**3 / us / 1e3


def main(repeat: int = 20) -> None:
    import graphtorch

    previous = os.environ.get("GRAPHTORCH_KERNEL_TIMES"), graphtorch.get_num_threads()
    os.environ["GRAPHTORCH_KERNEL_TIMES"] = "1"  # read when an executable is built
    try:
        for threads in sorted({1, previous[1]}):
            graphtorch.set_num_threads(threads)
            _section(repeat, threads)
    finally:
        graphtorch.set_num_threads(previous[1])
        if previous[0] is None:
            os.environ.pop("GRAPHTORCH_KERNEL_TIMES")
        else:
            os.environ["GRAPHTORCH_KERNEL_TIMES"] = previous[0]


def _section(repeat: int, threads: int) -> None:
    gemm = _gemm_gflops(repeat)
    print(f"{'gemm 512^3 f32 (reference)':24s} {threads} thread(s) {gemm:7.1f} GFLOP/s (kernel time)", flush=True)
    for name, x_shape, w_shape, padding in CONVS:
        n, _, h, w = x_shape
        o, cg, kh, kw = w_shape
        flops = 2 * n * o * cg * kh * kw * (h + 2 * padding - kh + 1) * (w + 2 * padding - kw + 1)
        for what, (us, lowering) in sorted(_conv_times(x_shape, w_shape, padding, repeat).items()):
            gflops = flops / us / 1e3
            print(f"{name:24s} {threads} thread(s) {what:11s} {us:8.1f} us {gflops:6.1f} GFLOP/s = "
                  f"{gflops / gemm:4.0%} of the gemm [{lowering}]", flush=True)
    pooling.section(repeat, threads)  # the pooling kernels' GB/s next to the convolutions


if __name__ == "__main__":
    main()
