"""The inspection tools on the LeNet train step (b64, SGD): how big the HTML report is, how long
writing it takes, and what a float64 search and a checked call cost (python3 -m benchmarks --only inspection)."""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from . import models


def _lenet_step(graphtorch):
    model = models.lenet(graphtorch)
    opt = graphtorch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = graphtorch.nn.CrossEntropyLoss()
    return models.train_step(opt, loss_fn, model)


def _seconds(fn, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def main(repeat: int = 5) -> None:
    import graphtorch
    from graphtorch.reporting import write_report

    rng = np.random.default_rng(0)
    x = graphtorch.from_numpy(rng.standard_normal((64, 1, 32, 32)).astype(np.float32))
    y = graphtorch.from_numpy(rng.integers(0, 10, 64).astype(np.int64))
    step = graphtorch.compile(_lenet_step(graphtorch))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "lenet-step.html")
        first = _seconds(graphtorch.report, step, x, y, path=path)  # compiles (timers on) and runs 3 steps
        write = min(_seconds(write_report, step, path) for _ in range(repeat))
        size = os.path.getsize(path)
    print(f"{'report lenet train b64':28s} {size / 1e3:8.0f} kB | write {write * 1e3:7.1f} ms | "
          f"compile + 3 timed steps + write {first:6.2f} s", flush=True)
    search = _seconds(graphtorch.debug.find_divergence, _lenet_step(graphtorch), x, y)
    checked = graphtorch.compile(_lenet_step(graphtorch), check="float64")
    checked(x, y), checked(x, y)  # eager first call, then compile (and check)
    per_call = min(_seconds(checked, x, y) for _ in range(repeat))
    plain = graphtorch.compile(_lenet_step(graphtorch))
    plain(x, y), plain(x, y)
    base = min(_seconds(plain, x, y) for _ in range(repeat))
    print(f"{'float64 search lenet b64':28s} find_divergence {search:6.2f} s | check=float64 call "
          f"{per_call * 1e3:7.1f} ms vs {base * 1e3:6.1f} ms unchecked", flush=True)
