"""An LSTM forecasts sine waves: given 32 noisy samples of a wave with a random frequency and phase,
predict the next sample. A 2-layer nn.LSTM (batch_first) reads the window, a Linear maps its last
output to the prediction; Adam, MSE. The whole training step is compiled (graphtorch.compile: the
time loop unrolls into one graph); a few steps also run eagerly from the same seed to print the
speedup. The test error is compared with the naive forecast "the next sample equals the last one".
Run: OPENBLAS_NUM_THREADS=1 python examples/lstm_example.py [--steps 1000 --hidden 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _progress import epochs as step_bar

import graphtorch as torch
import graphtorch.nn as nn
import graphtorch.optim as optim


class Forecaster(nn.Module):
    def __init__(self, hidden: int, layers: int):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def waves(n: int, length: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """n windows of length + 1 samples; the inputs (n, length, 1) and the next sample (n, 1)."""
    freq = rng.uniform(0.1, 0.4, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    signal = np.sin(freq * np.arange(length + 1) + phase) + 0.02 * rng.standard_normal((n, length + 1))
    signal = signal.astype(np.float32)
    return signal[:, :length, None].copy(), signal[:, length:].copy()


def build(hidden: int, layers: int, lr: float, seed: int):
    torch.manual_seed(seed)
    model = Forecaster(hidden, layers)
    optimizer = optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.MSELoss()

    def step(x, y):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss
    return model, step


def ms_per_step(step, x, y, n: int) -> float:
    for _ in range(2):  # warm-up; a compiled step compiles here
        step(x, y)
    start = time.perf_counter()
    for _ in range(n):
        step(x, y)
    return (time.perf_counter() - start) * 1e3 / n


def main(steps: int = 300, hidden: int = 32, layers: int = 2, length: int = 32, batch: int = 32, lr: float = 0.01,
         seed: int = 0, progress: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    x0, y0 = (torch.from_numpy(a) for a in waves(batch, length, rng))
    eager_ms = ms_per_step(build(hidden, layers, lr, seed)[1], x0, y0, 3)
    model, step = build(hidden, layers, lr, seed)
    step = torch.compile(step)
    compiled_ms = ms_per_step(step, x0, y0, 3)
    print(f"eager {eager_ms:.1f} ms/step, compiled {compiled_ms:.1f} ms/step: speedup {eager_ms / compiled_ms:.1f}x")
    losses = []
    bar = step_bar(steps, "lstm", progress)
    for i in bar:
        losses.append(step(*(torch.from_numpy(a) for a in waves(batch, length, rng))).item())
        if (i + 1) % 100 == 0:
            print(f"step {i + 1}: train loss {np.mean(losses[-20:]):.5f}")
    x, y = waves(512, length, rng)
    model.eval()
    with torch.no_grad():
        test_mse = float(((model(torch.from_numpy(x)).numpy() - y) ** 2).mean())
    naive_mse = float(((x[:, -1] - y) ** 2).mean())
    print(f"test MSE {test_mse:.5f}; the naive forecast (repeat the last sample) {naive_mse:.5f}")
    return {"first_loss": losses[0], "loss": float(np.mean(losses[-20:])), "test_mse": test_mse,
            "naive_mse": naive_mse, "eager_ms": eager_ms, "compiled_ms": compiled_ms}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("steps", 300), ("hidden", 32), ("layers", 2), ("length", 32), ("batch", 32)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--lr", type=float, default=0.01)
    main(**vars(parser.parse_args()))
