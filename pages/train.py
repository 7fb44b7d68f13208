"""Train: pick hyperparameters, press Start, watch loss and accuracy stream in.

The settings live in widgets kept for the whole session and in the URL's query parameters,
so a copied link opens the same settings. Training runs in a worker process
(`common.start_run`). The action buttons, the live part and the note between them are one fragment
(`run_part`), so Start, Pause and Stop redraw those alone, not the settings; inside it the live part is a
fragment that polls `worker.snapshot()` once a second (ui/polling.py) while the run is active, so clicks
and page switches never stop or restart training.
"""
from __future__ import annotations

import math
import time
from urllib.parse import urlencode

import pandas  # noqa: F401  (before streamlit, plotly and ui: see ui/__init__.py)
import streamlit as st
from streamlit.errors import StreamlitAPIException

from lrcore.config import ConfigError, TrainConfig, config_problems, defaults_for, special_defaults
from lrcore.settings import BY_NAME, LEARNING_RATE_RANGE, SETTINGS, from_params, to_params
from lrcore import datasets
from lrcore.data import DATASET_TITLES, DatasetUnavailable, make_splits
from lrcore.status import Status
from lrcore.store import StoreError
from ui import common, event_loop, from_scratch_panel, identity, live_charts, polling, run_summary
from ui import lessons
# setting_widget as the lesson allows: a fixed setting's control disabled, a hidden one's left out
from ui.lessons import lesson_widget as setting_widget
from ui.text import md_escape

common.ensure_frame()  # first: a page opened alone reruns through dashboard.py

DEFAULTS = TrainConfig()
DEFAULT_PER_CLASS = 500  # tutorial 003's subset size, offered when the limit is switched on
# 1-2-5 steps per decade; the exact-value box takes anything in LEARNING_RATE_RANGE.
LR_GRID = [float(f"{mantissa}e{exponent}") for exponent in range(-5, 2) for mantissa in (1, 2, 5)] + [100.0]
FIRST_POINT_WAIT = 1.0  # seconds Start may wait for the untrained model's epoch-0 point
RUN_PART_KEY = "train_run_part"  # the fragment with the action buttons, the run's note and the live part

# The page's settings: every setting in the table with a widget (lrcore/settings.py).
FIELDS = [setting.name for setting in SETTINGS if setting.label]


# ---------------------------------------------------------------- settings <-> URL and widgets

def settings_from_params(params) -> tuple[dict, list[str]]:
    """Settings from the URL (the dataset's defaults for missing ones) and a warning per rejected parameter."""
    return from_params(params, default_settings(), md_escape)


def default_settings(dataset_name: str | None = None) -> dict:
    """The Train page's defaults: those that suit the dataset (e.g. a smaller lr for Fashion-MNIST)."""
    defaults = defaults_for(dataset_name or common.selected_dataset_name())
    return {field: defaults[field] for field in FIELDS}


def nearest_grid_lr(learning_rate) -> float:
    if not isinstance(learning_rate, (int, float)) or not learning_rate > 0 or not math.isfinite(learning_rate):
        return DEFAULTS.learning_rate
    return min(LR_GRID, key=lambda grid: abs(math.log10(grid) - math.log10(learning_rate)))


def put_settings_in_widgets(settings: dict) -> None:
    state = st.session_state
    for field, value in settings.items():
        if field != "per_class_limit":
            state[f"train_{field}"] = value
    state.train_lr_grid = nearest_grid_lr(settings["learning_rate"])
    state.train_limit_on = settings["per_class_limit"] is not None
    state.train_per_class_limit = settings["per_class_limit"] or DEFAULT_PER_CLASS


def settings_from_widgets() -> dict:
    state = st.session_state
    settings = {field: state[f"train_{field}"] for field in FIELDS if field != "per_class_limit"}
    for field, decimals in ((field, BY_NAME[field].decimals) for field in FIELDS):
        if decimals is not None:  # a slider's float can be 0.30000000000000004
            settings[field] = round(float(settings[field]), decimals)
    settings["per_class_limit"] = state.train_per_class_limit if state.train_limit_on else None
    return settings


def grid_moved() -> None:
    st.session_state.train_learning_rate = st.session_state.train_lr_grid


def exact_lr_typed() -> None:
    st.session_state.train_lr_grid = nearest_grid_lr(st.session_state.train_learning_rate)


