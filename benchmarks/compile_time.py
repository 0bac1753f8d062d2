"""Where a training step's compile time goes, per stage: the LeNet and tiny GPT steps compiled in a
fresh process with an empty cache (nothing compiled before them), then again from the disk cache.

    lenet step compile (cold)    total 0.72 s = trace 15 | optimize 40 | fuse 8 | plan+IR 60 | LLVM 540 | other 57 ms

`plan+IR` is the memory plan and building the LLVM modules in Python; `LLVM` is printing,
optimizing and generating code for them (in parallel lanes) and loading the objects; `other` is
the rest of the first call (the partition, guards, running the step once).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

_SNIPPET = """
import json, time, numpy as np, graphtorch
import graphtorch.compiler.fusion, graphtorch.compiler.llvm  # module imports are not compile time
from benchmarks import models, transformer as tr
which = {which!r}
if which == "lenet":
    model = models.lenet(graphtorch)
    opt = graphtorch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = graphtorch.nn.CrossEntropyLoss()
    def step(x, y):
        opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); opt.step(); return loss
    x = graphtorch.from_numpy(np.zeros((64, 1, 32, 32), np.float32))
    y = graphtorch.from_numpy(np.zeros(64, np.int64))
else:
    x, y = (graphtorch.from_numpy(a) for a in tr._data("GPT"))
    step = tr._steps(graphtorch, "GPT", *tr.WORKLOADS[0][1:])
cstep = graphtorch.compile(step)
cstep(x, y)  # a compiled function's first call runs eagerly (warm-up); the second traces and compiles
t0 = time.perf_counter()
cstep(x, y)
total = time.perf_counter() - t0
(entry,) = cstep.entries.values()
stages = {{"trace": entry.trace_seconds * 1e3, **entry.forward.artifacts.times_ms,
          **entry.forward.executable.build_ms}}
print(json.dumps({{"total": total, "stages": stages}}))
"""

_ORDER = (("trace", "trace"), ("optimized", "optimize"), ("fused", "fuse"), ("plan and LLVM IR", "plan+IR"),
          ("LLVM", "LLVM"), ("from disk cache", "load"))


def _run(which: str, cache: str) -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "GRAPHTORCH_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, "-c", _SNIPPET.format(which=which)], env=env, capture_output=True,
                         text=True, check=True, cwd=root)
    return json.loads(out.stdout.splitlines()[-1])


def _line(label: str, result: dict) -> str:
    stages = result["stages"]
    parts = [f"{short} {stages[key]:.0f}" for key, short in _ORDER if key in stages]
    other = result["total"] * 1e3 - sum(stages[key] for key, _ in _ORDER if key in stages and key != "trace")
    other -= stages.get("trace", 0.0)
    return f"{label:28s} total {result['total']:6.3f} s = {' | '.join(parts)} | other {other:.0f} ms"


def main() -> None:
    for which in ("lenet", "gpt"):
        with tempfile.TemporaryDirectory() as cache:
            print(_line(f"{which} step compile (cold)", _run(which, cache)), flush=True)
            print(_line(f"{which} step compile (cached)", _run(which, cache)), flush=True)


if __name__ == "__main__":
    main()
