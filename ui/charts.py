"""Plotly figures of the pages: bars, the confusion matrix and what the curves share, as plain functions of their data.

No Streamlit here: the pages draw these figures. The Train page's live curves are ECharts
options (`ui.live_charts`), the Sweep and Runs pages' curves are in `ui.compare_charts`, heatmaps
of weights and images in `ui.maps`.
"""
from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go
import torch

from lrcore.smoothing import BiasCorrectedEma

TRAIN_COLOR = "#1f77b4"
VALIDATION_COLOR = "#ff7f0e"
SMOOTH_COLOR = "#d62728"
LR_CHANGE_COLOR = "#7f7f7f"
FONT = dict(size=15)
SMOOTHING = 0.1  # tutorial 003: pd.Series(losses).ewm(alpha=.1).mean()
# More raw points than this are thinned for drawing (each bucket's lowest and highest, so spikes stay),
# the average computed on all of them (ui/live_charts.py; the Sweep page's curves use the same bound).
MAX_BATCH_POINTS = 600


class SentFigure(go.Figure):
    """A figure whose `to_dict()` is computed once and reused until `changed()` is called.

    `st.plotly_chart` calls `to_dict()` (a deep copy plus a walk of every array) on each
    rerun, and a live page reruns every second while most of its figures stay the same.
    The returned dict is shared: read it, never modify it.
    """

    _sent: dict | None = None

    def to_dict(self) -> dict:
        if self._sent is None:
            self._sent = super().to_dict()
        return self._sent

    def changed(self) -> None:
        """Call after changing the figure in place, so the next `to_dict()` sees the change."""
        self._sent = None


class RunningEma:
    """A bias-corrected moving average (`lrcore.smoothing`) of a growing series, extended as values arrive.

    `alpha` is the newest value's weight (tutorial 003's `ewm(alpha=.1)`); the values equal
    pandas' `Series.ewm(alpha=alpha).mean()`. Non-finite values are skipped (the average
    carries on); before the first finite value it is None.
    """

    def __init__(self, alpha: float = SMOOTHING) -> None:
        self.alpha = alpha
        self.values: list[float | None] = []
        self._average = BiasCorrectedEma(1 - alpha)

    def extend(self, values: Sequence[float]) -> list[float | None]:
        add, out = self._average.add, self.values
        out.extend(add(value) for value in values)
        return out


def ema(values: Sequence[float], alpha: float = SMOOTHING) -> list[float | None]:
    """The bias-corrected moving average of `values` (pandas' `ewm(alpha=alpha).mean()`); non-finite skipped."""
    return RunningEma(alpha).extend(values)


def _layout(title: str, height: int, **extra) -> dict:
    return dict(title=dict(text=title, font=dict(size=18)), font=FONT, height=height,
                margin=dict(l=10, r=10, t=60, b=10), hovermode="x unified",
                legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0), **extra)


# The epoch's train numbers come from its batches as the weights change (Keras', fastai's
# convention), not from a second pass: the legend says so.
TRAIN_LABEL = "train (running average over the epoch)"
SPLITS = (("train", TRAIN_LABEL, TRAIN_COLOR), ("validation", "validation", VALIDATION_COLOR))


def class_title(name: str) -> str:
    return f"digit {name}" if name.isdigit() else name


COMPARE_COLORS = ("#525252", "#e08214")  # this run dark grey, the compared run orange: not RdBu's red/blue


def class_norms(weight: torch.Tensor) -> list[float]:
    """Each class's L2 weight norm: how strongly its weights pull; weight decay shrinks it."""
    return [float(value) for value in torch.linalg.vector_norm(weight.detach().float().cpu(), dim=1)]


def class_bars_figure(title: str, value_name: str, series: Sequence[tuple[str, Sequence[float]]],
                      class_names: Sequence[str], height: int = 320) -> SentFigure:
    """One bar per class for each (legend name, values) in `series`, grouped by class."""
    titles = [class_title(name) for name in class_names]
    data = [dict(type="bar", x=titles, y=[float(value) for value in values], name=name,
                 marker=dict(color=COMPARE_COLORS[index % len(COMPARE_COLORS)]),
                 hovertemplate=f"{value_name} %{{y:.4g}}")
            for index, (name, values) in enumerate(series)]
    layout = _layout(title, height, barmode="group", xaxis=dict(tickangle=-45 if len(titles) > 5 else 0),
                     yaxis=dict(title=dict(text=value_name), zeroline=True, zerolinecolor="#888"))
    return SentFigure(dict(data=data, layout=layout))


