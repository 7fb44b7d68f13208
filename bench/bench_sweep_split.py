"""A sweep of several batch-size groups on one worker vs split over the pool's idle workers, side by side.

    python bench/bench_sweep_split.py                      # 4 groups x 8 learning rates, 2 workers
    python bench/bench_sweep_split.py --groups 2 --workers 2 --quick   # under a minute (make bench)

The same sweep (one group per batch size, each group's learning rates stacked) is trained by a
`TrainingJob` on a pool of one worker process (the groups one after another) and on a pool of
`--workers` (`TrainingJob._train_groups` borrows the idle ones: the groups side by side), alternating for
`--repeats` rounds. Prints each job's wall time (Start to the last run's end, as the pages see it) and
the ratio. Expect at most the worker count; on a machine with fewer free cores than workers, no gain.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lrcore.config import TrainConfig  # noqa: E402
from lrcore.jobs import JobRegistry, TrainingJob  # noqa: E402
from lrcore.status import Status  # noqa: E402
from lrcore.workers import WorkerPool  # noqa: E402

BATCH_SIZES = (32, 64, 128, 256, 512, 1024)
TIMEOUT = 1800.0


def sweep(groups: int, rates: int, epochs: int, dataset: str) -> list[TrainConfig]:
    """`groups` batch sizes x `rates` learning rates (log-spaced, 0.01 to 0.5)."""
    values = [0.01 * 50 ** (i / max(rates - 1, 1)) for i in range(rates)]
    return [TrainConfig(dataset=dataset, epochs=epochs, batch_size=batch, learning_rate=rate)
            for batch in BATCH_SIZES[:groups] for rate in values]


def timed(pool: WorkerPool, configs: list[TrainConfig]) -> tuple[float, int]:
    """Seconds from the job's start to its end, and how many workers it trained on."""
    job = TrainingJob(configs, None, group_id=f"bench-{time.monotonic_ns()}")
    JobRegistry(pool).add(job)
    started = time.perf_counter()
    job.start().join(TIMEOUT)
    seconds = time.perf_counter() - started
    bad = [record for record in job.records() if record.status != Status.DONE]
    if job.alive or bad:
        sys.exit(f"the sweep did not finish: {bad[0].status}: {bad[0].message}" if bad else "the sweep timed out")
    return seconds, len(set(job.workers_used))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=4, help=f"batch sizes (1-{len(BATCH_SIZES)}, default 4)")
    parser.add_argument("--rates", type=int, default=8, help="learning rates per batch size (default 8)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs (default 5)")
    parser.add_argument("--workers", type=int, default=2, help="workers of the split pool (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds, alternating the pools (default 3)")
    parser.add_argument("--dataset", default="mnist-sample")
    parser.add_argument("--quick", action="store_true", help="2 groups x 4 rates, 3 epochs, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.groups, args.rates, args.epochs, args.repeats = 2, 4, 3, 1
    if not 1 <= args.groups <= len(BATCH_SIZES) or args.workers < 1 or args.rates < 1 or args.repeats < 1:
        sys.exit(f"--groups 1-{len(BATCH_SIZES)}, --workers, --rates and --repeats at least 1")
    configs = sweep(args.groups, args.rates, args.epochs, args.dataset)
    load = os.getloadavg()[0]
    one, split = WorkerPool(1), WorkerPool(args.workers)
    try:
        for pool in (one, split):
            if not pool.wait_ready(300):
                sys.exit(f"the workers did not start: {pool.problem}")
        times: dict[str, list[float]] = {"one worker": [], f"split over {args.workers}": []}
        used = 0
        for repeat in range(args.repeats):
            for name, pool in zip(times, (one, split)) if repeat % 2 == 0 else reversed(list(zip(times, (one, split)))):
                seconds, workers = timed(pool, configs)
                used = max(used, workers) if pool is split else used
                times[name].append(seconds)
                print(f"  round {repeat + 1} {name:16s} {seconds:7.2f} s on {workers} worker(s)", flush=True)
    finally:
        one.close()
        split.close()
    base, spread = (statistics.median(values) for values in times.values())
    print(f"\n{args.dataset}: {args.groups} batch sizes x {args.rates} learning rates = {len(configs)} runs, "
          f"{args.epochs} epochs, {args.repeats} round(s), median wall time of the whole sweep")
    print(f"one worker: {base:.2f} s; split over {args.workers} workers ({used} used): {spread:.2f} s; "
          f"speed-up {base / spread:.2f}x")
    print(f"machine: {len(os.sched_getaffinity(0))} CPUs usable; load average (1 min) {load:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()
