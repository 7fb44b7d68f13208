"""The one checkpoint uploader of the Draw, Evaluate and Runs pages.

One size cap (lrcore.checkpoint's), one set of file types, and one message per refused file:
the file's name, then lrcore.checkpoint's CheckpointError, which names what was wrong (too
big, not a PyTorch file, not a checkpoint, a field of the wrong type or shape...).
Each file is read once per uploader: reruns reuse the outcome, and a page acts on a new file
only (`Upload.new`), so a file left in the uploader never replaces a model chosen since.
"""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from lrcore.checkpoint import MAX_CHECKPOINT_BYTES, Checkpoint, CheckpointError, load_checkpoint
from ui.text import md_escape

TYPES = ("pt", "pth")  # what torch.save and lrcore write; the browser offers only these
MAX_MB = MAX_CHECKPOINT_BYTES // 2**20  # the browser refuses bigger files before sending them
HELP = (f"A .pt or .pth file of at most {MAX_MB} MB, saved from the Runs page or by "
        "`python -m lrcore train --save` (or a tutorial's `state_dict` with linear.weight and linear.bias). "
        "It is checked without running any code in it.")


@dataclass(frozen=True)
class Upload:
    """A file in a checkpoint uploader and what reading it gave."""

    file: UploadedFile
    checkpoint: Checkpoint | None  # None: refused, and `problem` says why
    problem: str | None
    new: bool  # the first page run that sees this file


def refused(file_name: str, reason: object, outcome: str = "was not loaded") -> str:
    """The message for a file that could not be used: '“notes.pt” was not loaded: not a checkpoint: ….'"""
    return f"“{md_escape(file_name)}” {outcome}: {md_escape(str(reason).rstrip('.'), 400)}."


def checkpoint_uploader(label: str, key: str, outcome: str = "was not loaded", show_problem: bool = True,
                        help: str | None = HELP) -> Upload | None:
    """The uploader, and its file read as a checkpoint (None while it is empty).

    A refused file's message is shown under the uploader unless `show_problem` is False;
    `outcome` says what did not happen ("was not added" on the Runs page).
    """
    file = st.file_uploader(label, type=list(TYPES), key=key, max_upload_size=MAX_MB, help=help)
    if file is None:
        return None
    memo_key = f"{key}_read"
    memo = st.session_state.get(memo_key)
    new = memo is None or memo[0] != file.file_id
    if new:
        try:
            memo = (file.file_id, load_checkpoint(file.getvalue()), None)
        except CheckpointError as error:
            memo = (file.file_id, None, refused(file.name, error, outcome))
        st.session_state[memo_key] = memo
    _file_id, checkpoint, problem = memo
    if problem and show_problem:
        st.error(problem, icon=":material/error:")
    return Upload(file, checkpoint, problem, new)
