"""The served dashboard freezes its imported objects once (ui/serving.py), so full collections
(Python's own, and Streamlit's runner.postScriptGC where on) skip torch's, plotly's and Streamlit's objects."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = "import gc, sys; sys.path.insert(0, '.'); from ui import frame, serving; print(gc.get_freeze_count())"


def frozen_after_import(**env: str) -> int:
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.split()[-1])


def test_the_frame_imports_the_serving_setup_after_its_imports():
    # The frame, not only dashboard.py: a fresh server's first sessions may run a page alone (through the frame).
    tree = ast.parse((ROOT / "ui" / "frame.py").read_text())
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    last = imports[-1]
    assert isinstance(last, ast.ImportFrom) and last.module == "ui" and [a.name for a in last.names] == ["serving"]


def test_imported_objects_are_frozen_unless_turned_off():
    assert frozen_after_import(LRCORE_GC_FREEZE="1") > 100_000  # torch, plotly and Streamlit: ~420,000
    assert frozen_after_import(LRCORE_GC_FREEZE="0") == 0


def first_import_of(path: Path, *modules: str) -> int:
    """The line of the script's first top-level import of one of these top-level modules (0 if none)."""
    for node in ast.parse(path.read_text()).body:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        if any(name.split(".")[0] in modules for name in names):
            return node.lineno
    return 0


def test_every_script_streamlit_runs_imports_pandas_before_streamlit_plotly_or_ours():
    # plotly only looks pandas up in sys.modules: a page building a figure while another session's thread was
    # importing pandas saw it half-initialised ("module 'pandas' has no attribute 'Series'", a traceback in
    # CI's class benchmark). The ui package's own import is not enough (ui/__init__.py says why): each script
    # a session runs, dashboard.py or a page opened by a direct link on a fresh server, imports pandas first.
    probe = "import sys; sys.path.insert(0, '.'); import ui; print(hasattr(sys.modules.get('pandas'), 'Series'))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "True"
    for script in [ROOT / "dashboard.py", *sorted((ROOT / "pages").glob("*.py"))]:
        pandas_line = first_import_of(script, "pandas")
        ours_line = first_import_of(script, "streamlit", "plotly", "ui", "lrcore")
        assert ours_line, f"{script.name} imports none of streamlit, plotly, ui, lrcore"
        assert 0 < pandas_line < ours_line, f"{script.name}: pandas is not imported before line {ours_line}"
