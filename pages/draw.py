"""Draw: draw a digit (or upload a picture, or pick a test image) and see what the model sees and why.

For a model of a dataset that is not digits the page is "Predict" (`ui.predict_photo`): a photo in.
"""
from __future__ import annotations

import io

import numpy as np
import pandas  # noqa: F401  (before streamlit, plotly and ui: see ui/__init__.py)
import streamlit as st
import torch
from PIL import Image
from streamlit_drawable_canvas import st_canvas

from lrcore.config import ConfigError, TrainConfig
from lrcore import datasets
from lrcore.data import DatasetUnavailable, make_splits
from lrcore.evaluate import contributions, predict
from lrcore.predict_drawing import DrawingPrediction, predict_canvas, predict_drawing
from lrcore.preprocess import MAX_BYTES, ImageError, load_image_bytes
from ui import charts, common, frame, identity, lessons, maps, uploads
from ui.verdict import NAME_MAX, shown, verdict as show_verdict

common.ensure_frame()  # first: a page opened alone reruns through dashboard.py
from ui.text import md_escape, plot_text, shorten

CANVAS_SIDE = 280  # px; 10x MNIST, big enough for a finger on a phone
PREVIEW_SIDE = 196  # the 28x28 input blown up 7x, nearest neighbour so every pixel shows
SOURCES = [":material/draw: Draw", ":material/upload: Upload a picture", ":material/casino: Random test image"]
RUNNER_UP = -1  # the "compare with" choice that follows the drawing (None would show as "no selection")
UNDO_DEPTH = 50  # strokes whose pictures are kept for Undo
# The canvas's own toolbar (undo, redo, edit, reset) is invisible until hovered and sits on the
# top right of the drawing area, so a stroke starting there draws nothing; streamlit-drawable-canvas
# 0.13 has no option to hide it. The page has its own Undo and Clear, so hide the toolbar inside
# each canvas's shadow root (polled: a canvas is re-created by Undo and Clear).
# It also sends each stroke at once: the canvas waits 200 ms after a stroke before it sends the
# drawing (a debounce in its script, no option), most of what "stroke -> probabilities" took
# (bench/bench_latency.py). Only a 200 ms timer set by the canvas's own script is shortened.
HIDE_CANVAS_TOOLBAR_JS = """
const CANVAS_SCRIPT = /streamlit[-_]drawable[-_]canvas/;
if (!window.lrcoreStrokeAtOnce) {
  window.lrcoreStrokeAtOnce = true;
  const setTimeoutBefore = window.setTimeout;
  window.lrcoreStrokesSentAtOnce = 0;  // read by tests/browser/test_draw.py: the canvas still waits so
  window.setTimeout = function (callback, delay, ...rest) {
    if (delay === 200 && CANVAS_SCRIPT.test(new Error().stack || "")) {
      delay = 0;
      window.lrcoreStrokesSentAtOnce += 1;
    }
    return setTimeoutBefore.call(this, callback, delay, ...rest);
  };
}
export default function ({ parentElement }) {
  const patch = () => {
    for (const host of document.querySelectorAll('[data-testid="stBidiComponentIsolated"]')) {
      const root = host.shadowRoot;
      if (root && !root.querySelector("style[data-draw-no-toolbar]")) {
        const style = document.createElement("style");
        style.dataset.drawNoToolbar = "";
        style.textContent = ".dc-toolbar { display: none !important; }";
        root.appendChild(style);
      }
    }
  };
  patch();
  clearInterval(parentElement.drawToolbarTimer);
  parentElement.drawToolbarTimer = setInterval(patch, 100);
  return () => clearInterval(parentElement.drawToolbarTimer);
}
"""


@st.cache_resource
def canvas_toolbar_hider():
    """The component that hides the canvases' toolbars, registered once per server process."""
    return st.components.v2.component("lrcore-draw.hide-canvas-toolbar", js=HIDE_CANVAS_TOOLBAR_JS,
                                      isolate_styles=False)


# --- the canvas: its strokes, Undo and Clear ----------------------------------------------------
def new_canvas(objects: list[dict]) -> None:
    """Replace the canvas with a fresh one (a new key) that starts with `objects` drawn."""
    st.session_state.draw_canvas_version += 1
    st.session_state.draw_initial_objects = objects


def clear_canvas() -> None:
    new_canvas([])
    st.session_state.draw_pictures = {}


def undo_stroke() -> None:
    new_canvas(st.session_state.draw_objects[:-1])


