"""The server's side of a worker's `TrainingControl` (`lrcore.workers`): the pages' control of a job
that trains in a worker process, each command also sent down the worker's pipe."""
from __future__ import annotations

import threading
from typing import Any, Callable

from .training import TrainingControl


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
