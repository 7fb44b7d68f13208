"""Evaluate: test and validation metrics, confusion matrix with its images, per-class metrics, mistakes."""
from __future__ import annotations

import hashlib

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch

from lrcore.checkpoint import MAX_CHECKPOINT_BYTES, CheckpointError, load_checkpoint
from lrcore.config import ConfigError
from lrcore.data import DATASET_TITLES, make_splits
from lrcore.evaluate import Evaluation, evaluate_model
from ui import common
from ui.text import md_escape, plot_text

common.ensure_frame()  # first: a page opened alone reruns through dashboard.py

CELL_IMAGES = 40
TOP_LOSSES = 16
RANDOM_IMAGES = 32
SPLITS = {"test": "test split", "validation": "validation split"}


def fingerprint(model: common.ModelInUse) -> str:
    """Identity of a model's numbers: same weights and normalisation -> same evaluation."""
    digest = hashlib.sha1(model.normalizer.kind.encode())
    for tensor in (model.model.linear.weight, model.model.linear.bias, model.normalizer.mean, model.normalizer.std):
        if tensor is not None:
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@st.cache_resource(max_entries=24, show_spinner="Evaluating the model…")
def evaluation(model_key: str, dataset_name: str, split: str, split_key: tuple,
               _model: common.ModelInUse, _validation: torch.Tensor) -> Evaluation:
    """Evaluation of one model on one split, shared by reruns and sessions (it is never mutated)."""
    dataset = common.get_dataset(dataset_name)
    deskew = split_key[-1]  # a deskew model is scored on the deskewed images it was trained on
    if split == "test":
        return evaluate_model(_model.model, _model.normalizer, dataset.images("test", deskew), dataset.test_labels)
    return evaluate_model(_model.model, _model.normalizer, dataset.images("train", deskew)[_validation],
                          dataset.train_labels[_validation])


def load_uploaded() -> None:
    """Uploader callback: a new .pt file becomes the model in use, or a clear error."""
    uploaded = st.session_state.get("eval_upload")
    st.session_state.pop("eval_upload_error", None)
    if uploaded is None:
        return
    try:
        checkpoint = load_checkpoint(uploaded.getvalue())
    except CheckpointError as error:
        st.session_state.eval_upload_error = f"{md_escape(uploaded.name)} was not loaded: {md_escape(error, 500)}"
        return
    common.use_checkpoint(checkpoint, f"checkpoint {uploaded.name}")


def pick_cell(true_class: int, predicted_class: int) -> None:
    st.session_state.eval_true, st.session_state.eval_pred = true_class, predicted_class


def cell_clicked() -> None:
    """Heatmap click: the invisible marker of each cell carries [true, predicted] as customdata."""
    points = st.session_state.eval_confusion.selection.points
    if points and points[0].get("customdata") is not None:
        true_class, predicted_class = points[0]["customdata"][:2]
        pick_cell(int(true_class), int(predicted_class))


