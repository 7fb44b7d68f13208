"""Sweep: too low, too high, just right — many learning rates side by side, and a range test.

A sweep trains every learning rate of a log grid (optionally for several batch sizes and
weight decays) in a `SweepWorker` thread; configurations sharing a batch size train together
on the same minibatches. The range test (fastai's lr_find) runs in a `RangeTestWorker`.
Both live in `common.get_sweeps()`, so they keep running across page switches; the page
polls their snapshots from fragments while they are active. Every sweep is also recorded in
the sweep store (`common.get_sweep_store()`), so after a server restart it is still listed
under "Earlier sweeps" and opens as it ended (or as crashed, with its completed epochs).
"""
from __future__ import annotations

import math
import time

import plotly.graph_objects as go
import streamlit as st
from plotly.colors import sample_colorscale

from lrcore.config import LEARNING_RATE_RANGE, ConfigError, TrainConfig, defaults_for
from lrcore.settings import BY_NAME, OPTIMIZER_LABELS, SETTINGS
from lrcore.data import DATASET_TITLES, make_splits
from lrcore.lr_finder import END_LR, NUM_BATCHES, START_LR, RangeTestWorker
from lrcore.checkpoint import CheckpointError
from lrcore.runstore import RunStoreError
from lrcore.sweep import MAX_CONFIGS, SweepRecord, SweepWorker, grid_problems, log_grid, parse_numbers, sweep_configs
from lrcore.sweepstore import SweepStoreError, member_checkpoint_bytes
from ui import common
from ui.settings import setting_widget
from ui.text import md_escape

common.ensure_frame()  # first: a page opened alone reruns through dashboard.py

POLL_SECONDS = 0.5
COLORSCALE = "Plasma"
COLOR_SPAN = (0.0, 0.85)  # Plasma's last yellow is hard to see on white
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
FONT = dict(size=15)
# Settings every configuration of a sweep shares (the Train page's widgets, same ranges), so a
# sweep's configuration can reproduce any Train run; the learning rate, batch size and weight
# decay are swept as lists instead.
SHARED = [s.name for s in SETTINGS if s.label and s.name not in ("learning_rate", "batch_size", "weight_decay")]
# Widget defaults: the table's (deskew follows the dataset, below), fewer epochs than a Train run.
DEFAULTS = {**{f"sweep_{name}": BY_NAME[name].default for name in SHARED if name not in ("deskew", "per_class_limit")},
            "sweep_low": "0.001", "sweep_high": "100", "sweep_count": 11, "sweep_batch_sizes": "128",
            "sweep_weight_decays": "0", "sweep_epochs": 5, "sweep_limit_on": False, "sweep_per_class_limit": 500,
            "sweep_show_batches": True, "range_start": f"{START_LR:g}", "range_end": f"{END_LR:g}",
            "range_batches": NUM_BATCHES}


# ---------------------------------------------------------------- settings

def shared_settings() -> dict:
    """The shared settings from the widgets (per_class_limit None when the subset is off)."""
    state = st.session_state
    values = {name: state[f"sweep_{name}"] for name in SHARED if name != "per_class_limit"}
    for name, value in values.items():
        setting = BY_NAME[name]
        if setting.decimals is not None:  # a slider's float can be 0.30000000000000004
            values[name] = round(float(value), setting.decimals)
        elif setting.kind is int:
            values[name] = int(value)
    values["per_class_limit"] = int(state.sweep_per_class_limit) if state.sweep_limit_on else None
    return values