def reset() -> None:
    """Stop and forget the current run, and put every setting back to its default."""
    worker = common.current_run()  # trained here, or by another server (its control writes to the store)
    if worker is not None and worker.control is not None and worker.snapshot().active and \
            identity.may_control(worker.run_id):
        try:
            worker.control.stop()  # someone else's run is only forgotten here, never stopped
        except StoreError as error:
            st.session_state.train_start_error = f"The run was not stopped: {md_escape(error, 300)}"
    common.forget_run()
    put_settings_in_widgets(default_settings())
    st.session_state.train_param_warnings = []


@st.cache_data(show_spinner=False, max_entries=64)
def split_sizes(dataset_name: str, validation_fraction: float, seed: int, per_class_limit: int | None):
    """(train, validation) sizes for these settings, or the ConfigError's problems."""
    try:
        splits = make_splits(common.get_dataset(dataset_name), validation_fraction, seed, per_class_limit)
    except ConfigError as error:
        return error.problems
    return len(splits.train), len(splits.validation)


def settings_problems(settings: dict, dataset_name: str) -> tuple[dict[str, str], tuple[int, int] | None]:
    """{field: message} for invalid settings (config checks, then split-size checks) and the split sizes."""
    problems = config_problems({**settings, "device": DEFAULTS.device, "dataset": dataset_name})
    if problems.keys() & {"validation_fraction", "seed", "per_class_limit"}:
        return problems, None
    sizes = split_sizes(dataset_name, settings["validation_fraction"], settings["seed"], settings["per_class_limit"])
    if isinstance(sizes, dict):
        return {**problems, **sizes}, None
    try:
        TrainConfig(**settings, dataset=dataset_name).check_dataset(datasets.get(dataset_name).num_classes)
    except ConfigError as error:  # e.g. binary on ten classes
        problems.update(error.problems)
    except (TypeError, AttributeError):  # settings of another version; Start reports them
        pass
    if "batch_size" not in problems and not settings.get("full_batch") and settings["batch_size"] > sizes[0]:
        problems["batch_size"] = (f"must be at most the training set size ({sizes[0]:,} images with these "
                                  "settings): lower it, or use Full batch")
    return problems, sizes


def batches_text(count: int | str) -> str:
    """"1 batch per epoch", "50 batches per epoch" ("–" when the batch size is invalid)."""
    return f"{count} batch{'' if count == 1 else 'es'} per epoch"


def use_full_batch() -> None:
    """The one-click way out of a batch size larger than the training split (a tiny image folder)."""
    st.session_state.train_full_batch = True


def sync_url(settings: dict, dataset_name: str) -> None:
    """Keep the URL's query parameters equal to the settings (the `run` parameter is left alone)."""
    wanted = {**to_params(settings), "dataset": dataset_name}
    for param in (BY_NAME[field].param for field in FIELDS):
        if param not in wanted and param in st.query_params:
            del st.query_params[param]
    for param, value in wanted.items():
        if st.query_params.get(param) != value:
            st.query_params[param] = value


def share_link(settings: dict, dataset_name: str) -> str | None:
    base = st.context.url
    if not base:
        return None
    return f"{base}?{urlencode({**to_params(settings), 'dataset': dataset_name})}"


# ---------------------------------------------------------------- the live run

def uses_sigmoid(config: TrainConfig, num_classes: int) -> bool:
    """Whether `config` trains tutorial 002's binary model on `num_classes` classes."""
    from lrcore.model import uses_sigmoid as sigmoid  # B's: the one rule the engine follows

    return sigmoid(config, num_classes)


def wait_for_first_point(worker) -> None:
    """Wait (at most FIRST_POINT_WAIT) until a just-started run has its epoch-0 metrics.

    The rerun after Start draws the live part once and then polls (ui/polling.py): without
    the wait, the first point came a poll or two later (bench/bench_latency.py). A queued run
    (every worker busy or still starting) does not wait: the page says it is queued.
    """
    deadline = time.monotonic() + FIRST_POINT_WAIT
    with event_loop.slot_given_up():  # 30 students pressing Start at once must not wait in line for this
        while time.monotonic() < deadline:
            record = worker.snapshot()
            if record.epochs or not record.active or record.status == Status.QUEUED:
                return
            time.sleep(0.02)


