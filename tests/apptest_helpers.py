"""Shared helpers for the AppTest page tests."""
from __future__ import annotations

import threading
import time
from typing import Callable

from streamlit.testing.v1 import AppTest

APP = "../dashboard.py"  # AppTest resolves this relative to this file


def open_page(page: str, query: dict | None = None, session: dict | None = None) -> AppTest:
    """Run the dashboard on `page` with URL query parameters and session state; fail on an exception."""
    at = AppTest.from_file(APP, default_timeout=60)
    for name, value in (query or {}).items():
        at.query_params[name] = value
    for name, value in (session or {}).items():
        at.session_state[name] = value
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    return " | ".join(str(e.value) for e in elements)


def wait_for_run(worker, condition: Callable, what: str, timeout: float = 60):
    """Wait until `condition(worker.snapshot())` holds and return that snapshot.

    Woken by the worker's own events (a listener sets a threading.Event), not by sleeping and
    polling; fails saying `what` it waited for when the run ends first or `timeout` passes."""
    changed = threading.Event()
    # Appended, never removed: removing while the worker thread iterates its listeners could skip one.
    getattr(worker, "job", worker).add_listener(lambda *_: changed.set())  # a LiveRun's job, or a job
    deadline = time.monotonic() + timeout
    while True:
        changed.clear()  # before the snapshot: an event after it sets it again
        record = worker.snapshot()
        if condition(record):
            return record
        if not record.active:
            raise AssertionError(f"the run ended ({record.status}: {record.message!r}) before {what}")
        if not changed.wait(max(deadline - time.monotonic(), 0)):
            raise AssertionError(f"{what}: still not so after {timeout:g} s (run status {record.status})")


def start_run(config, name: str | None = None, recorded: bool = True):
    """Train `config` as the pages do (a job in this process's registry), recorded by the store unless
    `recorded` is False; returns its `LiveRun` (snapshot, control, join)."""
    from lrcore.jobs import LiveRun, TrainingJob
    from ui import common

    if recorded:
        job = common.start_job([config], names=[name] if name else None)
    else:
        job = common.get_jobs().add(TrainingJob([config], common.get_dataset(config.dataset),
                                                names=[name] if name else None)).start()
    return LiveRun(job, job.run_ids[0])
