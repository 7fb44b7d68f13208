"""Figures that overlay several runs: the Runs page's comparison and the Sweep page's sweeps (and range test).

On the Runs page each run gets a colour; on the Sweep page colour = learning rate on a log scale
(dark: low, bright: high), a dash per (batch size, weight decay) combination. Records are
`lrcore.record.RunRecord`s, live or read back from the store. One run's live curves are in
`ui.charts`, weight maps in `ui.maps`.
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale

from lrcore.record import RunRecord
from lrcore.sweep import config_label
from ui import charts as curves
from ui.text import plot_text

COLORSCALE = "Plasma"
COLOR_SPAN = (0.0, 0.85)  # Plasma's last yellow is hard to see on white
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
FONT = dict(size=15)
SMOOTHING = 0.9  # EMA of the minibatch loss: alpha 0.1, as the Train page, bias-corrected
COLORS = qualitative.Plotly
PLOT_POINTS = 600  # per run on the minibatch chart: 64 runs x 10,000 points would be slow to draw


def lr_colors(learning_rates: list[float]) -> tuple[list[str], float, float]:
    """A colour per learning rate on a log scale, and the scale's log10 ends."""
    logs = [math.log10(lr) for lr in learning_rates]
    low, high = min(logs), max(logs)
    span = (high - low) or 1.0
    a, b = COLOR_SPAN
    positions = [a + (b - a) * (value - low) / span for value in logs]
    return sample_colorscale(COLORSCALE, positions), low, high


def colorbar_trace(low: float, high: float) -> dict:
    """An invisible trace that draws the learning-rate colour bar (log scale)."""
    a, b = COLOR_SPAN
    colors = sample_colorscale(COLORSCALE, [a + (b - a) * i / 10 for i in range(11)])
    scale = [[i / 10, color] for i, color in enumerate(colors)]
    ticks = list(range(math.ceil(low), math.floor(high) + 1)) or [low, high]
    return dict(type="scatter", x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                marker=dict(color=[low], colorscale=scale, cmin=low, cmax=high if high > low else low + 1,
                            showscale=True, colorbar=dict(title=dict(text="learning rate"), thickness=14,
                                                          tickvals=ticks, ticktext=[f"{10 ** t:g}" for t in ticks])))


def batch(config) -> int | str:
    """The batch a run really took: its batch size, or "full" (every step on the whole training split,
    whatever the batch_size setting says: a full-batch sweep's batch sizes are all the same batch)."""
    return "full" if config.full_batch else config.batch_size


def styles(members) -> dict[tuple, str]:
    """A dash per (batch size, weight decay) combination."""
    combos = list(dict.fromkeys((batch(m.config), m.config.weight_decay) for m in members))
    return {combo: DASHES[i % len(DASHES)] for i, combo in enumerate(combos)}


def style_legend(members, dashes: dict[tuple, str]) -> list[dict]:
    if len(dashes) < 2:
        return []
    show_batch = len({b for b, _ in dashes}) > 1
    show_decay = len({d for _, d in dashes}) > 1
    traces = []
    for (size, decay), dash in dashes.items():
        name = " · ".join(([f"batch {size}"] if show_batch else []) + ([f"wd {decay:g}"] if show_decay else []))
        traces.append(dict(type="scatter", x=[None], y=[None], mode="lines", name=name,
                           line=dict(color="#555", dash=dash, width=2)))
    return traces


def layout(title: str, height: int, xaxis: dict, yaxis: dict) -> dict:
    # Legends (line styles, range-test curves) sit under the x axis: half-width charts have no room on top.
    return dict(title=dict(text=title, font=dict(size=18)), font=FONT, height=height,
                margin=dict(l=10, r=10, t=50, b=10), hovermode="closest", xaxis=xaxis, yaxis=yaxis,
                legend=dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0))


