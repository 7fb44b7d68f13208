"""Runs: every training run, kept on disk; compare curves, rename, download, export, open, delete.

Runs come from the run store (`common.get_store()`), which the pages and the command
line write to, so the list survives refreshes and server restarts. The table and what
depends on its selection live in one fragment that polls while a run is training.
Row selections are positions in the table, so the selected run ids are remembered and
re-applied when the order changes (a new run on top, a run deleted).
"""
from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.colors import qualitative

from lrcore.checkpoint import MAX_CHECKPOINT_BYTES, CheckpointError, checkpoint_bytes
from lrcore.data import DATASET_TITLES
from lrcore.naming import SHORT_NAMES, differing_settings, legend_labels, setting_text
from lrcore.settings import SETTINGS
from lrcore.runstore import RunStore, RunStoreError, StoredRun, describe_write_error, epochs_csv, store_limit_mb
from ui import charts, common, uploads
from ui.text import md_escape, plot_text

common.ensure_frame()  # first: a page opened alone reruns through dashboard.py

TABLE_KEY = "runs_table"
POLL_SECONDS = 2.0  # a listing: fresh enough, and cheap for the server while it trains
COLORS = qualitative.Plotly
MAX_UPLOAD_MB = MAX_CHECKPOINT_BYTES // (1024 * 1024)
LONG_NAMES = {setting.name: setting.long for setting in SETTINGS}  # "Same for all: learning rate 0.5"
CHECKPOINT_METRICS = ("test_loss", "test_accuracy", "validation_loss", "validation_accuracy", "epochs_completed")
STATUS_TEXT = {"imported": "uploaded"}  # plain words: the table is drawn on a canvas, emoji fonts vary
SOURCES = {"dashboard": "trained in the dashboard", "cli": "trained with python -m lrcore",
           "upload": "uploaded checkpoint", "sweep": "kept from a learning-rate sweep (Sweep page)"}
OPEN_PAGES = [("pages/weights.py", "Weights", ":material/grid_view:"), ("pages/draw.py", "Draw", ":material/draw:"),
              ("pages/evaluate.py", "Evaluate", ":material/fact_check:")]


# ---------------------------------------------------------------- text

def duration_text(seconds: float) -> str:
    if not seconds:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def status_text(run: StoredRun) -> str:
    if run.active:
        state = "paused" if run.phase == "paused" else "training"
        epoch = run.progress.get("epoch")
        return f"{state} (epoch {epoch or run.epochs_done + 1} of {run.config.epochs})"
    if run.status == "imported" and run.source == "sweep":
        return "kept from a sweep"
    text = STATUS_TEXT.get(run.status, run.status)
    return f"{text}, not fully saved" if run.save_error else text


def size_text(size: float) -> str:
    if size < 1e6:
        return f"{size / 1e3:,.0f} kB"
    return f"{size / 1e6:,.1f} MB" if size < 10e6 else f"{size / 1e6:,.0f} MB"


def percent_or_none(value) -> float | None:
    return value * 100 if isinstance(value, (int, float)) and math.isfinite(value) else None


def file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:60] or "run"


# ---------------------------------------------------------------- table and selection

def runs_table(runs: list[StoredRun]) -> pd.DataFrame:
    rows = []
    for run in runs:
        config = run.config
        rows.append({
            "Name": run.name,
            "Status": status_text(run),
            "Test acc.": percent_or_none(run.test_accuracy),
            "Best val. acc.": percent_or_none(run.best_validation_accuracy),
            "Learning rate": f"{config.learning_rate:g}",
            "Batch size": config.batch_size,
            "Optimizer": setting_text("optimizer", config.optimizer),
            "Weight decay": f"{config.weight_decay:g}",
            "Epochs": f"{run.epochs_done} / {config.epochs}" if run.status != "imported" or run.source == "sweep"
            else str(config.epochs),
            "Normalisation": setting_text("normalization", config.normalization),
            "Validation": config.validation_fraction,
            "Per class": setting_text("per_class_limit", config.per_class_limit),
            "Dataset": config.dataset,
            "Duration": duration_text(run.duration),
            "Started": datetime.fromtimestamp(run.created) if run.created else None,
        })
    return pd.DataFrame(rows)