def parse_float(text: str, name: str, allowed: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError({name: f"“{text}” is not a number; {allowed}"}) from None
    return value


@st.cache_data(show_spinner=False, max_entries=64)
def train_size(dataset_name: str, validation_fraction: float, seed: int, per_class_limit: int | None = None) -> int:
    splits = make_splits(common.get_dataset(dataset_name), validation_fraction, seed, per_class_limit)
    return len(splits.train)


def read_settings(dataset_name: str) -> tuple[list[TrainConfig], dict[str, str]]:
    """The sweep's configurations from the widgets, or {control: message} for what is wrong."""
    state = st.session_state
    lo, hi = LEARNING_RATE_RANGE
    problems: dict[str, str] = {}
    learning_rates: list[float] = []
    try:
        low = parse_float(state.sweep_low, "low", f"use a number from {lo:g} to {hi:g}")
        high = parse_float(state.sweep_high, "high", f"use a number from {lo:g} to {hi:g}")
        problems.update(grid_problems(low, high, state.sweep_count))
        if not problems:
            learning_rates = log_grid(low, high, state.sweep_count)
    except ConfigError as error:
        problems.update(error.problems)
    batch_sizes: list[int] = []
    try:
        batch_sizes = parse_numbers(state.sweep_batch_sizes, int, "batch_sizes", "e.g. 64, 128, 256")
        if not batch_sizes:
            problems["batch_sizes"] = "enter at least one batch size, e.g. 128"
        shared = shared_settings()
        size = train_size(dataset_name, shared["validation_fraction"], shared["seed"], shared["per_class_limit"])
        too_big = [b for b in batch_sizes if not 1 <= b <= size]
        if too_big:
            problems["batch_sizes"] = (f"{', '.join(map(str, too_big))} not allowed: each batch size must be from 1 "
                                       f"to the training set size ({size:,} images)")
    except ConfigError as error:
        problems.update(error.problems)
    decays: list[float] = []
    try:
        decays = parse_numbers(state.sweep_weight_decays, float, "weight_decays", "e.g. 0, 0.001, 0.01")
        if not decays:
            problems["weight_decays"] = "enter at least one weight decay, e.g. 0"
        decay = BY_NAME["weight_decay"]
        bad = [d for d in decays if decay.problem(d)]
        if bad:
            problems["weight_decays"] = (f"{', '.join(f'{d:g}' for d in bad)} not allowed: each must be from "
                                         f"{decay.low:g} to {decay.high:g}")
    except ConfigError as error:
        problems.update(error.problems)
    if problems:
        return [], problems
    try:
        base = TrainConfig.for_dataset(dataset_name, **shared_settings())
        return sweep_configs(base, learning_rates, batch_sizes, decays), {}
    except ConfigError as error:
        return [], error.problems


def problem_note(problems: dict[str, str], *names: str) -> None:
    for name in names:
        if name in problems:
            st.error(md_escape(problems[name], 300))  # the messages quote what was typed


# ---------------------------------------------------------------- charts

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


def styles(members) -> dict[tuple, str]:
    """A dash per (batch size, weight decay) combination."""
    combos = list(dict.fromkeys((m.config.batch_size, m.config.weight_decay) for m in members))
    return {combo: DASHES[i % len(DASHES)] for i, combo in enumerate(combos)}


def style_legend(members, dashes: dict[tuple, str]) -> list[dict]:
    if len(dashes) < 2:
        return []
    show_batch = len({b for b, _ in dashes}) > 1
    show_decay = len({d for _, d in dashes}) > 1
    traces = []
    for (batch, decay), dash in dashes.items():
        name = " · ".join(([f"batch {batch}"] if show_batch else []) + ([f"wd {decay:g}"] if show_decay else []))
        traces.append(dict(type="scatter", x=[None], y=[None], mode="lines", name=name,
                           line=dict(color="#555", dash=dash, width=2)))
    return traces


def layout(title: str, height: int, xaxis: dict, yaxis: dict) -> dict:
    # Legends (line styles, range-test curves) sit under the x axis: half-width charts have no room on top.
    return dict(title=dict(text=title, font=dict(size=18)), font=FONT, height=height,
                margin=dict(l=10, r=10, t=50, b=10), hovermode="closest", xaxis=xaxis, yaxis=yaxis,
                legend=dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0))


