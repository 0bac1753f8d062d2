"""The main job: train LeNet on the 8x8 digits eagerly and compiled, compare, dump the graphs.

    python3 examples/main.py [--epochs 16] [--batch-size 64] [--dump-dir dumps]

Both runs start from the same weights and see the same batches. The compiled run compiles the
whole training step (forward, loss, backward, SGD update) into native code, and the evaluation
forward separately; every compiler stage of both is written under --dump-dir.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from lenet_digits import Net as LeNet  # the seed notes' LeNet, and the digits upsampled to 32x32
from lenet_digits import digits_split

import graphtorch as torch
import graphtorch.nn as nn
from graphtorch.utils.data import DataLoader

try:
    from tqdm import tqdm
except ImportError:  # tqdm is the `examples` extra; without it, no progress bar
    def tqdm(iterable, **_):
        return iterable


def accuracy(forward, x, y) -> float:
    with torch.no_grad():
        return (forward(x).argmax(1) == y).float().mean().item()


def train(mode: str, epochs: int, batch_size: int, data, dump_dir: str | None):
    train_set, test_set = data
    torch.manual_seed(0)  # the same initial weights and the same shuffles in both runs
    model = LeNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    # equal batches (drop_last): every training call has one signature, so one compiled step
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True)
    x_test, y_test = next(iter(DataLoader(test_set, batch_size=len(test_set))))

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
        for x, y in tqdm(loader, desc=f"{mode:8s} epoch {epoch + 1}", leave=False):
            total += step(x, y).item()
        times.append(time.perf_counter() - start)
        model.eval()
        accs.append(accuracy(evaluate, x_test, y_test))
        print(f"{mode:8s} epoch {epoch + 1}: {times[-1]:7.3f} s, loss {total / len(loader):.4f}, "
              f"test accuracy {accs[-1]:.2%}", flush=True)
    return times, accs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dump-dir", default="dumps")
    args = parser.parse_args(argv)
    data = digits_split(seed=0)
    print(f"digits: {len(data[0])} training and {len(data[1])} test images, upsampled to 32x32")
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
