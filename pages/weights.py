"""Weights: one weight image per class (ten 28x28 for the digits), live while training, and a slider through the epochs.

Each class's weights are an image: a blue pixel is evidence for the class when it is inked,
a red pixel evidence against. The figures come from `ui.maps` and `ui.charts`; while the current run
trains, a fragment redraws them from `worker.snapshot()` once a second (ui/polling.py).

"Compare with another run" puts a stored run's final weights beside them, both on one
symmetric colour scale, with each class's weight norm: a weight-decay run's smaller,
paler weights show at a glance. The compared run is read once per page run, and its
figure only follows the shared scale while the current run's weights change.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas  # noqa: F401  (before streamlit, plotly and ui: see ui/__init__.py)
import streamlit as st
import torch

from lrcore import datasets
from lrcore.checkpoint import CheckpointError
from lrcore.record import RunRecord
from lrcore.store import StoreError
from ui import charts, common, maps, polling, uploads
from ui.format import epoch_text, kept_weights, percent

common.ensure_frame()  # first: a page opened alone reruns through dashboard.py
from ui.text import md_escape, shorten

COMPARE_KEY = "weights_compare"


@dataclass(frozen=True)
class ComparedRun:
    """A stored run's final weights, shown beside the current ones."""

    run_id: str
    name: str
    status: str
    epoch: int
    weight: torch.Tensor
    bias: torch.Tensor
    class_names: tuple[str, ...]
    shape: tuple[int, int, int]  # its dataset's image shape
    key: tuple  # changes when the stored run changes (a run still training elsewhere)


def snapshot_label(record, index: int) -> str:
    """Slider label for snapshot `index`: its epoch, or for the weights kept inside an epoch, which ones and why."""
    epoch = record.snapshots[index][0]
    if index > 0 and record.snapshots[index - 1][0] == epoch:
        # Stopped or diverged inside the next epoch: the Train page's wording of the kept weights.
        return f"{kept_weights(record) or f'epoch {epoch}+'} ({record.status})"
    return epoch_text(epoch)


def weights_mode(shape: tuple[int, int, int]) -> str:
    """maps.COLOUR or maps.CHANNELS: the page's toggle, for colour datasets."""
    return maps.CHANNELS if st.session_state.get("weights_channels") else maps.COLOUR


def reading_caption(weight, class_names, shape: tuple[int, int, int], scale: str) -> str:
    """One line on how to read these maps (grey or colour pictures, a binary model's one map)."""
    binary = weight.shape[0] == 1 and len(class_names) == 2
    target = f"“{md_escape(class_names[1])}” (and against “{md_escape(class_names[0])}”)" if binary else "the class"
    if maps.colour_weights(shape, weights_mode(shape)):
        return (f"Mid-grey: the pixel is ignored. A colour: pixels of that colour there are evidence **for** "
                f"{target}; its opposite colour (blue ↔ yellow, red ↔ cyan) is evidence against. Hover a pixel "
                f"for its R, G, B weights. Brightness: {scale}.")
    inked = "bright" if shape[0] == 3 else "ink"
    channels = " Each map is the R, G and B weights side by side, left to right." if shape[0] == 3 else ""
    return (f"Blue: {inked} on this pixel is evidence **for** {target}; red: evidence **against**; white: "
            f"ignored.{channels} Hover a pixel for its row, column and weight. Colours: {scale}.")