def epoch_figure(record, metric: str) -> go.Figure:
    """Validation accuracy or loss per epoch: one line per configuration, coloured by learning rate."""
    members = record.members
    colors, low, high = lr_colors([m.config.learning_rate for m in members])
    dashes = styles(members)
    data = []
    for member, color in zip(members, colors):
        x = [row["epoch"] for row in member.epochs]
        y = [row[metric] if math.isfinite(row[metric]) else None for row in member.epochs]
        diverged = member.status == "diverged"
        symbols = ["x" if diverged and i == len(x) - 1 else "circle" for i in range(len(x))]
        dash = dashes[(member.config.batch_size, member.config.weight_decay)]
        data.append(dict(type="scatter", x=x, y=y, mode="lines+markers", name=member.label, showlegend=False,
                         line=dict(color=color, width=2.5, dash=dash),
                         marker=dict(size=[13 if s == "x" else 6 for s in symbols], symbol=symbols, color=color),
                         hovertemplate=f"<b>{member.label}</b>{' (diverged)' if diverged else ''}<br>epoch %{{x}}: "
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
        yaxis = dict(title=dict(text="validation loss"), range=[0, loss_ceiling(record)])
        title = "Validation loss per epoch"
    return go.Figure(dict(data=data, layout=layout(title, 400 + 25 * len(legend), xaxis, yaxis)))


def loss_ceiling(record) -> float:
    """Top of the loss axes: a bit above an untrained model's loss, so blown-up curves leave the chart."""
    return 1.5 * math.log(max(len(record.class_names), 2))


def batch_figure(record) -> go.Figure:
    """Moving average of the minibatch loss per configuration; diverging ones shoot off the top."""
    members = record.members
    colors, low, high = lr_colors([m.config.learning_rate for m in members])
    dashes = styles(members)
    # Several batch sizes take different numbers of steps per epoch: put them on one epoch axis.
    by_epoch = len({m.config.batch_size for m in members}) > 1 and record.train_size > 0
    data = []
    for member, color in zip(members, colors):
        dash = dashes[(member.config.batch_size, member.config.weight_decay)]
        steps_per_epoch = math.ceil(record.train_size / member.config.batch_size) if by_epoch else 1
        x = [step / steps_per_epoch for step in member.batch_steps]
        where = "epoch %{x:.2f}" if by_epoch else "step %{x}"
        data.append(dict(type="scatter", x=x, y=member.batch_smoothed, mode="lines",
                         name=member.label, showlegend=False, line=dict(color=color, width=2, dash=dash),
                         hovertemplate=f"<b>{member.label}</b><br>{where}: loss %{{y:.4f}}<extra></extra>"))
    data += style_legend(members, dashes)
    data.append(colorbar_trace(low, high))
    xaxis = dict(title=dict(text="epoch" if by_epoch else "step (minibatch)"), rangemode="tozero")
    yaxis = dict(title=dict(text="training loss (moving average, α = 0.1)"), range=[0, loss_ceiling(record)])
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


# ---------------------------------------------------------------- live parts

def percent(value) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.1%}"


def stored_sweep(sweep_id: str) -> SweepRecord | None:
    """A sweep read back from disk (kept per session: a recorded sweep no longer changes)."""
    memo = st.session_state.setdefault("sweep_loaded", {})
    if sweep_id not in memo:
        try:
            memo.clear()  # one loaded sweep per session is enough
            memo[sweep_id] = common.get_sweep_store().load(sweep_id)
        except SweepStoreError:
            return None
    return memo[sweep_id]


def shown_sweep(sweep_id: str | None) -> SweepRecord | None:
    """The sweep to show: a running (or this server's) sweep's snapshot, else its record on disk."""
    if not sweep_id:
        return None
    worker = common.get_sweeps().get(sweep_id)
    return worker.snapshot() if worker is not None else stored_sweep(sweep_id)


def show_sweep(sweep_id: str | None) -> None:
    """Make `sweep_id` the sweep this session shows (and its link), or show none."""
    if sweep_id:
        st.session_state.sweep_id = sweep_id
        st.query_params["sweep"] = sweep_id
    else:
        st.session_state.pop("sweep_id", None)
        st.query_params.pop("sweep", None)


def live_sweep(sweep_id: str | None, was_active: bool) -> None:
    """Progress and overlaid curves of this session's sweep, redrawn from the worker's snapshot."""
    record = shown_sweep(sweep_id)
    if record is None:
        st.info("Choose a range of learning rates above and press **Start sweep**: one curve per learning rate "
                "will appear here as they train. Sweeps trained before are under **Earlier sweeps**.",
                icon=":material/arrow_upward:")
        return
    if was_active and not record.active:
        st.rerun()  # just finished: redraw the whole page (results table, buttons, polling off)
    save_error = common.get_sweep_store().save_errors.get(sweep_id)
    if save_error:
        st.warning(f"This sweep could not be saved: {md_escape(save_error, 400)}. Its results stay here until the "
                   "server restarts; keep a configuration as a run or download its checkpoint to keep it.",
                   icon=":material/save:")
    groups = len(record.groups)
    if record.active:
        progress = record.progress
        where = (f"epoch {progress['epoch']} of {record.members[0].config.epochs} · batch {progress['batch']} of "
                 f"{progress['batches_per_epoch']}") if progress else "evaluating the untrained models (epoch 0)…"
        group_text = f"batch-size group {record.group + 1} of {groups} · " if groups > 1 else ""
        st.progress(record.fraction_done(),
                    text=f"Training {len(record.members)} configurations · {group_text}{where}")
    else:
        st.progress(1.0 if record.status == "done" else record.fraction_done(),
                    text=f"{record.status.capitalize()}: {len(record.members)} configurations "
                         f"in {record.elapsed:.1f} s")
    if sweep_id not in common.get_sweeps():
        when = time.strftime("%d %b %Y, %H:%M", time.localtime(record.started))
        config = record.members[0].config  # dataset, epochs and optimizer are the same for every configuration
        st.caption(f":material/history: Saved sweep of {when}, read back from disk: {config.dataset}, "
                   f"{config.epochs} epochs, {OPTIMIZER_LABELS[config.optimizer]}.")
    if record.status == "failed":
        st.error(md_escape(record.message, 500), icon=":material/error:")
    elif record.status == "crashed":
        st.warning(f"This sweep did not finish: {md_escape(record.message, 500)}.", icon=":material/warning:")
    if not any(member.epochs for member in record.members):
        return
    left, right = st.columns(2)
    left.plotly_chart(epoch_figure(record, "validation_accuracy"), key="sweep_chart_accuracy")
    right.plotly_chart(epoch_figure(record, "validation_loss"), key="sweep_chart_loss")
    if st.session_state.sweep_show_batches:
        st.plotly_chart(batch_figure(record), key="sweep_chart_batches")
    diverged = [m for m in record.members if m.status == "diverged"]
    if diverged:
        names = ", ".join(m.label for m in diverged)
        they = "they were" if len(diverged) > 1 else "it was"
        st.warning(f"**Too high:** {names} diverged (the loss blew up), so {they} stopped: the line ends with ✕ "
                   "and leaves the loss charts. The other configurations carried on.",
                   icon=":material/local_fire_department:")
    st.caption(f"{record.train_size:,} training and {record.validation_size:,} validation images · device "
               f"{record.device or '…'} · colour = learning rate (dark: low, bright: high). Epoch 0 is the "
               "untrained model. Hover a line to see its settings.")


def results_table(record) -> None:
    """Every configuration ranked by validation accuracy, and a way to open one in Train."""
    st.subheader("Results, best first")
    rows = []
    for rank, member in enumerate(record.ranked(), start=1):
        status = member.status
        last = member.epochs[-1] if member.epochs else {}
        failed = member.status in ("diverged", "failed")  # no numbers worth ranking
        rows.append({"rank": rank, "learning rate": member.config.learning_rate,
                     "batch size": member.config.batch_size, "weight decay": member.config.weight_decay,
                     "status": status,
                     "validation accuracy": math.nan if failed else member.validation_accuracy,
                     # text, so a missing value reads "–" rather than "None"
                     "validation loss": "–" if failed or not last else f"{last['validation_loss']:.4f}",
                     "train accuracy": "–" if failed or not last else f"{last['train_accuracy']:.1%}",
                     "epochs": member.epochs_done,
                     "note": member.message})
    hidden = [name for name, column in (("batch size", "batch_size"), ("weight decay", "weight_decay"))
              if len({getattr(m.config, column) for m in record.members}) == 1]
    st.dataframe(rows, hide_index=True, height=min(len(rows), 16) * 35 + 40, column_order=[c for c in rows[0] if c not in hidden], column_config={
        "learning rate": st.column_config.NumberColumn(format="%g"),
        "weight decay": st.column_config.NumberColumn(format="%g"),
        "validation accuracy": st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0),
        "note": st.column_config.TextColumn(width="large")})
    best = record.best()
    if best is None:
        st.warning("No configuration trained without diverging: try lower learning rates.")
        return
    ranked = record.ranked()
    st.success(f"Best: **{best.label}** with {percent(best.validation_accuracy)} validation accuracy after "
               f"{best.epochs_done} epochs.", icon=":material/trophy:")
    pick_col, open_col = st.columns([3, 1], vertical_alignment="bottom")
    choice = pick_col.selectbox("Configuration to open in Train", range(len(ranked)), key="sweep_pick",
                                format_func=lambda i: f"#{i + 1}: {ranked[i].label} ({ranked[i].status}, "
                                                      f"validation {percent(ranked[i].validation_accuracy)})")
    chosen = ranked[choice or 0]
    if open_col.button("Open in Train", icon=":material/model_training:", type="primary", width="stretch",
                       help="Fill the Train page's settings with this configuration."):
        common.open_in_train(chosen.config)
    open_col.button("Keep as a run", icon=":material/save:", width="stretch", disabled=chosen.weight is None,
                    on_click=keep_as_run, args=(record, chosen),
                    help="Save this configuration's trained weights as a run: then open it in Weights, Draw or "
                         "Evaluate from the Runs page." if chosen.weight is not None else
                         "Its weights were not saved (the sweep stopped before this configuration finished).")
    notice = st.session_state.pop("sweep_notice", None)
    if notice:
        kind, text = notice
        if kind == "error":
            st.error(text, icon=":material/error:")
        else:
            st.success(text, icon=":material/save:")
            st.page_link("pages/runs.py", label="Open the Runs page", icon=":material/history:")