def start_clicked() -> None:
    """Start's callback: it runs before the page script, so the one page run after the click already
    draws the started run (with its epoch-0 point, see wait_for_first_point), instead of a run that
    starts it and a second one (st.rerun) that shows it."""
    name = common.selected_dataset_name()
    settings = settings_from_widgets()
    try:
        problems, _sizes = settings_problems(settings, name)
        if problems:  # the button is disabled then; a click sent anyway (an old page) starts nothing
            st.session_state.train_start_error = "Fix the settings marked in red first."
            return
        config = TrainConfig(**settings, dataset=name)
        refusal = lessons.refusal(config)  # the lesson's fixed values, checked again on the server
        if refusal:
            st.session_state.train_start_error = refusal
            return
        wait_for_first_point(common.start_run(config))
    # a missing dataset (the page itself says why), an anonymous browser on a class server (a forged click)
    except (ConfigError, DatasetUnavailable, PermissionError) as error:
        st.session_state.train_start_error = str(error)
        return
    # The settings did not change: only the run part of the page and the sidebar's run line are drawn again
    # (a whole-page run made the browser redraw every setting while the run's first epochs trained).
    st.rerun([RUN_PART_KEY, common.SIDEBAR_RUN_KEY])


def rerun_run_part() -> None:
    """Draw the run's part again, now that Pause or Stop changed the run (its buttons were drawn before the
    click was handled); the whole page where this is a whole-page run (AppTest runs one for every click)."""
    try:
        st.rerun(scope="fragment")
    except StreamlitAPIException:
        st.rerun()


def reset_clicked() -> None:
    """Reset's callback. Its click reruns the run part alone; every setting changed, so the whole page follows."""
    reset()
    st.session_state.train_reset_pending = True


def live_run(run_id: str | None, was_active: bool, was_paused: bool = False) -> None:
    """Progress, metrics and charts of the current run, redrawn from the worker's snapshot.

    The same three parts in every state (idle, queued, training, ended): what is said about the run, the
    charts, the caption and the from-scratch panel. The charts keep their place in the page, so the browser
    keeps them (and only puts new numbers in) when a run starts or ends: a chart that moves is drawn anew.
    """
    head, charts_box, tail = st.container(), st.container(), st.container()
    worker = common.run_handle(run_id)  # live, or read back from the store (finished, or before a restart)
    if worker is None:
        head.info("Pick the settings above and press **Start**: loss and accuracy will appear here as the "
                  "model trains.", icon=":material/arrow_upward:")
        epochs, batches = planned_length()
        with charts_box:
            show_charts(live_charts.waiting_options(epochs, epochs * batches if epochs and batches else None,
                                                    "no run yet: press Start"))
        with tail:
            scratch_panel(None)
        return
    record = worker.snapshot()
    if was_active and not (record.active or record.settling):
        st.rerun()  # the run just ended: redraw the whole page (buttons, polling off)
    if record.active:
        polling.watching()  # counted in the server's poll budget
    if record.active and worker.control is not None and worker.control.paused != was_paused:
        st.rerun()  # paused or resumed elsewhere (another tab, the Runs page): the button must say so
    with head:
        run_summary.show_outcome(record)
        run_summary.show_progress(record)
        run_summary.show_metrics(record)
    if record.status in ("queued", "starting") and not record.epochs:
        steps = record.config.epochs * record.batches_per_epoch if record.batches_per_epoch else None
        with charts_box:
            show_charts(live_charts.waiting_options(record.config.epochs, steps, "waiting for a worker process"))
        return
    if "train_charts" not in st.session_state:
        st.session_state.train_charts = live_charts.LiveCharts()
    with charts_box:
        show_charts(st.session_state.train_charts.options(record))
    with tail:
        st.caption(f"{record.train_size:,} training and {record.validation_size:,} validation images · "
                   f"{batches_text(record.batches_per_epoch)} · device {record.device or '…'}. Epoch 0 is the "
                   "untrained model. Dotted lines mark learning-rate changes.")
        scratch_panel(record)


def show_charts(options: dict) -> None:
    """Loss and accuracy per epoch side by side, the loss per minibatch under them. The same keys before
    and during a run: the browser keeps each chart and puts the new numbers into it (ui/live_charts.py)."""
    left, right = st.columns(2)
    with left:
        st.echarts_chart(options["loss"], key="train_chart_loss", height=live_charts.EPOCH_HEIGHT,
                         renderer="svg")
    with right:
        st.echarts_chart(options["accuracy"], key="train_chart_accuracy", height=live_charts.EPOCH_HEIGHT,
                         renderer="svg")
    st.echarts_chart(options["batch_loss"], key="train_chart_batch_loss", height=live_charts.BATCH_HEIGHT,
                     renderer="svg")


