"""Draw: draw a digit (or upload a picture, or pick a test image) and see what the model sees and why."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from plotly.subplots import make_subplots
from PIL import Image
from streamlit_drawable_canvas import st_canvas

from lrcore.checkpoint import MAX_CHECKPOINT_BYTES, CheckpointError, load_checkpoint
from lrcore.config import TrainConfig
from lrcore.data import DATASET_TITLES, DatasetUnavailable
from lrcore.evaluate import contributions, predict
from lrcore.predict_drawing import predict_canvas, predict_drawing
from lrcore.preprocess import MAX_BYTES, ImageError, load_image_bytes
from pages import common

CANVAS_SIDE = 280  # px; 10x MNIST, big enough for a finger on a phone
PREVIEW_SIDE = 196  # the 28x28 input blown up 7x, nearest neighbour so every pixel shows
SOURCES = [":material/draw: Draw", ":material/upload: Upload a picture", ":material/casino: Random test image"]
RUNNER_UP = -1  # the "compare with" choice that follows the drawing (None would show as "no selection")
PREDICTED_COLOUR, COMPARED_COLOUR, OTHER_COLOUR = "#FF4B4B", "#1C83E1", "#B9BDC8"


def clear_canvas() -> None:
    # A new key gives a fresh, empty canvas component.
    st.session_state.draw_canvas_version += 1


def pick_random_test_image() -> None:
    st.session_state.draw_random_seed = int(np.random.default_rng().integers(2**31))


def load_uploaded_checkpoint(key: str) -> None:
    """A file uploader for a saved checkpoint; a new file becomes the model in use."""
    upload = st.file_uploader("Checkpoint file (.pt), saved from the Runs page or by lrcore",
                              type=["pt", "pth", "ckpt"], key=key,
                              max_upload_size=MAX_CHECKPOINT_BYTES // 2**20)
    # The uploader keeps its file across reruns: load each file once, so a later run started
    # elsewhere is not overridden by a stale upload.
    if upload is None or st.session_state.get("draw_checkpoint_file") == upload.file_id:
        return
    try:
        checkpoint = load_checkpoint(upload.getvalue())
    except CheckpointError as error:
        st.error(f"Can't use “{upload.name}” as a model: {error}")
        return
    st.session_state.draw_checkpoint_file = upload.file_id
    common.use_checkpoint(checkpoint, f"checkpoint “{upload.name}”")
    st.rerun()


@st.fragment(run_every=0.5)
def quick_training_progress(run_id: str) -> None:
    """Progress of the quick model; reruns the whole page once it is trained."""
    worker = common.get_registry().get(run_id)
    record = worker.snapshot() if worker is not None else None
    if record is None or not record.active:
        st.rerun()
    done = record.epochs_done + record.progress.get("batch", 0) / max(record.batches_per_epoch, 1)
    st.progress(min(done / record.config.epochs, 1.0),
                text=f"Training a quick model: {common.run_state_text(worker)}…")


def preview(image28: torch.Tensor) -> Image.Image:
    return Image.fromarray(image28.numpy()).resize((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.NEAREST)


def probability_chart(probabilities: torch.Tensor, names: tuple[str, ...], predicted: int, compared: int) -> go.Figure:
    colours = [PREDICTED_COLOUR if c == predicted else COMPARED_COLOUR if c == compared else OTHER_COLOUR
               for c in range(len(names))]
    percent = (probabilities * 100).tolist()
    figure = go.Figure(go.Bar(x=list(names), y=percent, marker_color=colours,
                              text=[f"{p:.0f}%" if p >= 0.5 else "" for p in percent], textposition="outside",
                              hovertemplate="%{x}: %{y:.1f}%<extra></extra>"))
    figure.update_layout(height=260, margin=dict(l=10, r=10, t=10, b=10), showlegend=False,
                         yaxis=dict(range=[0, 115], title="probability (%)", tickvals=[0, 25, 50, 75, 100]),
                         xaxis=dict(type="category"))
    return figure


def contribution_maps(maps: torch.Tensor, bias: torch.Tensor, names: tuple[str, ...],
                      predicted: int, compared: int) -> go.Figure:
    """Weight x input for the predicted class, the compared class and their difference, on one scale."""
    difference = maps[predicted] - maps[compared]
    panels = [maps[predicted], maps[compared], difference]
    logit = lambda c: float(maps[c].sum() + bias[c])  # noqa: E731
    titles = [f"“{names[predicted]}” (predicted): logit {logit(predicted):.1f}",
              f"“{names[compared]}”: logit {logit(compared):.1f}",
              f"“{names[predicted]}” minus “{names[compared]}”"]
    # One symmetric colour range for all three, so equal colours mean equal amounts. Blue means
    # "for the class", as on the Weights page and in tutorial 003.
    limit = max(float(torch.stack(panels).abs().max()), 1e-6)
    figure = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.04)
    for col, panel in enumerate(panels, start=1):
        figure.add_trace(go.Heatmap(z=panel.numpy(), zmin=-limit, zmax=limit, zmid=0, colorscale="RdBu",
                                    showscale=col == 3, colorbar=dict(title="contribution", thickness=12),
                                    hovertemplate="row %{y}, col %{x}: %{z:.3f}<extra></extra>"),
                         row=1, col=col)
        figure.update_xaxes(visible=False, constrain="domain", row=1, col=col)
        figure.update_yaxes(visible=False, autorange="reversed", scaleanchor=f"x{'' if col == 1 else col}",
                            constrain="domain", row=1, col=col)
    figure.update_layout(height=360, margin=dict(l=10, r=10, t=40, b=10))
    return figure


def classes_to_show(probabilities: torch.Tensor) -> tuple[int, int, int]:
    """(predicted, runner-up, the class to compare with: the user's pick or the runner-up)."""
    ranking = probabilities.argsort(descending=True).tolist()
    predicted, runner_up = ranking[0], ranking[1]
    choice = st.session_state.get("draw_compare", RUNNER_UP)
    return predicted, runner_up, runner_up if choice in (None, RUNNER_UP, predicted) else choice


def verdict(image28: torch.Tensor, probabilities: torch.Tensor, names: tuple[str, ...],
            true_label: int | None = None) -> None:
    """What the model sees and what it predicts."""
    predicted, runner_up, compared = classes_to_show(probabilities)
    sees, says = st.columns([1, 2])
    with sees:
        st.markdown("**What the model sees**", help="The 28×28 input, blown up: cropped, scaled to 20 px and "
                    "centred, as MNIST's digits were prepared.")
        st.image(preview(image28), width=PREVIEW_SIDE)
    with says:
        st.markdown(f"**Prediction:** <span class='draw-prediction' style='font-size:2.6rem;font-weight:700;"
                    f"color:{PREDICTED_COLOUR}'>{names[predicted]}</span> &nbsp; "
                    f"{probabilities[predicted] * 100:.0f}% sure", unsafe_allow_html=True)
        if true_label is not None:
            mark = ":green[:material/check: correct]" if true_label == predicted else ":red[:material/close: wrong]"
            st.markdown(f"**True label:** {names[true_label]} ({mark})")
        st.caption(f"Runner-up: {names[runner_up]} ({probabilities[runner_up] * 100:.0f}%)")
    st.plotly_chart(probability_chart(probabilities, names, predicted, compared), key="draw_probabilities",
                    config={"displayModeBar": False})


def why(image28: torch.Tensor, probabilities: torch.Tensor, model: common.ModelInUse) -> None:
    """Which pixels made the model pick its class over another one."""
    names = model.class_names
    predicted, runner_up, compared = classes_to_show(probabilities)
    st.subheader(f"Why “{names[predicted]}” and not “{names[compared]}”?")
    pick, note = st.columns([1, 2], vertical_alignment="bottom")
    pick.selectbox("Compare with", [RUNNER_UP, *range(len(names))], key="draw_compare",
                   format_func=lambda c: f"the runner-up ({names[runner_up]})" if c == RUNNER_UP else names[c])
    if st.session_state.draw_compare == predicted:
        note.caption("That is the predicted class itself: comparing with the runner-up instead.")
    maps = contributions(model.model, model.normalizer, image28)
    bias = model.model.linear.bias.detach().cpu()
    st.plotly_chart(contribution_maps(maps, bias, names, predicted, compared), key="draw_contributions",
                    config={"displayModeBar": False})
    st.caption("Each pixel's contribution is its weight × its input. Blue pixels push towards the class, red "
               "pixels push away; a class's logit is the sum of its map plus its bias, and the highest logit "
               "wins. In the difference map, blue pixels are those that favour "
               f"“{names[predicted]}” over “{names[compared]}”.")


# ---------------------------------------------------------------------------------------------
st.title("Draw")
for key, value in {"draw_canvas_version": 0, "draw_random_seed": None}.items():
    if key not in st.session_state:
        st.session_state[key] = value

quick_run = st.session_state.get("draw_quick_run")
quick_worker = common.get_registry().get(quick_run)
if quick_worker is not None and quick_worker.snapshot().active:
    quick_training_progress(quick_run)
    st.stop()

model = common.current_model()
if model is None:
    dataset_name = common.selected_dataset_name()
    if quick_worker is not None and quick_worker.snapshot().message:
        st.error(f"The quick model did not train: {quick_worker.snapshot().message}")
    st.info("There is no trained model yet. Train a quick one (a few seconds) or load a saved checkpoint, "
            "then draw.")
    train_side, load_side = st.columns(2, gap="large")
    with train_side:
        st.subheader("Train a quick model")
        st.write(f"Default settings (learning rate 0.5, batch size 128, 10 epochs) on "
                 f"{DATASET_TITLES[dataset_name]}.")
        if st.button("Train a quick model", type="primary", icon=":material/bolt:"):
            common.dataset_or_stop(dataset_name)
            worker = common.start_run(TrainConfig(dataset=dataset_name), name="quick model (Draw page)")
            st.session_state.draw_quick_run = worker.run_id
            st.rerun()
    with load_side:
        st.subheader("Load a checkpoint")
        load_uploaded_checkpoint("draw_checkpoint_empty")
    st.stop()

st.caption(f"Model: {model.label} · trained on {DATASET_TITLES.get(model.dataset, model.dataset)}")
if model.dataset == "fashion-mnist":
    st.warning("This model was trained on Fashion-MNIST: it recognises clothing (T-shirts, trousers, shoes, "
               "bags…), not digits. Drawing still works, so try a trouser or a bag; a digit will be read as "
               "whichever piece of clothing it resembles most.")
with st.expander("Use a different model: load a checkpoint"):
    load_uploaded_checkpoint("draw_checkpoint_swap")

source = st.radio("Input", SOURCES, horizontal=True, key="draw_source", label_visibility="collapsed")
left, right = st.columns([1, 2], gap="large")
image28, probabilities, true_label = None, None, None

with left:
    if source == SOURCES[0]:
        brush = st.slider("Brush width", min_value=6, max_value=40, value=20, key="draw_brush",
                          help="MNIST digits have strokes about a tenth of the digit's height.")
        canvas = st_canvas(stroke_width=brush, stroke_color="#FFFFFF", background_color="#000000",
                           width=CANVAS_SIDE, height=CANVAS_SIDE, drawing_mode="freedraw",
                           update_streamlit=True, return_image_data=True,
                           key=f"draw_canvas_{st.session_state.draw_canvas_version}")
        st.button("Clear", icon=":material/ink_eraser:", on_click=clear_canvas)
        drawing = canvas.image_data
        result = predict_canvas(model.model, model.normalizer, drawing) if drawing is not None else None
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
                st.error(f"Can't use “{upload.name}”: {error}. Upload a PNG or JPEG picture of a single "
                         f"digit, up to {MAX_BYTES // 2**20} MB.")
            else:
                st.image(picture, caption=upload.name, width=CANVAS_SIDE)
                result = predict_drawing(model.model, model.normalizer, picture)
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
            image28 = dataset.test_images[index]
            true_label = int(dataset.test_labels[index])
            probabilities = predict(model.model, model.normalizer, image28.unsqueeze(0))[0]
            st.caption(f"Test image #{index:,} of the {len(dataset.test_labels):,} test images: the model "
                       "never trained on it.")

with right:
    if probabilities is None:
        if source == SOURCES[0]:
            st.info("✏️ Draw a digit in the black box: white ink, one digit, as large as you like. "
                    "The prediction updates after every stroke.")
        elif source == SOURCES[1]:
            if upload is None:
                st.info("Upload a photo or scan of a single handwritten digit. Dark ink on light paper is "
                        "detected and inverted.")
            elif result is not None and result.empty:
                st.warning(result.preprocessed.message)
    else:
        verdict(image28, probabilities, model.class_names, true_label)

if probabilities is not None:
    why(image28, probabilities, model)