def keep_as_run(record: SweepRecord, member) -> None:
    """Store one configuration's weights as a run (status imported) in the run store."""
    try:
        common.get_run_store().import_checkpoint(member_checkpoint_bytes(record, member),
                                                 name=f"sweep: {member.label}", source="sweep", epochs=member.epochs)
    except (RunStoreError, CheckpointError, OSError) as error:
        st.session_state.sweep_notice = ("error", f"Could not keep {member.label} as a run: {md_escape(error, 500)}")
        return
    st.session_state.sweep_notice = ("success", f"Kept **{member.label}** as a run: it is on the Runs page, "
                                                "ready to open in Weights, Draw or Evaluate.")


def earlier_sweeps(active: bool) -> None:
    """Sweeps recorded on disk: open one (its charts and table come back) or delete it."""
    store = common.get_sweep_store()
    sweeps = store.list_sweeps()
    shown = st.session_state.get("sweep_id")
    with st.expander(f"Earlier sweeps ({len(sweeps)}), saved on disk", icon=":material/history:",
                     expanded=shown is None and bool(sweeps)):
        if not sweeps:
            st.caption("None yet: every sweep you start is saved here, and stays after a restart.")
            return
        ids = [sweep.sweep_id for sweep in sweeps]
        titles = {sweep.sweep_id: sweep.title for sweep in sweeps}
        if st.session_state.get("sweep_pick_earlier") not in ids:
            st.session_state.sweep_pick_earlier = shown if shown in ids else ids[0]
        pick_col, show_col, delete_col = st.columns([4, 1, 1], vertical_alignment="bottom")
        picked = pick_col.selectbox("Sweep", ids, key="sweep_pick_earlier", format_func=titles.get)
        show_col.button("Show", icon=":material/visibility:", width="stretch", disabled=picked == shown or active,
                        on_click=show_sweep, args=(picked,),
                        help="A sweep is running: wait for it or stop it first." if active else
                             "Show this sweep's curves and results above.")
        running = next(sweep for sweep in sweeps if sweep.sweep_id == picked).status == "running"
        confirming = st.session_state.get("sweep_confirm_delete") == picked
        delete_col.button("Delete", icon=":material/delete:", width="stretch", disabled=running or confirming,
                          key="sweep_delete", on_click=st.session_state.__setitem__,
                          args=("sweep_confirm_delete", picked),
                          help="Still training: stop it first." if running else "Remove this sweep from disk.")
        if confirming:
            st.warning(f"Delete the sweep of {md_escape(titles[picked].split(' · ')[0])} for good?",
                       icon=":material/delete:")
            yes_col, no_col, _ = st.columns([1, 1, 4])
            yes_col.button("Yes, delete", type="primary", key="sweep_delete_yes", on_click=delete_sweep,
                           args=(picked,))
            no_col.button("Cancel", key="sweep_delete_no", on_click=st.session_state.pop,
                          args=("sweep_confirm_delete", None))
        for folder, why in store.skipped:
            st.caption(f"Skipped folder {md_escape(folder)}: {md_escape(why, 300)}")


