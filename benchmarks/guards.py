"""What a compiled call spends on its guards: the LeNet train step (b64, SGD), per call, the
signature (shapes, dtypes, requires_grad, modes, aliasing) plus the entry's guards (lifted
tensors, optimizer hyperparameters, module and global state), against the whole step's time;
and the same step with a graph break, run as compiled segments."""

from __future__ import annotations

import time

import numpy as np

from .inspection import _lenet_step


def guard_check_us(compiled, args: tuple, calls: int = 2000) -> float:
    """Median over 5 rounds of the per-call microseconds of the checks before the native call."""
    from graphtorch.compiled import flatten

    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            flat, _spec = flatten((args, {}))
            entry = compiled.entries[compiled.signature(flat)]
            assert entry.stale() is None
        rounds.append((time.perf_counter() - t0) / calls * 1e6)
    return float(np.median(rounds))


def main(repeat: int = 5) -> None:
    import graphtorch

    from .__main__ import median_ms

    rng = np.random.default_rng(0)
    x = graphtorch.from_numpy(rng.standard_normal((64, 1, 32, 32)).astype(np.float32))
    y = graphtorch.from_numpy(rng.integers(0, 10, 64).astype(np.int64))
    step = graphtorch.compile(_lenet_step(graphtorch))
    step_ms = median_ms(repeat * 3, step, x, y)
    us = guard_check_us(step, (x, y))
    print(f"{'lenet train b64 guard check':28s} {us:7.1f} us per call ({us / 10 / step_ms:.2f}% of a {step_ms:.2f} ms step)")
    broken = graphtorch.compile(_with_a_break(_lenet_step(graphtorch)))
    print(f"{'lenet train b64 graph break':28s} {median_ms(repeat * 3, broken, x, y):7.2f} ms per step as "
          f"{len(broken.segments)} compiled segments (one .item() branch), whole graph {step_ms:.2f} ms")


def _with_a_break(step):
    def broken(x, y):
        loss = step(x, y)
        if loss.item() > 1e9:  # a graph break: Python reads a value
            print("diverged")
        return loss
    return broken
