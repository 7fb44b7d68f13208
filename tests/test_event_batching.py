"""Script-thread events reach Streamlit's event loop in batches (ui/event_batching.py), in order, each run once."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

from ui import event_batching

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def loop():
    """An event loop running in its own thread (as Streamlit's server loop), its wake-ups counted."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    wakeups = []
    own = loop.call_soon_threadsafe
    loop.call_soon_threadsafe = lambda *args: (wakeups.append(1), own(*args))[1]
    loop.wakeups = wakeups
    yield loop
    own(loop.stop)
    thread.join(5)
    loop.close()


def session(loop) -> types.SimpleNamespace:
    """What the batched method uses of an AppSession: its event loop and an instance dict."""
    return types.SimpleNamespace(_event_loop=loop)


def run_on_loop(loop, function) -> None:
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(5)  # everything queued before has run
    function()


def test_callbacks_from_two_script_threads_run_once_each_in_each_threads_order(loop):
    one, two = session(loop), session(loop)
    seen: list[tuple[str, int]] = []

    def send(name, target):
        for number in range(2000):
            event_batching._call_soon_on_event_loop(target, lambda n=number: seen.append((name, n)))

    threads = [threading.Thread(target=send, args=("a", one)), threading.Thread(target=send, args=("b", two))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run_on_loop(loop, lambda: None)
    for name in "ab":
        assert [n for who, n in seen if who == name] == list(range(2000))


def test_callbacks_queued_while_the_loop_is_busy_take_one_wake_up(loop):
    target, busy, seen = session(loop), threading.Event(), []
    loop.call_soon_threadsafe(busy.wait, 5)  # the loop thread is held, as by another session's work
    loop.wakeups.clear()
    for number in range(100):
        event_batching._call_soon_on_event_loop(target, lambda n=number: seen.append(n))
    assert len(loop.wakeups) == 1  # Streamlit's own method: 100
    busy.set()
    run_on_loop(loop, lambda: None)
    assert seen == list(range(100))
    loop.wakeups.clear()
    event_batching._call_soon_on_event_loop(target, lambda: seen.append("later"))  # the next batch wakes it again
    assert len(loop.wakeups) == 1
    run_on_loop(loop, lambda: None)
    assert seen[-1] == "later"


def test_a_failing_callback_is_logged_and_the_rest_of_its_batch_runs(loop, caplog):
    target, busy, seen = session(loop), threading.Event(), []
    loop.call_soon_threadsafe(busy.wait, 5)
    event_batching._call_soon_on_event_loop(target, lambda: seen.append(1))
    event_batching._call_soon_on_event_loop(target, lambda: 1 / 0)
    event_batching._call_soon_on_event_loop(target, lambda: seen.append(3))
    busy.set()
    run_on_loop(loop, lambda: None)
    assert seen == [1, 3]
    assert "ZeroDivisionError" in caplog.text


def test_events_after_the_loop_closed_are_dropped_as_streamlit_drops_them():
    closed = asyncio.new_event_loop()
    closed.close()
    target = session(closed)
    event_batching._call_soon_on_event_loop(target, lambda: None)  # no "Event loop is closed"
    assert target._lrcore_batch.callbacks == [] and not target._lrcore_batch.scheduled


@pytest.mark.parametrize("setting, batched", [("1", True), ("0", False)])
def test_the_served_dashboard_batches_unless_turned_off(setting, batched):
    probe = ("import sys; sys.path.insert(0, '.'); from ui import serving, event_batching; "
             "from streamlit.runtime.app_session import AppSession; "
             "print(AppSession._call_soon_on_event_loop is event_batching._call_soon_on_event_loop)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "LRCORE_BATCH_EVENTS": setting})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == str(batched)
