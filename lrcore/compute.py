"""Where training runs: the compute back end of a server, chosen by its environment.

    LRCORE_COMPUTE=local  worker processes on this machine (the default; `lrcore.workers`):
                          LRCORE_WORKERS of them (default: one per core; 0: threads of the server)
    LRCORE_COMPUTE=ray    Ray actors (`lrcore.workers_ray`) on the cluster at LRCORE_RAY_ADDRESS
                          ("auto", "ray://host:10001"; empty: a local Ray started for trying it):
                          LRCORE_WORKERS of them (default: one per CPU of the cluster)

`make_pool()` builds the pool for the setting; a setting that cannot work raises `ComputeError`,
whose message names the setting and what to do.
"""
from __future__ import annotations

import importlib.util
import logging
import os

from .workers import ENV_WORKERS, WorkerPool, pool_size

log = logging.getLogger(__name__)
ENV_COMPUTE = "LRCORE_COMPUTE"
ENV_RAY_ADDRESS = "LRCORE_RAY_ADDRESS"
BACKENDS = {"local": "worker processes on this machine, the default", "ray": "a Ray cluster, see LRCORE_RAY_ADDRESS"}


class ComputeError(RuntimeError):
    """The compute settings cannot work (a wrong value, Ray missing or unreachable): the message says why."""


def backend() -> str:
    """$LRCORE_COMPUTE, checked ("local" when unset)."""
    value = os.environ.get(ENV_COMPUTE, "").strip()
    if value.lower() in ("", *BACKENDS):
        return value.lower() or "local"
    allowed = "; ".join(f"{name} ({text})" for name, text in BACKENDS.items())
    raise ComputeError(f"{ENV_COMPUTE}={value!r} is not a compute back end; allowed: {allowed}")


def make_pool(warm: bool = True) -> WorkerPool | None:
    """The worker pool for this server's settings; None: train in threads of this process."""
    if backend() == "local":
        size = pool_size()
        return WorkerPool(size, warm) if size > 0 else None
    return _ray_pool(warm)


def _ray_pool(warm: bool) -> WorkerPool:
    if importlib.util.find_spec("ray") is None:
        raise ComputeError(f"{ENV_COMPUTE}=ray needs Ray, which is not installed: "
                           "pip install -r requirements-ray.txt")
    from . import workers_ray

    address = os.environ.get(ENV_RAY_ADDRESS, "").strip()
    try:
        workers_ray.connect(address)
    except Exception as error:  # ConnectionError, a bad address, a version mismatch: Ray's message says which
        where = f"the Ray cluster at {ENV_RAY_ADDRESS}={address!r}" if address else "a local Ray cluster"
        raise ComputeError(f"{ENV_COMPUTE}=ray could not start or reach {where}: {error}") from error
    cpus = workers_ray.cluster_cpus()
    size = pool_size(default=cpus)
    if size == 0 and cpus == 0:
        raise ComputeError(f"the Ray cluster ({ENV_RAY_ADDRESS}={address!r}) has no CPUs to train on")
    if size == 0:
        raise ComputeError(f"{ENV_WORKERS}=0 trains in threads of the server, not on Ray: unset it to use every "
                           f"CPU of the Ray cluster, or set it to 1 or more (or set {ENV_COMPUTE}=local)")
    if size > cpus:  # each actor takes a CPU: the others wait for one, and their jobs with them
        log.warning("%s=%d but the Ray cluster has %d CPUs: %d workers will not start until it grows",
                    ENV_WORKERS, size, cpus, size - cpus)
    return WorkerPool(size, warm, worker_factory=workers_ray.RayWorker)
