"""The main job: train LeNet on the 8x8 digits eagerly and compiled, compare, dump the graphs.

    python3 examples/main.py [--epochs 8] [--batch-size 64] [--dump-dir dumps]

Both runs start from the same weights and see the same batches. The compiled run compiles the
whole training step (forward, loss, backward, SGD update) into native code, and the evaluation
forward separately; every compiler stage of both is written under --dump-dir.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import graphtorch as torch
import graphtorch.nn as nn
import graphtorch.nn.functional as F
from graphtorch.datasets import load_digits

try:
    from tqdm import tqdm
except ImportError:  # tqdm is the `examples` extra; without it, no progress bar
    def tqdm(iterable, **_):
        return iterable


class LeNet(nn.Module):
    """The seed notes' LeNet: 32x32 inputs, two conv+pool stages, three linear layers."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def digits_32x32(seed: int = 0):
    """The digits upsampled 4x (nearest) to LeNet's 32x32, scaled to [0, 1], split 80/20."""
    images, labels = load_digits()
    x = images.numpy() / 16.0
    x = x.repeat(4, axis=1).repeat(4, axis=2)[:, None].astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    train, test = order[:cut], order[cut:]
    y = labels.numpy()
    return (torch.from_numpy(x[train]), torch.from_numpy(y[train])), (torch.from_numpy(x[test]), torch.from_numpy(y[test]))


def batches(x, y, batch_size: int, epoch: int):
    order = np.random.default_rng(epoch).permutation(len(x))
    n = len(x) // batch_size * batch_size  # equal batches: one compiled signature
    for i in range(0, n, batch_size):
        idx = torch.from_numpy(order[i:i + batch_size])
        yield x[idx], y[idx]


def accuracy(forward, x, y) -> float:
    with torch.no_grad():
        return (forward(x).argmax(1) == y).float().mean().item()


def train(mode: str, epochs: int, batch_size: int, data, dump_dir: str | None):
    (x_train, y_train), (x_test, y_test) = data
    torch.manual_seed(0)
    model = LeNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    if mode == "compiled":
        step = torch.compile(step, dump_dir=os.path.join(dump_dir, "train_step") if dump_dir else None)
        evaluate = torch.compile(model, dump_dir=os.path.join(dump_dir, "eval") if dump_dir else None)
    else:
        evaluate = model
    times, accs = [], []
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        total = 0.0
        for x, y in tqdm(batches(x_train, y_train, batch_size, epoch), desc=f"{mode:8s} epoch {epoch + 1}",
                         total=len(x_train) // batch_size, leave=False):
            total += step(x, y).item()
        times.append(time.perf_counter() - start)
        model.eval()
        accs.append(accuracy(evaluate, x_test, y_test))
        print(f"{mode:8s} epoch {epoch + 1}: {times[-1]:7.3f} s, loss {total / (len(x_train) // batch_size):.4f}, "
              f"test accuracy {accs[-1]:.2%}", flush=True)
    return times, accs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dump-dir", default="dumps")
    args = parser.parse_args(argv)
    data = digits_32x32()
    print(f"digits: {len(data[0][0])} training and {len(data[1][0])} test images, upsampled to 32x32")
    eager_times, eager_accs = train("eager", args.epochs, args.batch_size, data, None)
    compiled_times, compiled_accs = train("compiled", args.epochs, args.batch_size, data, args.dump_dir)
    # the first compiled epoch includes compiling; the steady state is the median of the rest
    eager_epoch = float(np.median(eager_times))
    compiled_epoch = float(np.median(compiled_times[1:] if len(compiled_times) > 1 else compiled_times))
    print()
    print(f"{'':10s}{'epoch time (median)':>22s}{'first epoch':>14s}{'final test accuracy':>22s}")
    print(f"{'eager':10s}{eager_epoch:20.3f} s{eager_times[0]:12.3f} s{eager_accs[-1]:21.2%}")
    print(f"{'compiled':10s}{compiled_epoch:20.3f} s{compiled_times[0]:12.3f} s{compiled_accs[-1]:21.2%}")
    print(f"speedup of the compiled training step: {eager_epoch / compiled_epoch:.1f}x")
    print(f"graph dumps (every stage, fused groups, LLVM IR): {os.path.abspath(args.dump_dir)}/train_step and /eval")


if __name__ == "__main__":
    main()