def planned_length() -> tuple[int | None, int | None]:
    """(epochs, batches per epoch) the settings on the page would train for; None where not known."""
    settings = settings_from_widgets()
    problems, sizes = settings_problems(settings, common.selected_dataset_name())
    epochs = None if "epochs" in problems else settings["epochs"]
    if sizes is None or "batch_size" in problems:
        return epochs, None
    return epochs, 1 if settings.get("full_batch") else math.ceil(sizes[0] / settings["batch_size"])


def scratch_panel(record) -> None:
    """The from-scratch panel for the run's model (a run's snapshots tell binary: one weight row), else
    for the settings on the page."""
    if record is not None and record.snapshots:
        binary = record.snapshots[-1][1].shape[0] == 1
    else:
        try:
            name = common.selected_dataset_name()
            binary = uses_sigmoid(TrainConfig(**settings_from_widgets(), dataset=name), datasets.get(name).num_classes)
        except (ConfigError, ImportError, TypeError):
            binary = False
    from_scratch_panel.panel(record, binary)


# ---------------------------------------------------------------- the page

st.title("Train")
st.caption("One linear layer and a softmax (a sigmoid for two classes). Pick hyperparameters, press Start and watch it learn. "
           "A link to this page opens the same settings.")
lessons.banner()  # the lesson's title and instructions, when this session opened a lesson link

WIDGET_KEYS = ["train_lr_grid", "train_limit_on", "train_per_class_limit"] + \
    [f"train_{field}" for field in FIELDS if field != "per_class_limit"]
if any(key not in st.session_state for key in WIDGET_KEYS):  # first visit in this session: settings from the URL
    url_settings, url_warnings = settings_from_params(st.query_params)
    put_settings_in_widgets(url_settings)
    st.session_state.train_param_warnings = url_warnings + lessons.url_notes(st.query_params)
for warning in st.session_state.get("train_param_warnings", []):
    st.warning(warning, icon=":material/link_off:")
st.session_state.train_param_warnings = []  # shown once, at the load that brought them

dataset_name = common.selected_dataset_name()
dataset = common.dataset_or_stop(dataset_name)
filled_for = st.session_state.get("train_settings_dataset")
if filled_for not in (None, dataset_name) and settings_from_widgets() == default_settings(filled_for):
    # The dataset changed on the Data page and the settings were that dataset's defaults:
    # switch to the new dataset's defaults (settings a user chose stay as they are).
    put_settings_in_widgets(default_settings(dataset_name))
st.session_state.train_settings_dataset = dataset_name
settings = lessons.keep_fixed(settings_from_widgets(), put_settings_in_widgets)  # a lesson's fixed values win
problems, sizes = settings_problems(settings, dataset_name)
st.session_state.pop("train_reset_pending", None)  # a whole-page run: it shows what Reset put back


def problem_note(*fields: str) -> None:
    """The message for an invalid setting, right under its control."""
    for field in fields:
        if field in problems:
            st.error(f"**{BY_NAME[field].label}** {problems[field]}")


def default_note(field: str) -> str:
    """' Default for Fashion-MNIST: 0.1.' where the dataset's default differs from the general one."""
    special = special_defaults(dataset_name)
    if field not in special:
        return ""
    # an own dataset's title is the user's text (folder names, the Title field)
    return f" Default for {md_escape(datasets.get(dataset_name).short_title)}: {BY_NAME[field].text(special[field])}."