def remember_picture(objects: list[dict], picture: np.ndarray | None) -> np.ndarray | None:
    """The canvas's picture for `objects`, kept per stroke count so Undo can show the one before.

    A canvas re-created by Undo shows its strokes but sends no picture until the next stroke,
    so the picture for n strokes is the one the canvas sent when it had n strokes. A new
    stroke after an Undo starts a new branch: pictures of the old, longer one are dropped.
    """
    pictures: dict[int, bytes] = st.session_state.draw_pictures
    count = len(objects)
    if picture is not None:
        for stale in [n for n in pictures if n >= count or n < count - UNDO_DEPTH]:
            del pictures[stale]
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG")  # ~3 KB, not 300 KB of pixels
        pictures[count] = buffer.getvalue()
        return picture
    stored = pictures.get(count) if count else None
    return np.asarray(Image.open(io.BytesIO(stored))) if stored is not None else None


def drawing_input(model: common.ModelInUse) -> DrawingPrediction | None:
    """The canvas, its Undo and Clear buttons; the prediction for what is drawn, or None."""
    brush = st.session_state.get("draw_brush", 20)
    initial = st.session_state.draw_initial_objects
    canvas = st_canvas(stroke_width=brush, stroke_color="#FFFFFF", background_color="#000000",
                       width=CANVAS_SIDE, height=CANVAS_SIDE, drawing_mode="freedraw",
                       initial_drawing={"objects": initial} if initial else None,
                       update_streamlit=True, return_image_data=True,
                       key=f"draw_canvas_{st.session_state.draw_canvas_version}")
    objects = list((canvas.json_data or {}).get("objects") or [])
    st.session_state.draw_objects = objects
    # One row (it stays one on a phone), so the prediction comes right under the canvas.
    with st.container(horizontal=True, key="draw_canvas_buttons"):
        st.button("Undo", icon=":material/undo:", on_click=undo_stroke, disabled=not objects,
                  help="Remove the last stroke.")
        st.button("Clear", icon=":material/ink_eraser:", on_click=clear_canvas, disabled=not objects)
        with st.popover("Brush", icon=":material/brush:"):
            st.slider("Brush width", min_value=6, max_value=40, value=20, key="draw_brush",
                      help="MNIST digits have strokes about a tenth of the digit's height.")
    drawing = remember_picture(objects, canvas.image_data)
    if drawing is None:
        return None
    # Deskewed like the training images when the model was trained so: the preview shows it.
    return predict_canvas(model.model, model.normalizer, drawing, deskew=common.current_model_config().deskew)


# --- the model ----------------------------------------------------------------------------------
def pick_random_test_image() -> None:
    st.session_state.draw_random_seed = int(np.random.default_rng().integers(2**31))


def load_uploaded_checkpoint(key: str) -> None:
    """The checkpoint uploader; a new file that is a checkpoint becomes the model in use."""
    upload = uploads.checkpoint_uploader("Checkpoint file (.pt), saved from the Runs page or by lrcore", key)
    # Only a file not seen before: one left in the uploader must not override a run started since.
    if upload is not None and upload.new and upload.checkpoint is not None:
        common.use_checkpoint(upload.checkpoint, f"checkpoint “{upload.file.name}”")
        st.rerun()


def quick_config(dataset_name: str) -> TrainConfig:
    """The Train page's defaults for the dataset, with the values a lesson fixes; full batch where the
    training split is smaller than the default batch (a small image folder), which would refuse to train."""
    quick = TrainConfig.for_dataset(dataset_name).replace(**lessons.fixed_values())
    try:
        splits = make_splits(common.get_dataset(dataset_name), quick.validation_fraction, quick.seed,
                             quick.per_class_limit)
    except (ConfigError, DatasetUnavailable):  # the button's dataset_or_stop says what is wrong
        return quick
    return quick if quick.full_batch or quick.batch_size <= len(splits.train) else quick.replace(full_batch=True)


@st.fragment(run_every=0.5)
def quick_training_progress(run_id: str) -> None:
    """Progress of the quick model; reruns the whole page once it is trained."""
    worker = common.get_jobs().live_run(run_id)
    record = worker.snapshot() if worker is not None else None
    if record is None or not record.active:
        st.rerun()
    done = record.epochs_done + record.progress.get("batch", 0) / max(record.batches_per_epoch, 1)
    st.progress(min(done / record.config.epochs, 1.0),
                text=f"Training a quick model: {common.run_state_text(worker)}…")


