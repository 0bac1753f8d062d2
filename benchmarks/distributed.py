"""Data parallelism over MPI: python3 -m benchmarks --only distributed (or python3 -m benchmarks.distributed).

- lenet epoch: one epoch of the digits LeNet (1437 images, global batch 32, the whole step
  compiled), 1 rank with 2 threads vs 2 ranks with 1 thread each (DDP, batch 16 per rank).
- all-reduce bandwidth: graphtorch.distributed.all_reduce on a float32 tensor vs mpi4py's
  Allreduce(IN_PLACE) on the same buffer, 2 ranks; bandwidth is bytes reduced per second.
Each figure is a median over repeats in one mpiexec job; the machine is shared, so compare the
figures of one run with each other, not with another run's.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH = 32
SIZES = [1 << 10, 1 << 14, 1 << 18, 1 << 22]  # float32 elements: 4 KiB .. 16 MiB


def mpiexec() -> str | None:
    return shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))


def launch(ranks: int, threads: int, what: str, quick: bool) -> str:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_MCA_btl_tcp_if_include="lo")
    cmd = [mpiexec(), "--allow-run-as-root", "--oversubscribe", "-n", str(ranks), sys.executable, "-m",
           "benchmarks.distributed", "--worker", what, str(threads), "1" if quick else "0"]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


# ---------------------------------------------------------------- on every rank


def digits_epoch(threads: int, quick: bool) -> None:
    import graphtorch
    import graphtorch.distributed as dist
    from graphtorch.datasets import load_digits
    from graphtorch.nn.parallel import DistributedDataParallel as DDP
    from graphtorch.utils.data import DataLoader, DistributedSampler, TensorDataset

    from . import models

    graphtorch.set_num_threads(threads)
    world = dist.get_world_size()
    images, labels = load_digits()
    x = np.kron(images.numpy()[:1437] / 16, np.ones((4, 4), np.float32))[:, None].astype(np.float32)
    data = TensorDataset(graphtorch.from_numpy(x), labels[:1437])
    sampler = DistributedSampler(data, shuffle=False)
    loader = DataLoader(data, batch_size=GLOBAL_BATCH // world, sampler=sampler, drop_last=True)
    graphtorch.manual_seed(0)
    model = DDP(models.lenet(graphtorch)) if world > 1 else models.lenet(graphtorch)
    opt = graphtorch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    compiled = graphtorch.compile(models.train_step(opt, graphtorch.nn.CrossEntropyLoss(), model))
    batches = list(loader)
    for xb, yb in batches[:2]:  # the first call runs eagerly, the second compiles
        compiled(xb, yb)
    seconds = []
    for _ in range(2 if quick else 5):
        dist.barrier()
        t0 = time.perf_counter()
        for xb, yb in batches:
            compiled(xb, yb)
        seconds.append(_slowest(time.perf_counter() - t0))
    if dist.get_rank() == 0:
        print(f"{statistics.median(seconds) * 1e3:.1f} {len(batches)}")


def _slowest(seconds: float) -> float:
    from mpi4py import MPI

    return MPI.COMM_WORLD.allreduce(seconds, op=MPI.MAX)


def bandwidth(quick: bool) -> None:
    from mpi4py import MPI

    import graphtorch
    import graphtorch.distributed as dist

    comm = MPI.COMM_WORLD
    for n in SIZES:
        t = graphtorch.ones(n)
        buf = t.numpy()  # the same memory: both reduce the same buffer
        repeat = max(10, min(200, (1 << 24) // n)) // (2 if quick else 1)
        ours, raw = _medians_s(repeat, [lambda t=t: dist.all_reduce(t), lambda b=buf: comm.Allreduce(MPI.IN_PLACE, b)],
                               comm)
        if comm.Get_rank() == 0:
            print(f"{n * 4} {ours} {raw}")


def _medians_s(repeat: int, fns: list, comm) -> list[float]:
    """Median seconds of each fn, their runs interleaved so that a noisy neighbour hits all alike."""
    times = [[] for _ in fns]
    for k in range(repeat + 1):
        for fn, samples in zip(fns, times):
            comm.Barrier()
            t0 = time.perf_counter()
            fn()
            if k:  # the first round warms up
                samples.append(time.perf_counter() - t0)
    return [statistics.median(s) for s in times]


def worker(what: str, threads: int, quick: bool) -> None:
    import graphtorch.distributed as dist

    dist.init_process_group("mpi")
    digits_epoch(threads, quick) if what == "epoch" else bandwidth(quick)
    dist.destroy_process_group()


# ---------------------------------------------------------------- the report


def main(quick: bool = False) -> None:
    if mpiexec() is None or not _has_mpi4py():
        print("distributed: skipped (needs mpi4py and mpiexec: pip install 'graphtorch[distributed]')")
        return
    epoch = {}
    for ranks, threads in ((1, 2), (2, 1)):
        ms, steps = launch(ranks, threads, "epoch", quick).split()
        epoch[ranks] = float(ms)
        setup = f"{ranks} rank{'s' * (ranks > 1)} x {threads} thread{'s' * (threads > 1)}"
        print(f"{'lenet epoch (digits, b32)':28s} {setup:20s} {float(ms):9.1f} ms "
              f"({steps} steps/rank)", flush=True)
    print(f"{'lenet epoch scaling':28s} 2 ranks x 1 thread vs 1 rank x 2 threads: {epoch[1] / epoch[2]:5.2f}x")
    for line in launch(2, 1, "bandwidth", quick).splitlines():
        nbytes, ours, raw = int(line.split()[0]), *map(float, line.split()[1:])
        print(f"{'all_reduce ' + _size(nbytes) + ' 2 ranks':28s} graphtorch {nbytes / ours / 1e9:7.3f} GB/s "
              f"({ours * 1e6:8.1f} us) | mpi4py Allreduce {nbytes / raw / 1e9:7.3f} GB/s ({raw * 1e6:8.1f} us) "
              f"| overhead {100 * (ours / raw - 1):+5.1f}%", flush=True)


def _has_mpi4py() -> bool:
    import importlib.util

    return importlib.util.find_spec("mpi4py") is not None


def _size(nbytes: int) -> str:
    return f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KiB"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1")
    else:
        main(quick="--quick" in sys.argv)
