"""Dataset downloads in a background thread, with progress a page can poll.

`DownloadJob` wraps `lrcore.data.download_dataset` in a daemon thread and records, per
file, how many bytes have arrived. It makes no Streamlit calls; the Data page reads
`job.snapshot()` from an `st.fragment(run_every=...)`. Any failure becomes a message
(never a traceback) that says which files are needed and where to put them.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import data, datasets

log = logging.getLogger(__name__)


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


class DownloadJob:
    """Downloads one dataset that has a download (mnist, fashion-mnist) into `data_dir` in a daemon thread."""

    def __init__(self, name: str, data_dir: Path | str | None = None):
        self.name = name
        self.data_dir = Path(data_dir) if data_dir is not None else data.default_data_dir()
        # Every file gets a bar from the start, so the page shows what is still to come.
        self._state = DownloadState(name, files={f"{stem}.gz": (0, 0) for stem in datasets.get(name).files})
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"download-{name}", daemon=True)

    def start(self) -> "DownloadJob":
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def snapshot(self) -> DownloadState:
        with self._lock:
            return replace(self._state, files=dict(self._state.files))

    def _progress(self, file_name: str, done: int, total: int) -> None:
        with self._lock:
            self._state.files[file_name] = (done, total)

    def _run(self) -> None:
        try:
            folder = data.download_dataset(self.name, self.data_dir, progress=self._progress)
        except data.DatasetUnavailable as error:
            self._finish("failed", str(error))
        except Exception as error:  # e.g. a read-only data folder: still a message, not a traceback
            log.exception("download of %s failed", self.name)
            self._finish("failed", f"Download of {self.name} failed ({type(error).__name__}: {error}). "
                         + data.missing_files_message(self.name, self.data_dir))
        else:
            with self._lock:
                for file_name, (done, total) in self._state.files.items():
                    self._state.files[file_name] = (max(done, total, 1), max(done, total, 1))
            self._finish("done", f"{datasets.get(self.name).title} is ready in {folder}.", str(folder))

    def _finish(self, status: str, message: str, folder: str = "") -> None:
        with self._lock:
            self._state.status, self._state.message, self._state.folder = status, message, folder