def labels(members: Sequence[RunRecord]) -> list[str]:
    """"lr 0.1 · batch 64": only the settings that differ within the sweep."""
    show_batch = len({batch(m.config) for m in members}) > 1
    show_decay = len({m.config.weight_decay for m in members}) > 1
    return [config_label(m.config, show_batch, show_decay) for m in members]


def epoch_figure(members: Sequence[RunRecord], metric: str) -> go.Figure:
    """Validation accuracy or loss per epoch: one line per run, coloured by learning rate."""
    colors, low, high = lr_colors([m.config.learning_rate for m in members])
    dashes = styles(members)
    data = []
    for member, color, label in zip(members, colors, labels(members)):
        x = [row["epoch"] for row in member.epochs]
        y = [row[metric] if math.isfinite(row[metric]) else None for row in member.epochs]
        diverged = member.status == "diverged"
        symbols = ["x" if diverged and i == len(x) - 1 else "circle" for i in range(len(x))]
        dash = dashes[(batch(member.config), member.config.weight_decay)]
        data.append(dict(type="scatter", x=x, y=y, mode="lines+markers", name=label, showlegend=False,
                         line=dict(color=color, width=2.5, dash=dash),
                         marker=dict(size=[13 if s == "x" else 6 for s in symbols], symbol=symbols, color=color),
                         hovertemplate=f"<b>{label}</b>{' (diverged)' if diverged else ''}<br>epoch %{{x}}: "
                                       f"%{{y:{'.2%' if metric.endswith('accuracy') else '.4f'}}}<extra></extra>"))
    legend = style_legend(members, dashes)
    data += legend
    data.append(colorbar_trace(low, high))
    epochs = members[0].config.epochs
    xaxis = dict(title=dict(text="epoch"), range=[-0.2, epochs + 0.2], dtick=1 if epochs <= 20 else None)
    if metric.endswith("accuracy"):
        yaxis = dict(title=dict(text="validation accuracy"), tickformat=".0%", rangemode="tozero")
        title = "Validation accuracy per epoch"
    else:
        yaxis = dict(title=dict(text="validation loss"), range=[0, loss_ceiling(members)])
        title = "Validation loss per epoch"
    return go.Figure(dict(data=data, layout=layout(title, 400 + 25 * len(legend), xaxis, yaxis)))


def loss_ceiling(members: Sequence[RunRecord]) -> float:
    """Top of the loss axes: a bit above an untrained model's loss, so blown-up curves leave the chart."""
    return 1.5 * math.log(max(max(len(m.class_names) for m in members), 2))


