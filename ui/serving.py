"""Process-wide set-up of the served dashboard, done once per server process (this module's first import).

`gc.freeze()` after the imports: a full collection walks every tracked object, and torch, plotly
and Streamlit bring ~420,000 of them (a collection took 225 ms, issue #13). Frozen objects are left
out of every later collection, Python's own occasional full ones and, where turned on, Streamlit's
after every rerun (`runner.postScriptGC`, off in .streamlit/config.toml); the pages' own garbage is
still collected. `LRCORE_GC_FREEZE=0` turns it off (for bench/bench_dashboard.py's comparison).
"""
from __future__ import annotations

import gc
import os

FROZEN = os.environ.get("LRCORE_GC_FREEZE", "1").strip() != "0"
if FROZEN:
    gc.collect()  # what is garbage now must not be frozen for good
    gc.freeze()

# Streamlit's event loop no longer waits for the GIL per message and per script run (ui/event_loop.py:
# a class's burst of clicks).
from ui import event_loop  # noqa: E402

event_loop.install()
