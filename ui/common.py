"""Shared pieces of the pages: cached datasets, the job registry, the store, the current model, the sidebar.

Datasets, the job registry and the store live in `st.cache_resource`: one copy per server process,
shared read-only by every session. Per-user state is the current run id (session state
and the URL's `run` query parameter, so a refresh finds the run again) and an optional
loaded checkpoint.
"""
from __future__ import annotations

import contextlib
import re
import threading
from typing import Callable
from dataclasses import dataclass

import streamlit as st
import torch

from lrcore import datasets, image_folder
from lrcore.checkpoint import Checkpoint, CheckpointError
from lrcore.data import Dataset, DatasetUnavailable, Normalizer, available_datasets, load_dataset
from lrcore.model import LogisticRegression
from lrcore.record import RunRecord
from lrcore.jobs import JobRegistry, LiveRun, TrainingJob
from lrcore.naming import default_run_name, numbered_name
from lrcore.settings import SETTINGS, to_params
from lrcore.compute import ComputeError, make_pool
from lrcore.workers import WorkerPool
from lrcore.store import Store, StoreError, default_store_url
from lrcore.store_controls import StoredControl
from ui import images, polling
from ui.text import md_escape

# Set while dashboard.py runs the chosen page (per script thread: each session's script runs
# on its own thread). A page that runs without it was started by Streamlit's legacy mode.
_FRAME = threading.local()


@contextlib.contextmanager
def framed():
    """dashboard.py runs the page inside this, so `ensure_frame` knows the frame is there."""
    _FRAME.active = True
    try:
        yield
    finally:
        _FRAME.active = False


def ensure_frame() -> None:
    """Run the page inside the dashboard's frame (sidebar, navigation) when it was opened alone.

    Streamlit decides per process whether an app uses the legacy `pages/` folder: the flag
    starts True because pages/ exists and only turns False once a session runs
    st.navigation. Until then a direct link (e.g. /train?lr=0.1 on a fresh server) runs the
    page alone. Every page calls this first: outside the frame it runs the frame (which
    calls st.navigation and then runs this page inside it) and stops the lone run. It is a
    call, not an import side effect: a rerun raised inside the first import of this module
    made concurrent sessions fail with "cannot import name 'common'"; and no rerun, so a
    click in that run is not lost. Checked on a real server by
    `tests/browser/test_cold_server.py` and `test_direct_links.py`.
    """
    if getattr(_FRAME, "active", False):
        return
    from ui import frame

    frame.run()
    st.stop()


@st.cache_resource(show_spinner="Finding image-folder datasets…")
def folder_datasets() -> str | None:
    """Once per server process: register the folder datasets decoded before (so runs and links naming one
    work after a restart) and the bundled example; returns the example's name (None if it cannot be made)."""
    image_folder.register_cached_folders()
    try:
        return image_folder.example_dataset()
    except (image_folder.FolderError, DatasetUnavailable, OSError):  # e.g. a read-only data folder
        return None


def is_folder_dataset(name: str) -> bool:
    return datasets.get(name).loader is image_folder.load_cache


def dataset_choices() -> list[str]:
    """What this user can pick: the built-ins, the bundled example, this session's own imports
    (`st.session_state["own_datasets"]`) and the current choice (e.g. from a link)."""
    example = folder_datasets()
    chosen = [name for name in datasets.NAMES if not is_folder_dataset(name)]
    for name in [example, *st.session_state.get("own_datasets", []), st.session_state.get("dataset")]:
        if name and name in datasets.NAMES and name not in chosen:
            chosen.append(name)
    return chosen


def add_own_dataset(name: str) -> None:
    """Offer an imported folder dataset to this session and select it."""
    own = st.session_state.setdefault("own_datasets", [])
    if name not in own:
        own.append(name)
    st.session_state.dataset = name
    st.session_state.pop("data_choice", None)  # the Data page's radio starts again from the new choice
    st.query_params["dataset"] = name


@st.cache_resource(show_spinner="Loading dataset…")
def get_dataset(name: str) -> Dataset:
    """The dataset's tensors, loaded once per server process and shared by all sessions."""
    folder_datasets()
    return load_dataset(name)


@st.cache_resource
def get_jobs() -> JobRegistry:
    """Every job of this server process (training runs and sweeps, range tests, downloads); training and
    range tests run in the worker pool (`get_pool`) when there is one."""
    return JobRegistry(get_pool())


@st.cache_resource
def get_pool() -> WorkerPool | None:
    """The workers that train for this server, started (and warmed) with its first page view.

    By default worker processes: $LRCORE_WORKERS of them (default: one per core); LRCORE_WORKERS=0
    trains in threads of this process instead (the AppTests do, for speed). LRCORE_COMPUTE=ray trains
    on Ray actors instead (`lrcore.compute`). Settings that cannot work stop every page with their
    message (not cached: the next page view tries again)."""
    try:
        return make_pool()
    except ComputeError as error:
        st.error(f"Training is not available: {error}")
        st.stop()


