"""Helpers shared by the pages (kept out of `pages/`, which holds only pages).

pandas is imported here, first, once per process: plotly uses it only if something imported it already (it
looks in sys.modules and imports nothing), so a session building a figure while another session imported
pandas saw it half-initialised ("partially initialized module 'pandas' has no attribute 'Series'", a
traceback in CI's class benchmark). Every page and the frame import this package before anything else of
ours, and a second thread's import of it waits until the first one's is done. Not in ui/serving, which a page
opened by a direct link on a fresh server runs without. Not settled: CI's concurrent-import test
(tests/test_imports.py) still sees the same half-initialised module at times with the import here (CI on
2026-12-01 evening, and about half of the local pytest runs just after it, at this commit and the one before
today's changes; none in 26 runs of its script outside pytest). Which import-lock cycle hands a thread the
half-imported module is not known yet.
"""
import pandas  # noqa: F401
