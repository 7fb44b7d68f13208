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
"""
from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import pickle
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Callable, Iterator

from .training import TrainingControl

log = logging.getLogger(__name__)
ENV_WORKERS = "LRCORE_WORKERS"
READY_TIMEOUT = 300.0  # seconds a new worker may take to import torch and warm up (a loaded machine)
MAX_FAILED_STARTS = 3  # workers in a row that die before they are ready: the pool gives up, jobs say why


class WorkerDied(RuntimeError):
    """The worker process ended while it had a task."""


class TaskFailed(Exception):
    """The task ended with an error in the worker: status "failed" (bad settings or data) or "crashed"."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class PoolUnavailable(RuntimeError):
    """No worker process can be started (each one died before it was ready)."""


def pool_size(default: int | None = None) -> int:
    """Workers from $LRCORE_WORKERS (0: train in threads), else `default`, else the usable cores."""
    cores = default if default is not None else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count() or 1
    value = os.environ.get(ENV_WORKERS, "").strip()
    if not value:
        return cores
    try:
        size = int(value)
        if size < 0:
            raise ValueError
    except ValueError:
        log.error("%s=%r is not a whole number of workers (0 or more); using %d", ENV_WORKERS, value, cores)
        return cores
    return size


@dataclass(frozen=True)
class TrainTask:
    configs: list
    batch_event_seconds: float
    data_dir: str | None

    @property
    def dataset(self) -> str:
        return self.configs[0].dataset


@dataclass(frozen=True)
class RangeTask:
    config: Any
    start_lr: float
    end_lr: float
    num_batches: int
    data_dir: str | None

    @property
    def dataset(self) -> str:
        return self.config.dataset


class RemoteControl(TrainingControl):
    """A `TrainingControl` whose commands also go to the worker training the job, when one is.

    Its own state (paused, stop requested) is what the pages read, as before; while no worker is
    connected (queued, between a sweep's passes, or training in a thread) it is a plain control, and
    the first connection replays a pause and a pending learning-rate change."""

    def __init__(self, on_stop: Callable[[], None] | None = None):
        super().__init__()
        self._send: Callable[[tuple], None] | None = None
        self._send_lock = threading.Lock()
        self.on_stop = on_stop  # wakes a job waiting in the queue

    def connect(self, send: Callable[[tuple], None]) -> None:
        with self._send_lock:
            self._send = send
            if self.stop_requested:
                self._forward("stop")
            elif self.paused:
                self._forward("pause")
            self._forward_pending()

    def disconnect(self) -> None:
        with self._send_lock:
            self._send = None

    def _forward(self, *command: Any) -> None:
        if self._send is not None:
            try:
                self._send(command)
            except (OSError, ValueError):  # the worker is gone: its job ends as crashed anyway
                pass

    def _forward_pending(self) -> None:
        if self._send is not None:
            with self._lock:
                pending, self._pending_lr = self._pending_lr, None
            if pending is not None:
                self._forward("set_learning_rate" if pending[0] == "set" else "scale_learning_rates", pending[1])

    def pause(self) -> None:
        with self._send_lock:
            super().pause()
            self._forward("pause")

    def resume(self) -> None:
        with self._send_lock:
            super().resume()
            self._forward("resume")

    def stop(self) -> None:
        with self._send_lock:
            super().stop()
            self._forward("stop")
        if self.on_stop is not None:
            self.on_stop()

    def set_learning_rate(self, learning_rate: float) -> None:
        with self._send_lock:
            super().set_learning_rate(learning_rate)  # validates; pending until a loop or a worker takes it
            self._forward_pending()

    def scale_learning_rates(self, factor: float) -> None:
        with self._send_lock:
            super().scale_learning_rates(factor)
            self._forward_pending()


class Worker:
    """The server's end of one worker process.

    A plain `python -m lrcore.workers_main` child with two pipes, not a multiprocessing.Process:
    spawn would re-run the parent's __main__ in the child, and in a Streamlit server that is the
    page script (Streamlit installs it as __main__)."""

    _task_ids = itertools.count(1)

    def __init__(self, warm: bool):
        down_read, down_write = os.pipe()
        up_read, up_write = os.pipe()
        root = str(Path(__file__).resolve().parents[1])  # where `lrcore` is, whatever the cwd
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lrcore.workers_main", str(down_read), str(up_write), "1" if warm else "0"],
                pass_fds=(down_read, up_write), stdin=subprocess.DEVNULL, env=env)
        finally:
            os.close(down_read)  # only the child's copies stay open, so its death reads as end of file here
            os.close(up_write)
        self._down = Connection(down_write, readable=False)
        self._up = Connection(up_read, writable=False)
        self.sentinel = os.pidfd_open(self.process.pid)  # readable once the process has ended
        self._send_lock = threading.Lock()
        self.ready = False
        self.warm_seconds = 0.0

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def exitcode(self) -> int | None:
        return self.process.poll()

    def __del__(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.close(self.sentinel)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, message: Any) -> None:
        with self._send_lock:  # the job's thread (tasks) and page threads (controls) both send
            self._down.send(message)

    def receive(self, timeout: float | None = None) -> tuple | None:
        """The next message, None after `timeout`; WorkerDied when the process is gone."""
        try:
            ready = wait([self._up, self.sentinel], timeout)
            if not ready:
                return None
            if self._up in ready or self._up.poll():
                return pickle.loads(self._up.recv_bytes())
        except (EOFError, OSError, ValueError):
            pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        raise WorkerDied(f"its worker process ended unexpectedly (exit code {self.exitcode})")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        message = self.receive(timeout)
        if message is None or message[0] != "ready":
            raise WorkerDied(f"the worker process did not start within {timeout:g} s")
        self.ready, self.warm_seconds = True, message[2]

    def run_task(self, kind: str, task: Any, control: RemoteControl) -> Iterator[Any]:
        """Send a task and yield its events until it ends; TaskFailed or WorkerDied if it does not finish."""
        task_id = next(self._task_ids)
        self.send(("task", task_id, kind, task))
        control.connect(lambda command: self.send(("control", task_id, *command)))
        ended = False
        try:
            while True:
                message = self.receive()
                if message[1] != task_id:  # the tail of an earlier task that was abandoned
                    continue
                if message[0] == "event":
                    yield message[2]
                elif message[0] == "end":
                    ended = True
                    if message[2]:
                        raise TaskFailed(message[2], message[3])
                    return
        finally:
            control.disconnect()
            if not ended and self.alive:  # abandoned by its reader: stop it, so the worker frees up
                try:
                    self.send(("control", task_id, "stop"))
                except (OSError, ValueError):
                    pass

    def close(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.send(None)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)
        for connection in (self._down, self._up):
            connection.close()


class WorkerPool:
    """N worker processes and the FIFO queue of jobs waiting for one. One per server process."""

    def __init__(self, size: int, warm: bool = True):
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.size = size
        self._warm = warm
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
            worker = Worker(self._warm)
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
