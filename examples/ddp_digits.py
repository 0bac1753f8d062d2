"""LeNet on the digits, data-parallel over MPI ranks: lenet_digits.py with DistributedDataParallel.

Each rank trains on its share of every epoch (DistributedSampler), with a batch of 32 / ranks, so
the ranks together take the same steps as lenet_digits.py's batch of 32; DDP averages the
gradients, so all replicas stay equal. --compile compiles the whole train step (forward,
backward, gradient all-reduce, optimizer) into one native call per batch.
Run: OPENBLAS_NUM_THREADS=1 mpiexec -n 2 python examples/ddp_digits.py [--epochs 10] [--compile]
(add --allow-run-as-root as root, and --oversubscribe with more ranks than cores)
"""

from __future__ import annotations

import argparse

from lenet_digits import Net, digits_split
from lenet_digits import test as evaluate

import graphtorch as torch
import graphtorch.distributed as dist
import graphtorch.nn.functional as F
import graphtorch.optim as optim
from graphtorch.nn.parallel import DistributedDataParallel as DDP
from graphtorch.utils.data import DataLoader, DistributedSampler

GLOBAL_BATCH = 32


def train_epoch(step, loader) -> float:
    """One epoch; returns the mean loss over every rank's images."""
    total = torch.zeros(2, dtype=torch.float64)
    for images, labels in loader:
        loss = step(images, labels)
        total += torch.tensor([loss.item() * len(labels), len(labels)], dtype=torch.float64)
    dist.all_reduce(total)
    return (total[0] / total[1]).item()


def main(epochs: int = 10, seed: int = 0, compiled: bool = False) -> dict:
    dist.init_process_group(backend="mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(seed)
    train_set, test_set = digits_split(seed)
    sampler = DistributedSampler(train_set, seed=seed)
    loader = DataLoader(train_set, batch_size=max(GLOBAL_BATCH // world, 1), sampler=sampler)
    model = DDP(Net())
    optimizer = optim.SGD(model.parameters(), lr=0.02, momentum=0.9)

    def step(images, labels):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    run = torch.compile(step) if compiled else step
    accuracy = 0.0
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        loss = train_epoch(run, loader)
        accuracy = evaluate(model.module, DataLoader(test_set, batch_size=256))
        if rank == 0:
            print(f"epoch {epoch + 1}: train loss {loss:.4f}, test accuracy {accuracy:.2%} ({world} ranks)", flush=True)
    dist.destroy_process_group()
    return {"loss": loss, "accuracy": accuracy}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="compile the whole train step")
    args = parser.parse_args()
    main(args.epochs, args.seed, args.compile)
