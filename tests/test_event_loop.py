"""Streamlit's event loop waits less for the GIL (ui/event_loop.py): script-thread events arrive in batches, in
order, each run once; the sender is woken in place on the loop; script threads start without a hand-over."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from ui import event_loop

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
            event_loop._call_soon_on_event_loop(target, lambda n=number: seen.append((name, n)))

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
        event_loop._call_soon_on_event_loop(target, lambda n=number: seen.append(n))
    assert len(loop.wakeups) == 1  # Streamlit's own method: 100
    busy.set()
    run_on_loop(loop, lambda: None)
    assert seen == list(range(100))
    loop.wakeups.clear()
    event_loop._call_soon_on_event_loop(target, lambda: seen.append("later"))  # the next batch wakes it again
    assert len(loop.wakeups) == 1
    run_on_loop(loop, lambda: None)
    assert seen[-1] == "later"


def test_a_failing_callback_is_logged_and_the_rest_of_its_batch_runs(loop, caplog):
    target, busy, seen = session(loop), threading.Event(), []
    loop.call_soon_threadsafe(busy.wait, 5)
    event_loop._call_soon_on_event_loop(target, lambda: seen.append(1))
    event_loop._call_soon_on_event_loop(target, lambda: 1 / 0)
    event_loop._call_soon_on_event_loop(target, lambda: seen.append(3))
    busy.set()
    run_on_loop(loop, lambda: None)
    assert seen == [1, 3]
    assert "ZeroDivisionError" in caplog.text


def test_events_after_the_loop_closed_are_dropped_as_streamlit_drops_them():
    closed = asyncio.new_event_loop()
    closed.close()
    target = session(closed)
    event_loop._call_soon_on_event_loop(target, lambda: None)  # no "Event loop is closed"
    assert target._lrcore_batch.callbacks == [] and not target._lrcore_batch.scheduled


@pytest.mark.parametrize("setting, batched", [("1", True), ("0", False)])
def test_the_served_dashboard_applies_all_five_unless_turned_off(setting, batched):
    probe = ("import sys; sys.path.insert(0, '.'); from ui import serving, event_loop as ours; "
             "from streamlit.runtime.app_session import AppSession; from streamlit.runtime.runtime import Runtime; "
             "from streamlit.runtime.scriptrunner.script_runner import ScriptRunner; "
             "print([AppSession._call_soon_on_event_loop is ours._call_soon_on_event_loop, "
             "Runtime._enqueued_some_message is ours._enqueued_some_message, ScriptRunner.start is ours._start_script_runner, "
             "sys.modules['streamlit.runtime.scriptrunner.script_runner'].exec_func_with_error_handling is ours._exec_in_a_slot, "
             "sys.modules['streamlit.config'].get_option is ours.get_option, "
             "sys.modules['streamlit.config'].get_options_for_section is ours.get_options_for_section])")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "LRCORE_LOOP_RELIEF": setting})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == str([batched] * 6)


def test_the_sender_is_woken_in_place_on_the_loop_and_through_the_loop_from_elsewhere(loop):
    need_send_data = asyncio.run_coroutine_threadsafe(_event(), loop).result(5)
    runtime = types.SimpleNamespace(_get_async_objs=lambda: types.SimpleNamespace(eventloop=loop,
                                                                                  need_send_data=need_send_data))
    loop.wakeups.clear()
    done = asyncio.run_coroutine_threadsafe(_call(event_loop._enqueued_some_message, runtime), loop)
    done.result(5)
    woken_by_the_call = len(loop.wakeups) - 1  # run_coroutine_threadsafe's own wake-up
    assert need_send_data.is_set() and woken_by_the_call == 0  # Streamlit's own: one self-pipe write
    loop.call_soon_threadsafe(need_send_data.clear)
    run_on_loop(loop, lambda: None)
    loop.wakeups.clear()
    event_loop._enqueued_some_message(runtime)  # from a script thread: through the loop, as before
    assert len(loop.wakeups) == 1
    run_on_loop(loop, lambda: None)
    assert need_send_data.is_set()


async def _event() -> asyncio.Event:
    return asyncio.Event()


async def _call(function, *args):
    function(*args)


def test_a_script_thread_starts_without_waiting_to_run_and_then_runs_as_any_thread():
    ran, inside = threading.Event(), []
    thread = event_loop.ScriptThread(target=lambda: (inside.append(threading.current_thread()), ran.set()), daemon=True)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(30)  # this thread keeps the GIL until it blocks: the new one cannot begin before that
    try:
        thread.start()
        begun = thread._started.is_set()  # Thread.start would have waited until True
    finally:
        sys.setswitchinterval(interval)
    assert begun is False
    assert ran.wait(5)
    thread.join(5)
    assert inside == [thread] and not thread.is_alive()
    with pytest.raises(RuntimeError, match="only be started once"):
        thread.start()


@pytest.fixture
def slots(monkeypatch):
    """Two slots, and Streamlit's exec replaced by a plain call (what a page script does is the function's)."""
    monkeypatch.setattr(event_loop, "_slots", threading.Semaphore(2))
    monkeypatch.setattr(event_loop, "_streamlits_exec", lambda func, ctx: func())
    return 2


def test_at_most_the_slots_run_page_scripts_at_once_and_every_one_runs(slots):
    lock, running, most, finished = threading.Lock(), [0], [0], []

    def script(number):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        finished.append(number)

    threads = [threading.Thread(target=event_loop._exec_in_a_slot, args=(lambda n=n: script(n), None)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(finished) == list(range(8)) and most[0] == slots


def test_a_script_that_gives_its_slot_up_while_waiting_lets_the_others_run(monkeypatch):
    monkeypatch.setattr(event_loop, "_slots", threading.Semaphore(1))
    monkeypatch.setattr(event_loop, "_streamlits_exec", lambda func, ctx: func())
    other_ran, outcome = threading.Event(), []

    def waiting_script():  # as Start waiting for its run's first point
        with event_loop.slot_given_up():
            outcome.append(other_ran.wait(5))
        outcome.append(getattr(event_loop._holding, "slot", False))  # back in its slot

    first = threading.Thread(target=event_loop._exec_in_a_slot, args=(waiting_script, None))
    first.start()
    time.sleep(0.05)
    second = threading.Thread(target=event_loop._exec_in_a_slot, args=(other_ran.set, None))
    second.start()
    first.join(10)
    second.join(10)
    assert outcome == [True, True]  # in one slot without giving it up, the wait would time out


def test_giving_a_slot_up_outside_a_page_script_changes_nothing(slots):
    with event_loop.slot_given_up():
        pass
    assert event_loop._slots.acquire(blocking=False) and event_loop._slots.acquire(blocking=False)


@pytest.mark.parametrize("text, slots", [(None, 3), ("", 3), ("4", 4), ("1", 1), ("0", 3), ("65", 3), ("two", 3)])
def test_the_slot_count_setting(text, slots, capsys):
    assert event_loop.script_slots(text) == slots
    if text and slots == 3:
        assert f"LRCORE_SCRIPT_SLOTS={text!r} is not a whole number from 1 to 64" in capsys.readouterr().out


def test_settings_read_without_the_lock_give_streamlits_values_while_another_thread_holds_it():
    from streamlit import config

    expected = {key: config.get_option(key) for key in ("runner.postScriptGC", "client.toolbarMode", "server.maxUploadSize")}
    section = config.get_options_for_section("client")
    held, done, got = threading.Event(), threading.Event(), {}

    def holder():  # a script thread that holds the lock and has lost the GIL
        with config._config_lock:
            held.set()
            done.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    reader = threading.Thread(target=lambda: got.update(
        {key: event_loop.get_option(key) for key in expected}, section=event_loop.get_options_for_section("client")))
    reader.start()
    reader.join(2)
    finished = not reader.is_alive()  # Streamlit's own get_option waits here until the holder lets go
    done.set()
    thread.join(5)
    reader.join(5)
    assert finished
    assert {key: got[key] for key in expected} == expected and got["section"] == section
    with pytest.raises(RuntimeError, match='Config key "no.such" not defined'):
        event_loop.get_option("no.such")


def test_install_leaves_alone_what_another_streamlit_lacks(monkeypatch, capsys):
    class Elsewhere:  # a Streamlit version without one of the replaced methods
        pass

    monkeypatch.setattr(event_loop, "ENABLED", True)
    monkeypatch.setattr(event_loop, "_PATCHES", ((Elsewhere, "start", event_loop._start_script_runner),))
    assert event_loop.install() == []
    assert not hasattr(Elsewhere, "start")
    assert "has no Elsewhere.start as 1.67 has" in capsys.readouterr().out