def dataset_or_stop(name: str) -> Dataset:
    """Load `name` or show why it is unavailable and stop the page (never a traceback)."""
    try:
        return get_dataset(name)
    except DatasetUnavailable as error:
        st.error(str(error))
        st.stop()


def selected_dataset_name() -> str:
    """The dataset picked on the Data page (default mnist-sample)."""
    if "dataset" not in st.session_state:
        folder_datasets()  # a link may name a folder dataset imported before a restart
        wanted = st.query_params.get("dataset", "mnist-sample")
        st.session_state.dataset = wanted if available_datasets().get(wanted) else "mnist-sample"
    return st.session_state.dataset


def remember_run(run_id: str) -> None:
    """Make `run_id` this user's current run, in session state and in the URL."""
    st.session_state.run_id = run_id
    st.query_params["run"] = run_id


def current_worker() -> LiveRun | None:
    """This user's current run, if trained by this server process: from session state, else from the URL."""
    run_id = st.session_state.get("run_id") or st.query_params.get("run")
    worker = get_jobs().live_run(run_id)
    if worker is not None and st.session_state.get("run_id") != run_id:
        st.session_state.run_id = run_id
    return worker


class StoredRun:
    """A run of the store that this process is not training: finished, trained elsewhere or before a restart.

    Offers what the pages read of a live run (`run_id`, `snapshot()`, `control`); the full record, snapshots
    included, is read once per session and again only when the store says the run changed (a run another
    server trains changes as that server writes it). `control` is None unless another server trains it
    now: then a `StoredControl`, whose commands go to that server as control rows in the store.
    """

    def __init__(self, run_id: str, updated: float, control: StoredControl | None = None):
        self.run_id, self.updated, self.control = run_id, updated, control

    def snapshot(self) -> RunRecord:
        memo = st.session_state.get("stored_run")
        if memo is None or memo[:2] != (self.run_id, self.updated):
            memo = (self.run_id, self.updated, get_store().load(self.run_id))
            st.session_state.stored_run = memo
        return memo[2]


def run_handle(run_id: str | None) -> LiveRun | StoredRun | None:
    """The run `run_id`: live if this process trains it, else from the store (None if it is in neither)."""
    live = get_jobs().live_run(run_id)
    if live is not None or not run_id:
        return live
    from ui import identity  # imported here: ui.identity reads the store through this module

    try:
        store = get_store()
        record = store.get(run_id)
    except (StoreError, OSError):
        return None
    try:  # another server trains it: this page's clicks go there through the store, as `who`
        control = store.remote_control(record, identity.viewer().owner)
    except (StoreError, OSError):
        control = None
    return StoredRun(run_id, record.updated, control)


def current_run() -> LiveRun | StoredRun | None:
    """This user's current run, live or from the store (after a restart, or opened from Runs or Sweep)."""
    return run_handle(st.session_state.get("run_id") or st.query_params.get("run"))


@dataclass(frozen=True)
class ModelInUse:
    """The model the Weights, Draw and Evaluate pages look at."""

    model: LogisticRegression
    normalizer: Normalizer
    class_names: tuple[str, ...]
    dataset: str
    label: str  # where it came from, shown on the page


def current_model() -> ModelInUse | None:
    """A loaded checkpoint if the user picked one, else the current run's latest weights."""
    checkpoint: Checkpoint | None = st.session_state.get("checkpoint")
    if checkpoint is not None:
        return ModelInUse(checkpoint.model, checkpoint.normalizer, checkpoint.class_names,
                          checkpoint.config.dataset, st.session_state.get("checkpoint_label", "checkpoint"))
    run = current_run()
    if run is None:
        return None
    try:
        record = run.snapshot()
    except (StoreError, OSError):  # deleted a moment ago, or the store cannot be read
        return None
    model = record.latest_model()
    if model is None or record.normalizer is None:
        return None
    label = f"run “{record.name}” ({record.status}, epoch {record.epochs_done}/{record.config.epochs})"
    return ModelInUse(model, record.normalizer, record.class_names, record.config.dataset, label)


def use_checkpoint(checkpoint: Checkpoint | None, label: str = "") -> None:
    """Make a checkpoint the model in use (None goes back to the current run)."""
    if checkpoint is None:
        st.session_state.pop("checkpoint", None)
        st.session_state.pop("checkpoint_label", None)
    else:
        st.session_state.checkpoint = checkpoint
        st.session_state.checkpoint_label = label or "uploaded checkpoint"


