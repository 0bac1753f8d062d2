"""python3 -m benchmarks: graphtorch eager vs compiled vs PyTorch eager vs torch.compile.

Every figure is a median over repeated runs from this one process; the ratios compare figures
of the same run (the machines are shared and noisy). Options:
  --quick              fewer repeats
  --no-torch-compile   skip torch.compile (it takes 10+ s per model to compile)
  --only NAMES         comma list of sections (default: all of SECTIONS below)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import conv, models, torch_compiled


def median_ms(repeat: int, fn, *args, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn(*args)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def paired_ms(repeat: int, ours: tuple, theirs: tuple | None, rounds: int = 10) -> tuple[float, float | None]:
    """Medians of two calls, each `(fn, args)`, timed in alternating rounds: a slow phase of a shared
    machine (they last seconds here) then slows both alike instead of one. Each round starts after
    a 20 ms pause and an uncounted call: after a call PyTorch's OpenMP threads spin for ~10 ms of
    CPU (graphtorch's workers for ~1 ms), and a framework timed while the other's threads still
    spin loses a core it has when it runs alone."""
    calls = [ours] + ([theirs] if theirs is not None else [])
    times: list[list[float]] = [[] for _ in calls]
    per_round = max(3, -(-repeat // rounds)) + 1
    for fn, args in calls:
        fn(*args), fn(*args)
    for _ in range(rounds):
        for (fn, args), ts in zip(calls, times):
            time.sleep(0.02)
            for k in range(per_round):
                t0 = time.perf_counter()
                fn(*args)
                if k:
                    ts.append((time.perf_counter() - t0) * 1e3)
    medians = [statistics.median(ts) for ts in times]
    return medians[0], medians[1] if theirs is not None else None


def _fmt(ms: float | None) -> str:
    return "      n/a" if ms is None else f"{ms:9.3f}"


def report(name: str, gt_eager, gt_compiled, torch_eager, torch_compiled) -> None:
    ratios = []
    for label, other in (("vs gt-eager", gt_eager), ("vs torch", torch_eager), ("vs torch.compile", torch_compiled)):
        if other is not None and gt_compiled:
            ratios.append(f"{label} {other / gt_compiled:5.2f}x")
    print(f"{name:28s} gt-eager {_fmt(gt_eager)} ms | gt-compiled {_fmt(gt_compiled)} ms | torch {_fmt(torch_eager)} ms"
          f" | torch.compile {_fmt(torch_compiled)} ms | compiled speedup: {', '.join(ratios)}", flush=True)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _pair(builder, seed: int = 0):
    import graphtorch

    torch = _torch()
    graphtorch.manual_seed(seed)
    gt_model = builder(graphtorch)
    torch_model = None
    if torch is not None:
        torch_model = builder(torch)
        models.copy_weights(gt_model, torch_model)
    return gt_model, torch_model


# ---------------------------------------------------------------- inference


INFERENCE = [
    ("lenet inference b1", models.lenet, (1, 1, 32, 32)),
    ("lenet inference b64", models.lenet, (64, 1, 32, 32)),
    ("mlp784 inference b1", models.mlp784, (1, 784)),
    ("mlp784 inference b128", models.mlp784, (128, 784)),
]


def bench_inference(repeat: int, use_torch_compile: bool) -> None:
    import graphtorch

    torch = _torch()
    for name, builder, shape in INFERENCE:
        gt_model, torch_model = _pair(builder)
        gt_model.eval()
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        gx = graphtorch.from_numpy(x)
        compiled = graphtorch.compile(gt_model)
        with graphtorch.no_grad():
            gt_eager = median_ms(repeat, gt_model, gx)
        theirs = None
        if torch is not None:
            torch_model.eval()
            theirs = (_no_grad(torch, torch_model), (torch.from_numpy(x),))
        gt_comp, t_eager = paired_ms(repeat * 5, (_no_grad(graphtorch, compiled), (gx,)), theirs)
        t_comp = None
        if torch is not None:
            if use_torch_compile:
                t_comp = torch_compiled.measure("inference", name, repeat)
        report(name, gt_eager, gt_comp, t_eager, t_comp)


def _no_grad(framework, fn):
    def call(*args):
        with framework.no_grad():
            return fn(*args)
    return call


# ---------------------------------------------------------------- training steps


TRAINING = [
    ("sin-mlp train b100 Adam", models.sin_mlp, (100, 1), "mse", lambda fw, p: fw.optim.Adam(p, lr=0.01)),
    ("lenet train b64 SGD", models.lenet, (64, 1, 32, 32), "ce", lambda fw, p: fw.optim.SGD(p, lr=0.01, momentum=0.9)),
    ("mlp784 train b128 SGD", models.mlp784, (128, 784), "ce", lambda fw, p: fw.optim.SGD(p, lr=0.01, momentum=0.9)),
    ("resnet train b32 SGD", conv.resnet, (32, 3, 16, 16), "ce", lambda fw, p: fw.optim.SGD(p, lr=0.01, momentum=0.9)),
]


def _data(shape, loss: str, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    y = np.sin(x) if loss == "mse" else rng.integers(0, 10, shape[0]).astype(np.int64)
    return x, y


def bench_training(repeat: int, use_torch_compile: bool) -> None:
    import graphtorch

    torch = _torch()
    for name, builder, shape, loss, make_opt in TRAINING:
        x, y = _data(shape, loss, np.random.default_rng(0))
        results = {}
        for mode in ("eager", "compiled", "step"):
            model, _ = _pair(builder)
            opt = make_opt(graphtorch, model.parameters())
            loss_fn = graphtorch.nn.MSELoss() if loss == "mse" else graphtorch.nn.CrossEntropyLoss()
            forward = graphtorch.compile(model) if mode == "compiled" else model
            step = models.train_step(opt, loss_fn, forward)
            if mode == "step":
                step = graphtorch.compile(step)
            gx, gy = graphtorch.from_numpy(x), graphtorch.from_numpy(y)
            if mode == "step":
                break
            results[mode] = median_ms(repeat if mode == "eager" else repeat * 3, step, gx, gy)
        theirs = t_comp = None
        if torch is not None:
            _, model = _pair(builder)
            loss_fn = torch.nn.MSELoss() if loss == "mse" else torch.nn.CrossEntropyLoss()
            theirs = (models.train_step(make_opt(torch, model.parameters()), loss_fn, model),
                      (torch.from_numpy(x), torch.from_numpy(y)))
        results["step"], t_eager = paired_ms(repeat * 3, (step, (gx, gy)), theirs)
        if torch is not None:
            if use_torch_compile:
                t_comp = torch_compiled.measure("training", name, repeat)
        report(name + " (model)", results["eager"], results["compiled"], t_eager, t_comp)
        report(name + " (whole step)", results["eager"], results["step"], t_eager, t_comp)


# ---------------------------------------------------------------- compile times


_COMPILE_SNIPPET = """
import time, numpy as np, graphtorch
import graphtorch.compiler.fusion, graphtorch.compiler.llvm  # module imports are not compile time
from benchmarks import models
model = models.lenet(graphtorch).eval()
x = graphtorch.from_numpy(np.zeros((64, 1, 32, 32), np.float32))
compiled = graphtorch.compile(model)
t0 = time.perf_counter()
with graphtorch.no_grad():
    compiled(x)
inference = time.perf_counter() - t0
opt = graphtorch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
loss_fn = graphtorch.nn.CrossEntropyLoss()
def step(x, y):
    opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); opt.step(); return loss
