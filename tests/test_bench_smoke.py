"""The benchmarks still run: each in its quickest mode, on the bundled sample (figures are not checked)."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_bench(*args: str, timeout: float = 300) -> str:
    return run_bench_logged(*args, timeout=timeout)[0]


def run_bench_logged(*args: str, timeout: float = 300) -> tuple[str, str]:
    """(stdout, stderr) of a benchmark that exited 0; its progress log (and any server traceback) is on stderr."""
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, result.stderr


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


def test_bench_sweep_split_quick_compares_one_worker_and_two():
    out = run_bench("bench/bench_sweep_split.py", "--quick")
    assert "one worker:" in out and "split over 2 workers (2 used)" in out and "speed-up" in out


@pytest.mark.browser  # a real `streamlit run` server and headless Chromium (the probe)
def test_bench_class_two_students_finish_their_runs_from_a_lesson_link():
    # the default students: websocket clients of Streamlit's protocol (bench/streamlit_client.py)
    out, progress = run_bench_logged("bench/bench_class.py", "--students", "2", "--probe-every", "1",
                                     "--start-spread", "1", timeout=600)
    assert "class mode (LRCORE_TEACHER_KEY set)" in out and "a lesson link built here" in out
    assert "students: N websocket clients (Streamlit's protocol, no rendering) + 1 Chromium probe" in out
    # the summary row: N=2, both runs done, no error (the timings are not checked)
    # (the progress log names the first server traceback, if any: CI once counted one it never showed)
    assert re.search(r"^\s+2\s+2/2\s+0\s", out, re.MULTILINE), out[-3000:] + "\n--- stderr:\n" + progress[-6000:]
    assert "load average" in out and "share the server's cores" in out
    # the store holds one run per student, each with that student's own identity and the lesson's id
    assert re.search(r"^N=2: store check: ok: 2 runs started during the class for 2 students who pressed Start, "
                     r"2 distinct owners \(each a student's own identity: 2 of 2\); lesson [0-9a-f]{12} on every run$",
                     out, re.MULTILINE), out[-3000:]


def test_bench_dashboard_quick_compares_the_cli_a_chromium_tab_and_a_websocket_tab():
    out = run_bench("bench/bench_dashboard.py", "--quick", "--repeats", "1", timeout=600)
    number = r"\s+[0-9.]+"
    rows = {}
    for row in ("cli", "dashboard", "dashboard, websocket tab", "dashboard, charts not drawn"):
        # epoch ms, ratio, paired, run s, ratio, paired, wall s, test accuracy, then the browser's CPU seconds
        found = re.search(rf"^{re.escape(row)}\s{{2,}}{number * 8}\s+(\S+)$", out, re.MULTILINE)
        assert found, out[-3000:]
        rows[row] = found.group(1)
    for row in ("dashboard, websocket tab", "dashboard, charts not drawn"):
        assert re.search(rf"^  {re.escape(row)}: (OK|TOO SLOW) \(worst median ratio [0-9.]+\)$", out, re.MULTILINE)
    # Chromium's CPU time is read for the Chromium tabs only, and a tab that draws its page uses some
    assert rows["cli"] == rows["dashboard, websocket tab"] == "–"
    assert float(rows["dashboard"]) > 0 and float(rows["dashboard, charts not drawn"]) > 0, rows


def test_bench_class_refuses_a_class_of_no_students():
    result = subprocess.run([sys.executable, "bench/bench_class.py", "--students", "0"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "each class size must be at least 1, got 0" in result.stderr


def test_bench_class_store_check_finds_missing_and_foreign_runs(tmp_path):
    # the check that proves the students were real sessions must be able to fail
    from bench.bench_class import Student, check_store
    from lrcore.config import TrainConfig
    from lrcore.store import Store
    from tests.store_helpers import edit_run, record_run

    store = Store(tmp_path)
    students = [Student(0, owner="a" * 16, pressed=True), Student(1, owner="b" * 16, pressed=True)]
    note, ok = check_store(str(tmp_path), students, since=0.0, class_mode=True, lesson_id="0123456789ab")
    assert not ok and note.startswith("MISMATCH: 0 runs for 2 presses; owners [] are not the students'"), note
    for owner, lesson in (("a" * 16, "0123456789ab"), ("c" * 16, "")):  # one student's, one someone else's
        edit_run(store, record_run(store, TrainConfig(epochs=1)), owner=owner, lesson=lesson)
    store.close()
    note, ok = check_store(str(tmp_path), students, since=0.0, class_mode=True, lesson_id="0123456789ab")
    assert not ok and "owners ['aaaaaaaaaaaaaaaa', 'cccccccccccccccc'] are not the students'" in note, note
    assert "lesson ids ['', '0123456789ab'], expected 0123456789ab" in note, note
    note, ok = check_store(str(tmp_path), students[:1], since=time.time() + 60, class_mode=True, lesson_id=None)
    assert not ok and note.startswith("MISMATCH: 0 runs for 1 presses"), note  # runs from before the class: not theirs