def device_label() -> str:
    if torch.cuda.is_available():
        return f"GPU ({torch.cuda.get_device_name(0)})"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'s' if threads != 1 else ''})"


def run_state_text(worker: LiveRun | None) -> str:
    """"idle", "training epoch 3 of 10", "paused at epoch 3 of 10", "done", "diverged", …"""
    if worker is None:
        return "idle"
    record = worker.snapshot()
    total = record.config.epochs
    current = min(record.epochs_done + 1, total)
    if record.status == "queued":
        return queued_text(record.queued_ahead).lower()
    if record.status == "training":
        return f"training epoch {current} of {total}"
    if record.status == "paused":
        return f"paused in epoch {current} of {total}"
    if record.status == "done":
        return f"done ({total} epochs)"
    if record.status == "stopped" and not record.epochs:
        return "stopped before it started"  # taken out of the queue
    if record.status == "stopped":
        return f"stopped after epoch {record.epochs_done} of {total}"
    return str(record.status)  # starting, diverged, crashed: the word itself


def queued_text(ahead: int) -> str:
    """"Queued: 2 runs ahead" (runs that must end before a worker is free for it)."""
    if ahead <= 0:
        return "Queued: a worker process is starting"
    return f"Queued: {ahead} run{'s' if ahead != 1 else ''} ahead"


def control_sent(action: Callable[[], object]) -> bool:
    """Pause, resume, stop or an lr change: True once done (for a run or sweep of another server: once its
    request is in the store); a store that refuses it says so on the page and nothing changes."""
    try:
        action()
    except StoreError as error:
        st.error(f"Nothing changed: {md_escape(error, 300)}", icon=":material/error:")
        return False
    return True


def sidebar() -> None:
    """Dataset, device and the state of the current run, on every page."""
    get_jobs()  # the first page view starts the worker pool, so it is warm by the first Start
    worker = current_worker()
    if worker is not None and st.query_params.get("run") != worker.run_id:
        # Moving between pages clears the URL's parameters: put the run back, so a refresh finds it.
        st.query_params["run"] = worker.run_id
    with st.sidebar:
        st.markdown(f"**Dataset:** {md_escape(datasets.get(selected_dataset_name()).title, 200)}")
        st.markdown(f"**Device:** {device_label()}")
        st.fragment(_run_state, key=SIDEBAR_RUN_KEY)()


# The sidebar's run lines as a fragment of their own: a click that starts a run without a whole-page
# run (the Train page's Start) reruns it by this key (`st.rerun([..., SIDEBAR_RUN_KEY])`), so they start polling.
SIDEBAR_RUN_KEY = "sidebar_run_state"


def _run_state() -> None:
    """While a run or this session's sweep is active the lines refresh (ui/polling.py); idle, they cost nothing."""
    sweep = get_jobs().get(st.session_state.get("sweep_id"))
    shown = current_worker() or _stored_summary()
    live = (shown is not None and shown.snapshot().active) or (sweep is not None and sweep.active)
    st.fragment(run_every=2 * polling.live_seconds() if live else None)(_run_state_line)()


class _Summary:
    """A run of the store without its curves and weights: enough for the sidebar's one line."""

    def __init__(self, record: RunRecord):
        self.record = record

    def snapshot(self) -> RunRecord:
        return self.record


def _stored_summary() -> _Summary | None:
    """The current run when another server (or the CLI) trains it, or trained it: its summary row."""
    run_id = st.session_state.get("run_id") or st.query_params.get("run")
    if not run_id:
        return None
    try:
        return _Summary(get_store().get(run_id))
    except (StoreError, OSError):
        return None


def _run_state_line() -> None:
    st.markdown(f"**Run:** {run_state_text(current_worker() or _stored_summary())}")
    sweep = get_jobs().get(st.session_state.get("sweep_id"))
    if isinstance(sweep, TrainingJob):
        records = sweep.records()
        training = sum(record.active for record in records)
        queued = next((record for record in records if record.status == "queued"), None)
        state = (queued_text(queued.queued_ahead).lower() if queued else
                 f"{training} of {len(records)} runs training" if training else f"{len(records)} runs, finished")
        st.markdown(f"**Sweep:** {state}")


def start_job(configs: list, names: list[str] | None = None, group_id: str = "",
              source: str = "dashboard", owner: str = "", lesson: str = "") -> TrainingJob:
    """Train `configs` in one job, recorded by the store, registered for every session of this server;
    its runs belong to `owner` (a browser's public id on a class server) and were started in `lesson`."""
    store = get_store()  # records it, and brings it other servers' clicks (control rows)
    job = TrainingJob(configs, get_dataset(configs[0].dataset), names=names, group_id=group_id, source=source,
                      listeners=[store.listener(source)], owner=owner, lesson=lesson, control_store=store)
    get_jobs().add(job)  # in the worker pool when there is one
    return job.start()


