"""Class board: the class's runs for the projector, ranked by validation accuracy, updating by itself.

Every run of the chosen lesson (or, without one, every run started in the last hours), whoever
started it: a ranking table, the validation curves overlaid and the weight images of the best run.
Nothing on it controls a run. In class mode the owners' names are for the teacher; a student sees
the same board with their own runs marked "you" and the others' as "classmate".
"""
from __future__ import annotations

import pandas  # noqa: F401  (before streamlit, plotly and ui: see ui/__init__.py)
import streamlit as st

from ui import board, common

common.ensure_frame()  # first: a page opened alone reruns through dashboard.py

st.html(board.CSS)
st.title("Class board")
viewer = board.audience()
if viewer.names:
    st.caption(f"The lesson's runs ranked by the best validation accuracy they reached, updating every "
               f"{board.POLL_SECONDS:g} s by itself: leave it on the projector. It controls nothing."
               + (" Students see it without names (“you” and “classmate”)." if viewer.class_mode else ""))
else:
    st.caption("The class's runs ranked by the best validation accuracy they reached, updating by themselves. "
               "Names are shown to the teacher only: your runs read “you”, the others “classmate”.")
lesson_id, hours = board.choose_runs()
st.fragment(board.live_board, run_every=board.POLL_SECONDS)(lesson_id, hours, viewer)