cstep = graphtorch.compile(step)
y = graphtorch.from_numpy(np.zeros(64, np.int64))
model.train()
cstep(x, y)  # a compiled function's first call runs eagerly (warm-up); the second traces and compiles
t0 = time.perf_counter()
cstep(x, y)
print(inference, time.perf_counter() - t0)
"""


def bench_compile() -> None:
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as cache:
        env["GRAPHTORCH_CACHE_DIR"] = cache
        runs = []
        for _ in range(2):  # a cold cache, then the disk cache from the first process
            out = subprocess.run([sys.executable, "-c", _COMPILE_SNIPPET], env=env, capture_output=True, text=True,
                                 check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            runs.append([float(v) for v in out.stdout.split()])
    (cold_inf, cold_train), (warm_inf, warm_train) = runs
    print(f"{'lenet inference compile':28s} cold {cold_inf:7.3f} s | from disk cache {warm_inf:7.3f} s")
    print(f"{'lenet train-step compile':28s} cold {cold_train:7.3f} s | from disk cache {warm_train:7.3f} s")
    if _torch() is not None:
        with tempfile.TemporaryDirectory() as cache:  # a fresh inductor cache: really cold
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "TORCHINDUCTOR_FX_GRAPH_CACHE": "0"}
            out = subprocess.run([sys.executable, "-c", _TORCH_COMPILE_SNIPPET], env=env, capture_output=True,
                                 text=True, check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        print(f"{'torch.compile lenet inference':28s} cold {float(out.stdout.split()[-1]):7.3f} s")


_TORCH_COMPILE_SNIPPET = """
import time, torch
from benchmarks import models
model = models.lenet(torch).eval()
compiled = torch.compile(model)
t0 = time.perf_counter()
with torch.no_grad():
    compiled(torch.zeros(64, 1, 32, 32))
