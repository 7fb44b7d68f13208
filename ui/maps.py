"""Heatmaps of weights and images: the Weights page's grid of class maps and its biases, the Draw page's maps.

No Streamlit here, like `ui.charts`: blue is evidence for a class, red against, white nothing,
on every page (Matplotlib's RdBu, as in tutorial 003).
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

from lrcore.datasets import DIGIT_SHAPE, REGISTRY
from ui.charts import FONT, SentFigure, class_title

# Matplotlib's RdBu as in tutorial 003: red for negative weights, white near 0, blue for positive.
WEIGHT_COLORS = diverging.RdBu
POSITIVE_COLOR, NEGATIVE_COLOR = "#2166ac", "#b2182b"

COLOUR, CHANNELS = "colour", "channels"  # a colour dataset's weights: one RGB image, or R, G, B maps side by side
COLUMNS = 5
MAP_HEIGHT = 200  # pixels per row of heatmaps
COMPACT_MAP_HEIGHT = 130  # in a half-width column (two runs side by side) the maps are ~60-95 px wide


def image_shape(dataset: str, checkpoint=None, pixels: int | None = None) -> tuple[int, int, int]:
    """(channels, height, width) of a model's images: the checkpoint's own record (a folder dataset need
    not be on this server), else its registered dataset's, else a square grey or colour picture of
    `pixels` inputs (a stored run of an image folder this server no longer has), else the digits'."""
    recorded = getattr(checkpoint, "image_shape", None)
    if recorded:
        return tuple(recorded)
    info = REGISTRY.get(dataset)
    if info is not None:
        return info.shape
    for channels in (1, 3):
        side = math.isqrt((pixels or 0) // channels)
        if side and channels * side * side == pixels:
            return (channels, side, side)
    return DIGIT_SHAPE


@functools.lru_cache(maxsize=16)
def _grid_layout(titles: tuple[str, ...]) -> dict:
    """make_subplots' layout for the grid of maps, built once (make_subplots is slow)."""
    columns = min(COLUMNS, len(titles))  # a binary model's one map gets the whole width
    rows = math.ceil(len(titles) / columns)
    fig = make_subplots(rows=rows, cols=columns, horizontal_spacing=0.02, vertical_spacing=0.08)
    axis = dict(showticklabels=False, ticks="", showgrid=False, zeroline=False, constrain="domain")
    for index, title in enumerate(titles, start=1):
        suffix = "" if index == 1 else str(index)
        # Square pixels, row 0 at the top like an image. The title is the x axis's, on top,
        # so it stays right above the image when the square shrinks its domain.
        fig.layout[f"xaxis{suffix}"].update(axis, side="top", title=dict(text=title, font=dict(size=16), standoff=4))
        fig.layout[f"yaxis{suffix}"].update(axis, scaleanchor=f"x{suffix}", autorange="reversed")
    fig.update_layout(font=FONT, height=MAP_HEIGHT * rows + 20, margin=dict(l=5, r=5, t=30, b=5))
    return fig.layout.to_plotly_json()


def _class_maps(weight: torch.Tensor, count: int, shape: tuple[int, int, int], mode: str = CHANNELS) -> np.ndarray:
    """Each weight row as an image: height x (channels * width), colour channels side by side, or
    (mode COLOUR, 3 channels) height x width x 3 for one RGB picture."""
    channels, height, width = shape
    maps = weight.detach().float().cpu().reshape(count, channels, height, width)
    if mode == COLOUR and channels == 3:
        return maps.permute(0, 2, 3, 1).numpy().astype(np.float32)
    return maps.permute(0, 2, 1, 3).reshape(count, height, channels * width).numpy().astype(np.float32)


def map_titles(class_names: Sequence[str], rows: int, rgb: bool = False) -> tuple[str, ...]:
    """A title per weight row: the class's, or for a binary model (one row) what its one map weighs up
    (positive = evidence for the second class, as the sigmoid's z)."""
    if rows == 1 and len(class_names) == 2:
        first, second = class_title(class_names[0]), class_title(class_names[1])
        return (f"evidence for {second} vs {first}" if rgb else f"evidence for {second} (blue) vs {first} (red)",)
    return tuple(class_title(name) for name in class_names)


def colour_weights(shape: tuple[int, int, int], mode: str) -> bool:
    """True when `shape`'s weights are drawn as RGB pictures (3 channels, mode COLOUR)."""
    return shape[0] == 3 and mode == COLOUR


def _scale(maps: np.ndarray) -> float:
    return float(np.abs(maps).max()) or 1.0


def _rgb_trace(grid: np.ndarray, bound: float, title: str, suffix: str) -> dict:
    """One class's colour weights as a picture: channel value 0.5 + w / (2 bound), mid-grey = 0 (plotly wants
    four bounds; the fourth, alpha, is unused with colormodel rgb)."""
    return dict(type="image", z=grid, zmin=[-bound] * 3 + [0], zmax=[bound] * 3 + [1], colormodel="rgb",
                xaxis=f"x{suffix}", yaxis=f"y{suffix}", name=title,
                hovertemplate=f"<b>{title}</b><br>row %{{y}}, column %{{x}}<br>weights R %{{z[0]:.4f}}, "
                              f"G %{{z[1]:.4f}}, B %{{z[2]:.4f}}<extra></extra>")


def weights_figure(weight: torch.Tensor, class_names: Sequence[str], shared_scale: bool = True,
                   limit: float | None = None, compact: bool = False,
                   shape: tuple[int, int, int] = DIGIT_SHAPE, mode: str = COLOUR) -> SentFigure:
    """One heatmap per weight row (an image of the dataset's `shape`) in a grid of 5 columns; blue
    positive, red negative, 0 white. A binary model (one row) has one map.

    Colour images (3 channels) in `mode` COLOUR: one RGB picture per row, each channel
    0.5 + w_c / (2 bound) on the same symmetric bound, so mid-grey is no evidence and a colour
    is the colour of pixels that are evidence for the class; in CHANNELS mode their R, G and B
    weights side by side in the diverging map.

    With `shared_scale` every map uses one symmetric range (the largest |weight| overall, or
    ±`limit` when given, so two runs' figures share one scale); otherwise each map is scaled
    to its own largest |weight|. `compact` is for a half-width column: lower, smaller titles,
    the colour bar under the grid so two grids side by side get maps of the same size.
    """
    rows = weight.shape[0]
    maps = _class_maps(weight, rows, shape, mode)
    rgb = colour_weights(shape, mode)
    titles = map_titles(class_names, rows, rgb)
    data = []
    for index, (grid, title) in enumerate(zip(maps, titles)):
        suffix = "" if index == 0 else str(index + 1)
        if rgb:
            data.append(_rgb_trace(grid, (limit or _scale(maps)) if shared_scale else _scale(grid), title, suffix))
            continue
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
    if shared_scale and not rgb:
        bound = limit or _scale(maps)
        layout["coloraxis"] = dict(colorscale=WEIGHT_COLORS, cmin=-bound, cmax=bound, colorbar=colorbar)
    return SentFigure(dict(data=data, layout=layout))


class WeightMaps:
    """The weights figure of one page session, refilled in place when only the numbers change.

    Building the grid's 20 axes takes plotly ~30 ms; swapping ten z arrays takes ~1 ms, which
    keeps a page that follows a fast run every second from taking CPU from training.
    """

    def __init__(self) -> None:
        self._figure: SentFigure | None = None
        self._shape: tuple | None = None
        self._source: object = None
        self._limit: float | None = None

    def figure(self, source: object, weight: torch.Tensor, class_names: Sequence[str],
               shared_scale: bool = True, limit: float | None = None, compact: bool = False,
               shape: tuple[int, int, int] = DIGIT_SHAPE, mode: str = COLOUR) -> SentFigure:
        """The figure for `weight`; `source` names those weights (e.g. run and snapshot).

        `limit`, `compact`, `shape` and `mode` are `weights_figure`'s: a compared run's figure keeps
        its maps and only follows the shared scale when the other run's weights grow.
        """
        rows = weight.shape[0]
        layout_key = (tuple(class_names), rows, shared_scale, compact, tuple(shape), colour_weights(shape, mode))
        if self._figure is None or layout_key != self._shape:
            self._figure = weights_figure(weight, class_names, shared_scale, limit, compact, shape, mode)
        elif source != self._source or limit != self._limit:
            maps = _class_maps(weight, rows, shape, mode)
            with self._figure.batch_update():
                if colour_weights(shape, mode):
                    for trace, grid in zip(self._figure.data, maps):
                        bound = (limit or _scale(maps)) if shared_scale else _scale(grid)
                        trace.update(z=grid, zmin=[-bound] * 3 + [0], zmax=[bound] * 3 + [1])
                elif source != self._source:
                    for trace, grid in zip(self._figure.data, maps):
                        trace.z = grid
                        if not shared_scale:
                            trace.zmin, trace.zmax = -_scale(grid), _scale(grid)
                if shared_scale and not colour_weights(shape, mode):
                    bound = limit or _scale(maps)
                    self._figure.layout.coloraxis.update(cmin=-bound, cmax=bound)
            self._figure.changed()
        self._shape, self._source, self._limit = layout_key, source, limit
        return self._figure


def bias_figure(bias: torch.Tensor, class_names: Sequence[str]) -> SentFigure:
    """The biases as horizontal bars, blue positive and red negative (a binary model: its one bias)."""
    values = [float(value) for value in bias.detach().float().cpu()]
    # A binary model's one bias: a short label (the map's long title was cut off beside the bar).
    titles = [f"for {class_title(class_names[-1])}"] if len(values) == 1 else [class_title(n) for n in class_names]
    bars = dict(type="bar", x=values, y=titles, orientation="h",
                marker=dict(color=[POSITIVE_COLOR if value >= 0 else NEGATIVE_COLOR for value in values]),
                hovertemplate="%{y}: bias %{x:.4f}<extra></extra>")
    rows = math.ceil(len(values) / COLUMNS)
    layout = dict(title=dict(text="Biases" if len(values) > 1 else "Bias", font=dict(size=18)), font=FONT, height=MAP_HEIGHT * rows + 20,
                  margin=dict(l=10, r=10, t=50, b=10), showlegend=False,
                  yaxis=dict(autorange="reversed"), xaxis=dict(title=dict(text="bias"), zeroline=True,
                                                               zerolinecolor="#888"))
    return SentFigure(dict(data=[bars], layout=layout))


def contribution_map(panel: torch.Tensor, limit: float) -> go.Figure:
    """One 28x28 map of weight x input on the symmetric range ±`limit`, its colour bar under it."""
    figure = go.Figure(go.Heatmap(z=panel.numpy(), zmin=-limit, zmax=limit, zmid=0, colorscale=WEIGHT_COLORS,
                                  colorbar=dict(orientation="h", thickness=10, y=-0.02, yanchor="top",
                                                len=1.0, tickfont=dict(size=10)),
                                  hovertemplate="row %{y}, col %{x}: %{z:.3f}<extra></extra>"))
    figure.update_xaxes(visible=False, constrain="domain")
    figure.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", constrain="domain")
    figure.update_layout(height=300, margin=dict(l=0, r=0, t=0, b=40))
    return figure
