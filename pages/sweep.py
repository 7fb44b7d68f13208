"""Sweep: too low, too high, just right — many learning rates side by side, and a range test.

A sweep is K ordinary runs trained by one `lrcore.jobs.TrainingJob` with a group id: runs sharing
a batch size train together on the same minibatches. The store records every run and the group,
so each run of a sweep is on the Runs page and opens in Weights, Draw and Evaluate, and a sweep
is listed under "Earlier sweeps" after a restart. Like a single run, a sweep can be paused,
resumed, stopped and have its learning rates scaled while it trains. The page polls the job's
records from a fragment while it is active. The range test (fastai's lr_find) is a job too.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import pandas  # noqa: F401  (before streamlit, plotly and ui: see ui/__init__.py)
import streamlit as st

from lrcore.config import ConfigError, defaults_for
from lrcore.jobs import TrainingJob, new_id
from lrcore.record import RunRecord
from lrcore.settings import OPTIMIZER_LABELS
from lrcore.store import StoreError
from lrcore.store_controls import StoredJob
from lrcore.sweep import best, fraction_done, ranked, training_groups, wall_seconds
from ui import common, identity, lessons, polling
from ui import compare_charts as charts
from ui import format as fmt
from ui.range_test import range_test_section
from ui.sweep_settings import DEFAULTS, settings_form
from ui.text import md_escape

common.ensure_frame()  # first: a page opened alone reruns through dashboard.py

STORE_POLL_SECONDS = 2.0  # a sweep training in another server process, read from the store


@dataclass
class SweepView:
    """A sweep as the page shows it: its runs, live from this process's job or read from the store."""

    sweep_id: str
    name: str
    created: float
    runs: list[RunRecord]
    job: TrainingJob | None  # None: trained by another process, or before a restart
    remote: StoredJob | None = None  # trained by another server now: controlled through the store

    @property
    def active(self) -> bool:
        return any(run.active for run in self.runs)

    @property
    def controls(self) -> TrainingJob | StoredJob | None:
        """What Pause, Stop and the learning-rate change act on (None: nothing can change it from here)."""
        return self.job if self.job is not None else self.remote

    @property
    def paused(self) -> bool:
        return self.controls is not None and self.controls.control.paused and self.active

    @property
    def status(self) -> str:
        statuses = {run.status for run in self.runs}
        for status in ("paused", "training", "waiting", "starting", "queued", "crashed", "stopped", "failed"):
            if status in statuses:
                return status
        return "done"


def sweep_mine(view: SweepView | None) -> bool:
    """May this session control (or delete) the sweep? Its runs' owner decides (all of them, one owner)."""
    return view is None or all(identity.can_control(run.owner) for run in view.runs)


def sweep_id_mine(sweep_id: str) -> bool:
    """`sweep_mine` for a stored sweep, read from the store (the page's shown sweep stays loaded)."""
    if not identity.viewer().class_mode:
        return True
    try:
        runs = common.get_store().list_runs(group_id=sweep_id)
    except (StoreError, OSError):
        return False
    return all(identity.can_control(run.owner) for run in runs)


def sweep_view(sweep_id: str | None) -> SweepView | None:
    """The sweep to show: this process's job, else its record in the store (None if it is gone)."""
    if not sweep_id:
        return None
    job = common.get_jobs().get(sweep_id)
    if isinstance(job, TrainingJob):
        return SweepView(sweep_id, job.name, job.created, job.records(), job)
    memo = st.session_state.setdefault("sweep_loaded", {})
    if sweep_id not in memo or memo[sweep_id].active:  # a finished sweep no longer changes
        try:
            group, runs = common.get_store().load_group(sweep_id)
        except (StoreError, OSError):
            return None
        try:  # another server trains it now: this page's clicks reach it through the store
            remote = common.get_store().remote_job(sweep_id, runs, identity.viewer().owner)
        except (StoreError, OSError):
            remote = None
        memo.clear()  # one loaded sweep per session is enough
        memo[sweep_id] = SweepView(sweep_id, group.name, group.created, runs, None, remote)
    return memo[sweep_id]


