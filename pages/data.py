"""Data: pick the dataset, get the full ones, and look at classes, examples, mean images and pixels."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
import torch

from lrcore import data, datasets
from lrcore.download import DownloadJob
from ui import charts, common, folder_upload
from ui.text import md_escape

common.ensure_frame()  # first: a page opened alone reruns through dashboard.py

EXAMPLES = 44  # example grid: 4 rows of 11 on a laptop screen


def title(name: str) -> str:
    return datasets.get(name).title


def dataset_label(name: str) -> str:
    # titles of your own datasets come from folder names and the Title field: shown literally
    return md_escape(title(name), 200) + ("" if data.available_datasets().get(name) else " — not on this machine")


def use_choice() -> None:
    """Radio callback: switch datasets only to one whose files are here (runs keep their own data)."""
    choice = st.session_state.data_choice
    if data.available_datasets().get(choice):
        st.session_state.dataset = choice
        st.query_params["dataset"] = choice


def start_download(name: str) -> None:
    jobs = common.get_jobs()
    job = jobs.get(f"download-{name}")
    if job is None or not job.snapshot().active:  # one download per dataset at a time, for all users
        jobs.add(DownloadJob(name)).start()


def download_row(name: str) -> None:
    """A button (or 'ready') for one dataset, then its progress and outcome."""
    info = datasets.get(name)
    if data.available_datasets().get(name):
        st.markdown(f"✅ **{info.title}** is ready in `{data.locate(name)}`.")
        return
    job = common.get_jobs().get(f"download-{name}")
    state = job.snapshot() if job is not None else None
    busy = state is not None and state.active
    label = f"Try downloading {info.title} again" if state is not None and state.status == "failed" \
        else f"Download {info.title}"
    st.button(label, key=f"download_{name}", on_click=start_download, args=(name,), disabled=busy,
              icon=":material/download:")
    if info.debian_package:
        st.caption(f"Offline on Debian/Ubuntu: `sudo apt-get install {info.debian_package}` installs it in "
                   f"{info.debian_folder}.")
    if state is not None:
        download_progress(name, polling=busy)


def download_progress(name: str, polling: bool) -> None:
    # Decorated per call so only a running download polls; the worker thread makes no st calls.
    @st.fragment(run_every=0.5 if polling else None)
    def show() -> None:
        state = common.get_jobs().get(f"download-{name}").snapshot()
        if polling and not state.active:
            st.rerun()  # finished: redraw the whole page (dataset list, buttons)
        if state.status == "failed":
            st.error(state.message, icon=":material/cloud_off:")
            return
        for file_name, (done, total) in state.files.items():
            fraction = min(done / total, 1.0) if total else (1.0 if done else 0.0)
            size = f"{done / 1e6:.1f} of {total / 1e6:.1f} MB" if total else ("done" if done else "waiting")
            st.progress(fraction, text=f"{file_name}: {size}")
        if state.status == "done":
            st.success(state.message)

    show()


@st.cache_data(show_spinner="Averaging the images of each class…")
def class_means(name: str) -> np.ndarray:
    """The mean image of each class in the train pool (uint8 for display), one per class."""
    dataset = common.get_dataset(name)
    means = [dataset.train_images[dataset.train_labels == cls].float().mean(0) for cls in range(dataset.num_classes)]
    return torch.stack(means).round().to(torch.uint8).numpy()


@st.cache_data(show_spinner="Computing pixel statistics…")
def pixel_table(name: str) -> pd.DataFrame:
    dataset = common.get_dataset(name)
    rows = {"train + validation pool": data.pixel_statistics(dataset.train_images),
            "test split": data.pixel_statistics(dataset.test_images)}
    return pd.DataFrame.from_dict(rows, orient="index")[["min", "max", "mean", "std"]]


# ---------------------------------------------------------------- the page

st.title("Data")

if folder_upload.adopt_finished_import():
    st.rerun()  # the sidebar, drawn before this page, names the dataset chosen until now
current = common.selected_dataset_name()
if "data_choice" not in st.session_state:
    st.session_state.data_choice = current
choice = st.radio("Dataset", common.dataset_choices(), key="data_choice", format_func=dataset_label, on_change=use_choice,
                  help="The Train page trains on this dataset. A run already training keeps its own data.")
if data.available_datasets().get(choice) and choice != current:
    use_choice()  # e.g. its download just finished
    st.rerun()
st.query_params["dataset"] = current

worker = common.current_worker()
if worker is not None and worker.snapshot().active and worker.snapshot().config.dataset != current:
    st.caption(f"Your current run keeps training on {md_escape(title(worker.snapshot().config.dataset))}; "
               "new runs use the dataset chosen here.")

missing = not data.available_datasets().get(choice)
if missing:
    package = datasets.get(choice).debian_package
    st.warning(f"**{md_escape(title(choice))} is not on this machine**, so this page still shows "
               f"{md_escape(title(current))}.\n\n{data.missing_files_message(choice)}"
               + (f"\n\nOn Debian/Ubuntu: `sudo apt-get install {package}`." if package else ""))

with st.expander("Get the full datasets (download needs internet)", expanded=missing):
    st.caption("Downloads use torchvision's mirrors and check every file's MD5 checksum. "
               f"Files go to `{data.default_data_dir()}` (set LRCORE_DATA_DIR to change it).")
    for name in datasets.NAMES:
        if datasets.get(name).download:
            download_row(name)

folder_upload.section()

dataset = common.dataset_or_stop(current)
st.caption(f"Source: {md_escape(dataset.source, 400)}")  # an upload's file name is in it
if dataset.fixed_validation:
    st.info(f"This dataset has its own validation set ({len(dataset.validation_index):,} pictures of its val/ "
            "folder): training validates on exactly those, whatever the validation share says.",
            icon=":material/rule:")
sizes = st.columns(3)
sizes[0].metric("Train + validation pool", f"{len(dataset.train_labels):,}")
sizes[1].metric("Test split", f"{len(dataset.test_labels):,}")
sizes[2].metric("Classes", dataset.num_classes)

st.subheader("Images per class")
counts = charts.class_counts_figure(dataset.class_names, {
    "train + validation pool": dataset.class_counts("train").tolist(),
    "test split": dataset.class_counts("test").tolist()})
st.plotly_chart(counts, key="class_counts")

st.subheader("Random examples")
if "data_sample_seed" not in st.session_state:
    st.session_state.data_sample_seed = 0
controls = st.columns([1, 1, 2], vertical_alignment="bottom")
only = controls[0].selectbox("Class", [-1, *range(dataset.num_classes)], key="data_sample_class",
                             format_func=lambda cls: "all classes" if cls < 0 else dataset.class_names[cls])
# Deskewing works on 28x28 one-channel images (preprocess.deskew); other shapes show as they are.
deskewed = dataset.info.shape == datasets.DIGIT_SHAPE and controls[1].toggle(
    "Deskewed", key="data_deskew",
    help="Show the images sheared so their strokes stand upright, as a model trained with Deskew sees them.")
controls[2].button("New sample", icon=":material/shuffle:",
                   on_click=lambda: st.session_state.update(data_sample_seed=st.session_state.data_sample_seed + 1))
pool = (torch.arange(len(dataset.train_labels)) if only < 0
        else torch.nonzero(dataset.train_labels == only).flatten())
generator = torch.Generator().manual_seed(st.session_state.data_sample_seed)
picked = pool[torch.randperm(len(pool), generator=generator)[:EXAMPLES]]
st.image(common.digit_tiles(dataset.images("train", deskew=deskewed)[picked]),
         caption=[dataset.class_names[label] for label in dataset.train_labels[picked].tolist()], width=84, output_format="PNG")

st.subheader("Mean image of each class")
st.caption("The average of every training-pool image of the class: what a typical example looks like.")
st.image(common.digit_tiles(torch.from_numpy(class_means(current))), caption=list(dataset.class_names), width=84,
         output_format="PNG")

st.subheader("Pixel statistics")
st.caption("Pixels scaled to 0..1 (as `transforms.ToTensor()` does), over every pixel of every image.")
st.dataframe(pixel_table(current).style.format("{:.4f}"))