def draw_weights(weight, bias, class_names, shared_scale: bool, source: object, shape: tuple[int, int, int],
                 compared: ComparedRun | None = None, title: str = "") -> None:
    """Heatmaps and biases; `source` names the weights (run and snapshot), so polls reuse the figures.

    With `compared`, its weights stand beside these on one colour scale, with both runs'
    per-class weight norms and biases; `title` names these weights above their grid.
    """
    state = st.session_state
    if "weights_figures" not in state:
        state.weights_figures, state.weights_memo = maps.WeightMaps(), charts.FigureMemo()
        state.weights_compare_figures = maps.WeightMaps()
    if compared is not None:
        draw_comparison(weight, bias, class_names, source, shape, compared, title)
        return
    grid = state.weights_figures.figure(source, weight, class_names, shared_scale, shape=shape,
                                        mode=weights_mode(shape))
    biases = state.weights_memo.get("biases", source, lambda: maps.bias_figure(bias, class_names))
    maps_col, bias_col = st.columns([3, 1])  # [5, 1] left the biases ~110 px at 1024x768: clipped
    maps_col.plotly_chart(grid, key="weights_maps")
    bias_col.plotly_chart(biases, key="weights_biases")
    limit = float(weight.abs().max())
    scale = f"the strongest at ±{limit:.3g}" if weight.shape[0] == 1 else \
        f"one scale for all classes, ±{limit:.3g}" if shared_scale else "each class scaled to its own largest weight"
    st.caption(reading_caption(weight, class_names, shape, scale))


def draw_comparison(weight, bias, class_names, source: object, shape: tuple[int, int, int], compared: ComparedRun,
                    title: str) -> None:
    """Two grids side by side (stacked on a phone) on one symmetric scale, then norms and biases."""
    state = st.session_state
    limit = max(float(weight.abs().max()), float(compared.weight.abs().max())) or 1.0
    ours = state.weights_figures.figure(source, weight, class_names, True, limit, compact=True, shape=shape,
                                        mode=weights_mode(shape))
    theirs = state.weights_compare_figures.figure(compared.key, compared.weight, compared.class_names, True,
                                                  limit, compact=True, shape=compared.shape,
                                                  mode=weights_mode(compared.shape))
    left, right = st.columns(2, gap="medium")
    left.markdown(f"**A** · {title}")
    left.plotly_chart(ours, key="weights_maps")
    right.markdown(f"**B** · run “{md_escape(compared.name)}”, epoch {compared.epoch} ({compared.status})")
    right.plotly_chart(theirs, key="weights_compare_maps")
    ours_norms, theirs_norms = charts.class_norms(weight), charts.class_norms(compared.weight)
    names = ("A: this run", "B: compared")
    rows = maps.map_titles(class_names, weight.shape[0])  # a binary model has one weight row
    norms = state.weights_memo.get("compare_norms", (source, compared.key), lambda: charts.class_bars_figure(
        "Weight norm per class", "‖w‖", list(zip(names, (ours_norms, theirs_norms))), rows))
    biases = state.weights_memo.get("compare_biases", (source, compared.key), lambda: charts.class_bars_figure(
        "Bias per class", "bias", list(zip(names, (bias.tolist(), compared.bias.tolist()))), rows))
    norms_col, bias_col = st.columns(2, gap="medium")
    norms_col.plotly_chart(norms, key="weights_compare_norms")
    bias_col.plotly_chart(biases, key="weights_compare_biases")
    total_a, total_b = float(weight.norm()), float(compared.weight.norm())
    ratio = f"; B's is {total_b / total_a:.0%} of A's" if total_a else ""
    st.caption(f"Both grids use one colour scale, ±{limit:.3g}: paler means smaller weights. Whole weight "
               f"matrix norm ‖W‖: A {total_a:.3g}, B {total_b:.3g}{ratio}. Weight decay pulls every weight "
               "towards 0, so its norms are lower and its images fainter and smoother.")
    if tuple(compared.class_names) != tuple(class_names):
        st.caption("The two runs have different classes (different datasets): the bars are matched by position.")
    elif compared.weight.shape[0] != weight.shape[0]:
        st.caption("One run is a binary model (one weight image), the other softmax (one per class): the bars "
                   "are matched by position.")


def checkpoint_loader(key: str) -> None:
    """A checkpoint uploader (ui.uploads); a new file that is a checkpoint becomes the model on every page."""
    upload = uploads.checkpoint_uploader("Checkpoint file (.pt), saved from the Runs page or by lrcore", key)
    if upload is not None and upload.new and upload.checkpoint is not None:
        common.use_checkpoint(upload.checkpoint, f"checkpoint “{upload.file.name}”")
        st.rerun()


