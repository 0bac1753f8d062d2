"""The example programs run short and learn: each main() in a fresh interpreter, few epochs.

A subprocess per example keeps their seeds and globals apart, and pins OpenBLAS to one thread:
on this shared 2-core machine its thread pool makes small matmuls hundreds of times slower.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_main(name: str, **kwargs) -> tuple[dict, str]:
    code = (f"import json, sys; sys.path.insert(0, {str(EXAMPLES)!r}); import {name}; "
            f"print(json.dumps({name}.main(progress=False, **{kwargs!r})))")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    *printed, result = proc.stdout.strip().splitlines()
    return json.loads(result), "\n".join(printed)


def test_linear_regression_finds_the_line():
    result, printed = run_main("linear_regression", epochs=40)
    assert result["loss"] < result["first_loss"] / 10
    assert abs(result["weight"] - 5) < 0.6 and abs(result["bias"] - 7.5) < 0.3  # y = 5 + 5x + U(0, 5)
    assert "final loss" in printed


def test_logistic_regression_separates_setosa_from_versicolor():
    result, printed = run_main("logistic_regression", epochs=100)
    assert result["accuracy"] >= 0.99 and result["loss"] < result["first_loss"]
    assert "accuracy 99" in printed or "accuracy 100" in printed


def test_sin_regression_class_and_sequential_forms_learn_the_same():
    result, printed = run_main("sin_regression", epochs=100)
    for form in ("class", "sequential"):
        assert result[form]["loss"] < 0.85 * result[form]["first_loss"]  # a slow, steady descent at first
    assert result["class"] == pytest.approx(result["sequential"])  # same seed, same layers, same training
    assert "sequential form: first loss" in printed


def test_lenet_digits_learns_in_three_epochs():
    result, printed = run_main("lenet_digits", epochs=3)
    assert result["loss"] < 0.5 * result["first_loss"] and result["accuracy"] > 0.6  # 10 epochs reach ~97%
    assert result["accuracies"][-1] > result["accuracies"][0]
    assert printed.count("test accuracy") == 4


def test_char_gpt_compiled_matches_eager_and_learns():
    result, printed = run_main("char_gpt", steps=60, compare_steps=6)
    np = pytest.importorskip("numpy")
    np.testing.assert_allclose(result["compiled_losses"], result["eager_losses"], rtol=1e-4)
    assert result["loss"] < 0.75 * result["first_loss"]  # ~4.5 (uniform over 88 characters) -> below 3
    assert "speedup" in printed and len(result["sample"]) == 200


def test_lstm_example_beats_the_naive_forecast():
    result, printed = run_main("lstm_example", steps=150, hidden=16)
    assert result["loss"] < 0.2 * result["first_loss"]
    assert result["test_mse"] < result["naive_mse"]
    assert "speedup" in printed
