"""What the model says about one input, as the Draw and Predict pages show it.

The prediction and how sure it is, the true label of a test image, the runner-up, beside the
input as the model sees it, then a probability bar per class. One helper for both pages, so a
drawn digit and a photo read the same.
"""
from __future__ import annotations

import streamlit as st
import torch
from PIL import Image

from ui import charts
from ui.format import percent
from ui.text import md_escape, plot_text

NAME_MAX = 40  # characters of a class name shown in headings and charts


def shown(name: str) -> str:
    """A class name for any Streamlit markdown: literal, one line, short."""
    return md_escape(name, NAME_MAX)


def verdict(probabilities: torch.Tensor, names: tuple[str, ...], seen: Image.Image, seen_help: str, *, key: str,
            width: int, compared: int | None = None, true_label: int | None = None) -> None:
    """Prediction (first: on a phone it comes right under the input) beside `seen`, the input as the model
    sees it (`width` px wide); then the probabilities, with `compared` (default the runner-up) marked.

    `key` ("draw", "predict") names the elements: `<key>_prediction`, `<key>_probabilities`."""
    ranking = probabilities.argsort(descending=True).tolist()
    predicted, runner_up = ranking[0], ranking[1]
    with st.container(horizontal=True, gap="medium"):
        with st.container(key=f"{key}_prediction", width="stretch", gap="small"):
            st.metric(f"**Prediction** · {percent(float(probabilities[predicted]), 0)} sure",
                      f":red[{shown(names[predicted])}]")
            if true_label is not None:
                mark = ":green[:material/check: correct]" if true_label == predicted else ":red[:material/close: wrong]"
                st.markdown(f"**True label:** {shown(names[true_label])} ({mark})")
            st.caption(f"Runner-up: {shown(names[runner_up])} ({percent(float(probabilities[runner_up]), 0)})")
        with st.container(width=width, gap="small"):
            st.markdown("**What the model sees**", help=seen_help)
            st.image(seen, width=width)
    labels = [plot_text(name, NAME_MAX) for name in names]
    figure = charts.probability_figure(probabilities, labels, predicted, runner_up if compared is None else compared)
    st.plotly_chart(figure, key=f"{key}_probabilities", config={"displayModeBar": False})