print(time.perf_counter() - t0)
"""


def bench_gemm(repeat: int) -> None:
    from . import gemm, small_gemm

    gemm.main(repeat=repeat)
    small_gemm.main(repeat)


SECTIONS = ("inference", "training", "overhead", "eager", "gemm", "conv", "compile", "inspection", "transformer",
            "attention", "distributed", "cuda-emulation", "gpt-kernels")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-torch-compile", action="store_true")
    parser.add_argument("--only", default=",".join(SECTIONS))
    args = parser.parse_args(argv)
    repeat = 5 if args.quick else 20
    sections = args.only.split(",")
    import graphtorch

    print(f"graphtorch {graphtorch.__version__}, numpy {np.__version__}, {os.cpu_count()} cores, "
          f"threads {graphtorch.get_num_threads()}; torch {getattr(_torch(), '__version__', 'absent')}", flush=True)
    if "inference" in sections:
        bench_inference(repeat, not args.no_torch_compile)
    if "training" in sections:
        bench_training(repeat, not args.no_torch_compile)
        from . import guards  # the per-call guard cost of the LeNet step

        guards.main(repeat)
    if "overhead" in sections:
        from . import loop_overhead

        loop_overhead.main(repeat)
    if "eager" in sections:  # the loss and the glue of a compile(model) loop (benchmarks/eager_glue.py)
        from . import eager_glue

        eager_glue.main(repeat)
    if "gemm" in sections:
        bench_gemm(repeat)
    if "conv" in sections:
        conv.main(repeat)
    if "compile" in sections:
        bench_compile()
        from . import compile_time  # each stage of the LeNet and GPT steps' cold and cached compiles

        compile_time.main()
    if "inspection" in sections:  # the HTML report and the float64 search (benchmarks/inspection.py)
        from . import inspection

        inspection.main(repeat)
    if "transformer" in sections:  # tiny GPT and LSTM whole steps, the GPT's cold compile
        from . import transformer

        transformer.main(repeat)
    if "gpt-kernels" in sections:  # the GPT step's kernel times by pattern (benchmarks/gpt_kernels.py)
        from . import gpt_kernels

        gpt_kernels.main()
    if "attention" in sections:  # fused attention forward + backward (benchmarks/attention.py)
        from . import attention

        attention.main(repeat)
    if "distributed" in sections:  # under mpiexec (benchmarks/distributed.py); skipped without mpi4py
        from . import distributed

        distributed.main(args.quick)
    if "cuda-emulation" in sections:  # g++ and the CPU emulation of CUDA kernels (benchmarks/cuda_emulation.py)
        from . import cuda_emulation

        cuda_emulation.main(repeat=3 if args.quick else 5)


if __name__ == "__main__":
    main()
