"""Keep Streamlit's server event loop from waiting for the GIL behind the page scripts (issue #14).

Every session's websocket, every click and every message a page sends pass through one asyncio
event loop, in the one Python that also runs every page script. While 30 students pressed Start at
once, a click of another visitor waited 1.4-3.9 s before the server answered at all
(bench/bench_class.py); py-spy and a trace of the server's messages showed the loop thread waiting
for the GIL, or for a thread that needed it, in these places, each of which Streamlit (1.67) passes
once per message or per script run:

1. A page script's every message (each element, each widget) was handed to the loop with its own
   `loop.call_soon_threadsafe`, each a byte written to the loop's self-pipe: a wake-up and a GIL
   hand-over per element. Here a session's callbacks go into one list and the loop is woken once
   per batch; the ones that come before the batch runs join it (order kept, each still run on
   the loop).
2. For each message it then queued, the loop thread itself called `call_soon_threadsafe` to wake
   its own sender coroutine: a self-pipe write (a system call that releases the GIL) per message.
   On the loop's thread the sender's event is now set in place.
3. Each script run (full or fragment) starts a thread, and `Thread.start` blocks the loop until the
   new thread has run far enough to say so, which needs the GIL. The script threads are started
   without that wait (the thread registers itself as it begins, as always).
4. Each turn of the loop waits for a system call (epoll) and then for the GIL, which any runnable
   thread may have taken; with 30 page scripts runnable the loop waited its turn behind many of
   them, every turn (and it turns once per message it sends). At most SCRIPT_SLOTS page scripts
   (full runs and fragment runs alike) now run at once; the others wait in line without taking the
   GIL, a click's run (a full run, or a fragment rerun no timer asked for) before the timers' polls,
   each kind in order: with a class's pages polling every second, a click waited behind them. A
   script that waits for something outside the server (Start waiting for its run's first point)
   gives its slot up meanwhile (`slot_given_up`).
5. Every read of a Streamlit setting (`config.get_option`, called for most elements and a dozen
   times per script start on the loop) took one process-wide lock. A script thread that lost the
   GIL while holding it made the loop wait on the lock until that thread got the GIL back: a trace
   of the burst showed the loop receiving clicks but sending nothing for 1.3 s. Reads now go
   without the lock, as Streamlit's own `get_config_options` already does on its fast path
   (settings are written once at start; writes still take the lock).
6. The loop's sender yields after every message it sends and each send is a system call, so the loop
   gives the GIL up at least twice per message. Taking it back, it waits in line with every runnable
   thread (page scripts beginning or ending outside their slots, the threads following the workers'
   runs), each holding it for Python's switch interval, 5 ms. During the burst a trace showed the sender
   at 10 messages a second for two seconds, then 6,000 a second once the threads were done. The
   interval is 0.5 ms here (`LRCORE_SWITCH_INTERVAL_MS`; training runs in the worker processes, which
   keep Python's). bench/bench_class.py at N = 30, 2 cores, three pairs alternating 0.5 / 5 ms (with
   all of the above): the slowest probe click 1.96 / 1.39 / 1.19 s against 0.84 / 2.16 / 2.19 s; the
   first message after a page's rerun request (every student's and the probe's full runs, from a trace
   of the server's messages) p90 0.33 / 0.32 / 0.26 s against 0.58 / 2.26 / 2.09 s; the price, the runs
   end later: done p95 14.1 / 11.9 / 8.7 s against 5.9 / 9.4 / 8.8 s (the target is 60 s).

2. reached no session when it was first written: Streamlit hands each session the wake-up as a method
bound when the server starts, so replacing it on the class changed nothing; the set-up now also gives it
to the session manager and every session (`_sessions_wake_the_sender_in_place`). Before that, the same
pairs at 5 ms had given a first-message p90 of 1.6-3.4 s.

`LRCORE_LOOP_RELIEF=0` leaves Streamlit as it is (for the benchmark's side-by-side comparison);
`LRCORE_SCRIPT_SLOTS` (1 to 64, default 3) sets how many page scripts run at once.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator

from streamlit import config
from streamlit.runtime.app_session import AppSession
from streamlit.runtime.runtime import Runtime
from streamlit.runtime.scriptrunner import script_runner
from streamlit.runtime.scriptrunner.script_runner import ScriptRunner

from lrcore.env_number import env_number

log = logging.getLogger(__name__)

ENABLED = os.environ.get("LRCORE_LOOP_RELIEF", "1").strip() != "0"


# ---------------------------------------------------------------- 1. a session's events in batches

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


# ---------------------------------------------------------------- 2. the sender woken in place

def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:  # no loop runs in this thread
        return False


def _enqueued_some_message(self: Runtime) -> None:
    """Runtime's own method: wake the coroutine that sends the sessions' queued messages."""
    async_objs = self._get_async_objs()
    if _on_loop_thread(async_objs.eventloop):
        async_objs.need_send_data.set()  # on the loop already: no self-pipe write
    else:
        async_objs.eventloop.call_soon_threadsafe(async_objs.need_send_data.set)


# ---------------------------------------------------------------- 3. script threads started without waiting

# Thread.start of Python 3.11 and 3.12 without its last line, `self._started.wait()`; other versions
# start threads as usual.
_CAN_SKIP_WAIT = sys.version_info < (3, 13) and all(
    hasattr(threading, name) for name in ("_limbo", "_active_limbo_lock", "_start_new_thread"))


class ScriptThread(threading.Thread):
    """A thread whose `start()` returns once the thread is launched, not once it has begun to run."""

    def start(self) -> None:
        if not _CAN_SKIP_WAIT:
            super().start()
            return
        if self._started.is_set():
            raise RuntimeError("threads can only be started once")
        with threading._active_limbo_lock:
            threading._limbo[self] = self
        try:
            threading._start_new_thread(self._bootstrap, ())
        except Exception:
            with threading._active_limbo_lock:
                del threading._limbo[self]
            raise


def _start_script_runner(self: ScriptRunner) -> None:
    """ScriptRunner's own `start`, with a ScriptThread."""
    if self._script_thread is not None:
        raise RuntimeError("ScriptRunner was already started")
    self._script_thread = ScriptThread(target=self._run_script_thread, name="ScriptRunner.scriptThread", daemon=True)
    self._script_thread.start()


