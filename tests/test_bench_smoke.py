"""The benchmarks still run: each in its quickest mode, on the bundled sample (figures are not checked)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_bench(*args: str, timeout: float = 300) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
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


@pytest.mark.browser  # a real `streamlit run` server and headless Chromium
def test_bench_class_two_students_finish_their_runs_from_a_lesson_link():
    out = run_bench("bench/bench_class.py", "--students", "2", "--probe-every", "1", "--start-spread", "1",
                    timeout=600)
    assert "class mode (LRCORE_TEACHER_KEY set)" in out and "a lesson link built here" in out
    # the summary row: N=2, both runs done, no error (the timings are not checked)
    assert re.search(r"^\s+2\s+2/2\s+0\s", out, re.MULTILINE), out[-3000:]
    assert "load average" in out and "share the server's cores" in out


def test_bench_class_refuses_a_class_of_no_students():
    result = subprocess.run([sys.executable, "bench/bench_class.py", "--students", "0"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "each class size must be at least 1, got 0" in result.stderr