def run_option_label(run: RunRecord) -> str:
    """A stored run in the picker (plain text: select options are not markdown)."""
    when = datetime.fromtimestamp(run.created).strftime("%H:%M") if run.created else ""
    accuracy = run.test_accuracy
    facts = [run.status if not run.active else "training",
             f"test {percent(accuracy)}" if isinstance(accuracy, float) else "", when]
    return " · ".join([shorten(run.name, 60), *(fact for fact in facts if fact)])


def compare_picker(current_id: str | None) -> ComparedRun | None:
    """"Compare with another run": a stored run with weights, other than the current one, or None."""
    store = common.get_store()
    try:
        runs = [run for run in store.list_runs() if run.has_weights and run.run_id != current_id]
    except OSError as error:
        st.warning(f"The stored runs could not be read: {md_escape(error)}", icon=":material/warning:")
        return None
    if not runs:
        st.caption("Train a second run (for example with weight decay 0.01) to compare its weights with these.")
        st.session_state.pop(COMPARE_KEY, None)
        return None
    labels = {run.run_id: run_option_label(run) for run in runs}
    if st.session_state.get(COMPARE_KEY) not in labels:
        st.session_state[COMPARE_KEY] = None  # deleted, or now the current run: start without a comparison
    run_id = st.selectbox("Compare with another run", [None, *labels], key=COMPARE_KEY, placeholder="— none —",
                          format_func=lambda value: "— none —" if value is None else labels[value],
                          help="Shows that run's final weights beside these, on one colour scale, with each "
                               "class's weight norm.")
    return None if run_id is None else load_compared(run_id)


def load_compared(run_id: str) -> ComparedRun | None:
    """The run's final weights (its newest epoch while unfinished), read again only when the run changed."""
    store = common.get_store()
    memo = st.session_state.get("weights_compare_loaded")
    try:
        summary = store.get(run_id)
        key = (run_id, summary.updated, summary.status, summary.epochs_done)
        if memo is not None and memo.key == key:
            return memo
        checkpoint = store.checkpoint(run_id)
    except (StoreError, CheckpointError, OSError) as error:
        st.warning(f"That run's weights could not be read: {md_escape(error)}", icon=":material/warning:")
        return None
    model = checkpoint.model.linear
    epoch = int(checkpoint.metrics.get("epochs_completed", summary.epochs_done) or summary.epochs_done)
    compared = ComparedRun(run_id, summary.name, summary.status, epoch, model.weight.detach().clone(),
                           model.bias.detach().clone(), tuple(checkpoint.class_names),
                           maps.image_shape(checkpoint.config.dataset, checkpoint), key)
    st.session_state.weights_compare_loaded = compared
    return compared


def run_weights(run_id: str, was_active: bool, shared_scale: bool, compared: ComparedRun | None = None) -> None:
    """The current run's weights at the epoch chosen on the slider (following the newest while training)."""
    worker = common.run_handle(run_id)
    if worker is None:
        st.warning("This run is gone: deleted, or its store cannot be read.", icon=":material/warning:")
        return
    record = worker.snapshot()
    if was_active and not (record.active or record.settling):
        st.rerun()  # the run just ended: redraw the whole page with polling off
    if record.active:
        polling.watching()  # counted in the server's poll budget
    if not record.snapshots:
        if record.active:
            st.info("Waiting for the first weights (the untrained model)…", icon=":material/hourglass_top:")
        else:
            st.error(f"This run stopped before it produced any weights. {md_escape(record.message, limit=300)}")
        return
    newest = len(record.snapshots) - 1
    options = list(range(newest + 1))
    label = "Weights after"
    state = st.session_state
    following = record.active and st.toggle("Follow the newest epoch", value=True, key="weights_follow",
                                            help="Switch off to slide back through the epochs while it trains.")
    if following:
        # A display-only slider: the browser's copy of a keyed slider can lag behind new epochs.
        if newest > 0:
            st.select_slider(label, options=options, value=newest, disabled=True,
                             format_func=lambda index: snapshot_label(record, index))
        state.weights_index = newest
    else:
        if state.get("weights_run") != run_id or state.get("weights_followed") \
                or not 0 <= state.get("weights_index", -1) <= newest:
            state.weights_index = newest  # a new run, or following just ended: start at the newest
        if newest > 0:
            st.select_slider(label, options=options, key="weights_index",
                             format_func=lambda index: snapshot_label(record, index),
                             help="Epoch 0 is the random start. Slide to watch the digits form.")
    state.weights_run, state.weights_followed = run_id, following
    index = state.weights_index
    epoch, weight, bias = record.snapshots[index]
    status = f"live, {common.run_state_text(worker)}" if record.active else record.status
    label = snapshot_label(record, index).removesuffix(f" ({record.status})")  # the status follows anyway
    heading = f"run “{md_escape(record.name)}”, {label} ({status})"
    if compared is None:
        st.markdown(f"**{label.capitalize()}** of run “{md_escape(record.name)}” ({status})")
    draw_weights(weight, bias, record.class_names, shared_scale, source=(run_id, index, epoch),
                 shape=maps.image_shape(record.config.dataset, pixels=weight.shape[1]), compared=compared,
                 title=heading)


