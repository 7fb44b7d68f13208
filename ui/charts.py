"""Plotly figures of every page: curves, bars and the confusion matrix, as plain functions of their data.

No Streamlit here: the pages draw these figures, and bench/bench_dashboard.py builds the
same ones from a polling thread to measure what live charts cost training. Heatmaps of
weights and images are in `ui.maps`.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from _plotly_utils.utils import to_typed_array_spec  # plotly's own array -> "bdata" step of to_dict()

from lrcore.smoothing import BiasCorrectedEma, thin_indices

TRAIN_COLOR = "#1f77b4"
VALIDATION_COLOR = "#ff7f0e"
SMOOTH_COLOR = "#d62728"
LR_CHANGE_COLOR = "#7f7f7f"
FONT = dict(size=15)
SMOOTHING = 0.1  # tutorial 003: pd.Series(losses).ewm(alpha=.1).mean()
# More raw points than this are thinned for drawing (each bucket's lowest and highest, so spikes stay),
# the average computed on all of them: ~16 kB a poll at 10,000 batches (mostly plotly's template), was 51 kB.
MAX_BATCH_POINTS = 600
WHOLE_RUN_EPOCHS = 20  # runs up to this long get an x axis spanning the whole run from the start


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


class PatchedFigure(SentFigure):
    """A `SentFigure` changed afterwards by `patch`, on its sent dict only.

    Plotly's own update validates and copies every array, and its to_dict() deep-copies the
    whole figure, template included: most of a live loss chart's cost, paid every second for
    every watching tab. `patch` puts the new arrays and layout entries into a shallow copy of
    the sent dict instead. The plotly object (`.data`, `.layout`) keeps what it was built with:
    read a patched figure through to_dict() (st.plotly_chart does).
    """

    def patch(self, traces: Sequence[dict], layout: dict) -> None:
        """Set each trace's given keys (numpy arrays become plotly's typed arrays) and merge `layout`
        into the layout, one level deep for dicts (xaxis); an empty list removes its key (no shapes)."""
        sent = self.to_dict()
        data = [{**old, **{key: to_typed_array_spec(value) if isinstance(value, np.ndarray) else value
                           for key, value in new.items()}}
                for old, new in zip(sent["data"], traces)] + sent["data"][len(traces):]
        merged = dict(sent["layout"])
        for key, value in layout.items():
            if isinstance(value, dict):
                merged[key] = {**merged.get(key, {}), **value}
            elif isinstance(value, list) and not value:
                merged.pop(key, None)
            else:
                merged[key] = value
        self._sent = {**sent, "data": data, "layout": merged}


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


def _finite(values: Sequence[float]) -> list[float | None]:
    """Non-finite numbers become gaps (JSON has no NaN/inf)."""
    return [value if math.isfinite(value) else None for value in values]


def _layout(title: str, height: int, **extra) -> dict:
    return dict(title=dict(text=title, font=dict(size=18)), font=FONT, height=height,
                margin=dict(l=10, r=10, t=60, b=10), hovermode="x unified",
                legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0), **extra)


def _fixed_margins(layout: dict, left: int) -> dict:
    """`layout` with margins that fit the axes' labels, and plotly's automargin off on both axes.

    The Train page's three charts are drawn anew each time their figure changes (every poll of a
    live run: Streamlit mounts a new chart when the figure differs), and with automargin plotly
    measures every tick label and lays the chart out a second time to fit them. Fixed margins halved
    a chart's drawing in Chromium (58 -> 29 and 48 -> 25 ms per chart, plotly.js alone, this machine).
    `left` fits the y axis's title and widest tick label ("100%" needs more than "2.5").
    """
    layout["margin"] = dict(l=left, r=16, t=60, b=58)
    for axis in ("xaxis", "yaxis"):
        layout[axis] = {**layout.get(axis, {}), "automargin": False}
    return layout


def _lr_change_marks(lr_changes: Sequence[dict], position) -> dict:
    """Dotted vertical lines, labelled with the new learning rate, where each change took effect.

    Labels sit left of their line: a change usually happens at the live (right) end of the chart.
    """
    shapes, annotations = [], []
    for change in lr_changes:
        x = position(change)
        shapes.append(dict(type="line", x0=x, x1=x, xref="x", y0=0, y1=1, yref="paper",
                           line=dict(color=LR_CHANGE_COLOR, dash="dot", width=2)))
        annotations.append(dict(x=x, xref="x", y=1, yref="paper", text=f"lr → {change['new']:g}",
                                showarrow=False, xanchor="right", yanchor="top", font=dict(size=13, color="#444")))
    return dict(shapes=shapes, annotations=annotations)


# The epoch's train numbers come from its batches as the weights change (Keras', fastai's
# convention), not from a second pass: the legend says so.
TRAIN_LABEL = "train (running average over the epoch)"
SPLITS = (("train", TRAIN_LABEL, TRAIN_COLOR), ("validation", "validation", VALIDATION_COLOR))


def _epoch_parts(epochs: Sequence[dict], kind: str, lr_changes: Sequence[dict], batches_per_epoch: int,
                 total_epochs: int | None) -> tuple[list, list[list], dict, dict]:
    """x, the train and validation y values, the x axis's range and ticks, and the lr-change marks."""
    x = [row["epoch"] for row in epochs]
    ys = [_finite([row[f"{split}_{kind}"] for row in epochs]) for split, _name, _color in SPLITS]
    # A change during epoch e at step s lies between the points of epochs e-1 and e.
    marks = _lr_change_marks(lr_changes if batches_per_epoch else (),
                             lambda change: change["step"] / batches_per_epoch)
    planned = total_epochs if total_epochs and total_epochs <= WHOLE_RUN_EPOCHS else 0
    last = max(planned, x[-1] if x else 0, 1)
    return x, ys, dict(range=[-0.2, last + 0.2], dtick=1 if last <= 20 else None), marks