def start_run(config, name: str | None = None) -> LiveRun:
    """Start training `config` as this browser's run (in its lesson) and make it this user's current run.

    On a class server an anonymous browser may start nothing (PermissionError: pages check
    `identity.may_start()` first and say why), and an auto-name gets the owner's run number ("#3")."""
    from ui import identity

    owner, lesson = identity.start_owner(), identity.current_lesson_id()
    if name is None and owner:
        name = numbered_name(default_run_name(config), get_store().next_run_number(owner))
    job = start_job([config], names=[name] if name else None, owner=owner, lesson=lesson)
    remember_run(job.run_ids[0])
    use_checkpoint(None)
    return LiveRun(job, job.run_ids[0])


# ---------------------------------------------------------------- Data and Evaluate page helpers

def current_model_config() -> "TrainConfig":
    """Settings the model in use was trained with (checkpoint or current run); defaults otherwise."""
    from lrcore.config import TrainConfig

    checkpoint: Checkpoint | None = st.session_state.get("checkpoint")
    if checkpoint is not None:
        return checkpoint.config
    worker = current_worker()
    return worker.snapshot().config if worker is not None else TrainConfig()


digit_tiles = images.picture_tiles  # the old name, for current callers


def forget_run() -> None:
    """Drop the current run from this session and the URL (the worker itself is left alone)."""
    st.session_state.pop("run_id", None)
    if "run" in st.query_params:
        del st.query_params["run"]


def using_checkpoint() -> bool:
    """True when the model in use is a loaded checkpoint rather than the current run."""
    return st.session_state.get("checkpoint") is not None


def get_store() -> Store:
    """The store of this server process ($LRCORE_STORE_URL, else a SQLite file in the runs folder)."""
    return _store(default_store_url())


@st.cache_resource
def _store(url: str) -> Store:
    # keyed by the URL, so tests that point LRCORE_RUNS_DIR / LRCORE_STORE_URL elsewhere get their own store
    return Store(url)


def train_query_params(config) -> dict[str, str]:
    """`config`'s settings as the Train page's query parameters (no limit -> left out)."""
    return {"dataset": config.dataset, **to_params(config.to_dict())}


def open_in_train(config) -> None:
    """Switch to the Train page with `config`'s settings filled in (does not return).

    The Train page fills its widgets from the URL only when its widget keys are missing
    from session state (its first load), so those keys are dropped first.
    """
    keys = ["train_lr_grid", "train_limit_on", *(f"train_{setting.name}" for setting in SETTINGS if setting.label)]
    for key in keys:
        st.session_state.pop(key, None)
    st.switch_page("pages/train.py", query_params=train_query_params(config))


# ---------------------------------------------------------------- opening a run (Runs and Sweep pages)

MODEL_PAGES = [("pages/weights.py", "Weights", ":material/grid_view:"), ("pages/draw.py", "Draw", ":material/draw:"),
               ("pages/evaluate.py", "Evaluate", ":material/fact_check:")]


def file_stem(name: str) -> str:
    """A run name as a safe file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:60] or "run"


def switch_to(page: str) -> None:
    """Switch pages keeping the current run in the URL (switch_page clears query parameters)."""
    run_id = st.session_state.get("run_id")
    st.switch_page(page, query_params={"run": run_id} if run_id else None)


def open_run(run_id: str, name: str, page: str) -> None:
    """Make a run the model the other pages use, then go to `page` (a model page of MODEL_PAGES)."""
    run = run_handle(run_id)
    if run is not None and (isinstance(run, LiveRun) or run.snapshot().has_weights):
        remember_run(run_id)  # it becomes the current run: Weights scrubs through its saved epochs
        use_checkpoint(None)
    else:  # an uploaded checkpoint: no epochs
        try:
            checkpoint = get_store().checkpoint(run_id)
        except (CheckpointError, StoreError, OSError) as error:
            st.error(f"Cannot open “{md_escape(name)}”: {md_escape(error, 500)}")
            return
        use_checkpoint(checkpoint, label=f"run “{name}”")
    switch_to(page)


def checkpoint_download(container, run, key: str) -> None:
    """A button that downloads a run's checkpoint (built when clicked, from the store)."""
    container.download_button(
        "Checkpoint", data=lambda: get_store().checkpoint_bytes(run.run_id), file_name=f"{file_stem(run.name)}.pt",
        mime="application/octet-stream", icon=":material/download:", on_click="ignore", width="stretch", key=key,
        disabled=not (run.has_weights or run.final),
        help="The final weights with their settings (or the newest epoch's, for a run that did not finish). "
             "Load it on the Draw and Evaluate pages, or with lrcore.checkpoint.load_checkpoint.")
