"""Plotly figures for the Train and Weights pages, as plain functions of a run's data.

No Streamlit here: the pages draw these figures, and bench/bench_dashboard.py builds the
same ones from a polling thread to measure what live charts cost training.
"""
from __future__ import annotations

import copy
import functools
import math
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.colors import diverging
from plotly.subplots import make_subplots

from lrcore.datasets import DIGIT_SHAPE
from lrcore.smoothing import BiasCorrectedEma

TRAIN_COLOR = "#1f77b4"
VALIDATION_COLOR = "#ff7f0e"
SMOOTH_COLOR = "#d62728"
LR_CHANGE_COLOR = "#7f7f7f"
# Matplotlib's RdBu as in tutorial 003: red for negative weights, white near 0, blue for positive.
WEIGHT_COLORS = diverging.RdBu
POSITIVE_COLOR, NEGATIVE_COLOR = "#2166ac", "#b2182b"
FONT = dict(size=15)
SMOOTHING = 0.1  # tutorial 003: pd.Series(losses).ewm(alpha=.1).mean()
MAX_BATCH_POINTS = 2000  # more raw points than this are thinned for drawing (the average uses all)
WHOLE_RUN_EPOCHS = 20  # runs up to this long get an x axis spanning the whole run from the start


class SentFigure(go.Figure):
    """A figure whose `to_dict()` is computed once and reused until `changed()` is called.

    `st.plotly_chart` calls `to_dict()` (a deep copy plus a walk of every array) on each
    rerun, and a live page reruns twice a second while most of its figures stay the same.
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


def _finite(values: Sequence[float]) -> list[float | None]:
    """Non-finite numbers become gaps (JSON has no NaN/inf)."""
    return [value if math.isfinite(value) else None for value in values]


def _layout(title: str, height: int, **extra) -> dict:
    return dict(title=dict(text=title, font=dict(size=18)), font=FONT, height=height,
                margin=dict(l=10, r=10, t=60, b=10), hovermode="x unified",
                legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0), **extra)


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


SPLITS = (("train", TRAIN_COLOR), ("validation", VALIDATION_COLOR))


def _epoch_parts(epochs: Sequence[dict], kind: str, lr_changes: Sequence[dict], batches_per_epoch: int,
                 total_epochs: int | None) -> tuple[list, list[list], dict, dict]:
    """x, the train and validation y values, the x axis's range and ticks, and the lr-change marks."""
    x = [row["epoch"] for row in epochs]
    ys = [_finite([row[f"{split}_{kind}"] for row in epochs]) for split, _color in SPLITS]
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
    data = [dict(type="scatter", x=x, y=y, name=split, mode="lines+markers", line=dict(color=color, width=3),
                 marker=dict(size=8)) for (split, color), y in zip(SPLITS, ys)]
    xaxis = dict(title=dict(text="epoch"), **xaxis)
    if kind == "accuracy":
        # From 0: a single point (a run that diverged in epoch 1) gave ticks "5.3% 5.3% 5.3%".
        yaxis = dict(title=dict(text="accuracy"), tickformat=".1~%", hoverformat=".2%", rangemode="tozero")
        title = "Accuracy per epoch"
    else:
        yaxis = dict(title=dict(text="cross-entropy loss"), hoverformat=".4f")
        title = "Loss per epoch"
    return SentFigure(dict(data=data, layout=_layout(title, 380, xaxis=xaxis, yaxis=yaxis, **marks)))


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
    """x, raw loss and its moving average, thinned to at most MAX_BATCH_POINTS points for drawing.

    `smoothed` is `ema(losses)` when the caller keeps it up to date; else it is computed here.
    """
    smoothed = ema(losses) if smoothed is None else smoothed
    stride = max(1, math.ceil(len(steps) / MAX_BATCH_POINTS))
    # float32/int32 arrays travel as compact base64 (plotly's "bdata"); NaN draws as a gap.
    x = np.asarray(steps[::stride], dtype=np.int32)
    raw = np.asarray(losses[::stride], dtype=np.float32)
    raw[~np.isfinite(raw)] = np.nan
    average = np.asarray([math.nan if value is None else value for value in smoothed[::stride]], dtype=np.float32)
    return x, raw, average


def _batch_loss_range(x: np.ndarray, total_steps: int | None) -> list[int]:
    return [0, max(total_steps or 0, int(x[-1]) if len(x) else 0, 1)]


