"""The server's side of a worker's `TrainingControl` (`lrcore.workers`): the pages' control of a job
that trains in a worker process, each command also sent down the worker's pipe."""
from __future__ import annotations

import threading
from typing import Any, Callable

from .training import TrainingControl


class RemoteControl(TrainingControl):
    """A `TrainingControl` whose commands also go to the workers training the job, when some are.

    Its own state (paused, stop requested) is what the pages read, as before; while no worker is
    connected (queued, between a sweep's passes, or training in a thread) it is a plain control, and
    each connection replays a stop or a pause, and the first one a pending learning-rate change. A sweep
    whose groups train on several workers at once has one connection per worker: every command goes to all.
    """

    def __init__(self, on_stop: Callable[[], None] | None = None):
        super().__init__()
        self._sends: list[Callable[[tuple], None]] = []
        self._send_lock = threading.Lock()
        self.on_stop = on_stop  # wakes a job waiting in the queue

    def connect(self, send: Callable[[tuple], None]) -> None:
        with self._send_lock:
            self._sends.append(send)
            if self.stop_requested:
                self._forward("stop", to=[send])
            elif self.paused:
                self._forward("pause", to=[send])
            self._forward_pending()

    def disconnect(self, send: Callable[[tuple], None]) -> None:
        with self._send_lock:
            if send in self._sends:
                self._sends.remove(send)

    @property
    def connections(self) -> int:
        """Workers this control reaches now (0: queued, between passes, or training in a thread)."""
        with self._send_lock:
            return len(self._sends)

    def _forward(self, *command: Any, to: list[Callable[[tuple], None]] | None = None) -> None:
        for send in list(self._sends if to is None else to):
            try:
                send(command)
            except (OSError, ValueError):  # the worker is gone: its job ends its runs as crashed anyway
                pass

    def _forward_pending(self) -> None:
        if self._sends:
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
