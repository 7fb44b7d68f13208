"""The Data page's "Your own images": upload a zip of class folders, import it in a thread, show what came in.

The zip is kept as `<data dir>/uploads/<sha256>.zip`, so decoding it again at another side or in greyscale
needs no second upload; its own file name travels with the import (the dataset's name and source line use it,
and the cache's metadata keeps it for after a restart). The import is a `lrcore.folder_job.FolderJob` polled
by a fragment, like downloads.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from lrcore import data, image_folder
from lrcore.folder_job import FolderJob
from lrcore.photo import DEFAULT_SIDE, IMAGE_SIDES
from ui import common
from ui.text import md_escape

LAYOUT_HELP = ("One folder per class (`ants/`, `bees/`), optionally inside `train/`, `val/` and `test/` folders; "
               "PNG or JPEG pictures of any size. See *Your own images* in the project's README.")


def save_upload(content: bytes, data_dir: Path | None = None) -> Path:
    """Keep an uploaded zip as <data dir>/uploads/<sha256>.zip (refused over MAX_ZIP_BYTES); returns its path."""
    if len(content) > image_folder.MAX_ZIP_BYTES:
        raise image_folder.FolderError(
            f"the zip is {len(content) / 2**20:.0f} MB; at most {image_folder.MAX_ZIP_BYTES // 2**20} MB is allowed")
    folder = (data_dir or data.default_data_dir()) / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(content).hexdigest()}.zip"
    if not path.exists():
        partial = path.with_suffix(".part")
        partial.write_bytes(content)
        partial.replace(path)
    return path


def start_import(path: Path, side: int, colour: bool, title: str, file_name: str = "") -> str:
    """Start (or join) the import of `path` (an upload named `file_name` by its owner) at this side and
    colour; returns the job id."""
    # The name is part of the job: the same zip under another name becomes a dataset of that name.
    named = hashlib.sha256(file_name.encode()).hexdigest()[:8]
    job_id = f"folder-{path.stem[:16]}-{named}-{side}-{'rgb' if colour else 'grey'}"
    jobs = common.get_jobs()
    job = jobs.get(job_id)
    if job is None or not job.snapshot().active:
        jobs.add(FolderJob(job_id, path, side, colour, title.strip() or None, display_name=file_name or None)).start()
    return job_id


def load_clicked() -> None:
    upload = st.session_state.get("own_zip")
    st.session_state.pop("own_error", None)
    st.session_state.pop("own_adopted", None)
    try:
        if upload is not None:
            st.session_state.own_zip_path = str(save_upload(upload.getvalue()))
            st.session_state.own_zip_name = upload.name
        path = st.session_state.get("own_zip_path")
        if not path or not Path(path).exists():
            st.session_state.own_error = "Choose a .zip of your pictures first."
            return
        st.session_state.own_job = start_import(Path(path), st.session_state.own_side,
                                                st.session_state.own_colour == "colour", st.session_state.own_title,
                                                st.session_state.get("own_zip_name", ""))
    except (image_folder.FolderError, OSError) as error:
        st.session_state.own_error = f"Cannot use this zip: {error}"


def section() -> None:
    """The whole "Your own images" block of the Data page."""
    with st.expander("Your own images", expanded=bool(st.session_state.get("own_job")), icon=":material/upload:"):
        st.caption(LAYOUT_HELP)
        st.file_uploader("A .zip of your picture folders", type=["zip"], key="own_zip",
                         help=f"At most {image_folder.MAX_ZIP_BYTES // 2**20} MB and "
                              f"{image_folder.MAX_IMAGES:,} pictures.")
        # Room for "colour  greyscale" on one line beside the others at 1024 px (at [1, 1, 2] it wrapped)
        row = st.columns([1, 1.4, 1.6], vertical_alignment="bottom")
        row[0].selectbox("Image side (px)", IMAGE_SIDES, index=IMAGE_SIDES.index(DEFAULT_SIDE), key="own_side",
                         help="Every picture is resized and centre-cropped to a square of this side.")
        row[1].radio("Pictures", ["colour", "greyscale"], key="own_colour", horizontal=True)
        row[2].text_input("Title", key="own_title", max_chars=60, placeholder="e.g. bees vs ants",  # cut at 1024 px
                          help="What the dataset is called everywhere; left empty, its class names.")
        st.button("Load", key="own_load", on_click=load_clicked, type="primary", icon=":material/upload:")
        if st.session_state.get("own_error"):
            st.error(md_escape(st.session_state.own_error, 500))
        job_id = st.session_state.get("own_job")
        job = common.get_jobs().get(job_id)
        if job is not None:
            # Poll on for a moment after the import is chosen: see `show`.
            settling = time.monotonic() < st.session_state.get("own_settle_until", 0)
            progress(job_id, polling=job.snapshot().active or settling or not adopted(job_id))


SETTLE_SECONDS = 2.0


def adopted(job_id: str) -> bool:
    """Whether this session has chosen the dataset of import `job_id` (or it has none to choose)."""
    job = common.get_jobs().get(job_id)
    return job is None or job.snapshot().result is None or st.session_state.get("own_adopted") == job_id


def adopt_finished_import() -> bool:
    """Choose the dataset of this session's finished import, once per Load (the user may pick another
    after). Called by the Data page before it reads the chosen dataset: done in a whole-page run, not in
    the progress fragment, whose query string can be older than the page's (the link kept the old
    dataset). True when it chose one: the sidebar above is then out of date."""
    job_id = st.session_state.get("own_job")
    if not job_id or adopted(job_id):
        return False
    st.session_state.own_adopted = job_id
    common.add_own_dataset(common.get_jobs().get(job_id).snapshot().result.name)
    st.session_state.own_settle_until = time.monotonic() + SETTLE_SECONDS
    return True


def progress(job_id: str, polling: bool) -> None:
    @st.fragment(run_every=0.5 if polling else None)
    def show() -> None:
        # A fragment request carries the browser's query string of when it was sent; one queued behind
        # the whole-page run that chose the import makes Streamlit send the old "dataset=" back to the
        # browser (seen in the websocket). So the fragment polls on for SETTLE_SECONDS after the choice
        # and puts the link right each time; then one whole-page run ends the polling.
        if st.query_params.get("dataset") != common.selected_dataset_name():
            st.query_params["dataset"] = common.selected_dataset_name()
        state = common.get_jobs().get(job_id).snapshot()
        if state.result is not None and not adopted(job_id):
            st.rerun()  # the whole page chooses the new dataset (`adopt_finished_import`)
        if polling and not state.active and time.monotonic() >= st.session_state.get("own_settle_until", 0):
            st.rerun()  # finished: redraw the whole page
        if state.status == "failed":
            st.error(md_escape(state.message, 800), icon=":material/error:")
        elif state.active:
            text = (f"Decoding pictures: {state.decoded:,} of {state.total:,}" if state.total
                    else f"Reading {md_escape(st.session_state.get('own_zip_name') or 'the zip')}…")
            st.progress(state.fraction, text=text)
        elif state.result is not None:
            summary(state.result)

    show()


def summary(result: image_folder.FolderImport) -> None:
    """What an import brought in: layout, images per split and class, the files it skipped."""
    source = f" from {md_escape(result.source)}" if result.source else ""
    st.success(f"**{md_escape(result.title)}**{source}: {md_escape(result.layout)}"
               + (" (decoded before: read from the cache)" if result.from_cache else ""))
    table = pd.DataFrame(result.counts).reindex(list(result.class_names)).fillna(0).astype(int)
    table.index.name = "class"
    st.dataframe(table, width="content")  # two or three narrow number columns: stretched, they read as empty
    if result.misplaced:  # skipped rather than refused: the rest of the zip is still worth training on
        count, first = len(result.misplaced), md_escape(result.misplaced[0], 80)
        which = (f"1 picture outside the class folders was left out ({first}); to use it, move it"
                 if count == 1 else f"{count} pictures outside the class folders were left out (e.g. {first}); "
                                    "to use them, move each")
        st.warning(f"{which} into its class's folder and load the zip again.", icon=":material/folder_off:")
    if result.skipped:
        with st.expander(f"{len(result.skipped)} file{'s' if len(result.skipped) != 1 else ''} skipped"):
            st.dataframe(pd.DataFrame(result.skipped, columns=["file", "why"]), hide_index=True)