def confusion_figure(result: Evaluation, names: list[str], normalised: bool, chosen: tuple[int, int]) -> go.Figure:
    classes = len(names)
    names = [plot_text(name) for name in names]
    counts = result.confusion
    shares = result.normalized_confusion()
    z = shares if normalised else counts
    text = [[f"{v:.0%}" if normalised else f"{c}" for v, c in zip(row_s.tolist(), row_c.tolist())]
            for row_s, row_c in zip(shares, counts)]
    figure = go.Figure(go.Heatmap(
        z=z.tolist(), x=names, y=names, text=text, texttemplate="%{text}", colorscale="Blues",
        customdata=shares.tolist(), showscale=False,
        hovertemplate="true %{y}, predicted %{x}<br>%{text} (%{customdata:.1%} of the row)<extra></extra>"))
    # Plotly heatmaps send no selection events; an invisible marker on each cell does.
    cells = [(t, p) for t in range(classes) for p in range(classes)]
    figure.add_trace(go.Scatter(
        x=[names[p] for _, p in cells], y=[names[t] for t, _ in cells], mode="markers",
        customdata=[[t, p, int(counts[t, p])] for t, p in cells],
        marker=dict(symbol="square", size=max(12, 360 // classes), color="rgba(0,0,0,0)"),
        hovertemplate="true %{y}, predicted %{x}: %{customdata[2]} images — click to show them<extra></extra>",
        showlegend=False))
    true_class, predicted_class = chosen
    figure.add_shape(type="rect", x0=predicted_class - 0.5, x1=predicted_class + 0.5, y0=true_class - 0.5,
                     y1=true_class + 0.5, line=dict(color="#e8590c", width=3))
    figure.update_layout(height=520, margin=dict(l=10, r=10, t=10, b=10), clickmode="event+select",
                         # fixed ranges: the markers would otherwise pad the axes beyond the cells
                         xaxis=dict(title="predicted class", type="category", side="top", range=[-0.5, classes - 0.5]),
                         yaxis=dict(title="true class", type="category", range=[classes - 0.5, -0.5]))
    return figure


def image_grid(images: torch.Tensor, captions: list[str], marked: torch.Tensor | None = None, scale: int = 3) -> None:
    """One st.image of crisp upscaled digits; `marked` ones get a red border."""
    st.image(common.digit_tiles(images, scale, marked), caption=captions, width=28 * scale, output_format="PNG")


# ---------------------------------------------------------------- the page

st.title("Evaluate")

with st.expander("Load a checkpoint (.pt)", expanded=common.current_model() is None):
    st.file_uploader("Checkpoint saved by this dashboard or `python -m lrcore train --save`", type=["pt", "pth"],
                     key="eval_upload", on_change=load_uploaded, max_upload_size=MAX_CHECKPOINT_BYTES // 2**20)
    if "eval_upload_error" in st.session_state:
        st.error(st.session_state.eval_upload_error)
    if common.using_checkpoint() and common.current_worker() is not None:
        st.button("Use my current run instead", on_click=common.use_checkpoint, args=(None,))

model = common.current_model()
if model is None:
    st.info("No model to evaluate yet: train one on the Train page, or load a checkpoint above.")
    st.page_link("pages/train.py", label="Go to Train", icon="📈")
    st.stop()

worker = common.current_worker()
st.caption(f"Model: {md_escape(model.label, 200)} · evaluated on {DATASET_TITLES.get(model.dataset, model.dataset)}")
if not common.using_checkpoint() and worker is not None and worker.snapshot().active:
    st.button("Update to the latest weights", icon=":material/refresh:",
              help="The run is still training; this page shows the weights of its last finished epoch.")

dataset = common.dataset_or_stop(model.dataset)
names = list(model.class_names)
name_text = [md_escape(name) for name in names]  # class names come from uploaded files: literal in any markdown
if len(names) != dataset.num_classes:
    st.error(f"This model has {len(names)} classes but {model.dataset} has {dataset.num_classes}; "
             "load a checkpoint trained on this dataset.")
    st.stop()
config = common.current_model_config()
try:
    splits = make_splits(dataset, config.validation_fraction, config.seed, config.per_class_limit)
except ConfigError as error:
    st.error(f"Cannot rebuild this model's validation split: {md_escape(error, 500)}")
    st.stop()

key = fingerprint(model)
split_key = (config.validation_fraction, config.seed, config.per_class_limit, config.deskew)
results = {split: evaluation(key, model.dataset, split, split_key, model, splits.validation) for split in SPLITS}

metrics = st.columns(4)
metrics[0].metric("Test accuracy", f"{results['test'].accuracy:.2%}")
metrics[1].metric("Test loss", f"{results['test'].loss:.4f}")
metrics[2].metric("Validation accuracy", f"{results['validation'].accuracy:.2%}")
metrics[3].metric("Validation loss", f"{results['validation'].loss:.4f}")
st.caption(f"Test: {len(results['test'].labels):,} images never used in training. Validation: "
           f"{len(results['validation'].labels):,} pool images held out by the run's split "
           f"(fraction {config.validation_fraction:g}, seed {config.seed}). Loss = mean cross-entropy."
           + (" Images are deskewed, as this model sees them." if config.deskew else ""))

split = st.radio("Look closer at", list(SPLITS), format_func=SPLITS.get, horizontal=True, key="eval_split")
result = results[split]


def split_images(indices: torch.Tensor) -> torch.Tensor:
    """Images i of the split being looked at, gathered on demand (no copy of the split)."""
    images = dataset.images(split, config.deskew)  # deskewed, as the model sees them, for a deskew model
    return images[indices] if split == "test" else images[splits.validation[indices]]


# ---- confusion matrix and the images behind a cell
st.subheader("Confusion matrix")
classes = len(names)
if st.session_state.get("eval_true", classes) >= classes or st.session_state.get("eval_pred", classes) >= classes:
    worst = result.most_confused(1)
    pick_cell(*(worst[0][:2] if worst else (0, 0)))
left, right = st.columns([3, 2], gap="large")
with left:
    normalised = st.toggle("Normalise by row (share of each true class)", key="eval_normalised")
    st.plotly_chart(confusion_figure(result, names, normalised, (st.session_state.eval_true, st.session_state.eval_pred)),
                    key="eval_confusion", on_select=cell_clicked, selection_mode="points",
                    config={"displayModeBar": False})
with right:
    st.markdown("**Pick a cell** (or click one in the matrix)")
    picks = st.columns(2)
    true_class = picks[0].selectbox("True class", range(classes), format_func=names.__getitem__, key="eval_true")
    predicted_class = picks[1].selectbox("Predicted class", range(classes), format_func=names.__getitem__,
                                         key="eval_pred")
    st.markdown("**Most confused pairs**")
    for t, p, count in result.most_confused(6):
        st.button(f"{name_text[t]} taken for {name_text[p]}: {count} images", key=f"eval_pair_{t}_{p}",
                  on_click=pick_cell, args=(t, p), width="stretch")

members = result.cell(true_class, predicted_class)
predicted_share = result.probabilities[members, predicted_class]
members = members[predicted_share.argsort(descending=True)]
shown = members[:CELL_IMAGES]
verb = "predicted correctly" if true_class == predicted_class else f"predicted as {name_text[predicted_class]}"
st.markdown(f"**{len(members)} images of class {name_text[true_class]} {verb}**"
            + (f" — the {len(shown)} most confident shown" if len(members) > len(shown) else "")
            + (". Caption: probability of the predicted class, then of the true class." if len(shown) else "."))
if len(shown):
    probabilities = result.probabilities[shown]
    captions = [f"{row[predicted_class]:.0%}" if true_class == predicted_class
                else f"{row[predicted_class]:.0%} · {row[true_class]:.0%}" for row in probabilities.tolist()]
    image_grid(split_images(shown), captions)

# ---- per-class metrics
st.subheader("Per class")
per_class = result.per_class()
off_diagonal = result.confusion.clone().fill_diagonal_(0)
table = pd.DataFrame({
    "class": names,
    "images": [row["support"] for row in per_class],
    "correct": result.confusion.diag().tolist(),
    "accuracy (recall)": [row["recall"] for row in per_class],
    "precision": [row["precision"] for row in per_class],
    "most often taken for": [names[int(row.argmax())] if row.sum() else "—" for row in off_diagonal],
})
st.dataframe(table, hide_index=True, column_config={
    "accuracy (recall)": st.column_config.ProgressColumn(
        format="percent", min_value=0.0, max_value=1.0,
        help="Share of this class's images the model got right"),
    "precision": st.column_config.NumberColumn(
        format="percent", help="Of the images predicted as this class, the share that really are it"),
})

# ---- top losses
st.subheader("Top losses")
st.caption("The images the model is most wrong about. Caption: predicted / actual / loss / probability of the "
           "actual class (like fastai's plot_top_losses).")
worst = result.top_losses(TOP_LOSSES)
image_grid(split_images(worst), [f"{name_text[int(result.predictions[i])]} / {name_text[int(result.labels[i])]} / "
                   f"{result.losses[i]:.2f} / {result.probabilities[i, result.labels[i]]:.2f}" for i in worst.tolist()],
           marked=result.predictions[worst] != result.labels[worst], scale=4)  # wider: captions fit one line

# ---- random images with predictions
st.subheader("Random images and predictions")
if "eval_sample_seed" not in st.session_state:
    st.session_state.eval_sample_seed = 0
st.button("New sample", key="eval_new_sample", icon=":material/shuffle:",
          on_click=lambda: st.session_state.update(eval_sample_seed=st.session_state.eval_sample_seed + 1))
generator = torch.Generator().manual_seed(st.session_state.eval_sample_seed)
sample = torch.randperm(len(result.labels), generator=generator)[:RANDOM_IMAGES]
wrong = result.predictions[sample] != result.labels[sample]
st.caption(f"{int((~wrong).sum())} of {len(sample)} right. Wrong ones have a red border and say the true class.")


def sample_caption(i: int) -> str:
    predicted, true = int(result.predictions[i]), int(result.labels[i])
    return name_text[predicted] if predicted == true else f":red[{name_text[predicted]} (true {name_text[true]})]"


image_grid(split_images(sample), [sample_caption(i) for i in sample.tolist()], marked=wrong)
