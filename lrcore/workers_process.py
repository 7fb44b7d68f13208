"""The server's end of one worker process (`lrcore.workers`): start it, send it tasks and control
commands, read its events back, notice its death. The child's side is `lrcore.workers_main`."""
from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Callable, Iterator

from .workers_control import RemoteControl

READY_TIMEOUT = 300.0  # seconds a new worker may take to import torch and warm up (a loaded machine)


class WorkerDied(RuntimeError):
    """The worker process ended while it had a task."""


class TaskFailed(Exception):
    """The task ended with an error in the worker: status "failed" (bad settings or data) or "crashed"."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


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


def follow_task(task_id: int, messages: Iterator[tuple], control: RemoteControl,
                send_control: Callable[[tuple], None], alive: Callable[[], bool]) -> Iterator[Any]:
    """The events of a started task `task_id` among a worker's messages, until its end message (TaskFailed
    if it failed), with `control`'s commands going to `send_control` meanwhile; a task abandoned by its
    reader is stopped, so the worker frees up. Shared by the local worker and the Ray actor's server end
    (lrcore.workers_ray)."""
    control.connect(send_control)  # one connection per worker: a sweep's groups may train on several at once
    ended = False
    try:
        for message in messages:
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
        control.disconnect(send_control)
        if not ended and alive():
            with contextlib.suppress(OSError, ValueError):  # the worker is gone: its job sees that itself
                send_control(("stop",))


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
        yield from follow_task(task_id, (self.receive() for _ in itertools.count()), control,
                               lambda command: self.send(("control", task_id, *command)), lambda: self.alive)

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