def batch_loss_figure(steps: Sequence[int], losses: Sequence[float], lr_changes: Sequence[dict] = (),
                      total_steps: int | None = None, smoothed: Sequence[float | None] | None = None) -> SentFigure:
    """Every minibatch's loss (faint) with its exponential moving average (alpha 0.1) on top.

    `total_steps` (the run's planned length) fixes the x axis; None lets it grow with the data.
    `smoothed` is the average when the caller keeps it (a `RunningEma`'s values).
    """
    x, raw, smoothed = _batch_loss_traces(steps, losses, smoothed)
    data = [dict(type="scatter", x=x, y=raw, name="batch loss", mode="lines",
                 line=dict(color=TRAIN_COLOR, width=1), opacity=0.35),
            dict(type="scatter", x=x, y=smoothed,
                 name=f"moving average (α = {SMOOTHING:g})", mode="lines", line=dict(color=SMOOTH_COLOR, width=3))]
    xaxis = dict(title=dict(text="step (minibatch)"), range=_batch_loss_range(x, total_steps))
    yaxis = dict(title=dict(text="cross-entropy loss"), rangemode="tozero", hoverformat=".4f")
    layout = _layout("Loss per minibatch", 360, xaxis=xaxis, yaxis=yaxis,
                     **_lr_change_marks(lr_changes, lambda change: change["step"]))
    return SentFigure(dict(data=data, layout=layout))


def refill_batch_loss_figure(figure: SentFigure, steps: Sequence[int], losses: Sequence[float],
                             lr_changes: Sequence[dict] = (), total_steps: int | None = None,
                             smoothed: Sequence[float | None] | None = None) -> None:
    """`batch_loss_figure`'s result brought up to date in place: new arrays, axis range and marks.

    Cheaper than building the figure again, which a page following a run does twice a second;
    pass `smoothed` (a `RunningEma`'s values) to skip recomputing the average over every batch.
    """
    x, raw, smoothed = _batch_loss_traces(steps, losses, smoothed)
    with figure.batch_update():
        figure.data[0].update(x=x, y=raw)
        figure.data[1].update(x=x, y=smoothed)
        figure.layout.xaxis.range = _batch_loss_range(x, total_steps)
        figure.layout.update(_lr_change_marks(lr_changes, lambda change: change["step"]))
    figure.changed()


def class_title(name: str) -> str:
    return f"digit {name}" if name.isdigit() else name


COLUMNS = 5
MAP_HEIGHT = 200  # pixels per row of heatmaps
COMPACT_MAP_HEIGHT = 130  # in a half-width column (two runs side by side) the maps are ~60-95 px wide


@functools.lru_cache(maxsize=16)
def _grid_layout(titles: tuple[str, ...]) -> dict:
    """make_subplots' layout for the grid of maps, built once (make_subplots is slow)."""
    rows = math.ceil(len(titles) / COLUMNS)
    fig = make_subplots(rows=rows, cols=COLUMNS, horizontal_spacing=0.02, vertical_spacing=0.08)
    axis = dict(showticklabels=False, ticks="", showgrid=False, zeroline=False, constrain="domain")
    for index, title in enumerate(titles, start=1):
        suffix = "" if index == 1 else str(index)
        # Square pixels, row 0 at the top like an image. The title is the x axis's, on top,
        # so it stays right above the image when the square shrinks its domain.
        fig.layout[f"xaxis{suffix}"].update(axis, side="top", title=dict(text=title, font=dict(size=16), standoff=4))
        fig.layout[f"yaxis{suffix}"].update(axis, scaleanchor=f"x{suffix}", autorange="reversed")
    fig.update_layout(font=FONT, height=MAP_HEIGHT * rows + 20, margin=dict(l=5, r=5, t=30, b=5))
    return fig.layout.to_plotly_json()


def _class_maps(weight: torch.Tensor, count: int, shape: tuple[int, int, int]) -> np.ndarray:
    """Each class's weights as a height x (channels * width) image: colour channels side by side."""
    channels, height, width = shape
    maps = weight.detach().float().cpu().reshape(count, channels, height, width)
    return maps.permute(0, 2, 1, 3).reshape(count, height, channels * width).numpy().astype(np.float32)


def _scale(maps: np.ndarray) -> float:
    return float(np.abs(maps).max()) or 1.0


