"""The Train page's three live charts as Apache ECharts options, drawn with `st.echarts_chart` (SVG).

Why ECharts and not plotly here: Streamlit draws a new plotly chart from scratch whenever its
figure changes (the element's identity includes the figure), so every poll of a live run built
three plotly charts anew, ~100 ms of the browser's main thread each on this project's 2-core
machine. A keyed `st.echarts_chart` keeps its chart and sets the new option in place: a tab
watching a live run took 33-34% of a core in Chromium instead of 58-60% (README, "Speed and
accuracy"). SVG rather than canvas: about the same cost, crisp on a projector, and its texts
(ticks, the learning-rate marks) are in the page. Other pages keep plotly.

No Streamlit here: plain functions of the run's numbers, so the tests read the options directly.
Accessibility: `aria` is on, so each chart's container carries a text description of its series
and values for screen readers (and for the browser tests, which read the numbers from it).
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

from lrcore.smoothing import thin_indices
from ui.charts import (LR_CHANGE_COLOR, MAX_BATCH_POINTS, SMOOTH_COLOR, SMOOTHING, SPLITS, TRAIN_COLOR, RunningEma,
                       ema)

WHOLE_RUN_EPOCHS = 20  # runs up to this long get an x axis spanning the whole run from the start

EPOCH_HEIGHT, BATCH_HEIGHT = 380, 360
# The untrained model's loss is about ln(classes): 2.3 for ten. Axes for charts with no point yet.
WAITING_LOSS_RANGE = (0, 2.5)
KINDS = {"loss": ("Loss per epoch", "cross-entropy loss", 1, "%.4f"),
         "accuracy": ("Accuracy per epoch", "accuracy (%)", 100, "%.2f%%")}  # title, axis name, scale, tooltip


def _rounded(value: float | None) -> float | None:
    """A number for JSON: 5 significant digits (a smaller message; a loss of 1e-6 stays 1e-6), None for a gap
    (JSON has no NaN or infinity: ECharts draws null as a break in the line)."""
    return float(f"{value:.5g}") if value is not None and math.isfinite(value) else None


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


def batch_loss_traces(steps: Sequence[int], losses: Sequence[float],
                      smoothed: Sequence[float | None] | None = None) -> tuple[list, list, list]:
    """x, raw loss and its moving average, thinned to about MAX_BATCH_POINTS points for drawing.

    The raw trace keeps each bucket's lowest and highest loss (`thin_indices`), so spikes stay
    visible; the average is computed on every loss and shown at the same steps. `smoothed` is
    `ema(losses)` when the caller keeps it up to date; else it is computed here. Non-finite losses
    stay as they are (`_rounded` makes them gaps).
    """
    smoothed = ema(losses) if smoothed is None else smoothed
    keep = thin_indices(losses, MAX_BATCH_POINTS).tolist()
    return [steps[i] for i in keep], [losses[i] for i in keep], [smoothed[i] for i in keep]


def _lr_marks(lr_changes: Sequence[dict], position) -> dict:
    """Dotted vertical lines where each learning-rate change took effect, labelled with the new rate."""
    return dict(silent=True, symbol="none", animation=False,
                lineStyle=dict(color=LR_CHANGE_COLOR, type="dotted", width=2),
                label=dict(position="insideEndTop", color="#444", fontSize=12),
                data=[dict(xAxis=position(change), label=dict(formatter=f"lr → {change['new']:g}"))
                      for change in lr_changes])


def _option(title: str, x_axis: dict, y_axis: dict, series: list[dict], value_format: str,
            legend: bool = True, note: str | None = None, aria_points: int = 10) -> dict:
    """The option every live chart shares: title, axis tooltip, legend under the chart, zoom.

    `aria_points`: how many points of each series the text description reads out (ECharts' default 10).
    """
    option = dict(
        animation=False,  # redrawn every second: an animation would never settle, and costs the browser
        aria=dict(enabled=True, label=dict(data=dict(maxCount=aria_points, separator=dict(middle="; ", end=". ")))),
        title=dict(text=title, left=0, top=6, textStyle=dict(fontSize=17)),
        tooltip=dict(trigger="axis", valueFormatter=value_format),
        legend=dict(show=legend, bottom=0, left=0),
        grid=dict(left=8, right=24, top=72, bottom=64 if legend else 28, containLabel=True),
        # zoom into a stretch of the curve (Streamlit's own toolbar has the image download and full screen)
        toolbox=dict(right=8, top=0, feature=dict(dataZoom=dict(yAxisIndex="none", title=dict(zoom="Zoom",
                                                                                             back="Undo zoom")),
                                                   restore=dict(title="Reset"))),
        xAxis=dict(type="value", nameLocation="middle", nameGap=28, minInterval=1, **x_axis),
        yAxis=dict(type="value", nameLocation="end", nameGap=12, nameTextStyle=dict(align="left"), **y_axis),
        series=series)
    if note:
        option["graphic"] = [dict(type="text", left="center", top="middle", silent=True,
                                  style=dict(text=note, fontSize=15, fill="#666"))]
    return option


def epoch_option(epochs: Sequence[dict], kind: str, lr_changes: Sequence[dict] = (), batches_per_epoch: int = 0,
                 total_epochs: int | None = None, note: str | None = None) -> dict:
    """Train and validation loss (kind="loss") or accuracy in % (kind="accuracy") per epoch, from epoch 0.

    The x axis spans the planned run (up to WHOLE_RUN_EPOCHS) from the start, so points fill it in
    rather than the axis rescaling every epoch; a lr change during epoch e lies between e-1 and e.
    """
    title, axis_name, scale, value_format = KINDS[kind]
    x = [row["epoch"] for row in epochs]
    planned = total_epochs if total_epochs and total_epochs <= WHOLE_RUN_EPOCHS else 0
    last = max(planned, x[-1] if x else 0, 1)
    series = []
    for split, name, color in SPLITS:
        values = [_rounded(row[f"{split}_{kind}"] * scale) for row in epochs]
        series.append(dict(type="line", name=name, data=[[a, b] for a, b in zip(x, values)], symbol="circle",
                           symbolSize=8, showSymbol=True, clip=False, lineStyle=dict(color=color, width=3),
                           itemStyle=dict(color=color)))
    if lr_changes and batches_per_epoch:
        series[0]["markLine"] = _lr_marks(lr_changes, lambda change: change["step"] / batches_per_epoch)
    # every epoch labelled up to 10; longer, ECharts picks whole-number steps that fit the width
    x_axis = dict(name="epoch", min=0, max=last, **(dict(interval=1) if last <= 10 else {}))
    y_axis = dict(name=axis_name, min=0)
    if kind == "accuracy":
        y_axis["axisLabel"] = dict(formatter="{value}%")
    # every epoch in the description: a screen reader (and a test) hears the latest numbers too
    return _option(title, x_axis, y_axis, series, value_format, note=note, aria_points=max(len(x), 10))


def batch_loss_option(steps: Sequence[int], losses: Sequence[float], lr_changes: Sequence[dict] = (),
                      total_steps: int | None = None, smoothed: Sequence[float | None] | None = None,
                      full_batch: bool = False, note: str | None = None) -> dict:
    """Every minibatch's loss (faint) with its moving average (alpha 0.1) on top, thinned for drawing.

    The raw trace keeps each bucket's lowest and highest loss (spikes stay, at most about
    MAX_BATCH_POINTS points); the average is computed on every loss. `total_steps` fixes the x axis.
    `full_batch` (one batch per epoch): each step's loss is the whole training split's, drawn solid
    with its points, and the average (which only lagged behind it) is left out.
    """
    xs, raw, average = batch_loss_traces(steps, losses, smoothed)
    color = TRAIN_COLOR
    series = [dict(type="line", name="loss of the step" if full_batch else "batch loss",
                   data=[[a, _rounded(b)] for a, b in zip(xs, raw)], symbol="circle",
                   showSymbol=full_batch, symbolSize=6, clip=False, itemStyle=dict(color=color),
                   lineStyle=dict(color=color, width=2 if full_batch else 1, opacity=1.0 if full_batch else 0.35))]
    if not full_batch:
        series.append(dict(type="line", name=f"moving average (α = {SMOOTHING:g})", showSymbol=False,
                           data=[[a, _rounded(b)] for a, b in zip(xs, average)],
                           itemStyle=dict(color=SMOOTH_COLOR), lineStyle=dict(color=SMOOTH_COLOR, width=3)))
    if lr_changes:
        series[0]["markLine"] = _lr_marks(lr_changes, lambda change: change["step"])
    step = "step (the whole training split: one per epoch)" if full_batch else "step (minibatch)"
    title = "Loss per step (full batch)" if full_batch else "Loss per minibatch"
    x_axis = dict(name=step, min=0, max=max(total_steps or 0, xs[-1] if xs else 0, 1))
    return _option(title, x_axis, dict(name="cross-entropy loss", min=0), series, "%.4f",
                   legend=not full_batch, note=note)


def waiting_options(total_epochs: int | None, total_steps: int | None, note: str) -> dict[str, dict]:
    """The three charts before their first point: the axes the run will fill, `note` inside.

    Drawn before Start (and while a run waits for a worker), so the browser has loaded ECharts
    before the first point arrives. Fixed y axes: an empty axis has no range of its own.
    Made once per server process and arguments (every queued run's page polls them): never change them.
    """
    return dict(_waiting_options(total_epochs, total_steps, note))


@functools.lru_cache(maxsize=64)
def _waiting_options(total_epochs: int | None, total_steps: int | None, note: str) -> dict[str, dict]:
    options = {"loss": epoch_option([], "loss", total_epochs=total_epochs, note=note),
               "accuracy": epoch_option([], "accuracy", total_epochs=total_epochs, note=note),
               "batch_loss": batch_loss_option([], [], total_steps=total_steps, note=note)}
    for name, option in options.items():
        low, high = (0, 100) if name == "accuracy" else WAITING_LOSS_RANGE
        option["yAxis"].update(min=low, max=high)
    return options


class LiveCharts:
    """The Train page's three live chart options for a `RunRecord` (worker.snapshot()).

    Each option is built again only when its numbers changed (an epoch ended, batches arrived, the
    learning rate changed); the moving average is extended with the new losses, not recomputed.
    """

    def __init__(self) -> None:
        self._epoch_options: dict[str, dict] = {}
        self._epoch_seen: tuple | None = None
        self._batch_option: dict | None = None
        self._batch_seen: tuple | None = None  # (run, batches, lr changes) the batch option was built for
        self._smoother = RunningEma()

    def options(self, record) -> dict[str, dict]:
        total_epochs, per_epoch = record.config.epochs, record.batches_per_epoch
        rows = epoch_rows(record)
        seen = (record.run_id, per_epoch, total_epochs, len(rows), rows[-1]["epoch"] if rows else None,
                len(record.lr_changes))
        if seen != self._epoch_seen:
            self._epoch_options = {kind: epoch_option(rows, kind, record.lr_changes, per_epoch, total_epochs)
                                   for kind in ("loss", "accuracy")}
            self._epoch_seen = seen
        total_steps = per_epoch * total_epochs if total_epochs <= WHOLE_RUN_EPOCHS else None
        losses = record.batch_losses
        batch_seen = ((record.run_id, total_steps), len(record.batch_steps), len(record.lr_changes))
        if self._batch_seen is None or batch_seen[0] != self._batch_seen[0] or \
                len(losses) < len(self._smoother.values):  # another run, or its losses thinned: start afresh
            self._smoother, self._batch_seen = RunningEma(), None
        if batch_seen != self._batch_seen:
            smoothed = self._smoother.extend(losses[len(self._smoother.values):])
            self._batch_option = batch_loss_option(record.batch_steps, losses, record.lr_changes, total_steps,
                                                   smoothed, full_batch=per_epoch == 1)
            self._batch_seen = batch_seen
        return {**self._epoch_options, "batch_loss": self._batch_option}
