"""How often pages watching something live ask the server for news (one setting for every page).

Each poll of the Train page costs the server ~35 ms of CPU (bench/bench_tabs.py measures it with
real tabs); once a second keeps a watching tab under 5% of a core, and a chart that moves every
second still reads as live. The sidebar's one-line state polls half as often.
`LRCORE_POLL_SECONDS` (0.2 to 10) changes it, e.g. for the benchmark's side-by-side comparison.
"""
from __future__ import annotations

import os

DEFAULT_SECONDS = 1.0


def poll_seconds(text: str | None, default: float = DEFAULT_SECONDS) -> float:
    """The poll period from LRCORE_POLL_SECONDS's text: a number of seconds from 0.2 to 10, else the
    default (with a message on the server's console saying what was wrong)."""
    if text is None or not text.strip():
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0.2 <= seconds <= 10:  # also false for NaN
        print(f"lrcore: LRCORE_POLL_SECONDS={text!r} is not a number of seconds from 0.2 to 10; "
              f"polling every {default:g} s", flush=True)
        return default
    return seconds


LIVE_SECONDS = poll_seconds(os.environ.get("LRCORE_POLL_SECONDS"))  # a live run or sweep
SIDEBAR_SECONDS = 2 * LIVE_SECONDS  # the sidebar's "Run: training epoch 3 of 10"
