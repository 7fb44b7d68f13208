"""Dataset downloads in a background thread, with progress a page can poll.

`DownloadJob` (a `lrcore.jobs.Job`) wraps `lrcore.data.download_dataset` in a daemon thread and records, per
file, how many bytes have arrived. It makes no Streamlit calls; the Data page reads
`job.snapshot()` from an `st.fragment(run_every=...)`. Any failure becomes a message
(never a traceback) that says which files are needed and where to put them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from . import data, datasets
from .jobs import Job


@dataclass
class DownloadState:
    """What a download has done so far; copies are handed to pages."""

    name: str
    status: str = "downloading"  # downloading | done | failed
    files: dict[str, tuple[int, int]] = field(default_factory=dict)  # file -> (bytes done, bytes total)
    message: str = ""
    folder: str = ""

    @property
    def active(self) -> bool:
        return self.status == "downloading"

    def copy(self) -> "DownloadState":
        return replace(self, files=dict(self.files))


class DownloadJob(Job[DownloadState]):
    """Downloads one dataset that has a download (mnist, fashion-mnist) into `data_dir` (a `lrcore.jobs.Job`)."""

    kind = "download"

    def __init__(self, name: str, data_dir: Path | str | None = None):
        self.name = name
        self.data_dir = Path(data_dir) if data_dir is not None else data.default_data_dir()
        # Every file gets a bar from the start, so the page shows what is still to come.
        super().__init__(f"download-{name}",
                         DownloadState(name, files={f"{stem}.gz": (0, 0) for stem in datasets.get(name).files}))

    def _progress(self, file_name: str, done: int, total: int) -> None:
        self.update(lambda state: state.files.__setitem__(file_name, (done, total)))

    def work(self) -> None:
        try:
            folder = data.download_dataset(self.name, self.data_dir, progress=self._progress)
        except data.DatasetUnavailable as error:
            self._finish("failed", str(error))
            return

        def complete(state: DownloadState) -> None:
            for file_name, (done, total) in state.files.items():
                state.files[file_name] = (max(done, total, 1), max(done, total, 1))
        self.update(complete)
        self._finish("done", f"{datasets.get(self.name).title} is ready in {folder}.", str(folder))

    def failed(self, message: str) -> None:
        # e.g. a read-only data folder: still a message, not a traceback
        self._finish("failed", f"Download of {self.name} {message}. "
                     + data.missing_files_message(self.name, self.data_dir))

    def _finish(self, status: str, message: str, folder: str = "") -> None:
        def finish(state: DownloadState) -> None:
            state.status, state.message, state.folder = status, message, folder
        self.update(finish)