# ---------------------------------------------------------------- 4. a few page scripts at a time

def script_slots(text: str | None, default: int = 3) -> int:
    """How many page scripts may run at once, from LRCORE_SCRIPT_SLOTS's text (1 to 64), else `default`
    (with a message on the server's console saying what was wrong)."""
    return int(env_number("LRCORE_SCRIPT_SLOTS", text, default, 1, 64, whole=True,
                          meaning=f"{default} page scripts run at once"))


class Slots:
    """`count` slots for page scripts; the waiting ones are served in order, a click's before a poll's.

    A freed slot goes straight to the longest-waiting script that answers a click (a full run, or a
    fragment rerun that is not a timer's), else to the longest-waiting poll: with a class's pages polling
    every second, a click queued behind 30 polls waited seconds for its turn. The waiters sleep on their
    own lock, so a freed slot wakes one thread, not every waiter."""

    def __init__(self, count: int) -> None:
        self._free = count
        self._lock = threading.Lock()
        self._waiting: tuple[collections.deque, collections.deque] = (collections.deque(), collections.deque())

    def acquire(self, blocking: bool = True, urgent: bool = True) -> bool:
        """Take a slot (waiting for one unless not `blocking`); `urgent`: a click's, served first."""
        with self._lock:
            if self._free:  # a free slot means nobody waits: release hands slots straight to waiters
                self._free -= 1
                return True
            if not blocking:
                return False
            gate = threading.Lock()
            gate.acquire()
            self._waiting[0 if urgent else 1].append(gate)
        gate.acquire()  # released by the release() that hands this thread its slot
        return True

    def release(self) -> None:
        """Give the slot to the next waiter (clicks first), or free it."""
        with self._lock:
            for queue in self._waiting:
                if queue:
                    queue.popleft().release()
                    return
            self._free += 1

    def waiting(self) -> tuple[int, int]:
        """(clicks, polls) waiting for a slot now."""
        with self._lock:
            return len(self._waiting[0]), len(self._waiting[1])


SCRIPT_SLOTS = script_slots(os.environ.get("LRCORE_SCRIPT_SLOTS"))
_slots = Slots(SCRIPT_SLOTS)
_holding = threading.local()  # .slot: this thread runs a page script in a slot now
_streamlits_exec = script_runner.exec_func_with_error_handling


def answers_a_click(func: Callable[[], object], ctx: object) -> bool:
    """Whether Streamlit's run answers a user (a full run, or a fragment's rerun that no timer asked for).
    The run's request is among the defaults of the function Streamlit executes (its `rerun_data`)."""
    request = next((value for value in getattr(func, "__defaults__", None) or () if hasattr(value, "is_auto_rerun")),
                   None)
    if request is not None:
        return not request.is_auto_rerun
    return not getattr(ctx, "fragment_ids_this_run", None)  # another Streamlit: full runs count as clicks


def _exec_in_a_slot(func: Callable[[], object], ctx: object) -> tuple:
    """Streamlit's exec_func_with_error_handling (a full or fragment run, callbacks included), in a slot."""
    if getattr(_holding, "slot", False):  # never two slots for one thread
        return _streamlits_exec(func, ctx)
    _slots.acquire(urgent=answers_a_click(func, ctx))
    _holding.slot = True
    try:
        return _streamlits_exec(func, ctx)
    finally:
        _holding.slot = False
        _slots.release()


