"""Evaluate: test and validation metrics, confusion matrix with its images, per-class metrics, mistakes."""
from __future__ import annotations

import hashlib
import re

import pandas as pd
import streamlit as st
import torch

from lrcore import datasets
from lrcore.config import ConfigError
from lrcore.data import DATASET_TITLES, make_splits
from lrcore.config import TrainConfig
from lrcore.evaluate import Evaluation, evaluate_model, split_data
from ui import charts, common, uploads
from ui.images import picture_tiles
from ui.format import loss, percent
from ui.maps import image_shape
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
               _model: common.ModelInUse, _config: TrainConfig) -> Evaluation:
    """Evaluation of one model on one split, shared by reruns and sessions (it is never mutated).

    `split_key` holds the settings that choose the split's images (`_config`'s validation fraction,
    seed, subset and deskew), so the cache tells models trained on different splits apart.
    """
    images, labels = split_data(common.get_dataset(dataset_name), _config, split)  # as the model saw them
    return evaluate_model(_model.model, _model.normalizer, images, labels)


FOLDER_NAME = re.compile(r"-\d+-(colour|grey)-[0-9a-f]{8}$")  # image_folder.dataset_name's "bees-32-colour-1a2b3c4d"


def missing_dataset(model: common.ModelInUse) -> str:
    """Why a model whose dataset is not on this server cannot be evaluated, and what to do, in plain words
    (load_dataset's "unknown dataset 'bees-32-colour-1a2b3c4d'; choose one of …" read like a crash)."""
    names, classes = model.class_names, len(model.class_names)
    what = " vs ".join(names) if classes <= 3 else ", ".join(names[:3]) + ", …"
    shape = image_shape(model.dataset, st.session_state.get("checkpoint"), model.model.linear.weight.shape[1])
    pictures = f"{shape[1]}×{shape[2]} {'colour' if shape[0] == 3 else 'greyscale'}"
    facts = f"“{md_escape(what, 120)}”, {classes} classes, {pictures}"
    if FOLDER_NAME.search(model.dataset):
        return (f"This model was trained on your own pictures ({facts}), which are not on this server: import the "
                f"same folder or zip (under the same name, at {pictures}) on the Data page to evaluate it. "
                "Weights and Predict work without it.")
    return (f"This model was trained on “{md_escape(model.dataset, 80)}” ({facts}), a dataset this server does not "
            "have, so it cannot be evaluated here. Weights and Predict work without it.")


def pick_cell(true_class: int, predicted_class: int) -> None:
    st.session_state.eval_true, st.session_state.eval_pred = true_class, predicted_class


def cell_clicked() -> None:
    """Heatmap click: the invisible marker of each cell carries [true, predicted] as customdata."""
    points = st.session_state.eval_confusion.selection.points
    if points and points[0].get("customdata") is not None:
        true_class, predicted_class = points[0]["customdata"][:2]
        pick_cell(int(true_class), int(predicted_class))


def image_grid(images: torch.Tensor, captions: list[str], marked: torch.Tensor | None = None, scale: int = 3) -> None:
    """One st.image of crisp upscaled pictures (grey, or colour for 3-channel images) about as wide as
    28x28 digits at `scale`; `marked` ones get a red border."""
    side = images.shape[-1]
    scale = max(1, round(28 * scale / side))  # a 64x64 photo is not blown up to 256 px
    st.image(picture_tiles(images, scale, marked), caption=captions, width=side * scale, output_format="PNG")


# ---------------------------------------------------------------- the page

st.title("Evaluate")

with st.expander("Load a checkpoint (.pt)", expanded=common.current_model() is None):
    upload = uploads.checkpoint_uploader("Checkpoint saved by this dashboard or `python -m lrcore train --save`",
                                         "eval_upload")
    if upload is not None and upload.new and upload.checkpoint is not None:
        common.use_checkpoint(upload.checkpoint, f"checkpoint {upload.file.name}")
        st.rerun()
    if common.using_checkpoint() and common.current_worker() is not None:
        st.button("Use my current run instead", on_click=common.use_checkpoint, args=(None,))

model = common.current_model()
if model is None:
    st.info("No model to evaluate yet: train one on the Train page, or load a checkpoint above.")
    st.page_link("pages/train.py", label="Go to Train", icon="📈")
    st.stop()

common.folder_datasets()  # an image folder imported before a restart is registered again
if model.dataset not in datasets.REGISTRY:  # e.g. a checkpoint of another machine's image folder
    st.caption(f"Model: {md_escape(model.label, 200)}")
    st.warning(missing_dataset(model), icon=":material/folder_off:")
    for page, label, icon in (("pages/data.py", "Import pictures on the Data page", ":material/dataset:"),
                              ("pages/weights.py", "See its weights", ":material/grid_view:"),
                              ("pages/draw.py", "Predict with it", ":material/photo_camera:")):
        st.page_link(page, label=label, icon=icon)
    st.stop()

worker = common.current_worker()
st.caption(f"Model: {md_escape(model.label, 200)} · evaluated on "
           f"{md_escape(DATASET_TITLES.get(model.dataset, model.dataset))}")  # a folder's title is user text
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
results = {split: evaluation(key, model.dataset, split, split_key, model, config) for split in SPLITS}

metrics = st.columns(4)
metrics[0].metric("Test accuracy", percent(results["test"].accuracy, 2))
metrics[1].metric("Test loss", loss(results["test"].loss))
metrics[2].metric("Validation accuracy", percent(results["validation"].accuracy, 2))
metrics[3].metric("Validation loss", loss(results["validation"].loss))
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
    chosen = (st.session_state.eval_true, st.session_state.eval_pred)
    figure = charts.confusion_figure(result.confusion, result.normalized_confusion(),
                                     [plot_text(name) for name in names], normalised, chosen)
    st.plotly_chart(figure, key="eval_confusion", on_select=cell_clicked, selection_mode="points",
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