TABLE_COLUMNS = {
    "Name": st.column_config.TextColumn(width="medium"),
    "Status": st.column_config.TextColumn(width="medium"),
    "Batch size": st.column_config.NumberColumn(format="%d"),
    "Validation": st.column_config.NumberColumn("Val. fraction", format="%.2f",
                                                help="Share of the training images held out for validation"),
    "Best val. acc.": st.column_config.NumberColumn(format="%.2f%%", help="Best validation accuracy of any epoch"),
    "Test acc.": st.column_config.NumberColumn(format="%.2f%%", help="Accuracy on the test set, once finished"),
    "Started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
}


def keep_selection(order: list[str]) -> None:
    """Re-apply the remembered selected run ids if the table's rows moved (before the table is drawn)."""
    wanted = st.session_state.pop("runs_select", None)  # a run to select, e.g. just uploaded
    previous = st.session_state.get("runs_order")
    if wanted is None and previous is not None and previous != order:
        wanted = [previous[i] for i in selected_rows() if i < len(previous)]
    if wanted is not None:
        rows = [order.index(run_id) for run_id in wanted if run_id in order]
        st.session_state[TABLE_KEY] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    st.session_state.runs_order = order


def selected_rows() -> list[int]:
    state = st.session_state.get(TABLE_KEY)
    try:
        return list(state["selection"]["rows"])
    except (KeyError, TypeError):
        return []


# ---------------------------------------------------------------- comparison charts

def _layout(title: str, height: int, xaxis: dict, yaxis: dict) -> dict:
    return dict(title=dict(text=title, font=dict(size=18)), font=charts.FONT, height=height,
                margin=dict(l=10, r=10, t=90, b=10), hovermode="x unified", xaxis=xaxis, yaxis=yaxis,
                legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0))


