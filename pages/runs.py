"""Runs: every training run, kept in the store; compare curves, rename, download, export, open, delete.

Runs come from the store (`common.get_store()`), which the pages, sweeps and the command
line write to, so the list survives refreshes and server restarts. A sweep's runs are
listed too, each with the name of its sweep. The table and what
depends on its selection live in one fragment that polls while a run is training.
Row selections are positions in the table, so the selected run ids are remembered and
re-applied when the order changes (a new run on top, a run deleted).
"""
from __future__ import annotations

import math
from datetime import datetime

import pandas as pd
import streamlit as st

from lrcore.data import DATASET_TITLES
from lrcore.naming import SHORT_NAMES, differing_settings, legend_labels, setting_text
from lrcore.settings import SETTINGS
from lrcore.record import RunRecord, epochs_csv
from lrcore.store import Store, StoreError, describe_write_error
from ui import common, identity
from ui import format as fmt
from ui import run_panels as panels
from ui import compare_charts as charts
from ui.text import md_escape

common.ensure_frame()  # first: a page opened alone reruns through dashboard.py

TABLE_KEY = "runs_table"
POLL_SECONDS = 2.0  # a listing: fresh enough, and cheap for the server while it trains
LONG_NAMES = {setting.name: setting.long for setting in SETTINGS}  # "Same for all: learning rate 0.5"
STATUS_TEXT = {"imported": "uploaded"}  # plain words: the table is drawn on a canvas, emoji fonts vary
SOURCES = {"dashboard": "trained in the dashboard", "cli": "trained with python -m lrcore",
           "upload": "uploaded checkpoint", "sweep": "trained in a learning-rate sweep (Sweep page)"}


# ---------------------------------------------------------------- text

def status_text(run: RunRecord) -> str:
    if run.status in ("training", "paused"):
        epoch = run.progress.get("epoch")
        return f"{run.status} (epoch {epoch or run.epochs_done + 1} of {run.config.epochs})"
    if run.active:  # starting, or waiting for its batch size's pass in a sweep
        return str(run.status)
    text = STATUS_TEXT.get(run.status, run.status)
    return f"{text}, not fully saved" if run.save_error else text


def percent_or_none(value) -> float | None:
    return value * 100 if isinstance(value, (int, float)) and math.isfinite(value) else None


# ---------------------------------------------------------------- table and selection

def runs_table(runs: list[RunRecord], sweeps: dict[str, str], owners: bool = False) -> pd.DataFrame:
    """One row per run; `owners` (a class server): who started each, after its name."""
    rows = []
    names = common.get_store().display_names() if owners else {}
    for run in runs:
        config = run.config
        rows.append({
            "Name": run.name,
            **({"Owner": identity.owner_label(run.owner, names)} if owners else {}),
            # beside the name: visible without scrolling at 1024x768, next to the sidebar
            "Started": datetime.fromtimestamp(run.created) if run.created else None,
            "Status": status_text(run),
            "Sweep": sweeps.get(run.group_id, "") if run.group_id else "",
            "Test acc.": percent_or_none(run.test_accuracy),
            "Best val. acc.": percent_or_none(run.best_validation_accuracy),
            "Learning rate": f"{config.learning_rate:g}",
            "Batch size": fmt.batch_size(config, run.train_size),  # a full-batch run's setting is not what it used
            "Optimizer": setting_text("optimizer", config.optimizer),
            "Weight decay": f"{config.weight_decay:g}",
            "Epochs": f"{run.epochs_done} / {config.epochs}" if run.status != "imported" else str(config.epochs),
            "Normalisation": setting_text("normalization", config.normalization),
            "Validation": config.validation_fraction,
            "Per class": setting_text("per_class_limit", config.per_class_limit),
            "Dataset": config.dataset,
            "Duration": fmt.duration(run.elapsed),
        })
    return pd.DataFrame(rows)