def delete_sweep(sweep_id: str) -> None:
    st.session_state.pop("sweep_confirm_delete", None)
    try:
        common.get_sweep_store().delete(sweep_id)
    except (SweepStoreError, OSError) as error:
        st.session_state.sweep_notice_delete = f"Could not delete the sweep: {md_escape(error, 500)}"
        return
    common.get_sweeps().pop(sweep_id, None)
    st.session_state.get("sweep_loaded", {}).pop(sweep_id, None)
    if st.session_state.get("sweep_id") == sweep_id:
        show_sweep(None)


def live_range_test(test_id: str | None, was_active: bool) -> None:
    worker = common.get_sweeps().get(test_id)
    if worker is None:
        st.info("Press **Find a learning rate**: about 100 minibatches with a learning rate growing from tiny to "
                "huge, in a few seconds.", icon=":material/arrow_upward:")
        return
    record = worker.snapshot()
    if was_active and not record.active:
        st.rerun()
    total = record.num_batches
    if record.active:
        st.progress(min(len(record.learning_rates) / total, 1.0),
                    text=f"Batch {len(record.learning_rates)} of {total} · learning rate "
                         f"{record.learning_rates[-1] if record.learning_rates else 0:.3g}")
    if record.status == "failed":
        st.error(md_escape(record.message, 500), icon=":material/error:")
        return
    if record.learning_rates:
        st.plotly_chart(range_figure(record), key="range_chart")


