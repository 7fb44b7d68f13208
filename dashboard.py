"""Logistic regression on MNIST, in the browser.

    streamlit run dashboard.py

The router: one navigation over the pages in `pages/`, and a sidebar that always shows
the dataset, the device and the state of the current run.
"""
import sys
from pathlib import Path

import streamlit as st
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so `lrcore` and `pages.common` import anywhere

from pages import common  # noqa: E402

# A server shares two cores between sessions, training threads and the browser's requests;
# multi-threaded OpenMP kernels spin-wait and slow everything down when cores are busy.
torch.set_num_threads(1)

# No page_icon: Material icons as favicons are fetched from Google Fonts, which an offline
# classroom cannot reach; Streamlit's own favicon ships with it.
st.set_page_config(page_title="Logistic regression on MNIST", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/data.py", title="Data", icon=":material/dataset:"),
    st.Page("pages/train.py", title="Train", icon=":material/show_chart:"),
    st.Page("pages/weights.py", title="Weights", icon=":material/grid_view:"),
    st.Page("pages/draw.py", title="Draw", icon=":material/draw:"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/fact_check:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/history:"),
    st.Page("pages/sweep.py", title="Sweep", icon=":material/tune:"),
]

navigation = st.navigation(PAGES)
common.sidebar()
with common.framed():
    navigation.run()
