"""Helpers shared by the pages (kept out of `pages/`, which holds only pages).

pandas is imported first, here and in dashboard.py and every page: plotly uses it only if something imported
it already (it looks in sys.modules and imports nothing), so a session building a figure while another
session's thread was importing pandas saw it half-initialised ("partially initialized module 'pandas' has no
attribute 'Series'", a traceback in CI's class benchmark). A plain `import pandas` waits until another
thread's import of it is done. The import here alone is not enough: Python does not make `import ui.common`
(or `from ui.text import ...`) wait for a `ui` package another thread is still initialising (a parent found
in sys.modules is used as it is), so a thread importing a submodule ran while another was still in this
file's pandas import (found with a trace of every thread at the failure in tests/test_imports.py). Hence
the scripts Streamlit runs import pandas themselves before anything else of ours (tests/test_serving.py).
"""
import pandas  # noqa: F401