def weights_figure(weight: torch.Tensor, class_names: Sequence[str], shared_scale: bool = True,
                   limit: float | None = None, compact: bool = False,
                   shape: tuple[int, int, int] = DIGIT_SHAPE) -> SentFigure:
    """One heatmap per class (an image of the dataset's `shape`) in a grid of 5 columns; blue
    positive, red negative, 0 white.

    With `shared_scale` every map uses one symmetric range (the largest |weight| overall, or
    ±`limit` when given, so two runs' figures share one scale); otherwise each map is scaled
    to its own largest |weight|. `compact` is for a half-width column: lower, smaller titles,
    the colour bar under the grid so two grids side by side get maps of the same size.
    """
    maps = _class_maps(weight, len(class_names), shape)
    titles = tuple(class_title(name) for name in class_names)
    data = []
    for index, (grid, title) in enumerate(zip(maps, titles)):
        suffix = "" if index == 0 else str(index + 1)
        trace = dict(type="heatmap", z=grid, xaxis=f"x{suffix}", yaxis=f"y{suffix}", name=title,
                     hovertemplate=f"<b>{title}</b><br>row %{{y}}, column %{{x}}<br>weight %{{z:.4f}}<extra></extra>")
        if shared_scale:
            trace["coloraxis"] = "coloraxis"
        else:
            trace.update(colorscale=WEIGHT_COLORS, zmin=-_scale(grid), zmax=_scale(grid), showscale=False)
        data.append(trace)
    layout = copy.deepcopy(_grid_layout(titles))
    colorbar = dict(title=dict(text="weight"), thickness=16)
    if compact:
        rows = math.ceil(len(titles) / COLUMNS)
        layout.update(height=COMPACT_MAP_HEIGHT * rows + 70, margin=dict(l=5, r=5, t=30, b=50))
        for name, axis in layout.items():
            if name.startswith("xaxis"):
                axis["title"]["font"] = dict(size=13)
        colorbar = dict(title=dict(text="weight", side="top"), orientation="h", thickness=12, len=0.8,
                        y=-0.04, yanchor="top")
    if shared_scale:
        bound = limit or _scale(maps)
        layout["coloraxis"] = dict(colorscale=WEIGHT_COLORS, cmin=-bound, cmax=bound, colorbar=colorbar)
    return SentFigure(dict(data=data, layout=layout))


class WeightMaps:
    """The weights figure of one page session, refilled in place when only the numbers change.

    Building the grid's 20 axes takes plotly ~30 ms; swapping ten z arrays takes ~1 ms, which
    keeps a page that follows a fast run twice a second from taking CPU from training.
    """

    def __init__(self) -> None:
        self._figure: SentFigure | None = None
        self._shape: tuple | None = None
        self._source: object = None
        self._limit: float | None = None

    def figure(self, source: object, weight: torch.Tensor, class_names: Sequence[str],
               shared_scale: bool = True, limit: float | None = None, compact: bool = False,
               shape: tuple[int, int, int] = DIGIT_SHAPE) -> SentFigure:
        """The figure for `weight`; `source` names those weights (e.g. run and snapshot).

        `limit`, `compact` and `shape` are `weights_figure`'s: a compared run's figure keeps its
        maps and only follows the shared scale when the other run's weights grow.
        """
        layout_key = (tuple(class_names), shared_scale, compact, tuple(shape))
        if self._figure is None or layout_key != self._shape:
            self._figure = weights_figure(weight, class_names, shared_scale, limit, compact, shape)
        elif source != self._source or limit != self._limit:
            maps = _class_maps(weight, len(class_names), shape)
            with self._figure.batch_update():
                if source != self._source:
                    for trace, grid in zip(self._figure.data, maps):
                        trace.z = grid
                        if not shared_scale:
                            trace.zmin, trace.zmax = -_scale(grid), _scale(grid)
                if shared_scale:
                    bound = limit or _scale(maps)
                    self._figure.layout.coloraxis.update(cmin=-bound, cmax=bound)
            self._figure.changed()
        self._shape, self._source, self._limit = layout_key, source, limit
        return self._figure


def bias_figure(bias: torch.Tensor, class_names: Sequence[str]) -> SentFigure:
    """The biases as horizontal bars, blue positive and red negative."""
    values = [float(value) for value in bias.detach().float().cpu()]
    titles = [class_title(name) for name in class_names]
    bars = dict(type="bar", x=values, y=titles, orientation="h",
                marker=dict(color=[POSITIVE_COLOR if value >= 0 else NEGATIVE_COLOR for value in values]),
                hovertemplate="%{y}: bias %{x:.4f}<extra></extra>")
    rows = math.ceil(len(class_names) / COLUMNS)
    layout = dict(title=dict(text="Biases", font=dict(size=18)), font=FONT, height=MAP_HEIGHT * rows + 20,
                  margin=dict(l=10, r=10, t=50, b=10), showlegend=False,
                  yaxis=dict(autorange="reversed"), xaxis=dict(title=dict(text="bias"), zeroline=True,
                                                               zerolinecolor="#888"))
    return SentFigure(dict(data=[bars], layout=layout))


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


class FigureMemo:
    """The last figure built for each slot, rebuilt only when the slot's key changes.

    Pages poll twice a second, but most figures change once per epoch: a memo in session
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
                                                   self._smoother.extend(losses))
        elif seen != self._batch_seen:
            smoothed = self._smoother.extend(losses[len(self._smoother.values):])
            refill_batch_loss_figure(self._batch_figure, record.batch_steps, losses,
                                     record.lr_changes, total_steps, smoothed)
        self._batch_key, self._batch_seen = run_key, seen
        figures["batch_loss"] = self._batch_figure
        return figures
