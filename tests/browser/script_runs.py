"""Which script runs the server did for a browser tab: the whole page, or a fragment alone.

Streamlit's server ends every run with a `script_finished` message on the tab's websocket,
FINISHED_SUCCESSFULLY for a whole-page run and FINISHED_FRAGMENT_RUN_SUCCESSFULLY for a
fragment's; a stroke on Draw must give the second. Reading the messages the browser receives
needs no counter or hook in the app. Used by the browser tests and bench/bench_latency.py.
"""
from __future__ import annotations

import threading
import time

from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

FULL = ForwardMsg.FINISHED_SUCCESSFULLY
FRAGMENT = ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY
EARLY = ForwardMsg.FINISHED_EARLY_FOR_RERUN  # a run cut short by another it asked for (st.rerun)


class ScriptRuns:
    """Records the end of every script run on a page's websockets; attach before `page.goto`."""

    def __init__(self, page) -> None:
        self.finished: list[tuple[float, int]] = []  # (time.perf_counter(), status)
        self._lock = threading.Lock()
        page.on("websocket", self._watch)

    def _watch(self, websocket) -> None:
        if "/_stcore/stream" in websocket.url:
            websocket.on("framereceived", self._frame)

    def _frame(self, payload) -> None:
        if isinstance(payload, str):  # the stream's messages are binary protobufs
            return
        message = ForwardMsg()
        try:
            message.ParseFromString(payload)
        except Exception:  # noqa: BLE001 - not a ForwardMsg: not ours to judge
            return
        if message.WhichOneof("type") == "script_finished":
            with self._lock:
                self.finished.append((time.perf_counter(), message.script_finished))

    def count(self, status: int) -> int:
        with self._lock:
            return sum(1 for _, finished in self.finished if finished == status)

    def mark(self) -> int:
        """A position to compare with later (`since`)."""
        with self._lock:
            return len(self.finished)

    def since(self, mark: int) -> list[int]:
        """Statuses of the runs that ended after `mark`."""
        with self._lock:
            return [status for _, status in self.finished[mark:]]