def _finite(values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    array[~np.isfinite(array)] = np.nan  # a gap in the line
    return array


def epoch_curves(runs: list[StoredRun], labels: list[str], metric: str, splits: list[str],
                 log_loss: bool) -> go.Figure:
    """One line per run and split; colour = run, solid = validation, dashed = training."""
    data = []
    value_format = ".2%" if metric == "accuracy" else ".4f"
    for index, (run, label) in enumerate(zip(runs, labels)):
        color = COLORS[index % len(COLORS)]
        epochs = np.asarray([row["epoch"] for row in run.epochs], dtype=np.int32)
        for number, split in enumerate(splits):
            name = "validation" if split == "validation" else "training"
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
    return go.Figure(dict(data=data, layout=_layout(title, 430, xaxis, yaxis)))


def batch_curves(runs: list[StoredRun], labels: list[str], log_loss: bool) -> go.Figure:
    """Smoothed per-batch training loss against epochs (so runs with different batch sizes line up)."""
    data = []
    for index, (run, label) in enumerate(zip(runs, labels)):
        if not run.batch_losses or not run.batches_per_epoch:
            continue
        stride = max(1, math.ceil(len(run.batch_losses) / charts.MAX_BATCH_POINTS))
        smooth = [math.nan if value is None else value for value in charts.ema(run.batch_losses)]
        data.append(dict(type="scatter", x=np.asarray(run.batch_steps[::stride], dtype=np.float64)
                         / run.batches_per_epoch, y=_finite(smooth[::stride]), mode="lines", name=plot_text(label),
                         line=dict(color=COLORS[index % len(COLORS)], width=2),
                         hovertemplate="%{fullData.name}: %{y:.4f}<extra></extra>"))
    xaxis = dict(title=dict(text="epoch"), rangemode="tozero")
    yaxis = dict(title=dict(text="loss" + (" (log scale)" if log_loss else "")), type="log" if log_loss else "linear")
    return go.Figure(dict(data=data, layout=_layout("Training loss per batch (smoothed)", 380, xaxis, yaxis)))


def compare(runs: list[StoredRun]) -> None:
    with_curves = [run for run in runs if run.epochs]
    for run in runs:
        if not run.epochs:
            why = "an uploaded checkpoint has" if run.status == "imported" else \
                "it is starting, or ended before its first evaluation: it has"
            st.caption(f"No curves for “{md_escape(run.name)}”: {why} no per-epoch metrics.")
    if not with_curves:
        return
    labels = legend_labels(with_curves)
    # Two columns, the note under them: three left "Both" and "Log-scale loss" cut at 1024x768.
    curves_col, log_col = st.columns([3, 2], vertical_alignment="center")
    note_col = st.container()
    choice = curves_col.segmented_control("Curves", ["Validation", "Training", "Both"], default="Validation",
                                          required=True, key="runs_curves")
    log_loss = log_col.toggle("Log-scale loss", key="runs_log_loss",
                              help="Helps when one run's loss is much larger (a diverged run).")
    splits = {"Validation": ["validation"], "Training": ["train"]}.get(choice, ["validation", "train"])
    configs = [run.config for run in with_curves]
    differing = differing_settings(configs)
    same = [f"{LONG_NAMES[f]} {setting_text(f, getattr(configs[0], f))}" for f in SHORT_NAMES
            if f not in differing and f not in ("device", "momentum")]
    if len(with_curves) > 1:
        note_col.caption(("The legend shows what differs. " if differing else "These runs have the same settings. ")
                         + "Same for all: " + ", ".join(same) + "." +
                         (" Solid: validation, dashed: training." if choice == "Both" else ""))
    loss_col, accuracy_col = st.columns(2)
    loss_col.plotly_chart(epoch_curves(with_curves, labels, "loss", splits, log_loss), key="runs_chart_loss")
    accuracy_col.plotly_chart(epoch_curves(with_curves, labels, "accuracy", splits, False),
                              key="runs_chart_accuracy")
    st.plotly_chart(batch_curves(with_curves, labels, log_loss), key="runs_chart_batches")


# ---------------------------------------------------------------- one run's actions

def switch_to(page: str) -> None:
    """Switch pages keeping the current run in the URL (switch_page clears query parameters)."""
    run_id = st.session_state.get("run_id")
    st.switch_page(page, query_params={"run": run_id} if run_id else None)


def open_run(run: StoredRun, page: str) -> None:
    """Make `run` the model the other pages use, then go to `page`."""
    worker = common.get_jobs().live_run(run.run_id)
    if worker is not None and worker.snapshot().active:
        common.remember_run(run.run_id)  # still training here: it becomes the current run
        common.use_checkpoint(None)
    else:
        try:
            checkpoint = common.get_store().checkpoint(run.run_id)
        except (CheckpointError, RunStoreError, OSError) as error:
            st.error(f"Cannot open “{md_escape(run.name)}”: {md_escape(error, 500)}")
            return
        common.use_checkpoint(checkpoint, label=f"run “{run.name}”")
    switch_to(page)


def rename_run(run: StoredRun) -> None:
    """Form callback: store the typed name (and tell a live worker, for the sidebar)."""
    try:
        clean = common.get_store().rename(run.run_id, st.session_state[f"runs_name_{run.run_id}"])
    except RunStoreError as error:
        st.session_state.runs_problem = str(error)
        return
    worker = common.get_jobs().live_run(run.run_id)
    if worker is not None:
        worker.rename(clean)


def delete_run(run: StoredRun) -> None:
    """Confirmation callback."""
    st.session_state.pop("runs_confirm_delete", None)
    try:
        common.get_store().delete(run.run_id)
    except RunStoreError as error:
        st.session_state.runs_problem = str(error)
    except OSError as error:  # a read-only folder
        st.session_state.runs_problem = f"“{run.name}” could not be deleted: {describe_write_error(error)}"
    else:
        st.session_state.runs_notice = f"Deleted “{run.name}”."


def delete_runs(key: str) -> None:
    """Confirmation callback of a many-run delete (selected runs, or the old ones)."""
    run_ids = st.session_state.pop(key, None) or []
    deleted, problems = common.get_store().delete_many(run_ids)
    if deleted:
        st.session_state.runs_notice = f"Deleted {len(deleted)} run{'s' if len(deleted) != 1 else ''}."
    if problems:
        st.session_state.runs_problem = " ".join(problems[:3]) + (f" (and {len(problems) - 3} more)"
                                                                 if len(problems) > 3 else "")


def confirm_delete_many(key: str, runs: list[StoredRun], what: str) -> None:
    """The confirmation box of a many-run delete, while `key` holds the run ids to delete."""
    with st.container(border=True):
        names = ", ".join(f"“{md_escape(run.name, 60)}”" for run in runs[:5])
        more = f" and {len(runs) - 5} more" if len(runs) > 5 else ""
        st.warning(f"Delete {what} for good ({len(runs)}: {names}{more})? Their checkpoints, curves and "
                   "weights are removed from disk.")
        yes_col, no_col, _ = st.columns([1.3, 1, 3.7])
        yes_col.button(f"Yes, delete {len(runs)}", type="primary", key=f"{key}_yes", on_click=delete_runs,
                       args=(key,))
        no_col.button("Cancel", key=f"{key}_no", on_click=st.session_state.pop, args=(key, None))


def run_actions(run: StoredRun) -> None:
    store = common.get_store()
    if run.save_error:
        st.error(f"This run could not be saved completely: {md_escape(run.save_error, 400)}. What was written "
                 "before that is kept here; if it is still listed under **Not saved** above, download its "
                 "checkpoint there before the server restarts.", icon=":material/sd_card_alert:")
    if run.message and run.status in ("diverged", "crashed"):
        (st.error if run.status == "crashed" else st.warning)(md_escape(run.message, 1000))
    final = run.final
    facts = []
    if final.get("test_accuracy") is not None:
        facts.append(f"test accuracy {final['test_accuracy']:.2%}")
    if final.get("validation_accuracy") is not None:
        facts.append(f"validation accuracy {final['validation_accuracy']:.2%}")
    facts.append(f"{int(final.get('epochs_completed', run.epochs_done))} of {run.config.epochs} epochs")
    if run.duration:
        facts.append(duration_text(run.duration))
    facts.append(DATASET_TITLES.get(run.config.dataset, run.config.dataset))
    facts.append(SOURCES.get(run.source, run.source))
    text = " · ".join(facts)
    st.caption(text[0].upper() + text[1:])
    with st.form(f"runs_rename_{run.run_id}", border=False):
        name_col, button_col = st.columns([4, 1], vertical_alignment="bottom")
        name_col.text_input("Name", value=run.name, max_chars=100, key=f"runs_name_{run.run_id}")
        button_col.form_submit_button("Rename", width="stretch", on_click=rename_run, args=(run,))

    # two rows of four: seven buttons in one row are cut to "Ch…" beside the sidebar at 1024 px
    cols = st.columns(4) + st.columns(4)
    cols[0].download_button(
        "Checkpoint", data=lambda: store.checkpoint_bytes(run.run_id), file_name=f"{file_stem(run.name)}.pt",
        mime="application/octet-stream", icon=":material/download:", on_click="ignore", disabled=not run.has_weights,
        width="stretch", key=f"runs_download_{run.run_id}",
        help="The final weights with their settings (or the newest epoch's, for a run that did not finish). "
             "Load it here, on the Draw and Evaluate pages, or with lrcore.checkpoint.load_checkpoint.")
    cols[1].download_button(
        "Metrics CSV", data=lambda: epochs_csv(store.load(run.run_id, weights=False)),
        file_name=f"{file_stem(run.name)}-epochs.csv", mime="text/csv", icon=":material/table_view:", on_click="ignore",
        disabled=not run.epochs, width="stretch", key=f"runs_csv_{run.run_id}",
        help="Loss and accuracy of every epoch, one row per epoch.")
    for col, (page, title, icon) in zip(cols[4:], OPEN_PAGES):
        if col.button(title, icon=icon, disabled=not run.has_weights, width="stretch",
                      key=f"runs_open_{title}_{run.run_id}", help=f"Open this run's model on the {title} page."):
            open_run(run, page)
    if cols[2].button("Train again", icon=":material/replay:", width="stretch", key=f"runs_again_{run.run_id}",
                       help="Open the Train page with this run's settings."):
        common.open_in_train(run.config)
    confirming = st.session_state.get("runs_confirm_delete") == run.run_id
    cols[3].button("Delete", icon=":material/delete:", width="stretch", disabled=run.active or confirming,
                    key=f"runs_delete_{run.run_id}", on_click=st.session_state.__setitem__,
                    args=("runs_confirm_delete", run.run_id),
                    help="Stop the run first." if run.active else "Remove this run and its files.")
    if confirming:
        with st.container(border=True):
            st.warning(f"Delete “{md_escape(run.name)}” for good? Its checkpoint, curves and weights are removed "
                       "from disk.")
            yes_col, no_col, _ = st.columns([1, 1, 4])
            yes_col.button("Yes, delete", type="primary", key="runs_delete_yes", on_click=delete_run, args=(run,))
            no_col.button("Cancel", key="runs_delete_no", on_click=st.session_state.pop,
                          args=("runs_confirm_delete", None))


# ---------------------------------------------------------------- the live part

def runs_section(was_active: bool) -> None:
    store = common.get_store()
    if "runs_notice" in st.session_state:
        st.success(md_escape(st.session_state.pop("runs_notice"), 300), icon=":material/delete:")
    if "runs_problem" in st.session_state:
        st.error(md_escape(st.session_state.pop("runs_problem"), 1000))
    runs = store.list_runs()
    if was_active != any(run.active for run in runs):
        st.rerun(scope="app")  # a run started or ended: turn polling on or off
    if store.problem:
        st.error(f"The runs folder cannot be listed: {md_escape(store.problem, 300)}.")
    unsaved_runs()
    if not runs:
        st.info("No runs yet. Train a model on the **Train** page (or with `python -m lrcore train`): every run is "
                "kept here with its settings, curves and checkpoint, across refreshes and restarts.", icon=":material/info:")
        st.page_link("pages/train.py", label="Go to Train", icon=":material/show_chart:")
        show_skipped(store)
        return
    order = [run.run_id for run in runs]
    keep_selection(order)
    table = st.dataframe(runs_table(runs), key=TABLE_KEY, on_select="rerun", selection_mode="multi-row",
                         hide_index=True, column_config=TABLE_COLUMNS, width="stretch", placeholder="–",
                         height=min(38 + 35 * len(runs), 460))
    chosen = [order[i] for i in table.selection.rows if i < len(order)]
    show_skipped(store)
    if not chosen:
        st.info("Tick runs in the first column of the table to compare their curves, and to rename, download, "
                "open or delete them.", icon=":material/touch_app:")
        return
    selected = []
    for run_id in chosen:
        try:
            selected.append(store.load(run_id, weights=False))
        except RunStoreError:
            pass  # deleted from another tab a moment ago
    if not selected:
        return
    st.subheader("Compare" if len(selected) > 1 else "Curves")
    compare(selected)
    st.subheader("Selected run")
    run = selected[0]
    if len(selected) > 1:
        names = {item.run_id: item.name for item in selected}
        picked = st.selectbox("Run", list(names), format_func=names.get, key="runs_action_run",
                              help="The run the buttons below act on.")
        run = next(item for item in selected if item.run_id == picked)
    run_actions(run)
    if len(selected) > 1:
        deletable = [item for item in selected if not item.active]
        confirming = st.session_state.get("runs_confirm_selected")
        st.button(f"Delete the {len(deletable)} selected runs…" if len(deletable) > 1 else "Delete selected runs…",
                  icon=":material/delete_sweep:", disabled=len(deletable) < 2 or bool(confirming),
                  key="runs_delete_selected", on_click=st.session_state.__setitem__,
                  args=("runs_confirm_selected", [item.run_id for item in deletable]),
                  help="Runs still training are left out: stop them first.")
        if confirming:
            confirm_delete_many("runs_confirm_selected", [item for item in deletable if item.run_id in confirming],
                                "the selected runs")


def unsaved_runs() -> None:
    """Runs of this server that the store could not save: usable (and downloadable) until it restarts."""
    workers = common.get_registry().unsaved()
    if not workers:
        return
    st.subheader("Not saved", help="These runs trained, but the run store could not keep them. They live in the "
                                   "server's memory only, until it restarts.")
    for worker in workers[-5:]:
        record = worker.snapshot()
        with st.container(border=True):
            text_col, button_col = st.columns([4, 1.3], vertical_alignment="center")
            text_col.error(f"“{md_escape(record.name)}” ({record.status}) could not be saved: "
                           f"{md_escape(record.save_error, 400)}. It stays usable until the server restarts: "
                           "download its checkpoint to keep it.", icon=":material/sd_card_alert:")
            model = record.latest_model()
            metrics = {k: v for k, v in record.final.items() if k in CHECKPOINT_METRICS
                       and isinstance(v, (int, float)) and math.isfinite(v)}
            metrics.setdefault("epochs_completed", record.epochs_done)
            button_col.download_button(
                "Checkpoint", icon=":material/download:", width="stretch", key=f"runs_unsaved_{record.run_id}",
                data=(lambda r=record, m=model, x=metrics: checkpoint_bytes(m, r.config, r.class_names, r.normalizer,
                                                                             x)) if model is not None else b"",
                file_name=f"{file_stem(record.name)}.pt", mime="application/octet-stream", on_click="ignore",
                disabled=model is None or record.normalizer is None,
                help="Its newest weights with their settings, built from the server's memory.")
    if len(workers) > 5:
        st.caption(f"And {len(workers) - 5} earlier unsaved runs (their checkpoints from the Train page).")


def show_skipped(store) -> None:
    if store.skipped:
        folders = ", ".join(f"{md_escape(name, 60)} ({md_escape(why, 200)})" for name, why in store.skipped[:5])
        more = f" and {len(store.skipped) - 5} more" if len(store.skipped) > 5 else ""
        st.caption(f"Not shown: folders in the runs folder that are not readable runs: {folders}{more}.")


def folder_text(store: RunStore) -> str:
    """Where the runs are kept, without revealing the server's absolute paths."""
    try:
        where = f"`{store.root.resolve().relative_to(Path.cwd().resolve())}` in the app's folder"
    except (ValueError, OSError):
        where = "the folder that LRCORE_RUNS_DIR names (else `runs/` in the data folder, LRCORE_DATA_DIR)"
    return f"Runs are kept on the server in {where}; set LRCORE_RUNS_DIR to keep them elsewhere."


def storage_section(store: RunStore, runs: list[StoredRun]) -> None:
    """How full the store is, and deleting old finished runs."""
    used, limit = store.usage(), store_limit_mb()
    over = limit is not None and used >= limit * 1e6
    with st.expander("Storage and clean-up", icon=":material/storage:", expanded=over):
        size = size_text(used) + (f" of its {size_text(limit * 1e6)} limit (LRCORE_STORE_MAX_MB)" if limit
                                  else " (no size limit: LRCORE_STORE_MAX_MB=0)")
        st.caption(f"The run store holds {size}: {len(runs)} run{'s' if len(runs) != 1 else ''} and the saved "
                   "sweeps. Each run keeps every epoch's metrics, at most 50 weight snapshots and 10,000 batch "
                   "losses. Nothing is ever deleted without you asking.")
        days_col, button_col = st.columns([1, 2], vertical_alignment="bottom")
        days = days_col.number_input("Finished more than … days ago", min_value=0, max_value=3650, value=30,
                                     step=1, key="runs_prune_days",
                                     help="Runs still training are never deleted. 0 = every finished run.")
        old = store.older_than(days)
        confirming = st.session_state.get("runs_confirm_prune")
        button_col.button(f"Delete {len(old)} finished run{'s' if len(old) != 1 else ''} older than {days} "
                          f"day{'s' if days != 1 else ''}…", icon=":material/delete_sweep:", key="runs_prune",
                          disabled=not old or bool(confirming), on_click=st.session_state.__setitem__,
                          args=("runs_confirm_prune", [run.run_id for run in old]))
        if confirming:
            confirm_delete_many("runs_confirm_prune", [run for run in old if run.run_id in confirming],
                                f"the runs older than {days} day{'s' if days != 1 else ''}")
        st.caption("To delete particular runs, tick them in the table and use **Delete** (several at once: "
                   "**Delete the selected runs**). Sweeps are deleted on the Sweep page.")


def upload_section() -> None:
    problem = st.session_state.pop("runs_upload_problem", None)
    with st.expander("Add a checkpoint file", icon=":material/upload:"):  # opened by the user, stays open
        st.caption(f"A .pt file saved by this dashboard or `python -m lrcore train --save` (or a tutorial's "
                   f"`state_dict` with linear.weight and linear.bias), at most {MAX_UPLOAD_MB} MB. It is checked "
                   "without running any code in it, then listed above like any run.")
        if problem:
            st.error(problem)
        counter = st.session_state.setdefault("runs_upload_counter", 0)
        read = uploads.checkpoint_uploader("Checkpoint file", f"runs_upload_{counter}", "was not added",
                                           show_problem=False, help=None)
        if read is None:
            return
        if read.checkpoint is None:
            # the message stays, the uploader empties: pick another file straight away
            st.session_state.runs_upload_problem = read.problem
            st.session_state.runs_upload_counter = counter + 1
            st.rerun()
        upload, checkpoint = read.file, read.checkpoint
        config, metrics = checkpoint.config, checkpoint.metrics
        facts = [f"{len(checkpoint.class_names)} classes", DATASET_TITLES.get(config.dataset, config.dataset),
                 f"{setting_text('optimizer', config.optimizer)} lr={config.learning_rate:g} bs={config.batch_size}"]
        if "test_accuracy" in metrics:
            facts.append(f"test accuracy {metrics['test_accuracy']:.2%}")
        st.caption("A valid checkpoint: " + " · ".join(facts) + ".")
        default_name = re.sub(r"\.(pt|pth)$", "", upload.name) or "uploaded checkpoint"
        name = st.text_input("Name", value=default_name, max_chars=100, key=f"runs_upload_name_{counter}")
        if st.button("Add to runs", type="primary", key=f"runs_upload_add_{counter}"):
            try:
                run_id = common.get_store().import_checkpoint(upload.getvalue(), name=name)
            except OSError as error:  # a full disk, a read-only folder, the store over its limit
                st.error(f"“{md_escape(upload.name)}” was not added: it could not be saved, "
                         f"{md_escape(describe_write_error(error), 400)}.")
                return
            except (CheckpointError, RunStoreError) as error:
                st.error(f"“{md_escape(upload.name)}” was not added: {md_escape(error, 400)}.")
                return
            st.session_state.runs_upload_counter = counter + 1  # empties the uploader
            st.session_state.runs_select = [run_id]
            st.toast(f"Added “{md_escape(name)}”.")
            st.rerun()


# ---------------------------------------------------------------- the page

st.title("Runs")
st.caption("Every training run is kept with its settings, curves, weights and checkpoint, so it is still here "
           "after a refresh or a restart. Tick several runs to overlay their curves.")
store = common.get_store()
all_runs = store.list_runs()
any_active = any(run.active for run in all_runs)
write_problem = store.write_problem()
if write_problem:
    st.warning(f"New runs are not being saved: {md_escape(write_problem, 400)}. They still train, and can be "
               "used until the server restarts.", icon=":material/sd_card_alert:")
st.fragment(runs_section, run_every=POLL_SECONDS if any_active else None)(any_active)
upload_section()
storage_section(store, all_runs)
st.caption(folder_text(store))
