"""The class board: every run of a lesson (or started lately), ranked by validation accuracy, live.

It reads the store only, where every session and worker process writes its runs. Many tabs may
show the board at once (the projector, students), so one listing of the store is shared by all of
them for LISTING_SECONDS, and the best run's weights are read (its newest snapshot only) once per
new snapshot, not per poll. Charts and weight maps are `ui.compare_charts`' and `ui.maps`'.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import streamlit as st
import torch

from lrcore import naming
from lrcore.checkpoint import CheckpointError
from lrcore.record import RunRecord
from lrcore.status import Status
from lrcore.store import Store, StoreError
from ui import charts, common, identity, lessons
from ui import compare_charts
from ui import format as fmt
from ui import maps
from ui.text import md_escape

POLL_SECONDS = 2.0  # the board's fragment reruns this often, with nobody clicking
LISTING_SECONDS = 1.5  # one store listing serves every board tab for this long
HOURS = (1, 2, 4, 12, 24, 168)  # "started in the last N hours" when no lesson is chosen
DEFAULT_HOURS = 2  # about one class
RECENT_LESSON_HOURS = 12  # a lesson made this long ago is today's: the board starts on it
LEGEND_RUNS = 10  # the chart's legend names the best ten; every curve still has its name on hover
NOT_RANKED = (Status.IMPORTED,)  # an uploaded checkpoint was not trained in class


@dataclass(frozen=True)
class Audience:
    """Who looks at the board: whether they may see owners' names, and their own owner id."""

    names: bool  # the teacher, or anyone on a personal (not class-mode) server
    owner: str = ""
    class_mode: bool = False


def audience() -> Audience:
    """The current session's view of the board (`ui.identity`)."""
    viewer = identity.viewer()
    return Audience(names=viewer.teacher or not viewer.class_mode, owner=viewer.owner, class_mode=viewer.class_mode)


# ---------------------------------------------------------------- which runs

@st.cache_resource(ttl=LISTING_SECONDS, max_entries=8, show_spinner=False)
def _listing(url: str, lesson_id: str, _store: Store) -> tuple[list[RunRecord], str, dict[str, str]]:
    """The lesson's runs (every run for ""; epochs, no batch losses or weights), why the store could not
    be read, and the owners' display names. Shared by every session: the records are read, never changed."""
    runs = _store.list_runs(lesson=lesson_id or None)
    try:
        names = _store.display_names()
    except (StoreError, OSError):  # the runs are listed without names
        names = {}
    return runs, _store.problem, names


def listing(lesson_id: str) -> tuple[list[RunRecord], str, dict[str, str]]:
    store = common.get_store()
    return _listing(store.url, lesson_id, store)


def board_runs(runs: Sequence[RunRecord], lesson_id: str, hours: float, now: float | None = None) -> list[RunRecord]:
    """The runs of lesson `lesson_id`; with no lesson (""), those started in the last `hours` hours."""
    if lesson_id:
        return [run for run in runs if run.lesson == lesson_id]
    since = (time.time() if now is None else now) - hours * 3600
    return [run for run in runs if run.created >= since and run.status not in NOT_RANKED]


def score(run: RunRecord) -> float | None:
    """What ranks a run: the best validation accuracy any of its epochs reached (None before epoch 0)."""
    return run.best_validation_accuracy


def ranked(runs: Sequence[RunRecord]) -> list[RunRecord]:
    """Best first; equal scores by who got there first; runs without an evaluation yet last, oldest first."""
    return sorted(runs, key=lambda run: (score(run) is None, -(score(run) or 0.0), run.created, run.run_id))


# ---------------------------------------------------------------- text

def state_text(run: RunRecord) -> str:
    """"queued", "training, epoch 3 of 10", "paused in epoch 3 of 10", "done", "diverged", "stopped", "crashed"."""
    total = run.config.epochs
    current = min(run.progress.get("epoch") or run.epochs_done + 1, total)
    if run.status == Status.TRAINING and run.progress:
        return f"training, epoch {current} of {total}"
    if run.status == Status.TRAINING:
        return "training, evaluating the untrained model"
    if run.status == Status.PAUSED:
        return f"paused in epoch {current} of {total}"
    if run.status in (Status.STOPPED, Status.CRASHED) and run.epochs:
        return f"{run.status} after epoch {run.epochs_done} of {total}"
    return str(run.status)  # queued, starting, waiting, done, diverged; stopped before it started


def settings_text(run: RunRecord, with_dataset: bool = False) -> str:
    """"lr=0.1 bs=64": the settings that differ from the dataset's defaults (as run names say them)."""
    parts = [run.config.dataset] if with_dataset else []
    parts += [label for _, label in naming.changed_settings(run.config)]
    return " ".join(parts) or "defaults"


