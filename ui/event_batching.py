"""Hand a session's script-thread events to Streamlit's event loop in batches, not one by one.

Streamlit (1.67) passes every message a page script sends (each element, each widget) from the
script's thread to the server's event loop with its own `loop.call_soon_threadsafe`, and asyncio
wakes the loop for each one (a byte written to its self-pipe). With one Python for every session,
each wake-up is a GIL hand-over: a script run then spent a fifth of its time in those writes
(py-spy, Train page), and while 30 students pressed Start at once the loop thread waited for the
GIL after every wake-up, so a click of another visitor waited seconds for its first answer
(bench/bench_class.py, issue #14).

Here a session's callbacks go into one list and the loop is woken once per batch: the first
callback of a batch schedules a drain; the ones that come before the drain runs join it. Order is
kept (one list per session, drained in order), and each callback still runs on the loop, as before.
`LRCORE_BATCH_EVENTS=0` leaves Streamlit as it is (for the benchmark's side-by-side comparison).
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from streamlit.runtime.app_session import AppSession

log = logging.getLogger(__name__)

ENABLED = os.environ.get("LRCORE_BATCH_EVENTS", "1").strip() != "0"


class _Batch:
    """One session's callbacks waiting for the loop, and whether a drain is already scheduled."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.callbacks: list[Callable[[], None]] = []
        self.scheduled = False


def _drain(batch: _Batch) -> None:
    """On the loop: run every callback queued so far, in order (later ones schedule the next drain)."""
    with batch.lock:
        callbacks, batch.callbacks, batch.scheduled = batch.callbacks, [], False
    for callback in callbacks:
        try:
            callback()
        except Exception:  # as the loop would for a lone callback: log it, run the others
            log.exception("a Streamlit session callback failed")


def _call_soon_on_event_loop(self: AppSession, callback: Callable[[], None]) -> None:
    """AppSession's own method, batched: schedule `callback` on the session's event loop."""
    batch = self.__dict__.get("_lrcore_batch") or self.__dict__.setdefault("_lrcore_batch", _Batch())
    with batch.lock:
        batch.callbacks.append(callback)
        if batch.scheduled:
            return  # the drain already on its way runs it
        batch.scheduled = True
    try:
        self._event_loop.call_soon_threadsafe(_drain, batch)
    except RuntimeError:  # as Streamlit: events after the loop closed (shutdown) are dropped
        if not self._event_loop.is_closed():
            raise
        with batch.lock:
            batch.callbacks.clear()
            batch.scheduled = False


_STREAMLITS_OWN = AppSession._call_soon_on_event_loop


def install() -> bool:
    """Batch every session's callbacks from now on (once per process); False when switched off."""
    if ENABLED:
        AppSession._call_soon_on_event_loop = _call_soon_on_event_loop
    return ENABLED