def show_sweep(sweep_id: str | None) -> None:
    """Make `sweep_id` the sweep this session shows (and its link), or show none."""
    if sweep_id:
        st.session_state.sweep_id = sweep_id
        st.query_params["sweep"] = sweep_id
    else:
        st.session_state.pop("sweep_id", None)
        st.query_params.pop("sweep", None)


def live_sweep(sweep_id: str | None, was_active: bool, was_paused: bool) -> None:
    """Progress and overlaid curves of this session's sweep, redrawn from the job's records."""
    view = sweep_view(sweep_id)
    if view is None:
        st.info("Choose a range of learning rates above and press **Start sweep**: one curve per learning rate "
                "will appear here as they train. Sweeps trained before are under **Earlier sweeps**.",
                icon=":material/arrow_upward:")
        return
    if (was_active and not view.active) or (view.active and view.paused != was_paused):
        st.rerun()  # finished, or paused/resumed elsewhere: redraw the whole page (buttons, results)
    if view.active:
        polling.watching()  # counted in the server's poll budget
    runs, count = view.runs, len(view.runs)
    unsaved = next((run.save_error for run in runs if run.save_error), "")
    if unsaved:
        st.warning(f"This sweep could not be saved: {md_escape(unsaved, 400)}. Its results stay here until the "
                   "server restarts; download a run's checkpoint to keep it.", icon=":material/save:")
    if view.active:
        current = next((run for run in runs if run.progress and run.active), None)
        where = (f"epoch {current.progress['epoch']} of {current.config.epochs} · batch "
                 f"{current.progress['batch']} of {current.progress['batches_per_epoch']}") if current else \
            "evaluating the untrained models (epoch 0)…"
        waiting = sum(run.status == "waiting" for run in runs)
        queue = f" · {waiting} waiting for their batch size's pass" if waiting else ""
        side_by_side = training_groups(runs)  # a sweep's groups on several worker processes at once
        queue += f" · {side_by_side} batch-size groups side by side" if side_by_side > 1 else ""
        state = "Paused" if view.paused else "Training"
        queued = next((run for run in runs if run.status == "queued"), None)
        if queued is not None:  # every worker process is busy (lrcore.workers)
            st.progress(0.0, text=f"{common.queued_text(queued.queued_ahead)}: the sweep's {count} runs start when "
                                  "a worker process is free…")
        else:
            st.progress(fraction_done(runs), text=f"{state} {count} runs · {where}{queue}")
    else:
        st.progress(1.0 if view.status == "done" else fraction_done(runs),
                    text=f"{view.status.capitalize()}: {count} runs in {wall_seconds(runs):.1f} s")
    if view.job is None:
        when = time.strftime("%d %b %Y, %H:%M", time.localtime(view.created))
        config = runs[0].config  # dataset, epochs and optimizer are the same for every run
        origin = "training in another server process" if view.active else "read back from the store"
        st.caption(f":material/history: Sweep of {when}, {origin}: {config.dataset}, {config.epochs} epochs, "
                   f"{OPTIMIZER_LABELS[config.optimizer]}.")
    for status, text in (("failed", "could not train"), ("crashed", "did not finish")):
        broken = [run for run in runs if run.status == status]
        if broken:
            st.warning(f"{len(broken)} of {count} runs {text}: {md_escape(broken[0].message, 400)}",
                       icon=":material/warning:")
    if not any(run.epochs for run in runs):
        return
    left, right = st.columns(2)
    left.plotly_chart(charts.epoch_figure(runs, "validation_accuracy"), key="sweep_chart_accuracy")
    right.plotly_chart(charts.epoch_figure(runs, "validation_loss"), key="sweep_chart_loss")
    if st.session_state.sweep_show_batches:
        st.plotly_chart(charts.batch_figure(runs), key="sweep_chart_batches")
    diverged = [label for run, label in zip(runs, charts.labels(runs)) if run.status == "diverged"]
    if diverged:
        they = "they were" if len(diverged) > 1 else "it was"
        st.warning(f"**Too high:** {', '.join(diverged)} diverged (the loss blew up), so {they} stopped: the line "
                   "ends with ✕ and leaves the loss charts. The other runs carried on.",
                   icon=":material/local_fire_department:")
    first = runs[0]
    st.caption(f"{first.train_size:,} training and {first.validation_size:,} validation images · device "
               f"{first.device or '…'} · colour = learning rate (dark: low, bright: high). Epoch 0 is the "
               "untrained model. Hover a line to see its settings.")