def owner_text(run: RunRecord, viewer: Audience, names: dict[str, str]) -> str:
    """The owner's display name for the teacher; for a student only "you" or "classmate"."""
    owner = run.owner
    if not viewer.names:
        return "you" if owner and owner == viewer.owner else "classmate"
    if not owner:
        return fmt.DASH  # trained before identities, or from the command line
    return names.get(owner) or f"student {owner[:4]}"  # as ui.identity.owner_label says it


def ranking_table(runs: Sequence[RunRecord], viewer: Audience, names: dict[str, str]) -> pd.DataFrame:
    """One row per run of `ranked(runs)`: rank, name, owner, state, accuracies, the settings that differ."""
    several_datasets = len({run.config.dataset for run in runs}) > 1
    rows = []
    for rank, run in enumerate(runs, start=1):
        rows.append({
            "Rank": str(rank) if score(run) is not None else fmt.DASH,
            "Name": run.name,
            "Student": owner_text(run, viewer, names),
            "State": state_text(run),
            "Best val. acc.": fmt.percent(score(run)),
            "Test acc.": fmt.percent(run.test_accuracy),
            "Settings": settings_text(run, several_datasets),  # last: a phone leaves it out (CSS)
        })
    table = pd.DataFrame(rows)
    if not any(run.owner for run in runs):  # a personal server, or runs from before owners: nobody to name
        table = table.drop(columns="Student", errors="ignore")
    return table


# ---------------------------------------------------------------- figures

def curves_figure(runs: Sequence[RunRecord]) -> charts.SentFigure:
    """Validation accuracy per epoch of `runs` (ranked, with epochs): the best thick, the rest thin and faded.

    A run keeps its colour while the ranking changes (colours follow start order); the best is
    drawn last, on top of the others."""
    colours = {run.run_id: compare_charts.COLORS[i % len(compare_charts.COLORS)]
               for i, run in enumerate(sorted(runs, key=lambda run: (run.created, run.run_id)))}
    order = list(reversed(runs))  # the best last: drawn on top
    labels = [f"{len(runs) - i}. {run.name}" for i, run in enumerate(order)]
    figure = compare_charts.epoch_curves(order, labels, "accuracy", ["validation"], False)
    for trace, run, rank in zip(figure.data, order, range(len(runs), 0, -1)):
        best = rank == 1
        trace.update(line=dict(color=colours[run.run_id], width=6 if best else 2.5), opacity=1.0 if best else 0.6,
                     marker=dict(color=colours[run.run_id], size=9 if best else 5),
                     showlegend=rank <= LEGEND_RUNS)
    epochs = max(run.config.epochs for run in runs)
    # The legend under the axes, one name a line: on top, a class's long run names pushed into the title.
    legend_lines = min(len(runs), LEGEND_RUNS)
    figure.update_layout(title=dict(text="Validation accuracy per epoch", font=dict(size=20)), font=dict(size=17),
                         height=420 + 24 * legend_lines, margin=dict(l=10, r=10, t=50, b=10),
                         legend=dict(traceorder="reversed", orientation="v", yanchor="top", y=-0.18, xanchor="left",
                                     x=0, font=dict(size=15)),
                         xaxis=dict(range=[-0.2, epochs + 0.2], dtick=1 if epochs <= 20 else None))
    return charts.SentFigure(figure)


@st.cache_resource(max_entries=8, show_spinner=False)
def _newest_weights(url: str, run_id: str, version: tuple, _store: Store) -> tuple[torch.Tensor, tuple[str, ...]] | None:
    """The run's newest weights and class names (one snapshot read), shared by every board tab;
    `version` changes when the run has new weights. None when it has none yet."""
    try:
        checkpoint = _store.checkpoint(run_id)
    except (CheckpointError, StoreError, OSError):
        return None
    return checkpoint.model.linear.weight.detach().clone(), tuple(checkpoint.class_names)


def weights_version(run: RunRecord) -> tuple:
    """Changes exactly when the run's newest stored weights can have changed (an epoch ended, it finished)."""
    return run.status, run.epochs_done, run.stored_snapshots, run.final.get("kept_step")


def best_weights(run: RunRecord) -> tuple[torch.Tensor, tuple[str, ...]] | None:
    store = common.get_store()
    return _newest_weights(store.url, run.run_id, weights_version(run), store)


def weights_figure(run: RunRecord, weight: torch.Tensor, class_names: tuple[str, ...]) -> charts.SentFigure:
    """The best run's weight images, the figure kept per session and refilled in place (`maps.WeightMaps`)."""
    figures = st.session_state.get("board_maps")
    if figures is None:
        figures = st.session_state.board_maps = maps.WeightMaps()
    shape = maps.image_shape(run.config.dataset, pixels=weight.shape[1])
    return figures.figure((run.run_id, weights_version(run)), weight, class_names, compact=True, shape=shape)



