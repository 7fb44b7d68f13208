"""The worker process's side of `lrcore.workers`: warm up, then train what the server sends.

Started as `python -m lrcore.workers_main DOWN_FD UP_FD WARM` (a fresh interpreter: no copy of
the server's threads or locks), on one torch thread. Two one-way pipes: commands come down (tasks and control commands,
read by a thread here so pause/stop reach a training loop that is busy), messages go up, pickled by
hand (`pickle.dumps`, so tensors travel as bytes, not as shared-memory handles that would tie the
worker's lifetime to the server's reading them). Datasets are loaded on first use and kept.

Up: ("ready", pid, seconds), ("event", task_id, event), ("end", task_id, status, message)
with status "" (finished), "failed" (bad settings or data: message says why) or "crashed".
Down: ("task", task_id, kind, task), ("control", task_id, command, *args), None (exit).

`TaskRunner` is the part that does not depend on pipes: a Ray actor (`lrcore.workers_ray`) runs
the same tasks with it, its messages going to a queue instead.
"""
from __future__ import annotations

import logging
import os
import pickle
import queue
import threading
import time
from typing import Any, Callable

log = logging.getLogger(__name__)
WARM_DATASET = "mnist-sample"  # the default dataset: loaded (and deskewed) before "ready"


class TaskRunner:
    """Runs tasks one at a time and sends their messages up with `send` (the "event" and "end" above).

    `accept` and `control` are called from another thread than `serve`, so pause and stop reach a
    training loop that is busy."""

    def __init__(self, send: Callable[[tuple], None]):
        self.send = send
        self.tasks: queue.Queue = queue.Queue()
        self.controls: dict[int, Any] = {}  # task id -> its TrainingControl (read by the command thread)
        self.datasets: dict[tuple[str, str | None], Any] = {}

    def accept(self, task_id: int, kind: str, task: Any) -> None:
        """Queue a task for `serve`; its control commands are taken from now on."""
        from .training import TrainingControl

        self.controls[task_id] = TrainingControl()
        self.tasks.put((task_id, kind, task))

    def control(self, task_id: int, command: str, *args: Any) -> None:
        """A control command for a task (ignored once it has ended)."""
        control = self.controls.get(task_id)
        if control is not None:
            try:
                getattr(control, command)(*args)
            except Exception:  # checked by the server already; never let it end the caller's thread
                log.exception("control command %r failed", (command, *args))

    def exit(self) -> None:
        """Stop every task and let `serve` return."""
        for control in list(self.controls.values()):
            control.stop()
        self.tasks.put(None)

    def serve(self) -> None:
        """Run the accepted tasks one at a time until `exit`."""
        while True:
            task = self.tasks.get()
            if task is None:
                return
            self.run(*task)

    def dataset(self, name: str, data_dir: str | None):
        """The dataset `name` as the server sees it (its data folder; folder datasets imported since)."""
        from . import datasets, image_folder
        from .data import load_dataset

        key = (name, data_dir)
        if key not in self.datasets:
            if data_dir is not None:
                os.environ["LRCORE_DATA_DIR"] = data_dir
            if name not in datasets.NAMES:  # imported on the server after this worker started
                image_folder.register_cached_folders()
            self.datasets[key] = load_dataset(name)
        return self.datasets[key]

    def run(self, task_id: int, kind: str, task: Any) -> None:
        from .config import ConfigError
        from .data import DatasetUnavailable

        control = self.controls[task_id]
        try:
            dataset = self.dataset(task.dataset, task.data_dir)
            if kind == "train":
                self._train(task_id, task, dataset, control)
            else:
                self._range_test(task_id, task, dataset, control)
        except (ConfigError, DatasetUnavailable) as error:
            self.send(("end", task_id, "failed", str(error)))
        except Exception as error:
            log.exception("task %s failed in worker %d", task_id, os.getpid())
            self.send(("end", task_id, "crashed", f"{type(error).__name__}: {error}"))
        else:
            self.send(("end", task_id, "", ""))
        finally:
            self.controls.pop(task_id, None)

    def _train(self, task_id: int, task: Any, dataset: Any, control: Any) -> None:
        from .training import train_group

        for event in train_group(task.configs, dataset, control, task.batch_event_seconds):
            self.send(("event", task_id, event))

    def _range_test(self, task_id: int, task: Any, dataset: Any, control: Any) -> None:
        from .lr_finder import lr_range_test

        def progress(batch: int, lr: float, loss: float, smoothed: float) -> None:
            self.send(("event", task_id, ("progress", batch, lr, loss, smoothed)))

        result = lr_range_test(task.config, dataset, start_lr=task.start_lr, end_lr=task.end_lr,
                               num_batches=task.num_batches, progress=progress,
                               should_stop=lambda: control.stop_requested)
        self.send(("event", task_id, ("result", result)))

    def warm_up(self, warm: bool) -> None:
        """Imports, torch's first ops and the default dataset, so the first Start is fast."""
        import torch

        from .config import TrainConfig
        from .training import train_group

        torch.set_num_threads(1)
        if not warm:
            return
        try:
            dataset = self.dataset(WARM_DATASET, os.environ.get("LRCORE_DATA_DIR"))
            for _ in train_group([TrainConfig.for_dataset(WARM_DATASET, epochs=1)], dataset,  # its deskewed copy too
                                 max_batches_per_epoch=2):
                pass
        except Exception:  # a missing dataset or odd settings: the first real task will say so
            log.warning("warm-up failed", exc_info=True)


def read_commands(runner: TaskRunner, down: Any) -> None:
    """The command thread: tasks to the runner's queue, control commands straight to their run."""
    while True:
        try:
            message = down.recv()
        except (EOFError, OSError):  # the server is gone
            message = None
        if message is None:
            runner.exit()
            return
        if message[0] == "task":
            runner.accept(*message[1:])
        elif message[0] == "control":
            runner.control(*message[1:])


def main(down: Any, up: Any, warm: bool = True) -> None:
    """The worker process: warm up, say ready, then run tasks one at a time until told to exit."""
    started = time.perf_counter()
    runner = TaskRunner(lambda message: up.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)))
    runner.warm_up(warm)
    runner.send(("ready", os.getpid(), time.perf_counter() - started))
    threading.Thread(target=read_commands, args=(runner, down), name="commands", daemon=True).start()
    runner.serve()


if __name__ == "__main__":
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the server: it closes the pipe, and we leave then
    from multiprocessing.connection import Connection

    logging.basicConfig(level=logging.WARNING, format="lrcore worker %(process)d: %(levelname)s %(message)s")
    main(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False),
         sys.argv[3] == "1")
