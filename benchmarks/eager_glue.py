"""The eager glue of a compile(model) training loop, against PyTorch eager: the loss forward and
backward (cross-entropy on the 784-MLP's 128x10 logits, MSE on the sin-MLP's 100x1 output) and
zero_grad with the gradient accumulation into .grad that a backward pass ends with (the
sin-MLP's six parameters: per-tensor overhead rather than memory traffic).

Printed by `python3 -m benchmarks` (section "eager"); medians from this one process.
"""

from __future__ import annotations

import numpy as np

from . import loop_overhead, models


def _median_us(repeat: int, fn, *args) -> float:
    from .__main__ import median_ms

    return median_ms(repeat, fn, *args) * 1e3


def _loss_step(fw, loss_fn, logits, target):
    def step():
        logits.grad = None
        loss_fn(logits, target).backward()
    return step


def _glue_step(fw, params):
    """zero_grad (set_to_none=False, so .grad is zeroed in place) and a backward that adds one
    gradient into each parameter's .grad: the glue around a compiled forward and backward."""
    opt = fw.optim.SGD(params, lr=0.1)
    total = sum((p * 1.0).sum() for p in params)

    def step():
        opt.zero_grad(set_to_none=False)
        total.backward(retain_graph=True)
    return step


def main(repeat: int) -> None:
    frameworks = loop_overhead.frameworks()
    rng = np.random.default_rng(0)
    logits, classes = rng.standard_normal((128, 10)).astype(np.float32), rng.integers(0, 10, 128)
    out, target = rng.standard_normal((100, 1)).astype(np.float32), rng.standard_normal((100, 1)).astype(np.float32)
    rows = {"eager cross_entropy fwd+bwd": {}, "eager mse_loss fwd+bwd": {}, "eager zero_grad+accumulate": {}}
    for name, fw in frameworks.items():
        ce = _loss_step(fw, fw.nn.CrossEntropyLoss(), fw.tensor(logits, requires_grad=True), fw.from_numpy(classes))
        mse = _loss_step(fw, fw.nn.MSELoss(), fw.tensor(out, requires_grad=True), fw.from_numpy(target))
        fw.manual_seed(0)
        glue = _glue_step(fw, list(models.sin_mlp(fw).parameters()))
        for row, step in zip(rows, (ce, mse, glue)):
            rows[row][name] = _median_us(repeat * 20, step)
    for row, cells in rows.items():
        print(f"{row:28s} " + " | ".join(f"{n} {us:8.1f} us" for n, us in cells.items()), flush=True)