def results_table(view: SweepView) -> None:
    """Every run ranked by validation accuracy; open one in Train, Weights, Draw or Evaluate."""
    st.subheader("Results, best first")
    order = ranked(view.runs)
    labels = dict(zip((run.run_id for run in view.runs), charts.labels(view.runs)))
    rows = []
    for rank, run in enumerate(order, start=1):
        last = run.epochs[-1] if run.epochs else {}
        failed = run.status in ("diverged", "failed")  # no numbers worth ranking
        rows.append({"rank": rank, "learning rate": run.config.learning_rate, "batch size": run.config.batch_size,
                     "weight decay": run.config.weight_decay, "status": run.status,
                     "validation accuracy": math.nan if failed else run.validation_accuracy,
                     # text, so a missing value reads "–" rather than "None"
                     "validation loss": fmt.DASH if failed or not last else fmt.loss(last["validation_loss"]),
                     "train accuracy": fmt.DASH if failed or not last else fmt.percent(last["train_accuracy"]),
                     "epochs": run.epochs_done, "note": run.message})
    hidden = [name for name, column in (("batch size", "batch_size"), ("weight decay", "weight_decay"))
              if len({getattr(run.config, column) for run in view.runs}) == 1]
    st.dataframe(rows, hide_index=True, height=min(len(rows), 16) * 35 + 40,
                 column_order=[c for c in rows[0] if c not in hidden], column_config={
                     "learning rate": st.column_config.NumberColumn(format="%g"),
                     "weight decay": st.column_config.NumberColumn(format="%g"),
                     "validation accuracy": st.column_config.ProgressColumn(format="percent", min_value=0.0,
                                                                            max_value=1.0),
                     "note": st.column_config.TextColumn(width="large")})
    top = best(view.runs)
    if top is None:
        st.warning("No run trained without diverging: try lower learning rates.")
    else:
        st.success(f"Best: **{labels[top.run_id]}** with {fmt.percent(top.validation_accuracy)} validation accuracy "
                   f"after {top.epochs_done} epochs.", icon=":material/trophy:")
    choice = st.selectbox("Run", range(len(order)), key="sweep_pick",
                          format_func=lambda i: f"#{i + 1}: {labels[order[i].run_id]} ({order[i].status}, "
                                                f"validation {fmt.percent(order[i].validation_accuracy)})")
    chosen = order[choice or 0]
    columns = st.columns([1.6, 1.05, 1, 1.15, 1.25])  # "Open in Train" and "Evaluate" whole at 1024 px
    if columns[0].button("Open in Train", icon=":material/model_training:", type="primary", width="stretch",
                         help="Fill the Train page's settings with this run's configuration."):
        common.open_in_train(chosen.config)
    trained = chosen.has_weights or bool(chosen.final)
    for column, (page, title, icon) in zip(columns[1:], common.MODEL_PAGES):
        if column.button(title, icon=icon, width="stretch", disabled=not trained, key=f"sweep_open_{page}",
                         help="Every run of a sweep is a full run: it is on the Runs page too."):
            common.open_run(chosen.run_id, chosen.name, page)
    common.checkpoint_download(columns[4], chosen, key="sweep_download")


