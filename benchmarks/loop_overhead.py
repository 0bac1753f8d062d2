"""The costs around a training loop's math: eager dispatch per op, optimizer.step() natively or
op by op, and a whole step compiled under an lr scheduler (recompiles counted).

Printed by `python3 -m benchmarks` (section "overhead"); medians from this one process.
"""

from __future__ import annotations

import numpy as np

from . import models

_CHAIN = 100  # small adds per chain: ops/s = _CHAIN / the chain's time


def _median_ms(repeat: int, fn, *args) -> float:
    from .__main__ import median_ms

    return median_ms(repeat, fn, *args)


def _add_chain(x):
    for _ in range(_CHAIN):
        x = x + 1.0
    return x


def _linear_fwd_bwd(layer, x):
    layer.weight.grad = None
    layer(x).sum().backward()


def bench_dispatch(repeat: int, frameworks: dict) -> None:
    """Per-op overhead on tiny tensors: a chain of adds, and a Linear(16, 16) forward + backward."""
    rates, linear = {}, {}
    for name, fw in frameworks.items():
        x = fw.from_numpy(np.ones((4, 4), np.float32))
        with fw.no_grad():
            rates[name] = _CHAIN / _median_ms(repeat * 3, _add_chain, x) * 1e3
        fw.manual_seed(0)
        layer, xi = fw.nn.Linear(16, 16), fw.from_numpy(np.ones((8, 16), np.float32))
        linear[name] = _median_ms(repeat * 10, _linear_fwd_bwd, layer, xi) * 1e3
    print(f"{'eager add chain 4x4':28s} " + " | ".join(f"{n} {r / 1e3:8.1f} k ops/s" for n, r in rates.items()))
    print(f"{'eager Linear16 fwd+bwd b8':28s} " + " | ".join(f"{n} {us:8.1f} us" for n, us in linear.items()))


def bench_optimizer_step(repeat: int, frameworks: dict) -> None:
    """optimizer.step() alone: graphtorch's native multi-tensor step and its numpy loop, torch's."""
    for label, builder in (("sin-mlp", models.sin_mlp), ("mlp784", models.mlp784)):
        cells = []
        for name, fw in frameworks.items():
            for foreach in ((None, False) if name == "gt" else (None,)):
                fw.manual_seed(0)
                model = builder(fw)
                opt = fw.optim.Adam(model.parameters(), lr=1e-3, foreach=foreach)
                for p in model.parameters():
                    p.grad = fw.ones(tuple(p.shape)) * 1e-3
                tag = name if name != "gt" else ("gt-native" if foreach is None else "gt-numpy")
                cells.append(f"{tag} {_median_ms(repeat * 3, opt.step):8.3f} ms")
        print(f"{'Adam step ' + label:28s} " + " | ".join(cells))


def bench_scheduler(repeat: int, frameworks: dict, steps: int = 30) -> None:
    """sin-MLP whole step compiled, Adam with CosineAnnealingLR stepping every iteration."""
    import graphtorch as gt

    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 1)).astype(np.float32)
    y = np.sin(x)
    cells, recompiles = [], None
    for name, fw in frameworks.items():
        fw.manual_seed(0)
        model = models.sin_mlp(fw)
        opt = fw.optim.Adam(model.parameters(), lr=0.01)
        sched = fw.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
        loss_fn = fw.nn.MSELoss()

        def step(x, y, opt=opt, model=model, loss_fn=loss_fn, sched=sched):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            return loss

        run = gt.compile(step) if fw is gt else step
        fx, fy = fw.from_numpy(x), fw.from_numpy(y)
        entries = []
        for _ in range(steps):
            run(fx, fy)
            sched.step()
            if fw is gt:  # a recompile builds a new entry (a retrace replaces the old one in place)
                entries += [e for e in run.entries.values() if not any(e is seen for seen in entries)]
        if fw is gt:
            recompiles = len(entries) - 1

        def scheduled(run=run, sched=sched, fx=fx, fy=fy):
            run(fx, fy)
            sched.step()

        cells.append(f"{'gt-compiled' if fw is gt else name} {_median_ms(repeat * 3, scheduled):8.3f} ms")
    print(f"{'sin-mlp step + cosine lr':28s} " + " | ".join(cells) + f" | recompiles in {steps} steps: {recompiles}")


def frameworks() -> dict:
    """{"gt": graphtorch, "torch": torch} (torch where it is installed)."""
    import graphtorch

    found = {"gt": graphtorch}
    try:
        import torch

        found["torch"] = torch
    except ImportError:
        pass
    return found


def main(repeat: int) -> None:
    found = frameworks()
    bench_dispatch(repeat, found)
    bench_optimizer_step(repeat, found)
    bench_scheduler(repeat, found)