def range_test_config(dataset_name: str) -> TrainConfig:
    """The sweep's settings with its first batch size and weight decay (the grid may be invalid)."""
    state = st.session_state
    return TrainConfig.for_dataset(
        dataset_name, batch_size=parse_numbers(state.sweep_batch_sizes, int, "batch_sizes", "")[0],
        weight_decay=parse_numbers(state.sweep_weight_decays, float, "weight_decays", "")[0], **shared_settings())


def start_sweep(configs: list[TrainConfig], dataset) -> None:
    worker = SweepWorker(configs, dataset, listeners=[common.get_sweep_store().listener()])
    sweeps = common.get_sweeps()
    sweeps[worker.sweep_id] = worker
    show_sweep(worker.sweep_id)
    worker.start()


def sweep_around() -> None:
    """Put a grid from suggestion / 10 to suggestion x 10 into the sweep controls."""
    suggestion = st.session_state.get("range_suggestion")
    if suggestion:
        lo, hi = LEARNING_RATE_RANGE
        st.session_state.sweep_low = f"{max(round_lr(suggestion / 10), lo):g}"
        st.session_state.sweep_high = f"{min(round_lr(suggestion * 10), hi):g}"


# ---------------------------------------------------------------- the page

for key, value in DEFAULTS.items():
    if key not in st.session_state:
        st.session_state[key] = value
deskew_for, dataset_now = st.session_state.get("sweep_deskew_dataset"), common.selected_dataset_name()
if deskew_for != dataset_now and (deskew_for is None or st.session_state.sweep_deskew == defaults_for(deskew_for)["deskew"]):
    # Deskewing's default depends on the dataset (on for digits): follow it unless the user chose.
    st.session_state.sweep_deskew = defaults_for(dataset_now)["deskew"]
st.session_state.sweep_deskew_dataset = dataset_now
if "sweep_id" in st.session_state and st.query_params.get("sweep") != st.session_state.sweep_id:
    st.query_params["sweep"] = st.session_state.sweep_id  # page switches clear the URL; a refresh needs it
elif "sweep_id" not in st.session_state and st.query_params.get("sweep"):  # a browser refresh or a link
    if shown_sweep(st.query_params["sweep"]) is not None:
        st.session_state.sweep_id = st.query_params["sweep"]
    else:
        st.warning(f"The sweep in this link ({md_escape(st.query_params['sweep'])}) is not on this server: it was "
                   "deleted, or recorded elsewhere.", icon=":material/link_off:")

st.title("Sweep")
st.markdown("**Too low, too high, just right — on one screen.** Train many learning rates at once, each on the "
            "same minibatches, and watch their curves side by side. Colour = learning rate, from dark (low) to "
            "bright (high).")