def epoch_figure(epochs: Sequence[dict], kind: str, lr_changes: Sequence[dict] = (),
                 batches_per_epoch: int = 0, total_epochs: int | None = None) -> SentFigure:
    """Train and validation loss (kind="loss") or accuracy (kind="accuracy") per epoch, from epoch 0."""
    x, ys, xaxis, marks = _epoch_parts(epochs, kind, lr_changes, batches_per_epoch, total_epochs)
    data = [dict(type="scatter", x=x, y=y, name=name, mode="lines+markers", line=dict(color=color, width=3),
                 marker=dict(size=8)) for (_split, name, color), y in zip(SPLITS, ys)]
    xaxis = dict(title=dict(text="epoch"), **xaxis)
    if kind == "accuracy":
        # From 0: a single point (a run that diverged in epoch 1) gave ticks "5.3% 5.3% 5.3%".
        yaxis = dict(title=dict(text="accuracy"), tickformat=".1~%", hoverformat=".2%", rangemode="tozero")
        title = "Accuracy per epoch"
    else:
        yaxis = dict(title=dict(text="cross-entropy loss"), hoverformat=".4f")
        title = "Loss per epoch"
    layout = _fixed_margins(_layout(title, 380, xaxis=xaxis, yaxis=yaxis, **marks), 78 if kind == "accuracy" else 66)
    # Under the chart: beside the title, the long train label wrapped onto the title at phone width.
    layout["legend"] = dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0)
    return SentFigure(dict(data=data, layout=layout))


def refill_epoch_figure(figure: SentFigure, epochs: Sequence[dict], kind: str, lr_changes: Sequence[dict] = (),
                        batches_per_epoch: int = 0, total_epochs: int | None = None) -> None:
    """`epoch_figure`'s result brought up to date in place (new points, axis range, marks)."""
    x, ys, xaxis, marks = _epoch_parts(epochs, kind, lr_changes, batches_per_epoch, total_epochs)
    with figure.batch_update():
        for trace, y in zip(figure.data, ys):
            trace.update(x=x, y=y)
        figure.layout.xaxis.update(xaxis)
        figure.layout.update(marks)
    figure.changed()