def run_part(actions_box, run_note, live_box, settings: dict, problems: dict, dataset_name: str) -> None:
    """The action buttons (top), the note under the settings and the live part (bottom): one fragment.

    Start, Pause, Stop and the live learning rate rerun this alone, and the settings between them are
    not sent and drawn again: a whole-page run at Start kept the browser busy redrawing them while the run's
    first epochs trained, on a teacher's laptop on the same cores. The settings themselves are widgets of the
    page: changing one reruns the whole page, this with it, so the arguments are always the current ones.
    """
    if st.session_state.pop("train_reset_pending", False):
        st.rerun()  # Reset put every setting back: the whole page shows them
    worker = common.current_run()
    run_id = worker.run_id if worker is not None else None
    # Pause and Stop act on a run this server trains, or another server does (`control` then writes to the
    # store); one the CLI trains has no control: it is watched, not changed.
    shown = worker.snapshot() if worker is not None else None
    # polled while it trains, and after a divergence until its final numbers are in
    watching = shown is not None and (shown.active or shown.settling)
    active = shown is not None and shown.active and worker.control is not None
    paused = active and worker.control.paused
    # On a class server only the run's owner (and the teacher) may pause, stop or change it; anyone else watches.
    mine = worker is None or identity.can_control(shown.owner)
    with actions_box:
        start_col, pause_col, stop_col, reset_col, share_col = st.columns(5)
        start_help = "A run is in progress: stop it or let it finish first." if active and mine else \
            identity.ANONYMOUS_NOTE if not identity.may_start() else \
            "Fix the settings marked in red first." if problems else "Train a new model with these settings."
        start_col.button("Start", type="primary", icon=":material/play_arrow:", key="train_start", help=start_help,
                         disabled=bool(problems) or (active and mine) or not identity.may_start(), width="stretch",
                         on_click=start_clicked)
        if start_error := st.session_state.pop("train_start_error", None):
            st.error(start_error)
        if pause_col.button("Resume" if paused else "Pause",
                            icon=":material/play_arrow:" if paused else ":material/pause:",
                            disabled=not active or not mine, width="stretch"):
            if not identity.may_control(run_id):  # checked again: a forged click
                identity.refuse(run_id)
            elif active and common.control_sent(worker.control.resume if paused else worker.control.pause):
                rerun_run_part()
        if stop_col.button("Stop", icon=":material/stop:", disabled=not active or not mine, width="stretch",
                           help="Stop training now and keep the weights reached so far."):
            if not identity.may_control(run_id):
                identity.refuse(run_id)
            elif active and common.control_sent(worker.control.stop):
                rerun_run_part()
        reset_col.button("Reset", icon=":material/restart_alt:", on_click=reset_clicked, width="stretch",
                         help="Stop and forget the current run and put every setting back to the dataset's defaults.")
        if not mine:
            st.info(identity.not_yours_note(shown.owner), icon=":material/visibility:")
        with share_col.popover("Share", icon=":material/link:", width="stretch", help="A link with these settings."):
            link = share_link(settings, dataset_name)
            if link:
                st.markdown("Copy this link: it opens the Train page with these settings (not your run).")
                st.code(link, language=None, wrap_lines=True)
            else:
                st.markdown("Copy the address bar: it holds these settings.")
    with run_note:
        if active:
            st.caption("A run is training: these settings are for the next run. To change this run's learning "
                       "rate, use **Change the learning rate now** below.")
        else:
            st.empty()  # a fragment must write to a container outside it in every whole-page run
    # one container of this fragment's own in every run: the nested live fragment's writes are not this one's
    with live_box, st.container():
        # the live lr box in a place of its own, there or not: the live part below keeps its place (and the
        # browser its charts) when a run starts or ends
        lr_box = st.container()
        if active and not lessons.is_fixed("learning_rate"):  # a lesson that fixes it fixes it for the run too
            if "train_live_lr" not in st.session_state or st.session_state.get("train_live_lr_run") != worker.run_id:
                st.session_state.train_live_lr = shown.learning_rate
                st.session_state.train_live_lr_run = worker.run_id
            with lr_box.container(border=True):
                lr_input, apply_col, note_col = st.columns([1.2, 0.6, 3], vertical_alignment="bottom")
                lr_input.number_input("Change the learning rate now", key="train_live_lr", format="%g", step=0.01,
                                      help="Takes effect at the next batch; the charts mark the change.",
                                      disabled=not mine)
                if apply_col.button("Apply", width="stretch", disabled=not mine):
                    if not identity.may_control(worker.run_id):
                        identity.refuse(worker.run_id)
                        st.stop()
                    try:
                        worker.control.set_learning_rate(st.session_state.train_live_lr)
                        note_col.success(f"Learning rate → {st.session_state.train_live_lr:g} from the next batch.")
                    except ConfigError as error:
                        note_col.error(f"Learning rate {error.problems['learning_rate']}")
                    except StoreError as error:  # another server's run: the request could not be written
                        note_col.error(f"Nothing changed: {md_escape(error, 300)}")
        # a run another server trains is polled too: its record in the store changes as that server writes it
        st.fragment(live_run, run_every=polling.live_seconds() if watching else None)(run_id, watching, bool(paused))


