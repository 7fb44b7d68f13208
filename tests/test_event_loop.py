"""Streamlit's event loop waits less for the GIL (ui/event_loop.py): script-thread events arrive in batches, in
order, each run once; the sender is woken in place on the loop; script threads start without a hand-over."""
from __future__ import annotations

import asyncio
import concurrent.futures
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
def test_the_served_dashboard_applies_them_unless_turned_off(setting, batched):
    probe = ("import sys; sys.path.insert(0, '.'); from ui import serving, event_loop as ours; "
             "from streamlit.runtime.app_session import AppSession; from streamlit.runtime.runtime import Runtime; "
             "from streamlit.runtime.scriptrunner.script_runner import ScriptRunner; "
             "print([AppSession._call_soon_on_event_loop is ours._call_soon_on_event_loop, "
             "Runtime._enqueued_some_message is ours._enqueued_some_message, ScriptRunner.start is ours._start_script_runner, "
             "sys.modules['streamlit.runtime.scriptrunner.script_runner'].exec_func_with_error_handling is ours._exec_in_a_slot, "
             "sys.modules['streamlit.config'].get_option is ours.get_option, "
             "sys.modules['streamlit.config'].get_options_for_section is ours.get_options_for_section, "
             "sys.getswitchinterval() == 0.0005])")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "LRCORE_LOOP_RELIEF": setting})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == str([batched] * 7)


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
    monkeypatch.setattr(event_loop, "_slots", event_loop.Slots(2))
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
    monkeypatch.setattr(event_loop, "_slots", event_loop.Slots(1))
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


@pytest.mark.parametrize("text, milliseconds", [(None, 0.5), ("", 0.5), ("1", 1.0), ("0.1", 0.1), ("10", 10.0),
                                                ("0", 0.5), ("0.05", 0.5), ("20", 0.5), ("nan", 0.5), ("fast", 0.5)])
def test_the_switch_interval_setting(text, milliseconds, capsys):
    assert event_loop.switch_interval_ms(text) == milliseconds
    if text and text.strip() and milliseconds == 0.5:
        assert f"LRCORE_SWITCH_INTERVAL_MS={text!r} is not a number from 0.1 to 10" in capsys.readouterr().out


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
    before = sys.getswitchinterval()
    try:
        assert event_loop.install() == ["switchinterval"]  # Python's own, there in every version
    finally:
        sys.setswitchinterval(before)
    assert not hasattr(Elsewhere, "start")
    assert "has no Elsewhere.start as 1.67 has" in capsys.readouterr().out


def test_install_leaves_alone_what_someone_else_has_replaced_for_now(monkeypatch, capsys):
    from streamlit import config

    def tests_own(key: str) -> object:  # as AppTest's stand-in for one of its runs
        return "tests'"

    monkeypatch.setattr(event_loop, "ENABLED", True)
    monkeypatch.setattr(event_loop, "_PATCHES", ((config, "get_option", event_loop.get_option),))
    monkeypatch.setattr(config, "get_option", tests_own)
    before = sys.getswitchinterval()
    try:
        assert event_loop.install() == ["switchinterval"]
    finally:
        sys.setswitchinterval(before)
    assert config.get_option is tests_own
    assert "get_option is not Streamlit's own just now; left as it is" in capsys.readouterr().out


APPTEST_FIRST_RUN = '''
import sys
sys.path.insert(0, {root!r})
from streamlit.testing.v1 import AppTest
at = AppTest.from_string("""
import streamlit as st
from ui import serving  # the set-up, first imported inside AppTest's run as the frame does
st.select_slider("Rate", ["0.1", "1"], key="rate")
""", default_timeout=60).run()
assert not at.exception, at.exception
print("format_func:", at.select_slider(key="rate").format_func("1"))
'''


