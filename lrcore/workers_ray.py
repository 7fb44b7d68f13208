"""Training on a Ray cluster: `RayWorker`, a worker of `lrcore.workers.WorkerPool` that is a Ray actor.

With LRCORE_COMPUTE=ray (`lrcore.compute`) the server's pool is made of these instead of local
worker processes; jobs, queue, control and crash handling are the pool's and the jobs' as before.
Each actor (one CPU) runs the local worker's own `lrcore.workers_main.TaskRunner` in a thread of
its own: its messages go to a queue that the server drains with `messages` (a call that waits up
to a second for the first one), and control commands are actor calls that run in another of the
actor's threads, so they reach a training loop that is busy. Polled rather than a Ray streaming
generator, because Ray Client (`ray://` addresses) has no streaming generators.

What the cluster needs: `connect` ships this server's `lrcore` package to the cluster (a job-level
`py_modules` runtime environment), but not the Python packages (every node needs torch, and the
versions of requirements.txt) nor the datasets: an actor loads them itself from the server's data
folder (LRCORE_DATA_DIR, else `./data` of the server, as an absolute path), so on a remote
cluster that folder must exist at the same path on every node, holding the datasets' files
(a shared mount, or a copy; folder datasets imported on the server too).

A dead actor (its process killed, its node lost) is noticed in two ways: the job reading its
messages gets `WorkerDied` (its runs end crashed, their completed epochs kept), and a watcher
thread, blocked on an actor call that returns only when the actor ends, closes a pipe whose read
end is the worker's `sentinel`, which the pool's supervisor waits on as on a process's, to start
another actor in its place.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import ray
from ray.exceptions import GetTimeoutError, RayTaskError

from .data import default_data_dir
from .workers_control import RemoteControl
from .workers_main import TaskRunner
from .workers_process import READY_TIMEOUT, TaskFailed, WorkerDied, follow_task

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0  # the longest a `messages` call waits for a first message (so calls stay short)
CONTROL_TIMEOUT = 30.0  # seconds a control command may take to reach its actor before it counts as lost


def connect(address: str = "", **options: Any) -> None:
    """Join the Ray cluster at `address` ("auto", "ray://host:10001"; "": start a local one), unless
    this process already has, and ship `lrcore` to it; `options` go to `ray.init` (tests: num_cpus)."""
    if ray.is_initialized():
        return
    runtime_env = {"py_modules": [str(Path(__file__).resolve().parent)]}
    if address:
        ray.init(address=address, runtime_env=runtime_env, **options)
    else:  # for trying it out: a cluster of this machine's cores, ended with the server
        _on_lasting_thread(lambda: ray.init(runtime_env=runtime_env, include_dashboard=False, **options))


def _on_lasting_thread(start: Callable[[], object]) -> None:
    """Call `start` on a thread that lives as long as this process, and wait for it.

    A local Ray's processes (GCS, raylet) are started with PR_SET_PDEATHSIG, which kills them when
    the *thread* that started them ends: a Streamlit script thread ends after every rerun, and the
    server went down a minute later (Ray ends a driver whose GCS is gone)."""
    outcome: queue.Queue = queue.Queue()

    def run() -> None:
        try:
            start()
        except BaseException as error:  # handed to the caller, which raises it
            outcome.put(error)
            return
        outcome.put(None)
        threading.Event().wait()  # never set: the cluster's processes live while this thread does

    threading.Thread(target=run, name="ray-local-cluster", daemon=True).start()
    error = outcome.get()
    if error is not None:
        raise error


def cluster_cpus() -> int:
    """The CPUs of the connected cluster, all nodes together."""
    return int(ray.cluster_resources().get("CPU", 0))


# A threaded actor: `messages` and `control` run while the task trains in the runner's own thread;
# the watcher's call has a thread of its own, so it never takes one of theirs.
@ray.remote(num_cpus=1, max_concurrency=4, concurrency_groups={"watch": 1})
class TaskActor:
    """The actor's side: a `TaskRunner` and the queue of its messages."""

    def __init__(self, warm: bool, data_dir: str):
        started = time.perf_counter()
        os.environ["LRCORE_DATA_DIR"] = data_dir  # the server's data folder (the same path on every node)
        self._outbox: queue.Queue = queue.Queue()
        self._runner = TaskRunner(self._outbox.put)
        self._runner.warm_up(warm)
        self._warm_seconds = time.perf_counter() - started
        self._ended = threading.Event()
        threading.Thread(target=self._runner.serve, name="tasks", daemon=True).start()

    def ready(self) -> tuple[int, float]:
        return os.getpid(), self._warm_seconds

    def start(self, task_id: int, kind: str, task: Any) -> None:
        self._runner.accept(task_id, kind, task)

    def control(self, task_id: int, command: str, *args: Any) -> None:
        self._runner.control(task_id, command, *args)

    def messages(self, timeout: float) -> list[tuple]:
        """Every message waiting, after waiting up to `timeout` seconds for the first ([] if none came)."""
        try:
            waiting = [self._outbox.get(timeout=timeout)]
        except queue.Empty:
            return []
        with contextlib.suppress(queue.Empty):
            while True:
                waiting.append(self._outbox.get_nowait())
        return waiting

    @ray.method(concurrency_group="watch")
    def wait_until_ended(self) -> None:
        """Returns when the actor ends: by an error on the caller's side, as it is never set."""
        self._ended.wait()


