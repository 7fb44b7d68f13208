"""Helpers shared by the pages (kept out of `pages/`, which holds only pages).

pandas is imported here, first, once per process: plotly uses it only if something imported it already (it
looks in sys.modules and imports nothing), so a session building a figure while another session imported
pandas saw it half-initialised ("partially initialized module 'pandas' has no attribute 'Series'", a
traceback in CI's class benchmark). Every page and the frame import this package before anything else of
ours, and a second thread's import of it waits until the first one's is done. Not in ui/serving, which a page
opened by a direct link on a fresh server runs without. A first try in ui/common failed CI's concurrent-import
test (tests/test_imports.py) once with the same half-initialised module; why it did there and not here is not
known; with the import here that test passed in CI and in a few dozen local runs.
"""
import pandas  # noqa: F401