def class_counts_figure(class_names: Sequence[str], counts: dict[str, Sequence[int]]) -> go.Figure:
    """Images per class, one group of bars per class and one bar per split (legend name: counts)."""
    data = [dict(type="bar", name=name, x=list(class_names), y=[int(value) for value in values])
            for name, values in counts.items()]
    layout = dict(barmode="group", height=320, margin=dict(l=10, r=10, t=10, b=10),
                  xaxis=dict(title=dict(text="class"), type="category"), yaxis=dict(title=dict(text="images")),
                  legend=dict(orientation="h", y=1.12))
    return go.Figure(dict(data=data, layout=layout))


PREDICTED_COLOR, PICKED_COLOR, OTHER_COLOR = "#FF4B4B", "#1C83E1", "#B9BDC8"


def probability_figure(probabilities: torch.Tensor, names: Sequence[str], predicted: int, compared: int) -> go.Figure:
    """The Draw page's bars: each class's probability in %, the predicted and the compared class coloured.

    `names` are already made safe for plotly labels (`ui.text.plot_text`).
    """
    colours = [PREDICTED_COLOR if c == predicted else PICKED_COLOR if c == compared else OTHER_COLOR
               for c in range(len(names))]
    percents = (probabilities * 100).tolist()
    bars = go.Bar(x=list(names), y=percents, marker_color=colours, textposition="outside",
                  text=[f"{p:.0f}%" if p >= 0.5 else "" for p in percents],
                  hovertemplate="%{x}: %{y:.1f}%<extra></extra>")
    figure = go.Figure(bars)
    figure.update_layout(height=240, margin=dict(l=10, r=10, t=10, b=10), showlegend=False,
                         yaxis=dict(range=[0, 115], title="probability (%)", tickvals=[0, 25, 50, 75, 100]),
                         xaxis=dict(type="category"))
    return figure


def waiting_probability_figure(names: Sequence[str]) -> go.Figure:
    """The Draw page's bars before anything is drawn: every class at 0, a note in the middle."""
    figure = probability_figure(torch.zeros(len(names)), names, -1, -1)
    figure.add_annotation(text="no drawing yet", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.55,
                          font=dict(size=15, color="#666"))
    return figure


def confusion_figure(confusion: torch.Tensor, shares: torch.Tensor, names: Sequence[str], normalised: bool,
                     chosen: tuple[int, int]) -> go.Figure:
    """The confusion matrix (counts, or shares of each true class), the `chosen` (true, predicted) cell outlined.

    Each cell carries an invisible marker whose customdata is [true, predicted, count]: plotly
    heatmaps send no selection events, markers do. `names` are safe for plotly labels.
    """
    classes = len(names)
    z = shares if normalised else confusion
    text = [[f"{v:.0%}" if normalised else f"{c}" for v, c in zip(row_s.tolist(), row_c.tolist())]
            for row_s, row_c in zip(shares, confusion)]
    figure = go.Figure(go.Heatmap(
        z=z.tolist(), x=list(names), y=list(names), text=text, texttemplate="%{text}", colorscale="Blues",
        customdata=shares.tolist(), showscale=False,
        hovertemplate="true %{y}, predicted %{x}<br>%{text} (%{customdata:.1%} of the row)<extra></extra>"))
    cells = [(t, p) for t in range(classes) for p in range(classes)]
    figure.add_trace(go.Scatter(
        x=[names[p] for _, p in cells], y=[names[t] for t, _ in cells], mode="markers",
        customdata=[[t, p, int(confusion[t, p])] for t, p in cells],
        marker=dict(symbol="square", size=max(12, 360 // classes), color="rgba(0,0,0,0)"),
        hovertemplate="true %{y}, predicted %{x}: %{customdata[2]} images — click to show them<extra></extra>",
        showlegend=False))
    true_class, predicted_class = chosen
    figure.add_shape(type="rect", x0=predicted_class - 0.5, x1=predicted_class + 0.5, y0=true_class - 0.5,
                     y1=true_class + 0.5, line=dict(color="#e8590c", width=3))
    figure.update_layout(height=520, margin=dict(l=10, r=10, t=10, b=10), clickmode="event+select",
                         # fixed ranges: the markers would otherwise pad the axes beyond the cells
                         xaxis=dict(title="predicted class", type="category", side="top", range=[-0.5, classes - 0.5]),
                         yaxis=dict(title="true class", type="category", range=[classes - 0.5, -0.5]))
    return figure


class FigureMemo:
    """The last figure built for each slot, rebuilt only when the slot's key changes.

    Pages poll every second, but most figures change once per epoch: a memo in session
    state keeps the polling cheap, so it does not slow training down.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[object, go.Figure]] = {}

    def get(self, slot: str, key: object, build) -> go.Figure:
        entry = self._entries.get(slot)
        if entry is None or entry[0] != key:
            entry = (key, build())
            self._entries[slot] = entry
        return entry[1]
