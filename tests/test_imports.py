"""Importing lrcore from many threads at once, as a just-started dashboard's sessions do."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["lrcore.config", "lrcore.data", "lrcore.model", "lrcore.record", "lrcore.training", "lrcore.jobs",
           "lrcore.store", "lrcore.lr_finder", "lrcore.cli", "ui.common", "ui.charts", "ui.frame"]


def test_threads_importing_lrcore_modules_at_once_all_succeed():
    """Before the package imported its submodules lazily, two threads importing lrcore.data and
    lrcore.model at once deadlocked on Python's module locks, and Python broke the deadlock with
    "cannot import name 'Dataset' from partially initialized module 'lrcore.data'". The ui modules are
    imported as a session's script gets to them, after its own `import pandas` (ui/__init__.py says why)."""
    script = textwrap.dedent(f"""
        import importlib, sys, threading
        sys.path.insert(0, {str(ROOT)!r})
        names = {MODULES!r}
        errors, barrier = [], threading.Barrier(len(names))
        def load(name):
            barrier.wait()
            try:
                if name.startswith("ui."):
                    import pandas  # as dashboard.py and every page do first (tests/test_serving.py checks)
                importlib.import_module(name)
            except Exception as error:
                errors.append(f"{{name}}: {{error!r}}")
        threads = [threading.Thread(target=load, args=(name,)) for name in names]
        [thread.start() for thread in threads]
        [thread.join() for thread in threads]
        from lrcore import TrainConfig, load_dataset, train  # the package's names, after its submodules
        assert callable(train) and TrainConfig().epochs > 0, train
        print("ERRORS:", errors)
    """)
    for _ in range(3):  # the race is decided by thread timing: a few fresh interpreters
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "ERRORS: []" in result.stdout, result.stdout[-2000:]