def earlier_sweeps(active: bool) -> None:
    """Sweeps in the store: show one (its charts and table come back) or delete it with its runs."""
    try:
        groups = common.get_store().list_groups()
    except (StoreError, OSError) as error:
        st.error(f"Cannot read the earlier sweeps: {md_escape(error, 400)}")
        return
    shown = st.session_state.get("sweep_id")
    with st.expander(f"Earlier sweeps ({len(groups)})", icon=":material/history:",
                     expanded=shown is None and bool(groups)):
        if not groups:
            st.caption("None yet: every sweep you start is saved here, and stays after a restart.")
            return
        by_id = {group.group_id: group for group in groups}
        if st.session_state.get("sweep_pick_earlier") not in by_id:
            st.session_state.sweep_pick_earlier = shown if shown in by_id else groups[0].group_id
        pick_col, show_col, delete_col = st.columns([4, 1, 1], vertical_alignment="bottom")
        picked = pick_col.selectbox("Sweep", list(by_id), key="sweep_pick_earlier", format_func=lambda gid: (
            f"{time.strftime('%d %b %H:%M', time.localtime(by_id[gid].created))} · {by_id[gid].name} · "
            f"{by_id[gid].status}"))
        show_col.button("Show", icon=":material/visibility:", width="stretch", disabled=picked == shown or active,
                        on_click=show_sweep, args=(picked,),
                        help="A sweep is running: wait for it or stop it first." if active else
                             "Show this sweep's curves and results above.")
        running = by_id[picked].active
        confirming = st.session_state.get("sweep_confirm_delete") == picked
        delete_col.button("Delete", icon=":material/delete:", width="stretch",
                          disabled=running or confirming or not sweep_id_mine(picked),
                          key="sweep_delete", on_click=st.session_state.__setitem__,
                          args=("sweep_confirm_delete", picked),
                          help="Still training: stop it first." if running else "Remove this sweep and its runs.")
        if confirming:
            st.warning(f"Delete the sweep “{md_escape(by_id[picked].name)}” and its {len(by_id[picked].run_ids)} "
                       "runs for good?", icon=":material/delete:")
            yes_col, no_col, _ = st.columns([1, 1, 4])
            yes_col.button("Yes, delete", type="primary", key="sweep_delete_yes", on_click=delete_sweep,
                           args=(picked,))
            no_col.button("Cancel", key="sweep_delete_no", on_click=st.session_state.pop,
                          args=("sweep_confirm_delete", None))


def delete_sweep(sweep_id: str) -> None:
    st.session_state.pop("sweep_confirm_delete", None)
    if not sweep_id_mine(sweep_id):  # checked here too: a forged click on the disabled button
        st.session_state.sweep_notice_delete = "Nothing deleted: only its owner (and the teacher) may delete a sweep."
        return
    try:
        common.get_store().delete_group(sweep_id)
    except (StoreError, OSError) as error:
        st.session_state.sweep_notice_delete = f"Could not delete the sweep: {md_escape(error, 500)}"
        return
    common.get_jobs().remove(sweep_id)
    st.session_state.get("sweep_loaded", {}).pop(sweep_id, None)
    if st.session_state.get("sweep_id") == sweep_id:
        show_sweep(None)


def start_sweep(configs) -> None:
    rates = sorted({config.learning_rate for config in configs})
    name = f"{len(configs)} runs, lr {rates[0]:g} to {rates[-1]:g}" if len(rates) > 1 else f"{len(configs)} runs"
    sweep_id = new_id("sweep-")
    job = TrainingJob(configs, common.get_dataset(configs[0].dataset), group_id=sweep_id, source="sweep",
                      listeners=[common.get_store().listener("sweep")], name=name,
                      owner=identity.start_owner(), lesson=identity.current_lesson_id())
    try:
        common.get_store().create_group(sweep_id, name, {"configs": len(configs)}, job.run_ids)
    except (StoreError, OSError) as error:  # it still trains and shows here; its runs say why they are unsaved
        for run_id in job.run_ids:
            job.set_save_error(run_id, str(error))
    common.get_jobs().add(job)
    show_sweep(sweep_id)
    job.start()


def change_learning_rates(job: TrainingJob | StoredJob) -> None:
    """Scale every running learning rate (the sweep keeps its spread), or set them all to one value."""
    if not identity.may_control(job.run_ids[0]):
        st.session_state.sweep_lr_notice = ("error", "Nothing changed: only its owner (and the teacher) may.")
        return
    value, scaled = st.session_state.sweep_lr_value, st.session_state.sweep_lr_mode != "Set all to"
    try:
        job.scale_learning_rates(value) if scaled else job.control.set_learning_rate(value)
    except ConfigError as error:
        st.session_state.sweep_lr_notice = ("error", md_escape(error.problems["learning_rate"], 300))
        return
    except StoreError as error:  # a sweep of another server: the request could not be written
        st.session_state.sweep_lr_notice = ("error", f"Nothing changed: {md_escape(error, 300)}")
        return
    st.session_state.sweep_lr_notice = ("success", f"Every learning rate ×{value:g} from the next batch; the runs "
                                                   "keep their spread." if scaled else
                                                   f"Every run trains with learning rate {value:g} from the next "
                                                   "batch.")


