"""Long work in background threads, with state that pages poll: one abstraction, one registry.

`Job` is a daemon thread plus a lock-guarded state with `snapshot()`, `stop()` and `alive`;
`TrainingJob` (here), `lrcore.lr_finder.RangeTestJob` and `lrcore.download.DownloadJob` are its
kinds. None makes Streamlit calls: pages read snapshots from an `st.fragment(run_every=...)`, so
clicks and page switches rerun page scripts without touching the thread. `JobRegistry` keeps the
jobs of the whole server process, so a job outlives the browser tab that started it.

A training job trains K runs: a single run is K = 1, a sweep is its K runs plus a group id. Runs
that can share minibatches (same batch size and data settings) train together in one pass of
`lrcore.training.train_group`; such groups run one after another, or side by side on workers the pool
has idle (`TrainingJob._train_groups`: a sweep borrows them only while no other job waits).

Where the registry has a `lrcore.workers.WorkerPool` (the dashboard's, unless LRCORE_WORKERS=0),
training and range tests run in its worker processes: the job's thread then waits for a free
worker (its runs "queued") and reads the worker's events back; what pages and listeners see is
the same either way.

A job may be steered through the run store too (`control_store`): another server's pages write
control rows for its runs (lrcore/store_controls.py), and its registry takes them, every
CONTROL_POLL_SECONDS while it has live jobs, and applies them as a click on a page here would.
"""
from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Generic, Iterable, Sequence, TypeVar

from .config import LEARNING_RATE_RANGE, ConfigError, TrainConfig
from .data import Dataset, DatasetUnavailable
from .naming import default_run_name, new_id
from .record import QueueState, RunRecord, crash, fold
from .status import Status
from .training import TrainingControl, group_key, train_group
from .workers import PoolUnavailable, RemoteControl, TaskFailed, TrainTask, WorkerDied, WorkerPool

if TYPE_CHECKING:
    from .store_controls import ControlRequest, ControlsMixin

log = logging.getLogger(__name__)
State = TypeVar("State")
CONTROL_POLL_SECONDS = 0.5  # how often a registry with live jobs reads their control rows


class Job(Generic[State]):
    """A daemon thread doing `work()`, and its state: `snapshot()` hands out copies."""

    kind = "job"

    def __init__(self, job_id: str, state: State):
        self.job_id = job_id
        self._state = state
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{self.kind}-{job_id}", daemon=True)

    def start(self) -> "Job":
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def snapshot(self) -> State:
        with self._lock:
            return self._state.copy()

    def update(self, change: Callable[[State], None]) -> None:
        with self._lock:
            change(self._state)

    def work(self) -> None:
        raise NotImplementedError

    def failed(self, message: str) -> None:
        """The work raised: record why (the page shows it; never a silent dead thread)."""
        raise NotImplementedError

    def _run(self) -> None:
        try:
            self.work()
        except Exception as error:
            log.exception("%s %s failed", self.kind, self.job_id)
            self.failed(f"stopped by an internal error: {type(error).__name__}: {error}")


BORROW_EVERY = 1.0  # seconds between a sweep's looks for idle workers while one of its groups trains

# listener(job, record, event): called in the job's thread after `fold(record, event)`, with the job's
# own record (read it there, do not keep it). event None: the job ended the run without a Finished
# event (record.status says how: crashed, or stopped before its group started).
Listener = Callable[["TrainingJob", RunRecord, object], None]


def batch_groups(configs: Sequence[TrainConfig]) -> list[list[int]]:
    """Indices of the configurations that can train together, in first-seen order."""
    groups: dict[tuple, list[int]] = {}
    for index, config in enumerate(configs):
        groups.setdefault(group_key(config), []).append(index)
    return list(groups.values())