class _Averages:
    """Each run's moving average of its minibatch losses, extended as they arrive.

    A live sweep's page rebuilds its charts every second; averaging K runs' 10,000 losses
    from the start each time cost ~150 ms of server CPU at K = 64. Shared by the sessions
    (the same run has the same losses), the least recently used dropped past `size` runs.
    """

    def __init__(self, size: int = 128) -> None:
        self._entries: OrderedDict[str, tuple[curves.RunningEma, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def of(self, member: RunRecord) -> list[float | None]:
        losses, steps = member.batch_losses, member.batch_steps
        with self._lock:
            average, last_step = self._entries.pop(member.run_id, (None, 0))
            done = len(average.values) if average is not None else 0
            # Fewer losses, or another step where the last one was: the record thinned its older
            # losses (pairs averaged) or it is another run: start again.
            if average is None or done > len(losses) or (done and steps[done - 1] != last_step):
                average, done = curves.RunningEma(1 - SMOOTHING), 0
            average.extend(losses[done:])
            self._entries[member.run_id] = (average, steps[-1] if steps else 0)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
            return list(average.values)


_AVERAGES = _Averages()


def smoothed_losses(member: RunRecord) -> tuple[list[int], list[float | None]]:
    """The minibatch loss's moving average, at most PLOT_POINTS points (every n-th, averaged over all)."""
    smoothed = _AVERAGES.of(member)
    every = max(1, math.ceil(len(smoothed) / PLOT_POINTS))
    keep = range(len(smoothed) - 1, -1, -every)[::-1]  # the newest point always
    return [member.batch_steps[i] for i in keep], [smoothed[i] for i in keep]


def batch_figure(members: Sequence[RunRecord]) -> go.Figure:
    """Moving average of the minibatch loss per run; diverging ones shoot off the top."""
    colors, low, high = lr_colors([m.config.learning_rate for m in members])
    dashes = styles(members)
    # Several batch sizes take different numbers of steps per epoch: put them on one epoch axis.
    by_epoch = len({batch(m.config) for m in members}) > 1
    data = []
    for member, color, label in zip(members, colors, labels(members)):
        dash = dashes[(batch(member.config), member.config.weight_decay)]
        steps_per_epoch = max(member.batches_per_epoch, 1) if by_epoch else 1
        steps, smoothed = smoothed_losses(member)
        where = "epoch %{x:.2f}" if by_epoch else "step %{x}"
        data.append(dict(type="scatter", x=[step / steps_per_epoch for step in steps], y=smoothed, mode="lines",
                         name=label, showlegend=False, line=dict(color=color, width=2, dash=dash),
                         hovertemplate=f"<b>{label}</b><br>{where}: loss %{{y:.4f}}<extra></extra>"))
    data += style_legend(members, dashes)
    data.append(colorbar_trace(low, high))
    xaxis = dict(title=dict(text="epoch" if by_epoch else "step (minibatch)"), rangemode="tozero")
    yaxis = dict(title=dict(text="training loss (moving average, α = 0.1)"), range=[0, loss_ceiling(members)])
    return go.Figure(dict(data=data, layout=layout("Training loss per minibatch", 380, xaxis, yaxis)))


def range_figure(record) -> go.Figure:
    """Loss against learning rate (log axis), raw and smoothed, with the suggestion marked."""
    data = [dict(type="scatter", x=record.learning_rates, y=[v if math.isfinite(v) else None for v in record.losses],
                 mode="lines", name="batch loss", line=dict(color="#1f77b4", width=1), opacity=0.4,
                 hovertemplate="lr %{x:.3g}: loss %{y:.4f}<extra></extra>"),
            dict(type="scatter", x=record.learning_rates, y=[v if math.isfinite(v) else None for v in record.smoothed],
                 mode="lines", name="smoothed loss", line=dict(color="#d62728", width=3),
                 hovertemplate="lr %{x:.3g}: smoothed %{y:.4f}<extra></extra>")]
    shapes, annotations = [], []
    result = record.result
    if result is not None and result.suggestion is not None:
        suggestion = round_lr(result.suggestion)
        shapes.append(dict(type="line", x0=suggestion, x1=suggestion, xref="x", y0=0, y1=1, yref="paper",
                           line=dict(color="#2ca02c", width=3, dash="dash")))
        annotations.append(dict(x=math.log10(suggestion), xref="x", y=1, yref="paper", showarrow=False,
                                text=f"suggested: {suggestion:g}", xanchor="left", yanchor="top",
                                font=dict(size=15, color="#2ca02c")))
        data.append(dict(type="scatter", x=[result.suggestion], y=[result.smoothed[result.suggestion_index]],
                         mode="markers", name="steepest fall", marker=dict(color="#2ca02c", size=14, symbol="diamond"),
                         hovertemplate="suggested lr %{x:.3g}<extra></extra>"))
    finite = [v for v in record.smoothed if math.isfinite(v)]
    top = max(min(max(finite, default=3.0), 4 * min(finite, default=1.0)), 0.5) * 1.1
    low, high = math.log10(record.start_lr), math.log10(record.end_lr)
    decades = list(range(math.ceil(low - 1e-9), math.floor(high + 1e-9) + 1))
    xaxis = dict(title=dict(text="learning rate (log scale)"), type="log", range=[low, high],
                 tickvals=[10.0 ** d for d in decades], ticktext=[f"{10.0 ** d:g}" for d in decades])
    yaxis = dict(title=dict(text="training loss"), range=[0, top])
    chart = layout("Loss while the learning rate grows", 420, xaxis, yaxis)
    return go.Figure(dict(data=data, layout={**chart, "shapes": shapes, "annotations": annotations}))


def round_lr(value: float) -> float:
    """Two significant digits: a suggestion reads 0.33, not 0.327445…"""
    return float(f"{value:.2g}")


# ---------------------------------------------------------------- the Runs page: any runs, one colour each

def _compare_layout(title: str, height: int, xaxis: dict, yaxis: dict) -> dict:
    return dict(title=dict(text=title, font=dict(size=18)), font=FONT, height=height,
                margin=dict(l=10, r=10, t=90, b=10), hovermode="x unified", xaxis=xaxis, yaxis=yaxis,
                legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0))


def _finite(values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    array[~np.isfinite(array)] = np.nan  # a gap in the line
    return array


def epoch_curves(runs: Sequence[RunRecord], labels: list[str], metric: str, splits: list[str],
                 log_loss: bool) -> go.Figure:
    """One line per run and split; colour = run, solid = validation, dashed = training."""
    data = []
    value_format = ".2%" if metric == "accuracy" else ".4f"
    for index, (run, label) in enumerate(zip(runs, labels)):
        color = COLORS[index % len(COLORS)]
        epochs = np.asarray([row["epoch"] for row in run.epochs], dtype=np.int32)
        for number, split in enumerate(splits):
            name = "validation" if split == "validation" else curves.TRAIN_LABEL
            data.append(dict(
                type="scatter", x=epochs, y=_finite([row[f"{split}_{metric}"] for row in run.epochs]),
                mode="lines+markers" if len(epochs) <= 60 else "lines", name=plot_text(label),
                legendgroup=run.run_id, showlegend=number == 0, marker=dict(size=6),
                line=dict(color=color, width=3, dash="solid" if split == "validation" else "dash"),
                hovertemplate=f"%{{fullData.name}} · {name}: %{{y:{value_format}}}<extra></extra>"))
    xaxis = dict(title=dict(text="epoch (0 = before training)"), rangemode="tozero")
    if metric == "accuracy":
        yaxis = dict(title=dict(text="accuracy"), tickformat=".0%")
    else:
        yaxis = dict(title=dict(text="cross-entropy loss" + (" (log scale)" if log_loss else "")),
                     type="log" if log_loss else "linear")
    title = "Loss per epoch" if metric == "loss" else "Accuracy per epoch"
    return go.Figure(dict(data=data, layout=_compare_layout(title, 430, xaxis, yaxis)))


def batch_curves(runs: Sequence[RunRecord], labels: list[str], log_loss: bool) -> go.Figure:
    """Smoothed per-batch training loss against epochs (so runs with different batch sizes line up)."""
    data = []
    for index, (run, label) in enumerate(zip(runs, labels)):
        if not run.batch_losses or not run.batches_per_epoch:
            continue
        stride = max(1, math.ceil(len(run.batch_losses) / curves.MAX_BATCH_POINTS))
        smooth = [math.nan if value is None else value for value in curves.ema(run.batch_losses)]
        data.append(dict(type="scatter", x=np.asarray(run.batch_steps[::stride], dtype=np.float64)
                         / run.batches_per_epoch, y=_finite(smooth[::stride]), mode="lines", name=plot_text(label),
                         line=dict(color=COLORS[index % len(COLORS)], width=2),
                         hovertemplate="%{fullData.name}: %{y:.4f}<extra></extra>"))
    xaxis = dict(title=dict(text="epoch"), rangemode="tozero")
    yaxis = dict(title=dict(text="loss" + (" (log scale)" if log_loss else "")), type="log" if log_loss else "linear")
    return go.Figure(dict(data=data, layout=_compare_layout("Training loss per batch (smoothed)", 380, xaxis, yaxis)))
