"""One number from an environment variable (the server's tuning knobs), checked against what it allows.

A bad value never stops the server: it says on the console what was wrong and what is allowed, and the
default is used.
"""
from __future__ import annotations

import math


def env_number(name: str, text: str | None, default: float, low: float, high: float | None = None,
               whole: bool = False, meaning: str = "") -> float:
    """`text` (the variable's value, None when unset) as a number from `low` to `high` (no upper bound
    when None; a whole number when `whole`), else `default` with a message naming `name`.
    `meaning` ends the message, e.g. "polling every 1 s"."""
    if text is None or not text.strip():
        return default
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        value = math.nan
    if not (low <= value and (high is None or value <= high)):  # also false for NaN
        allowed = f"from {low:g} to {high:g}" if high is not None else f"of {low:g} or more"
        print(f"lrcore: {name}={text!r} is not a {'whole ' if whole else ''}number {allowed}; "
              f"{meaning or f'using {default:g}'}", flush=True)
        return default
    return value
