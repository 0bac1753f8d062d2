"""torch.compile's time for one inference or training row, measured in a child process.

After a compiled call, inductor's OpenMP threads keep spinning for the next parallel region, so
every figure timed later in the same process (graphtorch's included) shares its cores with them.
`python -m benchmarks.torch_compiled inference|training NAME REPEAT` prints the median ms.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np


def measure(section: str, name: str, repeat: int) -> float | None:
    """The child's median, or None (printed as n/a) if torch.compile failed there."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.torch_compiled", section, name, str(repeat)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no message"])[-1]
        print(f"torch.compile {name}: failed ({last})", file=sys.stderr)
        return None
    return float(out.stdout.split()[-1])


def _inference_ms(name: str, repeat: int) -> float:
    import torch

    from .__main__ import INFERENCE, _pair, median_ms

    builder, shape = next((b, s) for n, b, s in INFERENCE if n == name)
    _, model = _pair(builder)
    model.eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    with torch.no_grad():
        return median_ms(repeat * 5, torch.compile(model), x)


def _training_ms(name: str, repeat: int) -> float:
    import torch

    from . import models
    from .__main__ import TRAINING, _data, _pair, median_ms

    builder, shape, loss, make_opt = next(row[1:] for row in TRAINING if row[0] == name)
    x, y = _data(shape, loss, np.random.default_rng(0))
    _, model = _pair(builder)
    loss_fn = torch.nn.MSELoss() if loss == "mse" else torch.nn.CrossEntropyLoss()
    step = models.train_step(make_opt(torch, model.parameters()), loss_fn, torch.compile(model))
    return median_ms(repeat * 3, step, torch.from_numpy(x), torch.from_numpy(y))


if __name__ == "__main__":
    section, row, times = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print((_inference_ms if section == "inference" else _training_ms)(row, times))