# ---------------------------------------------------------------- the page's parts

# Projector type: the ranking is an HTML table (st.dataframe draws on a canvas at a fixed small size).
# A phone has no room for the Settings column (the last; run names say the same, shorter).
CSS = """<style>
[data-testid='stTable'] table {font-size: 1.2rem;}
[data-testid='stTable'] td, [data-testid='stTable'] th {padding: 0.3rem 0.5rem;}
[data-testid='stMetricValue'] {font-size: 2.6rem;}
@media (max-width: 1100px) {[data-testid='stTable'] table {font-size: 1.05rem;}}
@media (max-width: 640px) {[data-testid='stTable'] table {font-size: 0.85rem;}
  [data-testid='stTable'] td, [data-testid='stTable'] th {padding: 0.2rem 0.3rem;}
  [data-testid='stTable'] td:last-child, [data-testid='stTable'] th:last-child {display: none;}}
</style>"""


def hours_text(hours: float) -> str:
    return "7 days" if hours == 168 else f"{hours:g} hour{'s' if hours != 1 else ''}"


def lesson_options() -> tuple[dict[str, str], str]:
    """Lesson id -> title for the selector ("" = no lesson: recent runs), this session's lesson first, then
    the store's newest first; and the one to start with: this session's lesson, else one the teacher
    made in the last RECENT_LESSON_HOURS (today's class), else none."""
    current = lessons.current_lesson()
    try:
        stored = common.get_store().lessons()
    except (StoreError, OSError):  # the lessons cannot be listed: the current one and recent runs still work
        stored = []
    options = {}
    for lesson in ([current] if current is not None else []) + stored:
        options.setdefault(lesson.lesson_id, lesson.title or "untitled lesson")
    options[""] = "No lesson: all recent runs"
    if current is not None:
        default = current.lesson_id
    elif stored and stored[0].created > time.time() - RECENT_LESSON_HOURS * 3600:
        default = stored[0].lesson_id
    else:
        default = ""
    return options, default


def choose_runs() -> tuple[str, float]:
    """The lesson whose runs to show ("" for none) and, without a lesson, how many hours back to look."""
    options, default = lesson_options()
    lesson_col, hours_col = st.columns([3, 2])
    lesson_id = lesson_col.selectbox("Lesson", list(options), index=list(options).index(default),
                                     format_func=options.get, key="board_lesson",
                                     help="A lesson's runs are those started from its link, however old. Without a "
                                          "lesson the board shows every run started lately.")
    hours = hours_col.selectbox("Started in the last", HOURS, index=HOURS.index(DEFAULT_HOURS),
                                format_func=hours_text, key="board_hours", disabled=bool(lesson_id),
                                help="Without a lesson: how far back runs count.")
    return lesson_id, hours


def _bold_best(table: pd.DataFrame, has_best: bool):
    """The table with the best run's row in bold (a Styler: st.table keeps its styles)."""
    return table.style.apply(lambda row: ["font-weight: bold" if has_best and row.name == 0 else ""] * len(row),
                             axis=1)


def live_board(lesson_id: str, hours: float, viewer: Audience) -> None:
    """The polling part: how many runs, the ranking, the overlaid curves and the best run's weights."""
    runs, problem, names = listing(lesson_id)
    if problem:
        st.error(f"The run store cannot be read: {md_escape(problem, 300)}.", icon=":material/error:")
        return
    shown = ranked(board_runs(runs, lesson_id, hours))
    if not shown:
        where = "in this lesson" if lesson_id else f"started in the last {hours_text(hours)}"
        st.info(f"No runs {where} yet. They appear here by themselves as students press **Start** on the Train "
                "page.", icon=":material/hourglass_top:")
        return
    best = shown[0] if score(shown[0]) is not None else None
    counts = st.columns(3)
    counts[0].metric("Runs", len(shown))
    counts[1].metric("Still training", sum(run.active for run in shown), help="Queued, training or paused.")
    counts[2].metric("Best validation accuracy", fmt.percent(score(best)) if best else fmt.DASH)
    st.table(_bold_best(ranking_table(shown, viewer, names), best is not None), hide_index=True)
    with_epochs = [run for run in shown if run.epochs]
    curves_col, weights_col = st.columns(2)
    if with_epochs:
        curves_col.plotly_chart(curves_figure(with_epochs), key="board_curves")
    else:
        curves_col.caption("Curves appear after each run's first evaluation (epoch 0, the untrained model).")
    weights = best_weights(best) if best is not None else None
    if weights is not None:
        weight, class_names = weights
        weights_col.markdown(f"**Weights of the best run, “{md_escape(best.name)}”** ({state_text(best)})")
        weights_col.plotly_chart(weights_figure(best, weight, class_names), key="board_weights")