# --- what the model says ------------------------------------------------------------------------
def preview(image28: torch.Tensor) -> Image.Image:
    return Image.fromarray(image28.numpy()).resize((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.NEAREST)


def compare_choice(names: tuple[str, ...]) -> int:
    """The "Compare with" pick: a class index, or RUNNER_UP.

    Read before the selectbox is drawn (the probability chart above it colours the compared
    class). The browser sends the option's label and Streamlit decodes it with the options
    of the previous run: a label that is no longer an option comes back as a string, and
    after a change of model a class index would name another model's class. Either way
    the pick goes back to the runner-up, in the selectbox too.
    """
    choice = st.session_state.get("draw_compare", RUNNER_UP)
    valid = type(choice) is int and 0 <= choice < len(names)
    if not valid or st.session_state.get("draw_compare_names", names) != names:
        if "draw_compare" in st.session_state:
            st.session_state.draw_compare = RUNNER_UP
        choice = RUNNER_UP
    st.session_state.draw_compare_names = names
    return choice


def classes_to_show(probabilities: torch.Tensor, names: tuple[str, ...]) -> tuple[int, int, int]:
    """(predicted, runner-up, the class to compare with: the user's pick or the runner-up)."""
    ranking = probabilities.argsort(descending=True).tolist()
    predicted, runner_up = ranking[0], ranking[1]
    choice = compare_choice(names)
    return predicted, runner_up, runner_up if choice in (RUNNER_UP, predicted) else choice


def verdict(image28: torch.Tensor, probabilities: torch.Tensor, names: tuple[str, ...],
            true_label: int | None = None) -> None:
    """What the model predicts, first (on a phone it comes right under the canvas), and what it sees."""
    _predicted, _runner_up, compared = classes_to_show(probabilities, names)
    show_verdict(probabilities, names, preview(image28), "The 28×28 input, blown up: cropped, scaled to 20 px and "
                 "centred, as MNIST's digits were prepared.", key="draw", width=PREVIEW_SIDE, compared=compared,
                 true_label=true_label)


def why(image28: torch.Tensor, probabilities: torch.Tensor, model: common.ModelInUse) -> None:
    """Which pixels made the model pick its class over another one."""
    names = model.class_names
    predicted, runner_up, compared = classes_to_show(probabilities, names)
    st.subheader(f"Why “{shown(names[predicted])}” and not “{shown(names[compared])}”?", anchor=False)
    pick, note = st.columns([1, 2], vertical_alignment="bottom")
    # Option labels must not depend on the input: the browser sends back the label it shows,
    # and a label naming the runner-up goes stale when the drawing changes.
    pick.selectbox("Compare with", [RUNNER_UP, *range(len(names))], key="draw_compare",
                   format_func=lambda c: "the runner-up" if c == RUNNER_UP else shorten(names[c], NAME_MAX))
    if st.session_state.draw_compare == predicted:
        note.caption("That is the predicted class itself: comparing with the runner-up instead.")
    parts = contributions(model.model, model.normalizer, image28)
    bias = model.model.linear.bias.detach().cpu()
    logit = lambda c: float(parts[c].sum() + bias[c])  # noqa: E731
    panels = [(f"**“{shown(names[predicted])}”** (predicted) · logit {logit(predicted):.1f}", parts[predicted]),
              (f"**“{shown(names[compared])}”** · logit {logit(compared):.1f}", parts[compared]),
              (f"**“{shown(names[predicted])}” minus “{shown(names[compared])}”**", parts[predicted] - parts[compared])]
    # One symmetric colour range for all three, so equal colours mean equal amounts. Blue means
    # "for the class", as on the Weights page and in tutorial 003. Three figures, not subplots:
    # on a phone the columns stack and each map gets the full width.
    limit = max(float(torch.stack([panel for _, panel in panels]).abs().max()), 1e-6)
    for column, (title, panel), key in zip(st.columns(3), panels, ["predicted", "compared", "difference"]):
        with column:
            st.markdown(title)
            st.plotly_chart(maps.contribution_map(panel, limit), key=f"draw_map_{key}", config={"displayModeBar": False})
    st.caption("Each pixel's contribution is its weight × its input. Blue pixels push towards the class, red "
               "pixels push away; a class's logit is the sum of its map plus its bias, and the highest logit "
               "wins. In the difference map, blue pixels are those that favour "
               f"“{shown(names[predicted])}” over “{shown(names[compared])}”.")


@st.fragment
def workspace(model: common.ModelInUse) -> None:
    """The input (canvas, upload or test image), the verdict beside it and the maps below.

    A fragment: a stroke, Undo, Clear, a new upload or the compare pick reruns only this part,
    not the title, model captions and checkpoint loader above (the whole page's rerun was most
    of a stroke's 0.7-0.8 s; see bench/bench_latency.py).
    """
    model_deskews = common.current_model_config().deskew  # trained on deskewed images: so are drawings
    source = st.radio("Input", SOURCES, horizontal=True, key="draw_source", label_visibility="collapsed")
    image28, probabilities, true_label = None, None, None
    # Input and prediction side by side; a horizontal container wraps, so on a phone the prediction
    # comes right under the canvas instead of below everything else.
    with st.container(horizontal=True, gap="medium", key="draw_workspace"):
        left = st.container(width=CANVAS_SIDE + 20)
        right = st.container(width="stretch", key="draw_result")

    with left:
        if source == SOURCES[0]:
            result = drawing_input(model)
            if result is not None and not result.empty:
                image28, probabilities = result.image, result.probabilities
        elif source == SOURCES[1]:
            upload = st.file_uploader(f"A picture of one digit: PNG or JPEG, up to {MAX_BYTES // 2**20} MB",
                                      type=["png", "jpg", "jpeg"], key="draw_upload",
                                      max_upload_size=MAX_BYTES // 2**20)
            result = None
            if upload is not None:
                try:
                    picture = load_image_bytes(upload.getvalue())
                except ImageError as error:
                    st.error(f"Can't use “{md_escape(upload.name)}”: {error}. Upload a PNG or JPEG picture of a "
                             f"single digit, up to {MAX_BYTES // 2**20} MB.")
                else:
                    st.image(picture, width=CANVAS_SIDE)
                    st.caption(md_escape(upload.name))
                    result = predict_drawing(model.model, model.normalizer, picture, deskew=model_deskews)
                    if result.preprocessed.inverted:
                        st.caption("Dark ink on light paper: inverted to white on black, like MNIST.")
            if result is not None and not result.empty:
                image28, probabilities = result.image, result.probabilities
        else:
            st.button("Another random test image", icon=":material/casino:", on_click=pick_random_test_image)
            try:
                dataset = common.get_dataset(model.dataset)
            except DatasetUnavailable as error:
                st.error(f"The model's dataset is not available, so there are no test images to show: {error}")
            else:
                if st.session_state.draw_random_seed is None:
                    pick_random_test_image()
                index = st.session_state.draw_random_seed % len(dataset.test_labels)
                image28 = dataset.images("test", deskew=model_deskews)[index]  # as the model saw its test set
                true_label = int(dataset.test_labels[index])
                probabilities = predict(model.model, model.normalizer, image28.unsqueeze(0))[0]
                st.caption(f"Test image #{index:,} of the {len(dataset.test_labels):,} test images: the model "
                           "never trained on it.")

    with right:
        if probabilities is None:
            if source == SOURCES[0]:
                st.info("✏️ Draw a digit in the black box: white ink, one digit, as large as you like. "
                        "The prediction updates after every stroke.")
                # The bars, empty: the browser loads plotly (~3.5 MB of script) now, not at the first
                # stroke, which then took 1.5-2.6 s instead of ~0.2 s (bench/bench_latency.py).
                st.plotly_chart(charts.waiting_probability_figure(
                    [plot_text(name, NAME_MAX) for name in model.class_names]),
                    key="draw_probabilities", config={"displayModeBar": False, "staticPlot": True})
            elif source == SOURCES[1]:
                if upload is None:
                    st.info("Upload a photo or scan of a single handwritten digit. Dark ink on light paper is "
                            "detected and inverted.")
                elif result is not None and result.empty:
                    st.warning(result.preprocessed.message)
        else:
            verdict(image28, probabilities, model.class_names, true_label)
            if model_deskews:
                st.caption("The model was trained on deskewed images, so it sees this one deskewed too: "
                           "sheared so its strokes stand upright.")

    if probabilities is not None:
        why(image28, probabilities, model)
    if source == SOURCES[0]:
        canvas_toolbar_hider()(key="draw_hide_canvas_toolbar")  # last: its empty element adds no gap mid-page


# ---------------------------------------------------------------------------------------------
st.title(frame.draw_title())
for key, value in {"draw_canvas_version": 0, "draw_random_seed": None, "draw_initial_objects": [],
                   "draw_objects": [], "draw_pictures": {}}.items():
    if key not in st.session_state:
        st.session_state[key] = value

quick_run = st.session_state.get("draw_quick_run")
quick_worker = common.get_jobs().live_run(quick_run)
if quick_worker is not None and quick_worker.snapshot().active:
    quick_training_progress(quick_run)
    st.stop()

model = common.current_model()
if model is None:
    dataset_name = common.selected_dataset_name()
    if quick_worker is not None and quick_worker.snapshot().message:
        st.error(f"The quick model did not train: {quick_worker.snapshot().message}")
    st.info("There is no trained model yet. Train a quick one (a few seconds) or load a saved checkpoint, "
            + ("then draw." if frame.draw_title() == "Draw" else "then upload a photo."))
    train_side, load_side = st.columns(2, gap="large")
    with train_side:
        st.subheader("Train a quick model", anchor=False)
        quick = quick_config(dataset_name)
        batch = "full batch" if quick.full_batch else f"batch size {quick.batch_size}"
        settings = "The lesson's settings" if lessons.fixed_values() else "Default settings"
        st.write(f"{settings} (learning rate {quick.learning_rate:g}, {batch}, {quick.epochs} epochs"
                 f"{', deskewed' if quick.deskew else ''}) on {datasets.get(dataset_name).title}.")
        if st.button("Train a quick model", type="primary", icon=":material/bolt:", disabled=not identity.may_start(),
                     help=None if identity.may_start() else identity.ANONYMOUS_NOTE):
            common.dataset_or_stop(dataset_name)
            try:
                worker = common.start_run(quick, name="quick model (Draw page)")
            except PermissionError as error:  # an anonymous browser on a class server (a forged click)
                st.error(str(error))
                st.stop()
            st.session_state.draw_quick_run = worker.run_id
            st.rerun()
    with load_side:
        st.subheader("Load a checkpoint", anchor=False)
        load_uploaded_checkpoint("draw_checkpoint_empty")
    st.stop()

info = datasets.REGISTRY.get(model.dataset)
checkpoint_shape = getattr(st.session_state.get("checkpoint"), "image_shape", None)  # a folder model's own record
shape = tuple(checkpoint_shape or (info.shape if info is not None else ()))
if info is not None:
    trained_on = md_escape(info.title)
else:  # a checkpoint of an image folder imported elsewhere: its own record says what it takes
    takes = f", {shape[1]}×{shape[2]} {'colour' if shape[0] == 3 else 'grey'} pictures" if len(shape) == 3 else ""
    trained_on = (f"“{md_escape(model.dataset, 80)}”, a dataset not on this server ({len(model.class_names)} "
                  f"classes{takes})")
st.caption(f"Model: {md_escape(model.label)} · trained on {trained_on}")
selected = common.selected_dataset_name()
if selected != model.dataset and info is not None:  # a dataset not on this server can't be chosen: nothing to say
    chosen = datasets.REGISTRY.get(selected)
    st.info(f"The dataset chosen on the Data page is {md_escape(chosen.short_title if chosen else selected)}, but "
            f"the model in use was trained on {md_escape(info.short_title)}: this page "
            "uses the model, so its inputs are made like that dataset's images. Train a model on the chosen "
            "dataset (or load one) to predict with it.", icon=":material/info:")
if info is None or not info.digits:
    if len(shape) != 3:
        st.error(f"This model's dataset “{md_escape(model.dataset)}” is not on this server and its checkpoint "
                 "does not say its image size: load a checkpoint saved by this version.")
        st.stop()
    with st.expander("Use a different model: load a checkpoint"):
        load_uploaded_checkpoint("draw_checkpoint_swap")
    from ui import predict_photo  # photos only for these datasets: the digits page never needs it
    predict_photo.page(model, shape)
    st.stop()
if info.shape != datasets.DIGIT_SHAPE:
    # The canvas, uploads and the maps below all make 28x28 one-channel digits (lrcore.preprocess).
    st.info(f"This model was trained on {md_escape(info.short_title)}, whose images are {info.shape_text}: "
            "drawing needs a model for 28x28 one-channel images ("
            + ", ".join(d.short_title for d in datasets.REGISTRY.values() if d.shape == datasets.DIGIT_SHAPE)
            + "). The Evaluate page shows what this model gets right and wrong.", icon=":material/info:")
    st.stop()
with st.expander("Use a different model: load a checkpoint"):
    load_uploaded_checkpoint("draw_checkpoint_swap")


workspace(model)
