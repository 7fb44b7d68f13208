"""The dashboard's frame: page settings, navigation, the sidebar, then the chosen page.

dashboard.py runs it on every rerun. A page opened by a direct link on a fresh server is
first run alone by Streamlit (its legacy `pages/` mode, on while no session has called
st.navigation yet); such a page calls `ui.common.ensure_frame()`, which runs this frame
in the same script run, so nothing is lost (a rerun would drop a button's click).
"""
from __future__ import annotations

import streamlit as st
import torch

from lrcore import datasets
from ui import common, identity, lessons
# Last: the process-wide set-up (gc.freeze() after the imports, the event loop's relief). Here, not only in
# dashboard.py: a fresh server's first sessions may run a page alone, and sessions opened before the set-up
# keep Streamlit's own wake-up (bench_class's students did: the relief reached them only in part).
from ui import serving  # noqa: E402,F401


def draw_title() -> str:
    """"Draw" where the model in use (else the chosen dataset) is of digits, else "Predict" (a photo)."""
    if st.session_state.get("checkpoint") is not None or common.current_worker() is not None:
        name = common.current_model_config().dataset
    else:
        name = common.selected_dataset_name()
    info = datasets.REGISTRY.get(name)
    return "Draw" if info is not None and info.digits else "Predict"


# (file, title, icon) in navigation order; the Draw page's title and icon depend on the model in use
PAGES = (("home", "Home", ":material/home:"), ("data", "Data", ":material/dataset:"),
         ("train", "Train", ":material/show_chart:"), ("weights", "Weights", ":material/grid_view:"),
         ("draw", None, None), ("evaluate", "Evaluate", ":material/fact_check:"),
         ("runs", "Runs", ":material/history:"), ("sweep", "Sweep", ":material/tune:"),
         ("board", "Class board", ":material/leaderboard:"))


def pages(visibility: dict[str, str] | None = None) -> list:
    """The pages in navigation order (built per run: st.Page objects belong to one script run); `visibility`
    (by page name) hides pages from the navigation. Home is the default: the bare address."""
    made = []
    for name, title, icon in PAGES:
        if name == "draw":
            title = draw_title()
            icon = ":material/draw:" if title == "Draw" else ":material/photo_camera:"
        made.append(st.Page(f"pages/{name}.py", title=title, icon=icon, default=name == "home",
                            visibility=(visibility or {}).get(name, "visible")))
    return made


# Streamlit's header shows its own "Stop" beside the app's while a page reruns; pressing it
# interrupts the page script (never the training) and confuses students. No setting hides it.
# Less empty space above and beside the page, so a 1024x768 projector shows the controls and
# the first results without scrolling.
CSS = """<style>
[data-testid='stStatusWidget'] button {display: none;}
[data-testid='stMainBlockContainer'] {padding-top: 3.5rem;}
@media (max-width: 1400px) {[data-testid='stMainBlockContainer'] {padding-left: 1.5rem; padding-right: 1.5rem;}}
</style>"""


def run() -> None:
    """Set up the page, the navigation and the sidebar, then run the page the URL names."""
    # A server shares two cores between sessions, training threads and the browser's requests;
    # multi-threaded OpenMP kernels spin-wait and slow everything down when cores are busy. The
    # setting is per thread, and this runs in every script thread (also via ensure_frame).
    torch.set_num_threads(1)
    # No page_icon: Material icons as favicons are fetched from Google Fonts, which an offline
    # classroom cannot reach; Streamlit's own favicon ships with it.
    st.set_page_config(page_title="Logistic regression on MNIST", layout="wide")
    st.html(CSS)
    # A lesson link (?lesson=) hides the pages its lesson leaves out, and opens on Train when it leaves out Home
    landing, visibility = lessons.navigation_plan()
    navigation = st.navigation(pages(visibility))  # the navigation ends Streamlit's legacy pages/ mode
    if not navigation.url_path and landing != "home":  # the bare address of a lesson link
        lessons.go_to(landing)
    common.sidebar()
    identity.sidebar()  # a class server only: this browser's name, the teacher key
    with common.framed():
        if lessons.page_allowed(navigation):  # a page outside the lesson says so instead
            navigation.run()
