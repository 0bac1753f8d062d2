"""The README's main job runs: both trainings, the comparison, and the dumps."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_main_job_trains_eagerly_and_compiled_and_writes_dumps(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "main.py"), "--epochs", "1",
                          "--dump-dir", str(tmp_path)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "GRAPHTORCH_CACHE_DIR": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    eager = [line for line in lines if line.startswith("eager    epoch 1:")]
    compiled = [line for line in lines if line.startswith("compiled epoch 1:")]
    assert eager and compiled
    # the same weights, batches and arithmetic: the same loss to the printed digits
    assert eager[0].split("loss")[1] == compiled[0].split("loss")[1]
    assert any(line.startswith("speedup of the compiled training step:") for line in lines)
    dumps = set(os.listdir(tmp_path / "train_step"))
    assert {"traced.txt", "optimized.txt", "fused.txt", "fusion.txt", "forward.ll"} <= dumps
