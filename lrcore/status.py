"""Every status a run, a sweep, a sweep member or a range test can have, as one `str` Enum.

Members are strings: `Status.DONE == "done"`, they hash alike (dict keys keep working), format as
the plain value and are written to JSON as it, so stored meta.json files, the pages' literals and
the CLI's output are unchanged. Statuses read back from disk stay plain strings and compare equal.
"""
from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    QUEUED = "queued"  # every worker process is busy: waiting for one (`RunRecord.queued_ahead` says how long)
    STARTING = "starting"  # a run's worker before the data is loaded
    WAITING = "waiting"  # a sweep member whose group has not started yet
    TRAINING = "training"
    PAUSED = "paused"
    RUNNING = "running"  # a stored run or sweep whose writer is at work; a range test in progress
    DONE = "done"
    STOPPED = "stopped"
    DIVERGED = "diverged"
    FAILED = "failed"
    CRASHED = "crashed"  # its process ended without finishing (read back from disk)
    IMPORTED = "imported"  # a run store entry made from an uploaded checkpoint

    # "done", not "Status.DONE", in f-strings and str() (Python 3.11 changed the mixin default)
    __str__ = str.__str__
    __format__ = str.__format__