st.title("Weights")
worker = None if common.using_checkpoint() else common.current_run()
model = common.current_model()
if model is None and worker is None:
    st.info("There is no model to show yet: train one on the Train page, or load a checkpoint here.",
            icon=":material/info:")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/show_chart:")
    checkpoint_loader("weights_checkpoint_empty")
    st.stop()

page_weight = model.model.linear.weight if model is not None else None
page_shape = maps.image_shape(common.current_model_config().dataset, st.session_state.get("checkpoint"),
                         page_weight.shape[1] if page_weight is not None else None)
channels, height, width = page_shape
binary_model = page_weight is not None and page_weight.shape[0] == 1
if binary_model:
    st.caption(f"A binary model has one {height}×{width} weight image: the model adds up pixel × weight over all "
               "pixels, plus its bias, and the sigmoid of that sum is the probability of the second class.")
else:
    st.caption(f"One {height}×{width} weight image per class: the model scores an image by adding up pixel × "
               "weight over all pixels, plus the class's bias.")
scale_col, compare_col = st.columns(2, vertical_alignment="bottom")
if channels == 3:
    scale_col.toggle("R, G, B channels side by side", key="weights_channels", persist_state="session",
                     help="Off: each class's weights as one colour picture. On: its red, green and blue weights "
                          "as three maps in the red/blue diverging colours.")
compared = None
with compare_col:
    compared = compare_picker(worker.run_id if worker is not None else None)
# Two runs compare only on one scale: the per-class switch waits until the comparison is off.
# A binary model has one map, so "each class separately" would change nothing: no switch.
shared_scale = True
if not binary_model:
    separate = scale_col.toggle("Scale each class separately", key="weights_separate_scales", persist_state="session",
                                disabled=compared is not None,
                                help="Off: one symmetric colour scale for all classes, so they compare. On: each "
                                     "image uses its own range, which shows faint classes better. Comparing two "
                                     "runs always uses one scale.")
    shared_scale = not separate or compared is not None

if worker is None:
    label = md_escape(model.label, limit=200)
    if compared is None:
        st.markdown(f"**{label}**")
    weight, bias = model.model.linear.weight.detach(), model.model.linear.bias.detach()
    draw_weights(weight, bias, model.class_names, shared_scale, source=(model.label, id(model.model)),
                 shape=page_shape, compared=compared, title=label)
else:
    shown = worker.snapshot()
    active = shown.active or shown.settling  # polled until a diverged run's final weights are in
    st.fragment(run_weights, run_every=polling.live_seconds() if active else None)(worker.run_id, active,
                                                                                  shared_scale, compared)
with st.expander("Use a different model: load a checkpoint", icon=":material/upload:"):
    checkpoint_loader("weights_checkpoint_swap")
