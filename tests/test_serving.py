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


def test_dashboard_imports_the_serving_setup_after_its_imports():
    tree = ast.parse((ROOT / "dashboard.py").read_text())
    imports = [(node.module, [alias.name for alias in node.names]) for node in tree.body
               if isinstance(node, ast.ImportFrom)]
    assert imports.index(("ui", ["serving"])) > imports.index(("ui", ["frame"]))


def test_imported_objects_are_frozen_unless_turned_off():
    assert frozen_after_import(LRCORE_GC_FREEZE="1") > 100_000  # torch, plotly and Streamlit: ~420,000
    assert frozen_after_import(LRCORE_GC_FREEZE="0") == 0
