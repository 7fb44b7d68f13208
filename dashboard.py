"""Logistic regression on MNIST, in the browser.

    streamlit run dashboard.py

The router: one navigation over the pages in `pages/`, and a sidebar that always shows
the dataset, the device and the state of the current run.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so `lrcore`, `pages` and `ui` import anywhere

import pandas  # noqa: E402,F401  (before streamlit, plotly and ui: see ui/__init__.py)
from ui import frame  # noqa: E402  (its last import is the process-wide set-up, ui/serving.py)

frame.run()