class TrainingJob(Job[list[RunRecord]]):
    """Trains K runs; `control` pauses, resumes, stops and changes the learning rates of all of them."""

    kind = "training"

    def __init__(self, configs: Sequence[TrainConfig], dataset: Dataset, names: Sequence[str] | None = None,
                 group_id: str = "", source: str = "dashboard", listeners: Iterable[Listener] = (),
                 batch_event_seconds: float = 0.1, run_ids: Sequence[str] | None = None, name: str = "",
                 owner: str = "", lesson: str = "", control_store: "ControlsMixin | None" = None):
        if not configs:
            raise ConfigError({"configs": "at least one configuration is needed"})
        if not run_ids:  # a sweep's runs: <group id>-01, -02, ... (listed together, in order)
            run_ids = [f"{group_id}-{i:02d}" for i in range(1, len(configs) + 1)] if group_id else [new_id()]
        if len(run_ids) != len(configs) or len(set(run_ids)) != len(run_ids):
            raise ValueError("one distinct run id per configuration is needed")
        names = list(names) if names else [default_run_name(config) for config in configs]
        # its learning rate from the start: a queued or starting run's page shows it (and offers it to change)
        # owner, lesson: the browser that started it and its lesson, on a class server (lrcore.classroom)
        records = [RunRecord(run_id, name, config, source=source, group_id=group_id, learning_rate=config.learning_rate,
                             owner=owner, lesson=lesson)
                   for run_id, name, config in zip(run_ids, names, configs)]
        super().__init__(group_id or run_ids[0], records)
        self.group_id = group_id
        self.name = name or records[0].name  # a sweep's name; a lone run's is its run's
        self.created = time.time()
        self.run_ids = [record.run_id for record in records]
        # A plain control while it trains in this process; forwarded to its worker when it has one.
        self.control: TrainingControl = RemoteControl(on_stop=self._wake_queue)
        self.groups = batch_groups(configs)
        self._dataset = dataset
        self._listeners = list(listeners)
        self._batch_event_seconds = batch_event_seconds
        self.pool: WorkerPool | None = None  # set by `use_pool` (the registry's) before it starts
        self.workers_used: list[int] = []  # pids of the workers (or actors) it trained on, in the order taken
        # the store whose control rows (another server's clicks) its registry applies to it; None: only local clicks
        self.control_store = control_store
        self._set_waiting(records)

    def _set_waiting(self, records: list[RunRecord]) -> None:
        """A sweep's later passes wait for the first; the first starts."""
        for number, group in enumerate(self.groups):
            for index in group:
                records[index].status = Status.WAITING if number else Status.STARTING

    def use_pool(self, pool: "WorkerPool | None") -> None:
        """Train in `pool`'s worker processes (None: in this job's thread); before `start()` only."""
        if self._thread.is_alive():
            raise RuntimeError("use_pool() after start()")
        self.pool = pool

    def _wake_queue(self) -> None:
        if self.pool is not None:
            self.pool.wake()

    # -- reading

    def records(self) -> list[RunRecord]:
        return self.snapshot()

    def record(self, run_id: str) -> RunRecord:
        with self._lock:
            return self._state[self.run_ids.index(run_id)].copy()

    def snapshot(self) -> list[RunRecord]:
        with self._lock:
            return [record.copy() for record in self._state]

    @property
    def active(self) -> bool:
        with self._lock:
            return any(record.active for record in self._state)

    # -- changing

    def add_listener(self, listener: Listener) -> None:
        """Also call `listener` from now on (appended, never removed: the thread may be iterating)."""
        self._listeners.append(listener)

    def stop(self) -> None:
        super().stop()
        self.control.stop()

    def rename(self, run_id: str, name: str) -> None:
        self.update(lambda records: setattr(records[self.run_ids.index(run_id)], "name", name))

    def set_save_error(self, run_id: str, reason: str) -> None:
        """Called by a store that cannot save this run; the first reason stays."""
        def change(records: list[RunRecord]) -> None:
            record = records[self.run_ids.index(run_id)]
            record.save_error = record.save_error or reason
        self.update(change)

    def scale_learning_rates(self, factor: float) -> None:
        """Multiply every training run's learning rate by `factor`; ConfigError if one would leave the range."""
        low, high = LEARNING_RATE_RANGE
        rates = [record.learning_rate or record.config.learning_rate for record in self.snapshot() if record.active]
        outside = [rate * factor for rate in rates if not low <= rate * factor <= high]
        if outside:
            raise ConfigError({"learning_rate": f"×{factor:g} would take a learning rate to {outside[0]:g}; "
                                                f"allowed: {low:g} to {high:g}"})
        self.control.scale_learning_rates(factor)

    # -- the thread

    def work(self) -> None:
        worker = None
        if self.pool is not None:
            try:
                worker = self.pool.acquire(lambda: self.control.stop_requested, self._queued)
            except PoolUnavailable as error:
                self._end_runs(range(len(self.run_ids)), Status.FAILED, str(error))
                return
            if worker is None:  # stopped while it waited in the queue
                self._end_runs(range(len(self.run_ids)), Status.STOPPED, "stopped while queued, before it started")
                return
            self.workers_used.append(worker.pid)
            if self.snapshot()[0].status == Status.QUEUED:  # out of the queue: a sweep's first pass starts
                self._change_all(lambda index, number: QueueState(index, Status.WAITING if number else Status.STARTING))
        try:
            self._train_groups(worker)
        finally:
            if worker is not None:
                self.pool.release(worker)

    def _queued(self, ahead: int) -> None:
        """Waiting for a free worker: `ahead` runs must end first (0: a worker process is starting)."""
        self._change_all(lambda index, number: QueueState(index, Status.QUEUED, ahead))

    def _change_all(self, event_of: Callable[[int, int], QueueState]) -> None:
        """Fold a queue event (made from each run's index and pass number) into every run, and tell the listeners."""
        for number, group in enumerate(self.groups):
            for position, index in enumerate(group):
                with self._lock:
                    record = self._state[index]
                    fold(record, event_of(position, number))
                self._notify(record, event_of(position, number))

    def _train_groups(self, worker) -> None:
        """Every group (one stacked pass), in order, on `worker` (None: in this thread). In a pool, a sweep's
        later groups also take workers that are idle while no other job waits (`WorkerPool.take_idle`), so
        its groups train side by side, each still stacked on one worker; a borrowed worker goes back to the
        pool when its group ends and another job is waiting."""
        pending = collections.deque(range(len(self.groups)))
        borrowed: list[threading.Thread] = []
        tried = 0.0

        def borrow() -> None:  # also while a group trains: a worker may finish starting or free up meanwhile
            nonlocal tried
            if worker is not None and pending and time.monotonic() - tried >= BORROW_EVERY:
                tried = time.monotonic()
                self._borrow_idle_workers(pending, borrowed)

        while (number := self._next_group(pending)) is not None:
            borrow()
            died = self._train_group(worker, number, between_events=borrow)
            if died is not None:  # every run no worker has taken yet ends with it, as when one worker trains all
                with self._lock:
                    left = [index for group in pending for index in self.groups[group]]
                    pending.clear()
                self._end_runs(left, Status.CRASHED, died)
                break
        for thread in borrowed:
            thread.join()

    def _borrow_idle_workers(self, pending: "collections.deque[int]", borrowed: list[threading.Thread]) -> None:
        """One idle worker per group nobody trains yet (while no other job waits), each in a thread of its own."""
        while len(pending) > sum(thread.is_alive() for thread in borrowed) and not self.control.stop_requested:
            extra = self.pool.take_idle()
            if extra is None:
                return
            self.workers_used.append(extra.pid)
            thread = threading.Thread(target=self._borrowed, args=(extra, pending), daemon=True,
                                      name=f"{self._thread.name}-group")
            borrowed.append(thread)
            thread.start()

    def _borrowed(self, worker, pending: "collections.deque[int]") -> None:
        """A borrowed worker's thread: groups from `pending` until none is left, its worker dies, or a job queues."""
        try:
            while (number := self._next_group(pending)) is not None:
                if self._train_group(worker, number) is not None or self.pool.queued():
                    return
        finally:
            self.pool.release(worker)

    def _next_group(self, pending: "collections.deque[int]") -> int | None:
        """The next group to train (its runs now starting), or None when every group is taken."""
        with self._lock:
            if not pending:
                return None
            number = pending.popleft()
        for position, index in enumerate(self.groups[number]):
            event = QueueState(position, Status.STARTING)
            with self._lock:
                record = self._state[index]
                if record.status != Status.WAITING:  # the first group: starting since it left the queue
                    continue
                fold(record, event)
            self._notify(record, event)
        return number

    def _train_group(self, worker, number: int, between_events: Callable[[], None] | None = None) -> str | None:
        """Train group `number` on `worker` (None: in this thread); the message if the worker died, else None."""
        group = self.groups[number]
        if self.control.stop_requested:
            self._end_runs(group, Status.STOPPED, "stopped before its turn came")
            return None
        configs = [self._state[index].config for index in group]
        try:
            if worker is None:
                events = train_group(configs, self._dataset, self.control, self._batch_event_seconds)
            else:
                task = TrainTask(configs, self._batch_event_seconds, os.environ.get("LRCORE_DATA_DIR"))
                events = worker.run_task("train", task, self.control)
            for event in events:
                index = group[event.index]
                with self._lock:
                    record = self._state[index]
                    fold(record, event)
                self._notify(record, event)
                if between_events is not None:
                    between_events()
        except (ConfigError, DatasetUnavailable) as error:
            self._end_runs(group, Status.FAILED, str(error))
        except TaskFailed as error:
            prefix = "" if error.status == Status.FAILED else "training stopped by an internal error: "
            self._end_runs(group, error.status, prefix + error.message)
        except WorkerDied as error:
            message = f"training stopped: {error}; the completed epochs are kept"
            self._end_runs(group, Status.CRASHED, message)
            return message
        except Exception as error:
            log.exception("training job %s crashed in group %d", self.job_id, number)
            self._end_runs(group, Status.CRASHED,
                           f"training stopped by an internal error: {type(error).__name__}: {error}")
        return None

    def failed(self, message: str) -> None:
        self._end_runs(range(len(self.run_ids)), Status.CRASHED, f"training {message}")

    def apply_control(self, request: "ControlRequest") -> None:
        """A control row another server's page wrote for this job: done as the same click here does
        (that page checked who may); a learning rate out of range is logged and dropped."""
        command, value = request.command, request.value
        try:
            if command == "pause":
                self.control.pause()
            elif command == "resume":
                self.control.resume()
            elif command == "stop":
                self.stop()
            elif command == "set_learning_rate":
                self.control.set_learning_rate(value)
            elif command == "scale_learning_rates":
                self.scale_learning_rates(value)
            else:
                log.warning("job %s: unknown control command %r from the store, ignored", self.job_id, command[:40])
        except (ConfigError, TypeError) as error:
            log.warning("job %s: %s %r from the store not applied: %s", self.job_id, command, value, error)

    def _end_runs(self, indices: Iterable[int], status: str, message: str) -> None:
        for index in indices:
            with self._lock:
                record = self._state[index]
                if not record.active:
                    continue
                crash(record, message)
                record.status = status
            self._notify(record, None)

    def _notify(self, record: RunRecord, event: object) -> None:
        for listener in self._listeners:
            try:
                listener(self, record, event)
            except Exception:  # a failing recorder must not stop training
                log.exception("listener failed for run %s", record.run_id)


