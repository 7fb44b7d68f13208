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
   (full runs and fragment runs alike) now run at once; the others wait in line, in order, without
   taking the GIL. A script that waits for something outside the server (Start waiting for its
   run's first point) gives its slot up meanwhile (`slot_given_up`).
5. Every read of a Streamlit setting (`config.get_option`, called for most elements and a dozen
   times per script start on the loop) took one process-wide lock. A script thread that lost the
   GIL while holding it made the loop wait on the lock until that thread got the GIL back: a trace
   of the burst showed the loop receiving clicks but sending nothing for 1.3 s. Reads now go
   without the lock, as Streamlit's own `get_config_options` already does on its fast path
   (settings are written once at start; writes still take the lock).

Left as Streamlit has it: the loop's sender yields after every message it sends, and each send is a
system call; while scripts run, each costs the loop a wait for the GIL, so a page's last message
can still arrive a second or more after its first during such a burst.

`LRCORE_LOOP_RELIEF=0` leaves Streamlit as it is (for the benchmark's side-by-side comparison);
`LRCORE_SCRIPT_SLOTS` (1 to 64, default 3) sets how many page scripts run at once.
"""
from __future__ import annotations

import asyncio
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
    if text is None or not text.strip():
        return default
    try:
        slots = int(text)
    except ValueError:
        slots = 0
    if not 1 <= slots <= 64:
        print(f"lrcore: LRCORE_SCRIPT_SLOTS={text!r} is not a whole number from 1 to 64; {default} page scripts "
              "run at once", flush=True)
        return default
    return slots


SCRIPT_SLOTS = script_slots(os.environ.get("LRCORE_SCRIPT_SLOTS"))
_slots = threading.Semaphore(SCRIPT_SLOTS)
_holding = threading.local()  # .slot: this thread runs a page script in a slot now
_streamlits_exec = script_runner.exec_func_with_error_handling


def _exec_in_a_slot(func: Callable[[], object], ctx: object) -> tuple:
    """Streamlit's exec_func_with_error_handling (a full or fragment run, callbacks included), in a slot."""
    if getattr(_holding, "slot", False):  # never two slots for one thread
        return _streamlits_exec(func, ctx)
    with _slots:
        _holding.slot = True
        try:
            return _streamlits_exec(func, ctx)
        finally:
            _holding.slot = False


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
        _slots.acquire()
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
        setattr(owner, name, ours)
        replaced.append(name)
    return replaced
