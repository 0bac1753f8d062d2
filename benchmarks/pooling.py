"""Pooling kernels as memory traffic: each pooling primitive's compiled kernel time (kernel times,
thread 0's time in the kernel and at the barrier after it) and its GB/s, counting the bytes it must
read and write once (input and output; a max gradient also reads the input it rescans). Printed by
the conv section next to the convolutions, for LeNet b64's two max pools, the small ResNet's max
pool and its adaptive average pool, and torchvision ResNet's overlapping 3x3/2 max pool, forward
and gradient. Each pool's first line is the memory speed reference: an elementwise x * 1.5 over
the pool's input (reads and writes it once)."""

from __future__ import annotations

import numpy as np

# (name, input shape, the op as a function of (F, x))
POOLS = [
    ("lenet pool1 2x2 6x28x28", (64, 6, 28, 28), lambda F, x: F.max_pool2d(x, 2)),
    ("lenet pool2 2x2 16x10x10", (64, 16, 10, 10), lambda F, x: F.max_pool2d(x, 2)),
    ("resnet max pool 2x2", (32, 16, 16, 16), lambda F, x: F.max_pool2d(x, 2)),
    ("resnet adaptive avg 1x1", (32, 16, 8, 8), lambda F, x: F.adaptive_avg_pool2d(x, 1)),
    ("3x3/2 pad 1 64x32x32", (16, 64, 32, 32), lambda F, x: F.max_pool2d(x, 3, 2, 1)),  # overlapping windows
]
PRIMITIVES = ("max_pool", "avg_pool", "max_pool_grad", "avg_pool_grad")


def _bytes(node) -> int:
    reads = node.inputs if node.target != "avg_pool_grad" else node.inputs[:1]
    return sum(i.type.numel * i.type.dtype.itemsize for i in reads) + node.type.numel * node.type.dtype.itemsize


def section(repeat: int, threads: int) -> None:
    import graphtorch
    import graphtorch.nn.functional as F

    from .conv import _timed_calls

    for name, shape, op in POOLS:
        x = graphtorch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32)).requires_grad_()
        _copy_line(name, x.detach(), repeat, threads)
        fn = graphtorch.compile(lambda a, op=op: (op(F, a) * 1.5).sum())
        for times in _timed_calls(fn, (x,), repeat, backward=True):
            for group, us in times:
                node = group.outputs[0]
                if node.target in PRIMITIVES:
                    print(f"{name:24s} {threads} thread(s) {node.target:13s} {us:8.1f} us "
                          f"{_bytes(node) / us / 1e3:6.1f} GB/s", flush=True)


def _copy_line(name: str, x, repeat: int, threads: int) -> None:
    import graphtorch

    from .conv import _timed_calls

    (times,) = _timed_calls(graphtorch.compile(lambda a: a * 1.5), (x,), repeat, backward=False)
    us = sum(t for _, t in times)
    print(f"{name:24s} {threads} thread(s) {'copy (ref)':13s} {us:8.1f} us "
          f"{2 * x.numel() * x.element_size() / us / 1e3:6.1f} GB/s", flush=True)