class JobRegistry:
    """The jobs of this server process, by job id and by run id. One per process, shared by all sessions."""

    def __init__(self, pool: WorkerPool | None = None) -> None:
        self._jobs: dict[str, Job] = {}
        self._by_run: dict[str, TrainingJob] = {}
        self._lock = threading.Lock()
        self.pool = pool  # where its training and range-test jobs run (None: in their own threads)
        self._watcher: threading.Thread | None = None  # takes control rows while a job with a control store lives
        self._control_problem = ""  # why the last take failed ("" once it works), logged when it changes

    def add(self, job: Job) -> Job:
        """Register `job` (not started yet: a training or range-test job then runs in this registry's pool)."""
        if self.pool is not None and hasattr(job, "use_pool") and not job.alive:
            job.use_pool(self.pool)
        with self._lock:
            self._jobs[job.job_id] = job
            for run_id in getattr(job, "run_ids", ()):
                self._by_run[run_id] = job
            if getattr(job, "control_store", None) is not None and self._watcher is None:
                self._watcher = threading.Thread(target=self._watch_controls, name="lrcore-controls", daemon=True)
                self._watcher.start()
        return job

    def get(self, job_id: str | None) -> Job | None:
        if not job_id:
            return None
        with self._lock:
            return self._jobs.get(job_id)

    def job_of(self, run_id: str | None) -> TrainingJob | None:
        """The training job of a run trained in this process (None: finished before a restart, or elsewhere)."""
        if not run_id:
            return None
        with self._lock:
            return self._by_run.get(run_id)

    def live_run(self, run_id: str | None) -> "LiveRun | None":
        job = self.job_of(run_id)
        return LiveRun(job, run_id) if job is not None else None

    def remove(self, job_id: str) -> None:
        with self._lock:
            job = self._jobs.pop(job_id, None)
            for run_id in getattr(job, "run_ids", ()):
                self._by_run.pop(run_id, None)

    def jobs(self, kind: str | None = None) -> list[Job]:
        with self._lock:
            return [job for job in self._jobs.values() if kind is None or job.kind == kind]

    def _watch_controls(self) -> None:
        """The control thread: while some job with a control store is active, take its rows and apply them.
        It ends when none is (`add` starts it again); the decision is made under the registry's lock."""
        while True:
            with self._lock:  # a job's lock inside the registry's: nothing takes them the other way round
                watched = [job for job in self._jobs.values()
                           if isinstance(job, TrainingJob) and job.control_store is not None and job.active]
                if not watched:
                    self._watcher = None
                    return
            self.take_controls(watched)
            time.sleep(CONTROL_POLL_SECONDS)

    def take_controls(self, jobs: Iterable[TrainingJob]) -> None:
        """One query per store for every run and sweep of `jobs`; each request taken goes to its job."""
        by_store: dict[int, tuple[ControlsMixin, dict[str, TrainingJob]]] = {}
        for job in jobs:
            targets = by_store.setdefault(id(job.control_store), (job.control_store, {}))[1]
            targets.update((target, job) for target in [*job.run_ids, job.group_id] if target)
        for store, targets in by_store.values():
            try:
                requests = store.take_controls(targets)
            except Exception as error:  # a store that cannot be read: said once, tried again next time
                problem = f"{type(error).__name__}: {error}"
                if problem != self._control_problem:
                    log.warning("cannot read the control requests of the run store: %s", problem)
                self._control_problem = problem
                continue
            self._control_problem = ""
            for request in requests:
                try:
                    targets[request.run_id].apply_control(request)
                except Exception:  # a bug must not end the control thread: the other requests still count
                    log.exception("control request %s for %s failed", request.request_id, request.run_id)

    def unsaved_runs(self) -> list[RunRecord]:
        """Runs whose store could not save them: they exist only here, until the server restarts."""
        return [record for job in self.jobs(TrainingJob.kind) for record in job.snapshot() if record.save_error]


@dataclass(frozen=True)
class LiveRun:
    """One run of a training job in this process: what the Train, Weights and Draw pages hold."""

    job: TrainingJob
    run_id: str

    @property
    def control(self) -> TrainingControl:
        return self.job.control

    def snapshot(self) -> RunRecord:
        return self.job.record(self.run_id)

    def rename(self, name: str) -> None:
        self.job.rename(self.run_id, name)

    def join(self, timeout: float | None = None) -> None:
        self.job.join(timeout)

    @property
    def alive(self) -> bool:
        return self.job.alive