def _batch_loss_traces(steps: Sequence[int], losses: Sequence[float],
                       smoothed: Sequence[float | None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, raw loss and its moving average, thinned to about MAX_BATCH_POINTS points for drawing.

    The raw trace keeps each bucket's lowest and highest loss (`thin_indices`), so spikes stay
    visible; the average is computed on every loss and shown at the same steps. `smoothed` is
    `ema(losses)` when the caller keeps it up to date; else it is computed here.
    """
    smoothed = ema(losses) if smoothed is None else smoothed
    keep = thin_indices(losses, MAX_BATCH_POINTS)
    # float32/int32 arrays travel as compact base64 (plotly's "bdata"); NaN draws as a gap.
    x = np.asarray(steps, dtype=np.int32)[keep]
    raw = np.asarray(losses, dtype=np.float32)[keep]
    raw[~np.isfinite(raw)] = np.nan
    average = np.asarray([math.nan if smoothed[i] is None else smoothed[i] for i in keep.tolist()], dtype=np.float32)
    return x, raw, average


def _batch_loss_range(x: np.ndarray, total_steps: int | None) -> list[int]:
    return [0, max(total_steps or 0, int(x[-1]) if len(x) else 0, 1)]


def batch_loss_figure(steps: Sequence[int], losses: Sequence[float], lr_changes: Sequence[dict] = (),
                      total_steps: int | None = None, smoothed: Sequence[float | None] | None = None,
                      full_batch: bool = False) -> PatchedFigure:
    """Every minibatch's loss (faint) with its exponential moving average (alpha 0.1) on top.

    `total_steps` (the run's planned length) fixes the x axis; None lets it grow with the data.
    `smoothed` is the average when the caller keeps it (a `RunningEma`'s values).
    `full_batch` (one batch per epoch): each step's loss is the whole training split's, with no noise
    to smooth, so it is drawn solid and the average (which only lagged behind it) is hidden.
    """
    x, raw, smoothed = _batch_loss_traces(steps, losses, smoothed)
    data = [dict(type="scatter", x=x, y=raw, name="loss of the step" if full_batch else "batch loss",
                 mode="lines+markers" if full_batch else "lines", opacity=1.0 if full_batch else 0.35,
                 line=dict(color=TRAIN_COLOR, width=2 if full_batch else 1), showlegend=not full_batch),
            dict(type="scatter", x=x, y=smoothed, visible=not full_batch,
                 name=f"moving average (α = {SMOOTHING:g})", mode="lines", line=dict(color=SMOOTH_COLOR, width=3))]
    step = "step (the whole training split: one per epoch)" if full_batch else "step (minibatch)"
    xaxis = dict(title=dict(text=step), range=_batch_loss_range(x, total_steps))
    yaxis = dict(title=dict(text="cross-entropy loss"), rangemode="tozero", hoverformat=".4f")
    title = "Loss per step (full batch)" if full_batch else "Loss per minibatch"
    marks = _lr_change_marks(lr_changes, lambda change: change["step"])
    layout = _fixed_margins(_layout(title, 360, xaxis=xaxis, yaxis=yaxis, **marks), 66)
    return PatchedFigure(dict(data=data, layout=layout))


def refill_batch_loss_figure(figure: PatchedFigure, steps: Sequence[int], losses: Sequence[float],
                             lr_changes: Sequence[dict] = (), total_steps: int | None = None,
                             smoothed: Sequence[float | None] | None = None) -> None:
    """`batch_loss_figure`'s result brought up to date in place: new arrays, axis range and marks.

    Cheaper than building the figure again, which a page following a run does every second;
    pass `smoothed` (a `RunningEma`'s values) to skip recomputing the average over every batch.
    """
    x, raw, smoothed = _batch_loss_traces(steps, losses, smoothed)
    figure.patch([dict(x=x, y=raw), dict(x=x, y=smoothed)],
                 dict(xaxis=dict(range=_batch_loss_range(x, total_steps)),
                      **_lr_change_marks(lr_changes, lambda change: change["step"])))


# The untrained model's loss is about ln(classes): 2.3 for ten. Axes for charts with no point yet.
WAITING_LOSS_RANGE = [0, 2.5]


def waiting_figures(total_epochs: int | None, total_steps: int | None, note: str) -> dict[str, go.Figure]:
    """The Train page's three charts before their first point: the axes the run will fill, `note` inside.

    Shown before Start (and while a run waits for a worker), so the browser has fetched and started
    plotly, ~3.5 MB of script loaded the first time a page shows a chart, before the first point
    arrives: Start -> epoch-0 point then only updates charts already drawn (bench/bench_latency.py).
    Fixed y axes: plotly's own range for an empty chart read as -100% to 400% accuracy. The figures
    are made once per server process and arguments and must not be changed: every queued run's page
    polls them each second while a class waits for workers.
    """
    return dict(_waiting_figures(total_epochs, total_steps, note))


@functools.lru_cache(maxsize=64)
def _waiting_figures(total_epochs: int | None, total_steps: int | None, note: str) -> dict[str, go.Figure]:
    figures = {"loss": epoch_figure([], "loss", total_epochs=total_epochs),
               "accuracy": epoch_figure([], "accuracy", total_epochs=total_epochs),
               "batch_loss": batch_loss_figure([], [], total_steps=total_steps)}
    for name, figure in figures.items():
        figure.update_yaxes(range=[0, 1] if name == "accuracy" else WAITING_LOSS_RANGE)
        figure.add_annotation(text=note, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                              font=dict(size=15, color="#666"))
    return figures


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


def epoch_rows(record) -> list[dict]:
    """The per-epoch points, plus the kept weights' point when the run ended inside an epoch.

    A run that diverged or was stopped mid-epoch keeps weights newer than its last epoch; the
    point at their fractional epoch makes the curves agree with the final numbers on the page.
    """
    final = record.final
    if record.status not in ("stopped", "diverged") or "kept_step" not in final or not record.batches_per_epoch:
        return record.epochs
    position = final["kept_step"] / record.batches_per_epoch
    if record.epochs and position <= record.epochs[-1]["epoch"]:
        return record.epochs  # ended right at an epoch's end: that point is the kept weights
    kept = {"epoch": position, **{name: final[name] for name in
                                  ("train_loss", "train_accuracy", "validation_loss", "validation_accuracy")}}
    return [*record.epochs, kept]


class LiveCharts:
    """The Train page's three live charts for a `RunRecord` (worker.snapshot()).

    Each chart is built once per run and then refilled in place: the per-epoch charts when an
    epoch ends or the learning rate changes, the per-batch chart when batches arrive.
    """

    def __init__(self) -> None:
        self._epoch_figures: dict[str, SentFigure] = {}
        self._epoch_key: tuple | None = None
        self._epoch_seen: tuple[int, int] = (0, 0)
        self._batch_figure: SentFigure | None = None
        self._batch_key: tuple | None = None
        self._batch_seen: tuple[int, int] = (0, 0)
        self._smoother = RunningEma()

    def figures(self, record) -> dict[str, go.Figure]:
        total_epochs = record.config.epochs
        bpe = record.batches_per_epoch
        key = (record.run_id, bpe, total_epochs)
        rows = epoch_rows(record)
        seen_epochs = (len(rows), len(record.lr_changes))
        if key != self._epoch_key:
            self._epoch_figures = {kind: epoch_figure(rows, kind, record.lr_changes, bpe, total_epochs)
                                   for kind in ("loss", "accuracy")}
        elif seen_epochs != self._epoch_seen:
            for kind, figure in self._epoch_figures.items():
                refill_epoch_figure(figure, rows, kind, record.lr_changes, bpe, total_epochs)
        self._epoch_key, self._epoch_seen = key, seen_epochs
        figures: dict[str, go.Figure] = dict(self._epoch_figures)
        total_steps = bpe * total_epochs if total_epochs <= WHOLE_RUN_EPOCHS else None
        seen = (len(record.batch_steps), len(record.lr_changes))
        run_key = (record.run_id, total_steps)
        losses = record.batch_losses
        if self._batch_figure is None or run_key != self._batch_key or len(losses) < len(self._smoother.values):
            self._smoother = RunningEma()
            self._batch_figure = batch_loss_figure(record.batch_steps, losses, record.lr_changes, total_steps,
                                                   self._smoother.extend(losses), full_batch=bpe == 1)
        elif seen != self._batch_seen:
            smoothed = self._smoother.extend(losses[len(self._smoother.values):])
            refill_batch_loss_figure(self._batch_figure, record.batch_steps, losses,
                                     record.lr_changes, total_steps, smoothed)
        self._batch_key, self._batch_seen = run_key, seen
        figures["batch_loss"] = self._batch_figure
        return figures