class RayWorker:
    """The server's end of one `TaskActor`, with the interface of `lrcore.workers_process.Worker`."""

    _task_ids = itertools.count(1)

    def __init__(self, warm: bool):
        if not ray.is_initialized():  # else .remote() would start a Ray of its own, on whatever thread this is
            raise OSError("Ray is not connected: call lrcore.workers_ray.connect() first")
        try:
            self._actor = TaskActor.remote(warm, str(default_data_dir().resolve()))
        except Exception as error:  # not connected, or the cluster is gone: the pool reports it
            raise OSError(f"no Ray actor could be created: {error}") from error
        self.ready = False
        self.warm_seconds = 0.0
        self.pid: int | None = None  # the actor's process id (on its node), known once it is ready
        self.exitcode = None  # an actor has none; kept for the pool's log lines
        self._ended = threading.Event()
        self.sentinel, self._sentinel_write = os.pipe()  # readable (end of file) once the actor has ended
        threading.Thread(target=self._watch, name="ray-worker-watch", daemon=True).start()

    def _watch(self) -> None:
        try:
            ray.get(self._actor.wait_until_ended.remote())
        except Exception:  # ActorDiedError, or the cluster lost: either way it is gone for us
            pass
        finally:
            self._ended.set()
            os.close(self._sentinel_write)

    def __del__(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.close(self.sentinel)

    @property
    def alive(self) -> bool:
        return not self._ended.is_set()

    def _get(self, ref: Any, timeout: float | None = None) -> Any:
        """ray.get, with the actor's death as WorkerDied and an error raised in it as a crashed task."""
        try:
            return ray.get(ref, timeout=timeout)
        except RayTaskError as error:  # e.g. a message that cannot be sent back: the actor lives on
            raise TaskFailed("crashed", f"{type(error.cause).__name__}: {error.cause}") from error
        except GetTimeoutError:
            raise
        except Exception as error:  # ActorDiedError, ActorUnavailableError, a lost Ray Client connection
            log.error("Ray actor (process %s) ended: %s", self.pid, error)  # the cause in full (e.g. torch missing)
            raise WorkerDied(f"its Ray actor ended unexpectedly (process {self.pid}: "
                             f"{type(error).__name__})") from error

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        try:
            self.pid, self.warm_seconds = self._get(self._actor.ready.remote(), timeout)
        except GetTimeoutError:
            raise WorkerDied(f"the Ray actor did not start within {timeout:g} s (no free CPU in the cluster?)") \
                from None
        except TaskFailed as error:
            raise WorkerDied(f"the Ray actor did not start: {error.message}") from error
        self.ready = True

    def _send_control(self, task_id: int, command: tuple) -> None:
        """One control command, in order: each is delivered before the next is sent (RemoteControl's lock)."""
        try:
            self._get(self._actor.control.remote(task_id, *command), CONTROL_TIMEOUT)
        except (WorkerDied, TaskFailed, GetTimeoutError) as error:  # RemoteControl ignores it: the job sees the death
            raise OSError(str(error)) from error

    def run_task(self, kind: str, task: Any, control: RemoteControl) -> Iterator[Any]:
        """Start a task and yield its events until it ends; TaskFailed or WorkerDied if it does not finish."""
        task_id = next(self._task_ids)
        self._get(self._actor.start.remote(task_id, kind, task))  # accepted before any control command
        messages = (message for _ in itertools.count()
                    for message in self._get(self._actor.messages.remote(POLL_SECONDS)))
        yield from follow_task(task_id, messages, control, lambda command: self._send_control(task_id, command),
                               lambda: self.alive)

    def close(self, timeout: float = 5.0) -> None:
        """End the actor (its task with it)."""
        if not ray.is_initialized():  # Ray has shut down (at exit): its actors with it
            return
        with contextlib.suppress(Exception):
            ray.kill(self._actor)
        self._ended.wait(timeout)