TABLE_COLUMNS = {
    "Name": st.column_config.TextColumn(width="medium"),
    "Owner": st.column_config.TextColumn(width="small", help="Who started the run (“you” for your own)"),
    "Status": st.column_config.TextColumn(width="medium"),
    "Sweep": st.column_config.TextColumn(width="small", help="The sweep this run was trained in (Sweep page)"),
    "Batch size": st.column_config.TextColumn(help="Images per step; full: the whole training split, every step"),
    "Validation": st.column_config.NumberColumn("Val. fraction", format="%.2f",
                                                help="Share of the training images held out for validation"),
    "Best val. acc.": st.column_config.NumberColumn(format="%.2f%%", help="Best validation accuracy of any epoch"),
    "Test acc.": st.column_config.NumberColumn(format="%.2f%%", help="Accuracy on the test set, once finished"),
    "Started": st.column_config.DatetimeColumn(format="MMM D, HH:mm"),
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


def compare(runs: list[RunRecord]) -> None:
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
    unused = ("device", "momentum") + (("batch_size",) if all(c.full_batch for c in configs) else ())
    same = [f"{LONG_NAMES[f]} {setting_text(f, getattr(configs[0], f))}" for f in SHORT_NAMES
            if f not in differing and f not in unused]
    if len(with_curves) > 1:
        note_col.caption(("The legend shows what differs. " if differing else "These runs have the same settings. ")
                         + "Same for all: " + ", ".join(same) + "." +
                         (" Solid: validation, dashed: training." if choice == "Both" else ""))
    loss_col, accuracy_col = st.columns(2)
    loss_col.plotly_chart(charts.epoch_curves(with_curves, labels, "loss", splits, log_loss), key="runs_chart_loss")
    accuracy_col.plotly_chart(charts.epoch_curves(with_curves, labels, "accuracy", splits, False),
                              key="runs_chart_accuracy")
    st.plotly_chart(charts.batch_curves(with_curves, labels, log_loss), key="runs_chart_batches")


# ---------------------------------------------------------------- one run's actions

def rename_run(run: RunRecord) -> None:
    """Form callback: store the typed name (and tell a live worker, for the sidebar)."""
    if not identity.may_control(run.run_id):  # checked here, not only by the disabled form: a forged click
        st.session_state.runs_problem = f"“{run.name}” was not renamed. {identity.not_yours_note(run.owner)}"
        return
    try:
        clean = common.get_store().rename(run.run_id, st.session_state[f"runs_name_{run.run_id}"])
    except StoreError as error:
        st.session_state.runs_problem = str(error)
        return
    worker = common.get_jobs().live_run(run.run_id)
    if worker is not None:
        worker.rename(clean)


def delete_run(run: RunRecord) -> None:
    """Confirmation callback."""
    st.session_state.pop("runs_confirm_delete", None)
    if not identity.may_control(run.run_id):
        st.session_state.runs_problem = f"“{run.name}” was not deleted. {identity.not_yours_note(run.owner)}"
        return
    try:
        common.get_store().delete(run.run_id)
    except StoreError as error:
        st.session_state.runs_problem = str(error)
    except OSError as error:  # a read-only folder
        st.session_state.runs_problem = f"“{run.name}” could not be deleted: {describe_write_error(error)}"
    else:
        st.session_state.runs_notice = f"Deleted “{run.name}”."


def run_actions(run: RunRecord) -> None:
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
        facts.append(f"test accuracy {fmt.percent(final['test_accuracy'], 2)}")
    if final.get("validation_accuracy") is not None:
        facts.append(f"validation accuracy {fmt.percent(final['validation_accuracy'], 2)}")
    facts.append(f"{int(final.get('epochs_completed', run.epochs_done))} of {run.config.epochs} epochs")
    if run.elapsed:
        facts.append(fmt.duration(run.elapsed))
    facts.append(md_escape(DATASET_TITLES.get(run.config.dataset, run.config.dataset)))  # a folder's title is user text
    facts.append(SOURCES.get(run.source, run.source))
    text = " · ".join(facts)
    st.caption(text[0].upper() + text[1:])
    mine = identity.can_control(run.owner)
    if not mine:
        st.info(identity.not_yours_note(run.owner), icon=":material/visibility:")
    with st.form(f"runs_rename_{run.run_id}", border=False):
        name_col, button_col = st.columns([4, 1], vertical_alignment="bottom")
        name_col.text_input("Name", value=run.name, max_chars=100, key=f"runs_name_{run.run_id}", disabled=not mine)
        button_col.form_submit_button("Rename", width="stretch", on_click=rename_run, args=(run,), disabled=not mine)

    # two rows of four: seven buttons in one row are cut to "Ch…" beside the sidebar at 1024 px
    cols = st.columns(4) + st.columns(4)
    common.checkpoint_download(cols[0], run, key=f"runs_download_{run.run_id}")
    cols[1].download_button(
        "Metrics CSV", data=lambda: epochs_csv(store.load(run.run_id, weights=False)),
        file_name=f"{common.file_stem(run.name)}-epochs.csv", mime="text/csv", icon=":material/table_view:", on_click="ignore",
        disabled=not run.epochs, width="stretch", key=f"runs_csv_{run.run_id}",
        help="Loss and accuracy of every epoch, one row per epoch.")
    for col, (page, title, icon) in zip(cols[4:], common.MODEL_PAGES):
        if col.button(title, icon=icon, disabled=not run.has_weights, width="stretch",
                      key=f"runs_open_{title}_{run.run_id}", help=f"Open this run's model on the {title} page."):
            common.open_run(run.run_id, run.name, page)
    if cols[2].button("Train again", icon=":material/replay:", width="stretch", key=f"runs_again_{run.run_id}",
                       help="Open the Train page with this run's settings."):
        common.open_in_train(run.config)
    confirming = st.session_state.get("runs_confirm_delete") == run.run_id
    cols[3].button("Delete", icon=":material/delete:", width="stretch", disabled=run.active or confirming or not mine,
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

def runs_section(was_active: bool, whole_class: bool = True) -> None:
    """The table and the selected runs; `whole_class` False (a class server): only this browser's runs."""
    store = common.get_store()
    if "runs_notice" in st.session_state:
        st.success(md_escape(st.session_state.pop("runs_notice"), 300), icon=":material/delete:")
    if "runs_problem" in st.session_state:
        st.error(md_escape(st.session_state.pop("runs_problem"), 1000))
    try:
        runs = store.list_runs()
        sweeps = {group.group_id: group.name for group in store.list_groups()}
    except (StoreError, OSError) as error:  # the database file went missing, a PostgreSQL server is down
        st.error(f"The store cannot be read: {md_escape(error, 300)}.")
        return
    if was_active != any(run.active for run in runs):
        st.rerun(scope="app")  # a run started or ended: turn polling on or off
    me = identity.viewer()
    everyone = bool(runs)
    if me.class_mode and not whole_class:
        runs = [run for run in runs if run.owner and run.owner == me.owner]
    panels.unsaved_runs()
    if not runs and everyone:
        st.info("You have no runs yet: start one on the **Train** page. Turn on **Whole class** above to see "
                "everyone's.", icon=":material/info:")
        return
    if not runs:
        st.info("No runs yet. Train a model on the **Train** page (or with `python -m lrcore train`): every run is "
                "kept here with its settings, curves and checkpoint, across refreshes and restarts.", icon=":material/info:")
        st.page_link("pages/train.py", label="Go to Train", icon=":material/show_chart:")
        show_skipped(store)
        return
    order = [run.run_id for run in runs]
    keep_selection(order)
    table = st.dataframe(runs_table(runs, sweeps, owners=me.class_mode), key=TABLE_KEY, on_select="rerun", selection_mode="multi-row",
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
        except StoreError:
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
        deletable = [item for item in selected if not item.active and identity.can_control(item.owner)]
        confirming = st.session_state.get("runs_confirm_selected")
        st.button(f"Delete the {len(deletable)} selected runs…" if len(deletable) > 1 else "Delete selected runs…",
                  icon=":material/delete_sweep:", disabled=len(deletable) < 2 or bool(confirming),
                  key="runs_delete_selected", on_click=st.session_state.__setitem__,
                  args=("runs_confirm_selected", [item.run_id for item in deletable]),
                  help="Runs still training (and, on a class server, other people's) are left out.")
        if confirming:
            panels.confirm_delete_many("runs_confirm_selected", [item for item in deletable if item.run_id in confirming],
                                "the selected runs")


def show_skipped(store) -> None:
    if store.skipped:
        runs = ", ".join(f"{md_escape(run_id, 60)} ({md_escape(why, 200)})" for run_id, why in store.skipped[:5])
        more = f" and {len(store.skipped) - 5} more" if len(store.skipped) > 5 else ""
        st.caption(f"Not shown: stored runs that cannot be read: {runs}{more}.")


def store_text(store: Store) -> str:
    """Where the runs are kept, without revealing the server's absolute paths or a password."""
    if store.dialect != "sqlite":
        return f"Runs are kept in a {store.dialect} database shared by every server that uses it (LRCORE_STORE_URL)."
    return ("Runs are kept on the server in a SQLite file (`lrcore.db` in the runs folder: LRCORE_RUNS_DIR, else "
            "`runs/` in the data folder); set LRCORE_STORE_URL to use a PostgreSQL database instead.")


# ---------------------------------------------------------------- the page

st.title("Runs")
st.caption("Every training run is kept with its settings, curves, weights and checkpoint, so it is still here "
           "after a refresh or a restart. Tick several runs to overlay their curves.")
store = common.get_store()
if store.imported_message and not st.session_state.get("runs_import_seen"):
    st.info(md_escape(store.imported_message, 400), icon=":material/move_to_inbox:")
    st.session_state.runs_import_seen = True
try:
    all_runs = store.list_runs()
except (StoreError, OSError):
    all_runs = []  # the section below says why
any_active = any(run.active for run in all_runs)
whole_class = identity.class_filter()
write_problem = store.write_problem()
if write_problem:
    st.warning(f"New runs are not being saved: {md_escape(write_problem, 400)}. They still train, and can be "
               "used until the server restarts.", icon=":material/sd_card_alert:")
st.fragment(runs_section, run_every=POLL_SECONDS if any_active else None)(any_active, whole_class)
panels.upload_section()
panels.storage_section(store, all_runs)
st.caption(store_text(store))