@contextlib.contextmanager
def slot_given_up() -> Iterator[None]:
    """Within a page script: let another script run while this one waits (a sleep, a remote answer)."""
    if not getattr(_holding, "slot", False):  # not in a slot (relief off, or not a page script)
        yield
        return
    _holding.slot = False
    _slots.release()
    try:
        yield
    finally:
        _slots.acquire(urgent=True)  # its click is still being answered
        _holding.slot = True


# ---------------------------------------------------------------- 5. settings read without a lock

def get_option(key: str) -> object:
    """streamlit.config.get_option without its lock (the same lookup)."""
    config_options = config.get_config_options()
    if key not in config_options:
        raise RuntimeError(f'Config key "{key}" not defined.')
    return config_options[key].value


def get_options_for_section(section: str) -> dict[str, object]:
    """streamlit.config.get_options_for_section without its lock (the same lookup)."""
    return {option.name: option.value for option in config.get_config_options().values()
            if option.section == section}


# ---------------------------------------------------------------- 6. a shorter GIL switch interval

def switch_interval_ms(text: str | None, default: float = 0.5) -> float:
    """The GIL switch interval in milliseconds, from LRCORE_SWITCH_INTERVAL_MS's text (0.1 to 10; Python's
    own is 5), else `default` (with a message on the server's console saying what was wrong)."""
    return env_number("LRCORE_SWITCH_INTERVAL_MS", text, default, 0.1, 10,
                      meaning=f"the GIL is handed over every {default:g} ms")


SWITCH_INTERVAL_MS = switch_interval_ms(os.environ.get("LRCORE_SWITCH_INTERVAL_MS"))


# (owner, attribute, ours): each replaces a Streamlit internal of 1.67; one another version lacks is left alone.
_PATCHES = ((AppSession, "_call_soon_on_event_loop", _call_soon_on_event_loop),
            (Runtime, "_enqueued_some_message", _enqueued_some_message),
            (ScriptRunner, "start", _start_script_runner),
            (script_runner, "exec_func_with_error_handling", _exec_in_a_slot),
            (config, "get_option", get_option),
            (config, "get_options_for_section", get_options_for_section))
# What the replacements use of Streamlit besides the replaced names themselves.
_NEEDED = ((Runtime, "_get_async_objs"), (ScriptRunner, "_run_script_thread"), (config, "get_config_options"))


def install() -> list[str]:
    """Apply them from now on (once per process); returns the names replaced (none when switched off)."""
    if not ENABLED:
        return []
    missing = [name for owner, name in _NEEDED if not hasattr(owner, name)]
    replaced = []
    for owner, name, ours in _PATCHES:
        if missing or not callable(getattr(owner, name, None)):
            print(f"lrcore: this Streamlit has no {getattr(owner, '__name__', owner)}.{name} as 1.67 has "
                  f"({', '.join(missing) or 'changed'}); left as it is", flush=True)
            continue
        if not _streamlits_own(getattr(owner, name)):
            # Replaced by someone else for now: AppTest swaps config.get_option for each of its runs
            # (to say it is testing); replacing it would undo theirs, and their restore would undo ours.
            print(f"lrcore: {getattr(owner, '__name__', owner)}.{name} is not Streamlit's own just now; "
                  "left as it is", flush=True)
            continue
        setattr(owner, name, ours)
        replaced.append(name)
    if "_enqueued_some_message" in replaced and not _sessions_wake_the_sender_in_place():
        replaced.remove("_enqueued_some_message")
    sys.setswitchinterval(SWITCH_INTERVAL_MS / 1000)
    replaced.append("switchinterval")
    return replaced


def _streamlits_own(current: object) -> bool:
    """Whether `current` is Streamlit's own code (not put there by AppTest, a test or another library)."""
    module = getattr(current, "__module__", None) or ""
    return module.partition(".")[0] == "streamlit" and not module.startswith("streamlit.testing")


def _sessions_wake_the_sender_in_place() -> bool:
    """Point the sessions at 2.'s wake-up. Streamlit gives each session the Runtime's method as bound when
    the server started (through its session manager), so replacing it on the class alone reaches no
    session: the manager (sessions to come) and every session it has are given it again."""
    if not Runtime.exists():
        return False
    runtime = Runtime.instance()
    manager = getattr(runtime, "_session_mgr", None)
    if not hasattr(manager, "_message_enqueued_callback"):
        print("lrcore: this Streamlit's session manager has no _message_enqueued_callback as 1.67 has; the "
              "sender is woken as Streamlit does", flush=True)
        return False
    wake = runtime._enqueued_some_message  # bound now: ours
    manager._message_enqueued_callback = wake
    for info in manager.list_sessions():
        if hasattr(info.session, "_message_enqueued_callback"):
            info.session._message_enqueued_callback = wake
    return True
