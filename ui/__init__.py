"""Helpers shared by the pages (kept out of `pages/`, which holds only pages).

pandas is imported here, first, once per process: plotly uses it only if something imported it already (it
looks in sys.modules and imports nothing), so a session building a figure while another session imported
pandas saw it half-initialised ("partially initialized module 'pandas' has no attribute 'Series'", a
traceback in CI's class benchmark). Every page and the frame import this package before anything else of
ours, and a second thread's import of it waits until the first one's is done. Not in ui/serving, which a page
opened by a direct link on a fresh server runs without; not in ui/common, where a thread importing it could
hold what pandas' own import needed (CI's concurrent-import test then saw the half-initialised module).
"""
import pandas  # noqa: F401
