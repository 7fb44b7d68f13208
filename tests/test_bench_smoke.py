"""The benchmarks still run: each in its quickest mode, on the bundled sample (figures are not checked)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_bench_training_runs_on_the_bundled_sample():
    # It used to import a name lrcore.data no longer has (SAMPLE_TEST_SIZE) and crash at once.
    out = run_bench("bench/bench_training.py", "--dataset", "mnist-sample", "--epochs", "1", "--accuracy-epochs", "1")
    assert "tutorial pipeline:" in out and "ratio: lrcore is" in out and "accuracy run" in out


def test_bench_training_quick_compares_at_one_thread_and_the_default():
    out = run_bench("bench/bench_training.py", "--quick")
    assert "1 thread(s):" in out and "ratio: lrcore is" in out and "accuracy run" in out


def test_bench_sweep_quick_runs_every_size():
    out = run_bench("bench/bench_sweep.py", "--quick", "--sizes", "4,8")
    assert "mnist-sample" in out and "8 values:" in out and "with evaluation" in out
