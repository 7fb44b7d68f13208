"""Image-folder imports in a background thread, with progress a page can poll.

`FolderJob` (a `lrcore.jobs.Job`) wraps `lrcore.image_folder.import_folder`; progress is pictures decoded of
the total. It makes no Streamlit calls; the Data page reads `job.snapshot()` from an
`st.fragment(run_every=...)`, as for downloads. A bad folder or zip becomes its message, never a traceback.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from . import image_folder
from .jobs import Job
from .preprocess import ImageError


@dataclass
class FolderState:
    """What an import has done so far; copies are handed to pages."""

    source: str  # what is imported, as its owner knows it: an upload's file name, else the path
    status: str = "decoding"  # decoding | done | failed
    decoded: int = 0
    total: int = 0
    message: str = ""
    result: image_folder.FolderImport | None = None

    @property
    def active(self) -> bool:
        return self.status == "decoding"

    @property
    def fraction(self) -> float:
        return min(self.decoded / self.total, 1.0) if self.total else 0.0

    def copy(self) -> "FolderState":
        return replace(self)


class FolderJob(Job[FolderState]):
    """Imports one folder or zip (`image_folder.import_folder`'s arguments) in a thread."""

    kind = "folder-import"

    def __init__(self, job_id: str, source: str | Path, side: int = image_folder.DEFAULT_SIDE, colour: bool = True,
                 title: str | None = None, data_dir: Path | None = None, display_name: str | None = None):
        self.source, self.side, self.colour, self.title, self.data_dir = Path(source), side, colour, title, data_dir
        self.display_name = display_name  # an upload's own file name: `source` is its copy named by digest
        super().__init__(job_id, FolderState(image_folder.clean_file_name(display_name or "") or str(source)))

    def _progress(self, done: int, total: int) -> None:
        def change(state: FolderState) -> None:
            state.decoded, state.total = done, total
        self.update(change)

    def work(self) -> None:
        try:
            result = image_folder.import_folder(self.source, self.side, self.colour, self.title,
                                                data_dir=self.data_dir, progress=self._progress,
                                                display_name=self.display_name)
        except (image_folder.FolderError, ImageError) as error:
            self._finish("failed", str(error))
            return
        self._finish("done", f"{result.title} is ready.", result)

    def failed(self, message: str) -> None:
        self._finish("failed", f"The import {message}.")

    def _finish(self, status: str, message: str, result: image_folder.FolderImport | None = None) -> None:
        def finish(state: FolderState) -> None:
            state.status, state.message, state.result = status, message, result
            if result is not None:
                state.decoded = max(state.decoded, state.total)
        self.update(finish)