def test_an_apptests_first_run_in_a_fresh_process_still_knows_it_is_testing():
    """AppTest replaces config.get_option during each run; the set-up, imported in the first run, used to
    replace it again, so that run's widgets kept nothing for AppTest (a KeyError reading a select slider)."""
    result = subprocess.run([sys.executable, "-c", APPTEST_FIRST_RUN.format(root=str(ROOT))], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "format_func: 1"


WAKE_PROBE = '''
import sys
sys.path.insert(0, {root!r})
import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx
from ui import serving, event_loop  # the set-up, as the frame imports it
session = Runtime.instance()._session_mgr.get_session_info(get_script_run_ctx().session_id).session
wake = getattr(session._message_enqueued_callback, "__func__", None)
st.markdown(f"wake-up ours: {{wake is event_loop._enqueued_some_message}}; "
            f"switch interval {{sys.getswitchinterval() * 1000:g}} ms")
'''


def test_a_served_apps_sessions_use_the_in_place_wake_up_and_the_short_switch_interval(tmp_path):
    """On a real `streamlit run` server: the session whose run installed the set-up and a later one both
    wake the sender in place (Streamlit gave them its wake-up bound at start), and the interval is 0.5 ms."""
    sys.path.insert(0, str(ROOT / "bench"))
    from streamlit_client import StreamlitClient
    from tests.browser.conftest import start_streamlit, stop

    script = tmp_path / "probe.py"
    script.write_text(WAKE_PROBE.format(root=str(ROOT)))

    async def texts_of_two_sessions(url: str) -> list[str]:
        seen = []
        for _ in range(2):  # the first one's run installs the set-up; the second comes after
            client = StreamlitClient(url)
            await client.connect()
            seen.append(await client.wait_for(
                lambda: next((text for text in client.texts("markdown") if "wake-up" in text), None),
                timeout=60, what="the probe's line"))
            await client.close()
        return seen

    server, url = start_streamlit(tmp_path, tmp_path / "server.log", script=str(script),
                                  extra_env={"LRCORE_WORKERS": "0"})
    try:
        # in a thread of its own: a browser test's sync Playwright may have left this thread's loop running
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            texts = pool.submit(asyncio.run, texts_of_two_sessions(url)).result(180)
    finally:
        stop(server)
    assert texts == ["wake-up ours: True; switch interval 0.5 ms"] * 2, texts


def test_a_freed_slot_goes_to_the_waiting_clicks_first_then_to_the_polls_in_order():
    slots, order, threads = event_loop.Slots(1), [], []
    assert slots.acquire()  # a running script holds the only slot

    def wait(name: str, urgent: bool) -> None:
        slots.acquire(urgent=urgent)
        order.append(name)
        slots.release()

    for name, urgent in [("poll 1", False), ("poll 2", False), ("click 1", True), ("click 2", True)]:
        threads.append(threading.Thread(target=wait, args=(name, urgent)))
        threads[-1].start()
        deadline = time.monotonic() + 5
        while sum(slots.waiting()) < len(threads) and time.monotonic() < deadline:  # queued in this order
            time.sleep(0.001)
    assert slots.waiting() == (2, 2)
    slots.release()
    for thread in threads:
        thread.join(5)
    assert order == ["click 1", "click 2", "poll 1", "poll 2"]  # a plain semaphore: any order
    assert slots.acquire(blocking=False) and not slots.acquire(blocking=False)  # the one slot is free again


def test_a_timers_rerun_is_a_poll_and_every_other_run_answers_a_click(monkeypatch):
    from streamlit.runtime.scriptrunner import script_runner
    from streamlit.runtime.scriptrunner_utils.script_requests import RerunData
    from streamlit.testing.v1 import AppTest

    def code(rerun_data=RerunData(is_auto_rerun=True)):  # the shape of Streamlit's code_to_exec
        pass

    assert not event_loop.answers_a_click(code, None)
    assert event_loop.answers_a_click(lambda rerun_data=RerunData(): None, None)
    assert not event_loop.answers_a_click(lambda: None, types.SimpleNamespace(fragment_ids_this_run=["f"]))
    assert event_loop.answers_a_click(lambda: None, types.SimpleNamespace(fragment_ids_this_run=[]))
    seen = []  # Streamlit's own runner: its function carries the run's request
    own = script_runner.exec_func_with_error_handling

    def recording(func, ctx):
        seen.append((any(isinstance(value, RerunData) for value in func.__defaults__ or ()),
                     event_loop.answers_a_click(func, ctx)))
        return own(func, ctx)

    monkeypatch.setattr(script_runner, "exec_func_with_error_handling", recording)
    AppTest.from_string("import streamlit as st\nst.write('hello')").run(timeout=30)
    assert seen == [(True, True)]
