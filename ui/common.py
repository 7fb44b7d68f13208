"""Shared pieces of the pages: cached datasets, the run registry, the current model, the sidebar.

Datasets and the run registry live in `st.cache_resource`: one copy per server process,
shared read-only by every session. Per-user state is the current run id (session state
and the URL's `run` query parameter, so a refresh finds the run again) and an optional
loaded checkpoint.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import streamlit as st
import torch

from lrcore import datasets
from lrcore.checkpoint import Checkpoint
from lrcore.data import Dataset, DatasetUnavailable, Normalizer, available_datasets, load_dataset
from lrcore.model import LogisticRegression
from lrcore.runstore import RunStore, default_runs_dir
from lrcore.settings import SETTINGS, to_params
from lrcore.sweepstore import SweepStore, default_sweeps_dir
from lrcore.worker import RunRegistry, TrainingWorker

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


@st.cache_resource(show_spinner="Loading dataset…")
def get_dataset(name: str) -> Dataset:
    """The dataset's tensors, loaded once per server process and shared by all sessions."""
    return load_dataset(name)


@st.cache_resource
def get_registry() -> RunRegistry:
    """Every training worker of this server process, by run id."""
    return RunRegistry()


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
        wanted = st.query_params.get("dataset", "mnist-sample")
        st.session_state.dataset = wanted if available_datasets().get(wanted) else "mnist-sample"
    return st.session_state.dataset


def remember_run(run_id: str) -> None:
    """Make `run_id` this user's current run, in session state and in the URL."""
    st.session_state.run_id = run_id
    st.query_params["run"] = run_id


def current_worker() -> TrainingWorker | None:
    """This user's current run: from session state, else from the URL (after a refresh)."""
    run_id = st.session_state.get("run_id") or st.query_params.get("run")
    worker = get_registry().get(run_id)
    if worker is not None and st.session_state.get("run_id") != run_id:
        st.session_state.run_id = run_id
    return worker


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
    worker = current_worker()
    if worker is None:
        return None
    record = worker.snapshot()
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


def run_state_text(worker: TrainingWorker | None) -> str:
    """"idle", "training epoch 3 of 10", "paused at epoch 3 of 10", "done", "diverged", …"""
    if worker is None:
        return "idle"
    record = worker.snapshot()
    total = record.config.epochs
    current = min(record.epochs_done + 1, total)
    if record.status == "training":
        return f"training epoch {current} of {total}"
    if record.status == "paused":
        return f"paused in epoch {current} of {total}"
    if record.status == "done":
        return f"done ({total} epochs)"
    if record.status == "stopped":
        return f"stopped after epoch {record.epochs_done} of {total}"
    return str(record.status)  # starting, diverged, crashed: the word itself


def sidebar() -> None:
    """Dataset, device and the state of the current run, on every page."""
    worker = current_worker()
    if worker is not None and st.query_params.get("run") != worker.run_id:
        # Moving between pages clears the URL's parameters: put the run back, so a refresh finds it.
        st.query_params["run"] = worker.run_id
    with st.sidebar:
        st.markdown(f"**Dataset:** {datasets.get(selected_dataset_name()).title}")
        st.markdown(f"**Device:** {device_label()}")
        # While a run is active the line refreshes itself each second; idle, it costs nothing.
        live = worker is not None and worker.snapshot().active
        st.fragment(run_every=1.0 if live else None)(_run_state_line)()


def _run_state_line() -> None:
    st.markdown(f"**Run:** {run_state_text(current_worker())}")


def run_listeners() -> list:
    """Listeners attached to every training worker started from the pages: the run store records it."""
    return [get_run_store().listener()]


def start_run(config, name: str | None = None) -> TrainingWorker:
    """Start training `config` in a worker and make it this user's current run."""
    worker = get_registry().start(config, get_dataset(config.dataset), listeners=run_listeners(), name=name)
    remember_run(worker.run_id)
    use_checkpoint(None)
    return worker


# ---------------------------------------------------------------- Data and Evaluate page helpers

def current_model_config() -> "TrainConfig":
    """Settings the model in use was trained with (checkpoint or current run); defaults otherwise."""
    from lrcore.config import TrainConfig

    checkpoint: Checkpoint | None = st.session_state.get("checkpoint")
    if checkpoint is not None:
        return checkpoint.config
    worker = current_worker()
    return worker.snapshot().config if worker is not None else TrainConfig()


@st.cache_resource
def get_downloads() -> dict:
    """Dataset downloads of this server process by dataset name: one per dataset, seen by every session."""
    return {}


def digit_tiles(images: torch.Tensor, scale: int = 3, marked: torch.Tensor | None = None) -> list:
    """uint8 images (N x height x width, or N x 3 x height x width in colour) -> RGB arrays
    upscaled with nearest neighbour (crisp pixels).

    Images where `marked` is True get a red border (wrong predictions).
    """
    images = images.to(torch.uint8)
    tiles = images.unsqueeze(-1) if images.ndim == 3 else images.permute(0, 2, 3, 1)  # N x H x W x channels
    rgb = tiles.repeat_interleave(scale, 1).repeat_interleave(scale, 2).expand(-1, -1, -1, 3).contiguous()
    if marked is not None and bool(marked.any()):
        red = torch.tensor([230, 40, 40], dtype=torch.uint8)
        edge = max(2, scale)
        rows = rgb[marked.bool()]
        rows[:, :edge], rows[:, -edge:], rows[:, :, :edge], rows[:, :, -edge:] = red, red, red, red
        rgb[marked.bool()] = rows
    return list(rgb.numpy())


def forget_run() -> None:
    """Drop the current run from this session and the URL (the worker itself is left alone)."""
    st.session_state.pop("run_id", None)
    if "run" in st.query_params:
        del st.query_params["run"]


def using_checkpoint() -> bool:
    """True when the model in use is a loaded checkpoint rather than the current run."""
    return st.session_state.get("checkpoint") is not None


def get_run_store() -> RunStore:
    """The run store of this server process ($LRCORE_RUNS_DIR, else <data dir>/runs)."""
    return _run_store(str(default_runs_dir().resolve()))


@st.cache_resource
def _run_store(root: str) -> RunStore:
    # keyed by the folder, so tests that point LRCORE_RUNS_DIR elsewhere get their own store
    return RunStore(root)


# ---------------------------------------------------------------- Sweep page helpers

@st.cache_resource
def get_sweeps() -> dict:
    """Sweep and range-test workers of this server process, by id: they outlive page switches."""
    return {}


def get_sweep_store() -> SweepStore:
    """Where sweeps are recorded: `sweeps/` inside the run store's folder."""
    return _sweep_store(str(default_sweeps_dir().resolve()))


@st.cache_resource
def _sweep_store(root: str) -> SweepStore:
    return SweepStore(root)


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
