"""Training, sweeps and range tests in worker processes: a pool, a FIFO queue, a control channel.

The web server's own garbage collections, page reruns and GIL must not slow training, and a crash
in training must not take the server down: so a `WorkerPool` keeps N processes (spawned and warmed
when the server starts, see `lrcore.workers_main`). A job (`TrainingJob`,
`RangeTestJob`) takes a free worker (`acquire`, FIFO: when all are busy it waits, its runs say how
many runs must end first), sends it a task and reads the events back in its own thread, where they
are folded into its records and handed to its listeners exactly as when it trains in a thread.
Its `RemoteControl` forwards pause, resume, stop and learning-rate changes down the worker's pipe.

A worker that dies (kill -9, segfault, out of memory) ends its job's runs as crashed, their
completed epochs kept, and the pool starts another in its place. Workers are plain child processes
(`python -m lrcore.workers_main`), one torch thread each. `LRCORE_WORKERS` sets the size
(default: the machine's cores); 0 keeps training in threads of the calling process.

Here: the pool and its queue. `workers_process.py`: the server's end of one worker (tasks, events,
death); `workers_control.py`: `RemoteControl`; `workers_main.py`: the worker process itself.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
from multiprocessing.connection import wait
from typing import Callable

from .env_number import env_number
from .workers_control import RemoteControl
from .workers_process import RangeTask, TaskFailed, TrainTask, Worker, WorkerDied

__all__ = ["ENV_WORKERS", "PoolUnavailable", "RangeTask", "RemoteControl", "TaskFailed", "TrainTask", "Worker",
           "WorkerDied", "WorkerPool", "pool_size"]
log = logging.getLogger(__name__)
ENV_WORKERS = "LRCORE_WORKERS"
MAX_FAILED_STARTS = 3  # workers in a row that die before they are ready: the pool gives up, jobs say why


class PoolUnavailable(RuntimeError):
    """No worker process can be started (each one died before it was ready)."""


def pool_size(default: int | None = None) -> int:
    """Workers from $LRCORE_WORKERS (0: train in threads), else `default`, else the usable cores."""
    cores = default if default is not None else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count() or 1
    return int(env_number(ENV_WORKERS, os.environ.get(ENV_WORKERS), cores, 0, whole=True,
                          meaning=f"{cores} workers"))


class WorkerPool:
    """N worker processes and the FIFO queue of jobs waiting for one. One per server process."""

    def __init__(self, size: int, warm: bool = True, worker_factory: Callable[[bool], Worker] = Worker):
        """`worker_factory(warm)` starts one worker: a `Worker` process here, a `lrcore.workers_ray.RayWorker`
        actor on a Ray cluster (anything with Worker's interface)."""
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.size = size
        self._warm = warm
        self._worker_factory = worker_factory
        self._changed = threading.Condition()
        self._workers: list[Worker] = []  # started, ready or not
        self._idle: list[Worker] = []
        self._queue: list[object] = []  # tickets of the jobs waiting, first come first served
        self._failed_starts = 0
        self.problem = ""  # why no worker can start ("" while they can)
        self._closed = False
        for _ in range(size):
            self._start_worker()
        self._supervisor = threading.Thread(target=self._supervise, name="worker-pool", daemon=True)
        self._supervisor.start()
        atexit.register(self.close)  # the workers also leave by themselves when the server's pipe closes

    # -- the jobs' side

    def acquire(self, cancelled: Callable[[], bool], waiting: Callable[[int], None]) -> Worker | None:
        """A free worker for the caller, in arrival order; None if `cancelled()` turns true first.

        While it waits, `waiting(ahead)` is called whenever `ahead` changes: the runs that must end
        before a worker is free for it (0: only waiting for a worker process to finish starting)."""
        ticket = object()
        told = None
        with self._changed:
            self._queue.append(ticket)
            try:
                while True:
                    if self.problem:
                        raise PoolUnavailable(self.problem)
                    if cancelled():
                        return None
                    if self._queue[0] is ticket and self._idle:
                        worker = self._idle.pop(0)
                        return worker
                    starting = sum(not worker.ready for worker in self._workers) + self.size - len(self._workers)
                    ahead = max(0, self._queue.index(ticket) + 1 - starting)
                    if ahead != told:  # told outside the lock (listeners write to the store), then checked again
                        told = ahead
                        self._changed.release()
                        try:
                            waiting(ahead)
                        finally:
                            self._changed.acquire()
                        continue
                    self._changed.wait()
            finally:
                self._queue.remove(ticket)
                self._changed.notify_all()  # the next in line may take a worker now

    def take_idle(self) -> Worker | None:
        """An idle worker for a sweep's extra group, or None: none is idle, or a job waits in the queue (it
        comes first: a sweep only borrows workers nobody else asked for)."""
        with self._changed:
            if self._queue or not self._idle or self._closed:
                return None
            return self._idle.pop(0)

    def release(self, worker: Worker) -> None:
        """The job is done with `worker`: free again if it is alive (a dead one is replaced by the supervisor)."""
        with self._changed:
            if worker.alive and worker in self._workers and not self._closed:
                self._idle.append(worker)
            self._changed.notify_all()

    def wake(self) -> None:
        """A waiting job was stopped: let it see so."""
        with self._changed:
            self._changed.notify_all()

    def queued(self) -> int:
        with self._changed:
            return len(self._queue)

    def workers(self) -> list[Worker]:
        with self._changed:
            return list(self._workers)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until every worker is ready (tests, benchmarks); False on timeout."""
        with self._changed:
            return self._changed.wait_for(
                lambda: len(self._workers) == self.size and all(w.ready for w in self._workers) or bool(self.problem),
                timeout) and not self.problem

    def close(self) -> None:
        with self._changed:
            if self._closed:
                return
            self._closed = True
            workers, self._workers, self._idle = list(self._workers), [], []
            self._changed.notify_all()
        for worker in workers:
            worker.close()

    # -- starting and replacing workers

    def _start_worker(self) -> None:
        try:
            worker = self._worker_factory(self._warm)
        except OSError as error:  # e.g. out of processes or memory
            self._start_failed(f"a worker process could not be started: {error}")
            return
        with self._changed:
            self._workers.append(worker)
        threading.Thread(target=self._await_ready, args=(worker,), name="worker-start", daemon=True).start()

    def _await_ready(self, worker: Worker) -> None:
        try:
            worker.wait_ready()
        except WorkerDied as error:
            log.error("worker %s did not start: %s", worker.pid, error)
            worker.close(1)  # the supervisor sees it gone and counts the failure
            return
        with self._changed:
            self._failed_starts = 0
            if worker in self._workers and not self._closed:
                self._idle.append(worker)
            self._changed.notify_all()
        log.info("worker %s ready in %.1f s", worker.pid, worker.warm_seconds)

    def _start_failed(self, message: str) -> None:
        with self._changed:
            self._failed_starts += 1
            if self._failed_starts >= MAX_FAILED_STARTS:
                self.problem = f"training cannot start: {message} (tried {self._failed_starts} times)"
            self._changed.notify_all()

    def _supervise(self) -> None:
        """Replace every worker that dies (idle or busy; its job sees the death itself)."""
        while True:
            with self._changed:
                if self._closed:
                    return
                sentinels = [worker.sentinel for worker in self._workers]
            with contextlib.suppress(OSError, ValueError):
                wait(sentinels, timeout=0.5)  # woken by a death; the timeout picks up new workers
            with self._changed:
                if self._closed:
                    return
                dead = [worker for worker in self._workers if not worker.alive]
                for worker in dead:
                    self._workers.remove(worker)
                    if worker in self._idle:
                        self._idle.remove(worker)
                self._changed.notify_all()
            for worker in dead:
                log.error("worker %s ended (exit code %s); starting another", worker.pid,
                          worker.exitcode)
                if not worker.ready:
                    self._start_failed(f"a worker process ended while starting (exit code {worker.exitcode})")
                if not self.problem:
                    self._start_worker()