# The actions come first, so Start is on screen without scrolling on a 1024x768 projector.
actions_box = st.container()
with st.container(border=True):
    # Three columns: at 1024 px with the sidebar open each is ~200 px, enough for every label
    # on one line (four broke "Normalisation" and "momentum" mid-word); a phone stacks them.
    model_col, data_col, options_col = st.columns(3, gap="medium")
    with model_col:
        if not lessons.is_hidden("learning_rate"):
            st.select_slider("Learning rate (log scale)", options=LR_GRID, key="train_lr_grid", on_change=grid_moved,
                             format_func=lambda value: f"{value:g}", persist_state="session",
                             disabled=lessons.is_fixed("learning_rate"),
                             help=BY_NAME["learning_rate"].help + default_note("learning_rate"))
        setting_widget(st.number_input, "learning_rate", "train_learning_rate", label="Exact learning rate",
                       on_change=exact_lr_typed,
                       help=f"Any value from {LEARNING_RATE_RANGE[0]:g} to {LEARNING_RATE_RANGE[1]:g}.")
        problem_note("learning_rate")
        full_batch = st.session_state.get("train_full_batch", False)
        setting_widget(st.number_input, "batch_size", "train_batch_size", disabled=full_batch)
        setting_widget(st.toggle, "full_batch", "train_full_batch")
        if full_batch and sizes:
            st.caption(f"Batch size = the training split ({sizes[0]:,} images): one step per epoch.")
        problem_note("batch_size", "full_batch")
        if sizes and not full_batch and "batch_size" in problems and settings["batch_size"] > sizes[0]:
            st.button("Use Full batch", key="train_use_full_batch", icon=":material/select_all:",
                      on_click=use_full_batch, width="stretch",
                      help=f"Every step on all {sizes[0]:,} training images: one step per epoch, as tutorial 002 "
                           "(the batch size is then not used). Or type a batch size up to the training set size.")
        setting_widget(st.number_input, "epochs", "train_epochs", default_note("epochs"))
        problem_note("epochs")
    with data_col:
        if getattr(dataset, "fixed_validation", False):
            # The folder's val/ is the validation set: the fraction would change nothing.
            st.markdown("**Validation**")
            st.caption(f"Validation: the folder's val/ ({sizes[1]:,} images)." if sizes else
                       "Validation: the folder's val/.")
        else:
            setting_widget(st.slider, "validation_fraction", "train_validation_fraction")
        problem_note("validation_fraction")
        setting_widget(st.selectbox, "model", "train_model")
        problem_note("model")
        setting_widget(st.radio, "optimizer", "train_optimizer")
        setting_widget(st.slider, "momentum", "train_momentum",
                       disabled=st.session_state.train_optimizer != "momentum")
        problem_note("optimizer", "momentum")
        setting_widget(st.number_input, "weight_decay", "train_weight_decay")
        problem_note("weight_decay")
    with options_col:
        setting_widget(st.radio, "normalization", "train_normalization", default_note("normalization"))
        setting_widget(st.toggle, "deskew", "train_deskew", default_note("deskew"))
        problem_note("normalization", "deskew")
        setting_widget(st.selectbox, "batch_order", "train_batch_order")
        problem_note("batch_order")
        if not lessons.is_hidden("per_class_limit"):
            st.toggle("Use a subset", key="train_limit_on", persist_state="session",
                      disabled=lessons.is_fixed("per_class_limit"), help=BY_NAME["per_class_limit"].help)
        setting_widget(st.number_input, "per_class_limit", "train_per_class_limit", help=None,
                       disabled=not st.session_state.train_limit_on)
        problem_note("per_class_limit")
        setting_widget(st.number_input, "seed", "train_seed")
        problem_note("seed")
        placed = {"model", "full_batch"}  # shown above, beside batch size and optimizer
        for field in [f for f in FIELDS[FIELDS.index("deskew") + 1:] if f not in placed]:  # added later: default widgets
            setting_widget(None, field, f"train_{field}")
            problem_note(field)
    if sizes:
        train_size, validation_size = sizes
        batches = 1 if settings.get("full_batch") else \
            math.ceil(train_size / settings["batch_size"]) if "batch_size" not in problems else "–"
        st.caption(f"{DATASET_TITLES[dataset_name]}: {train_size:,} training and {validation_size:,} validation "
                   f"images · {batches_text(batches)}. Change the dataset on the Data page.")
    run_note = st.container()  # "A run is training…", written by run_part

sync_url(settings, dataset_name)
lessons.lesson_maker(settings)  # the teacher's "Make a lesson link"

live_box = st.container()
st.fragment(run_part, key=RUN_PART_KEY)(actions_box, run_note, live_box, settings, problems, dataset_name)