def sweep_controls(view: SweepView | None, configs, problems: dict[str, str]) -> None:
    """Start, Pause/Resume, Stop; while it trains, scale every learning rate at once."""
    active = view is not None and view.active
    mine = sweep_mine(view)
    start_col, pause_col, stop_col, toggle_col = st.columns([1.35, 1, 1, 2.2], vertical_alignment="center")
    start_help = ("A sweep is running: stop it or let it finish first." if active else
                  "Fix the settings marked in red first." if problems else "Train every configuration now.")
    if start_col.button("Start sweep", type="primary", icon=":material/play_arrow:", help=start_help,
                        disabled=bool(problems) or (active and mine) or not identity.may_start(), width="stretch"):
        try:
            lessons.check_start(*configs)  # a lesson's fixed settings hold for a sweep's runs too
            start_sweep(configs)
        except PermissionError as error:  # an anonymous browser on a class server (a forged click), or the lesson
            st.error(str(error))
        else:
            st.rerun()
    # someone else's sweep, or one nothing here can change (the command line's): no controls
    job = view.controls if view is not None and active and mine else None
    paused = view is not None and view.paused
    if pause_col.button("Resume" if paused else "Pause", icon=":material/play_arrow:" if paused else ":material/pause:",
                        disabled=job is None, width="stretch", key="sweep_pause"):
        if job is None:  # a forged click on the disabled button
            st.error("Nothing changed: only its owner (and the teacher) may pause a sweep.")
        elif common.control_sent(job.control.resume if paused else job.control.pause):
            st.rerun()
    if stop_col.button("Stop", icon=":material/stop:", disabled=job is None, width="stretch", key="sweep_stop"):
        if job is None:
            st.error("Nothing changed: only its owner (and the teacher) may stop a sweep.")
        elif common.control_sent(job.stop):
            st.rerun()
    if view is not None and not mine:
        st.info(identity.not_yours_note(view.runs[0].owner if view.runs else ""), icon=":material/visibility:")
    toggle_col.toggle("Show the per-minibatch loss", key="sweep_show_batches", persist_state="session")
    if job is not None:
        mode_col, value_col, apply_col, note_col = st.columns([1.5, 1, 0.6, 2], vertical_alignment="bottom")
        mode = mode_col.segmented_control("Learning rates now", ["Multiply by", "Set all to"], default="Multiply by",
                                          key="sweep_lr_mode", required=True,
                                          help="Takes effect at the next batch for every run still training.")
        value_col.number_input("Multiply by" if mode != "Set all to" else "Learning rate", 0.000001, 1000.0, 0.5,
                               key="sweep_lr_value", format="%g", label_visibility="collapsed")
        apply_col.button("Apply", key="sweep_lr_apply", width="stretch", on_click=change_learning_rates, args=(job,))
        kind, text = st.session_state.pop("sweep_lr_notice", (None, ""))
        if kind:
            getattr(note_col, kind)(text)


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
    if sweep_view(st.query_params["sweep"]) is not None:
        st.session_state.sweep_id = st.query_params["sweep"]
    else:
        st.warning(f"The sweep in this link ({md_escape(st.query_params['sweep'])}) is not in this store: it was "
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
view = sweep_view(st.session_state.get("sweep_id"))
active = view is not None and view.active

st.header("1 · Sweep learning rates")
configs, problems = settings_form(dataset_name)
sweep_controls(view, configs, problems)
earlier_sweeps(active)
if "sweep_notice_delete" in st.session_state:
    st.error(st.session_state.pop("sweep_notice_delete"), icon=":material/error:")

poll = None if not active else polling.live_seconds() if view.job is not None else STORE_POLL_SECONDS
st.fragment(live_sweep, run_every=poll)(st.session_state.get("sweep_id"), active, view is not None and view.paused)
if view is not None and not view.active and any(run.epochs for run in view.runs):
    results_table(view)

range_test_section(dataset_name, dataset, problems, sweeping=active)