LOOK_FOR = [(":material/hourglass_bottom: Too low", "dark lines",
             "The loss falls slowly; the accuracy is still climbing at the end."),
            (":material/check_circle: Just right", "middle colours",
             "The loss falls fastest and the validation accuracy ends highest: the top of the results table."),
            (":material/local_fire_department: Too high", "bright lines",
             "The loss jumps around or blows up: marked diverged, the line ends with ✕ and leaves the chart.")]
for column, (title, colour, text) in zip(st.columns(3), LOOK_FOR):
    column.container(border=True).markdown(f"**{title}** · {colour}  \n{text}")

dataset_name = common.selected_dataset_name()
dataset = common.dataset_or_stop(dataset_name)
record = shown_sweep(st.session_state.get("sweep_id"))
active = record is not None and record.active

st.header("1 · Sweep learning rates")
settings_box = st.container(border=True)
# Three columns, as on Train: what is swept, the optimizer, the data. Four were too narrow at
# 1024x768 (labels on three lines), and the data settings then needed a second row.
lr_col, optimizer_col, data_col = settings_box.columns(3, gap="medium")
with lr_col:
    low_col, high_col = st.columns(2)
    low_col.text_input("Lowest learning rate", key="sweep_low", persist_state="session")
    high_col.text_input("Highest learning rate", key="sweep_high", persist_state="session")
    # from 3: Home's "too low, just right, too high" card opens the Sweep with three rates
    st.slider("How many learning rates", 3, MAX_CONFIGS, key="sweep_count", persist_state="session",
              help="Spread evenly on a log scale between the lowest and the highest.")
configs, problems = read_settings(dataset_name)
with lr_col:
    problem_note(problems, "low", "high", "count")
    st.text_input("Batch sizes", key="sweep_batch_sizes", persist_state="session",
                  help="One or more, separated by commas. Each batch size is a separate pass over the data.")
    problem_note(problems, "batch_sizes")
    st.text_input("Weight decays", key="sweep_weight_decays", persist_state="session",
                  help="One or more, separated by commas (0 = none). Trained together with the learning rates.")
    problem_note(problems, "weight_decays")
    setting_widget(st.number_input, "epochs", "sweep_epochs", help=None)
with optimizer_col:
    setting_widget(st.radio, "optimizer", "sweep_optimizer")
    setting_widget(st.slider, "momentum", "sweep_momentum", disabled=st.session_state.sweep_optimizer != "momentum")
    setting_widget(st.slider, "validation_fraction", "sweep_validation_fraction", help=None)
    setting_widget(st.number_input, "seed", "sweep_seed",
                   help="The same seed gives every configuration the same start and the same minibatches.")
with data_col:
    setting_widget(st.radio, "normalization", "sweep_normalization")
    setting_widget(st.toggle, "deskew", "sweep_deskew")
    setting_widget(st.selectbox, "batch_order", "sweep_batch_order")
    st.toggle("Use a subset", key="sweep_limit_on", persist_state="session", help=BY_NAME["per_class_limit"].help)
    setting_widget(st.number_input, "per_class_limit", "sweep_per_class_limit", help=None,
                   disabled=not st.session_state.sweep_limit_on)
    for name in SHARED[SHARED.index("deskew") + 1:]:  # settings added to the table later: default widgets
        setting_widget(None, name, f"sweep_{name}")
problem_note(problems, "configs", *(name for name in problems if name not in
                                    ("low", "high", "count", "batch_sizes", "weight_decays", "configs")))
if configs:
    batch_count = len({c.batch_size for c in configs})
    rates = sorted({c.learning_rate for c in configs})
    passes = f"{batch_count} pass{'es' if batch_count > 1 else ''}"
    st.caption(f"{len(configs)} configurations on {DATASET_TITLES[dataset_name]}; learning rates "
               f"{', '.join(f'{lr:g}' for lr in rates)}. Trained in {passes} over the data (one per batch size), "
               "each pass one matrix product per step for all its configurations.")

start_col, stop_col, toggle_col = st.columns([1, 1, 3], vertical_alignment="center")
start_help = ("A sweep is running: stop it or let it finish first." if active else
              "Fix the settings marked in red first." if problems else "Train every configuration now.")
if start_col.button("Start sweep", type="primary", icon=":material/play_arrow:", disabled=bool(problems) or active,
                    help=start_help, width="stretch"):
    start_sweep(configs, dataset)
    st.rerun()
