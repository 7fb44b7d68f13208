"""How often pages watching something live ask the server for news (one setting for every page).

Each poll of the Train page costs the server ~35 ms of CPU (bench/bench_tabs.py measures it with
real tabs); once a second keeps a watching tab under 5% of a core, and a chart that moves every
second still reads as live. The sidebar's one-line state polls half as often.
`LRCORE_POLL_SECONDS` (0.2 to 10) changes it, e.g. for the benchmark's side-by-side comparison.

A class watching its runs at once shares one budget: every page script of a server runs in one
Python (one GIL), so 60 tabs polling each second left no time for clicks (bench/bench_class.py:
probe clicks of 13 s at N = 60). `live_seconds()` stretches the period so that all the watching
sessions together poll about POLLS_PER_SECOND times a second: 1 s up to 12 watchers, 2.5 s at 30,
5 s at 60 (never more than MAX_SECONDS). Each watching page reports itself with `watching()`.
"""
from __future__ import annotations

import os
import threading
import time
import uuid

import streamlit as st

from lrcore.env_number import env_number

DEFAULT_SECONDS = 1.0


def poll_seconds(text: str | None, default: float = DEFAULT_SECONDS) -> float:
    """The poll period from LRCORE_POLL_SECONDS's text: a number of seconds from 0.2 to 10, else the
    default (with a message on the server's console saying what was wrong)."""
    return env_number("LRCORE_POLL_SECONDS", text, default, 0.2, 10, meaning=f"polling every {default:g} s")


LIVE_SECONDS = poll_seconds(os.environ.get("LRCORE_POLL_SECONDS"))  # a live run or sweep
SIDEBAR_SECONDS = 2 * LIVE_SECONDS  # the sidebar's "Run: training epoch 3 of 10"

POLLS_PER_SECOND = 12.0  # the server's budget for live pages' polls (~25 ms each: ~30% of one core)
MAX_SECONDS = 5.0  # a live chart that moves less often stops reading as live
WATCH_WINDOW = 6.0  # a session counts as watching this long after its last poll


@st.cache_resource
def _watchers() -> tuple[dict[str, float], threading.Lock]:
    """Every watching session of this server process -> when it last polled (one dict for all sessions)."""
    return {}, threading.Lock()


def watching() -> None:
    """This session's page polls a live run or sweep: count it in the server's budget."""
    session = st.session_state.setdefault("_polling_id", uuid.uuid4().hex)
    seen, lock = _watchers()
    now = time.monotonic()
    with lock:
        seen[session] = now
        for other in [key for key, when in seen.items() if now - when > WATCH_WINDOW]:
            del seen[other]


def watchers() -> int:
    """Sessions of this server that polled in the last WATCH_WINDOW seconds."""
    seen, lock = _watchers()
    now = time.monotonic()
    with lock:
        return sum(1 for when in seen.values() if now - when <= WATCH_WINDOW)


def live_seconds() -> float:
    """The poll period for a page watching a live run now: LIVE_SECONDS, longer when many watch."""
    return min(max(LIVE_SECONDS, watchers() / POLLS_PER_SECOND), max(MAX_SECONDS, LIVE_SECONDS))
