"""Control through the store: any server answers for any run.

A run lives in the server process that trains it. Another server on the same store (a second
`streamlit run` behind one address) shows it from the store; its pages' Pause, Resume, Stop and
learning-rate changes become rows of `lrcore_controls`, and the training server's registry takes
them (lrcore.jobs) and applies them to the job as a click on its own page would:

    store.request_control(run_id, "pause", who=owner)      # server 2: a page's click
    store.take_controls([run ids and sweep ids it trains])  # server 1, every ~0.5 s: each row once
    store.remote_control(record, who)                        # server 2: a control for its pages, or None

The pages check who may control a run before they ask (ui.identity), as for a local run; `who`
keeps the asker's owner id with the request.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

import sqlalchemy as sa

from . import store_schema as schema
from .config import LEARNING_RATE_RANGE, ConfigError, TrainConfig, config_problems
from .record import ACTIVE_STATUSES, RunRecord
from .status import Status
from .store_setup import StoreError, check_run_id
from .store_writer import HEARTBEAT_SECONDS

COMMANDS = ("pause", "resume", "stop", "set_learning_rate", "scale_learning_rates")
VALUED = ("set_learning_rate", "scale_learning_rates")  # the commands that carry a number
# A run whose heartbeat is older than this is not offered controls: its server would not take them
# (a writer beats every HEARTBEAT_SECONDS; hosts' clocks are assumed to agree within seconds).
CONTROL_FRESH_SECONDS = 6 * HEARTBEAT_SECONDS
# Rows older than this are deleted when a new one is written: taken long ago, or never taken (the
# run ended first), they only take room.
PRUNE_SECONDS = 86400.0
# Runs written by the command line: nothing there reads control rows.
UNCONTROLLED_SOURCES = ("cli",)


@dataclass(frozen=True)
class ControlRequest:
    """One row of lrcore_controls: `command` (and its `value`) for `run_id` (a run, or a sweep's group id)."""

    request_id: int
    run_id: str
    command: str
    value: float | None
    who: str
    created: float


def check_command(command: str, value: float | None) -> float | None:
    """The request's value, checked as the training side will check it; StoreError says what is wrong."""
    if command not in COMMANDS:
        raise StoreError(f"unknown control command {str(command)[:40]!r}: use one of {', '.join(COMMANDS)}")
    if command not in VALUED:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise StoreError(f"{command} needs a positive number, got {value!r}")
    return float(value)


def check_factor(factor: float) -> None:
    """A learning-rate factor as TrainingControl takes it; ConfigError (the page shows it) otherwise."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 0:
        raise ConfigError({"learning_rate": f"the factor must be a positive number, got {factor!r}"})


class ControlsMixin:
    """`Store.request_control`, `take_controls`, `remote_active` and `remote_control` (the Store takes this mixin)."""

    def request_control(self, run_id: str, command: str, value: float | None = None, who: str = "") -> None:
        """Ask the server training `run_id` (a run id, or a sweep's group id) to apply `command`.
        StoreError says why it could not be asked (a bad command, or the store)."""
        check_run_id(run_id, "run or sweep")
        value = check_command(command, value)
        if not isinstance(who, str) or len(who) > schema.OWNER_LENGTH:
            raise StoreError(f"invalid owner id {str(who)[:80]!r}")
        now = time.time()
        Control = schema.Control
        with self._transaction() as connection:
            connection.execute(sa.delete(Control).where(Control.created < now - PRUNE_SECONDS))
            connection.execute(sa.insert(Control).values(run_id=run_id, command=command, value=value, who=who,
                                                         created=now))

    def take_controls(self, run_ids: Iterable[str]) -> list[ControlRequest]:
        """The requests not yet taken for `run_ids` (runs and sweep ids), oldest first, marked taken.

        A cheap read first (most polls find nothing, and on SQLite a read never waits for a writer),
        then one UPDATE ... WHERE taken IS NULL RETURNING: of two servers taking at once, each row
        goes to one (PostgreSQL re-checks the condition after the other's commit; SQLite has one
        writer at a time)."""
        return self._mark_taken(self._waiting_controls(run_ids))

    def _waiting_controls(self, run_ids: Iterable[str]) -> list[int]:
        """Ids of the requests for `run_ids` not taken yet (what another taker may take meanwhile)."""
        targets = sorted(set(run_ids))
        if not targets:
            return []
        Control = schema.Control
        with self._transaction(write=False) as connection:
            return list(connection.execute(sa.select(Control.id).where(
                Control.run_id.in_(targets), Control.taken.is_(None))).scalars())

    def _mark_taken(self, waiting: list[int]) -> list[ControlRequest]:
        """Take those of `waiting` that nobody took since they were read, oldest first."""
        if not waiting:
            return []
        Control = schema.Control
        with self._transaction() as connection:
            rows = connection.execute(
                sa.update(Control).where(Control.id.in_(waiting), Control.taken.is_(None)).values(taken=time.time())
                .returning(Control.id, Control.run_id, Control.command, Control.value, Control.who,
                           Control.created)).all()
        return sorted((ControlRequest(row.id, row.run_id, row.command, row.value, row.who, row.created)
                       for row in rows), key=lambda request: request.request_id)

    def remote_active(self, run_ids: Sequence[str]) -> bool:
        """Whether one of `run_ids` is active in the store and written by a live server that takes
        control rows (its heartbeat fresh; not the command line)."""
        if not run_ids:
            return False
        Run = schema.Run
        with self._transaction(write=False) as connection:
            rows = connection.execute(sa.select(Run.status, Run.heartbeat, Run.source)
                                      .where(Run.id.in_(list(run_ids)))).all()
        now = time.time()
        return any(row.status in ACTIVE_STATUSES and row.source not in UNCONTROLLED_SOURCES
                   and now - float(row.heartbeat or 0.0) < CONTROL_FRESH_SECONDS for row in rows)

    def remote_control(self, record: RunRecord, who: str) -> "StoredControl | None":
        """A control of run `record` (as read from this store) for `who`'s pages, if another server
        trains it now; None when it is not active there (finished, crashed, the command line's)."""
        if not record.active or not self.remote_active([record.run_id]):
            return None
        return StoredControl(self, record.run_id, who, paused=record.status == Status.PAUSED)

    def remote_job(self, group_id: str, runs: Sequence[RunRecord], who: str) -> "StoredJob | None":
        """The sweep `group_id` (its `runs` as read from this store) as a job the Sweep page controls,
        if another server trains it now; else None."""
        if not any(run.active for run in runs) or not self.remote_active([run.run_id for run in runs]):
            return None
        return StoredJob(self, group_id, runs, who)


class StoredControl:
    """What the pages call on a live run's control, for a run another server trains: each command
    becomes a control row (StoreError when it cannot be written). `paused` is the store's word, so a
    pause shows once the training server has applied it (about a second)."""

    def __init__(self, store: ControlsMixin, run_id: str, who: str, paused: bool = False):
        self.store, self.run_id, self.who = store, run_id, who
        self._paused = paused

    @property
    def paused(self) -> bool:
        return self._paused

    def _request(self, command: str, value: float | None = None) -> None:
        self.store.request_control(self.run_id, command, value, self.who)

    def pause(self) -> None:
        self._request("pause")

    def resume(self) -> None:
        self._request("resume")

    def stop(self) -> None:
        self._request("stop")

    def set_learning_rate(self, learning_rate: float) -> None:
        """Ask for `learning_rate` from the next batch; ConfigError if invalid (the training server's check)."""
        problem = config_problems({**TrainConfig().to_dict(), "learning_rate": learning_rate}).get("learning_rate")
        if problem:
            raise ConfigError({"learning_rate": problem})
        self._request("set_learning_rate", float(learning_rate))

    def scale_learning_rates(self, factor: float) -> None:
        """Ask for every running learning rate × `factor`; ConfigError if it is not a positive number."""
        check_factor(factor)
        self._request("scale_learning_rates", float(factor))


class StoredJob:
    """A sweep another server trains, as the Sweep page controls a TrainingJob: `run_ids`, `control`
    (for the whole sweep), `stop()` and `scale_learning_rates()`."""

    def __init__(self, store: ControlsMixin, group_id: str, runs: Sequence[RunRecord], who: str):
        self.group_id = group_id
        self.run_ids = [run.run_id for run in runs]
        self._rates = [run.learning_rate or run.config.learning_rate for run in runs if run.active]
        paused = any(run.status == Status.PAUSED for run in runs)
        self.control = StoredControl(store, group_id, who, paused=paused)

    def stop(self) -> None:
        self.control.stop()

    def scale_learning_rates(self, factor: float) -> None:
        """As TrainingJob.scale_learning_rates: ConfigError if a running rate would leave the range."""
        check_factor(factor)
        low, high = LEARNING_RATE_RANGE
        outside = [rate * factor for rate in self._rates if not low <= rate * factor <= high]
        if outside:
            raise ConfigError({"learning_rate": f"×{factor:g} would take a learning rate to {outside[0]:g}; "
                                                f"allowed: {low:g} to {high:g}"})
        self.control.scale_learning_rates(factor)


__all__ = ["COMMANDS", "CONTROL_FRESH_SECONDS", "ControlRequest", "ControlsMixin", "PRUNE_SECONDS", "StoredControl",
           "StoredJob", "check_command", "check_factor"]