if stop_col.button("Stop", icon=":material/stop:", disabled=not active, width="stretch", key="sweep_stop"):
    common.get_sweeps()[st.session_state.sweep_id].stop()
    st.rerun()
toggle_col.toggle("Show the per-minibatch loss", key="sweep_show_batches", persist_state="session")
earlier_sweeps(active)
if "sweep_notice_delete" in st.session_state:
    st.error(st.session_state.pop("sweep_notice_delete"), icon=":material/error:")

st.fragment(live_sweep, run_every=POLL_SECONDS if active else None)(st.session_state.get("sweep_id"), active)
if record is not None and not record.active and any(m.epochs for m in record.members):
    results_table(record)

st.header("2 · Find a learning rate (range test)")
st.caption("fastai's *lr_find*: starting from the untrained model, take about 100 minibatch steps while the "
           "learning rate grows exponentially from tiny to huge, and plot the loss. The suggestion is where the "
           "smoothed loss falls fastest; the loss blowing up on the right shows where learning rates become too "
           "high. The weights are left untouched: it is a quick look, not a training run. It uses the settings "
           "above (optimizer, normalisation, seed, the first batch size and weight decay).")
test_id = st.session_state.get("range_test_id")
test_worker = common.get_sweeps().get(test_id)
test_record = test_worker.snapshot() if test_worker is not None else None
testing = test_record is not None and test_record.active
start_col, end_col, batches_col, button_col = st.columns([1, 1, 1, 1.4], vertical_alignment="bottom")
start_col.text_input("From learning rate", key="range_start", persist_state="session")
end_col.text_input("To learning rate", key="range_end", persist_state="session")
batches_col.number_input("Minibatches", 20, 1000, key="range_batches", step=10, persist_state="session")
range_problems: dict[str, str] = {}
try:
    range_start = parse_float(st.session_state.range_start, "start", "use e.g. 1e-6")
    range_end = parse_float(st.session_state.range_end, "end", "use e.g. 10")
    range_problems = grid_problems(range_start, range_end, 2)
except ConfigError as error:
    range_problems = error.problems
for message in range_problems.values():
    st.error(f"Range test: {md_escape(message.replace('must', 'each end must', 1), 300)}")
base_problems = {k: v for k, v in problems.items() if k in ("batch_sizes", "weight_decays")}
for message in base_problems.values():
    st.error(f"Range test needs a valid first batch size and weight decay: {md_escape(message, 300)}")
if button_col.button("Find a learning rate", icon=":material/search:", width="stretch",
                     disabled=testing or bool(range_problems or base_problems),
                     type="primary" if record is None else "secondary"):
    tester = RangeTestWorker(range_test_config(dataset_name), dataset, start_lr=range_start, end_lr=range_end,
                             num_batches=int(st.session_state.range_batches))
    common.get_sweeps()[tester.test_id] = tester
    st.session_state.range_test_id = tester.test_id
    tester.start()
    st.rerun()

st.fragment(live_range_test, run_every=POLL_SECONDS if testing else None)(test_id, testing)
if test_record is not None and test_record.result is not None and not testing:
    result = test_record.result
    config = test_record.config
    if result.suggestion is None:
        st.warning(f"No suggestion: {md_escape(result.message, 300)}.")
    else:
        suggestion = round_lr(result.suggestion)
        st.session_state.range_suggestion = suggestion
        lowest = f"; the smoothed loss is lowest at lr {result.minimum_lr:.2g}, and rates beyond that are too high" \
            if result.minimum_lr else ""
        st.success(f"Suggested learning rate for {OPTIMIZER_LABELS[config.optimizer]} at batch size "
                   f"{config.batch_size}: **{suggestion:g}** (where the smoothed loss falls fastest{lowest}).",
                   icon=":material/target:")
        use_col, around_col, _ = st.columns([1.3, 1.3, 2])
        if use_col.button("Use this learning rate in Train", icon=":material/model_training:", type="primary",
                          width="stretch"):
            common.open_in_train(config.replace(learning_rate=suggestion))
        around_col.button("Sweep around it", icon=":material/science:", width="stretch", on_click=sweep_around,
                          disabled=active, help="Set the sweep's range to suggestion ÷ 10 … suggestion × 10.")
