"""Does the dashboard slow training down? The same run with and without the dashboard's machinery.

    python bench/bench_dashboard.py                  # fashion-mnist if installed, else mnist-sample
    python bench/bench_dashboard.py --dataset mnist-sample --epochs 10 --repeats 3

(a) CLI path: a plain loop consuming `lrcore.training.train(...)` events; "cli+store" also records
    the run in a run store as `python -m lrcore train` does by default.
(b) Dashboard path: the Train page's job (`lrcore.jobs.TrainingJob`, which folds every
    event into its locked record) with a polling thread that, every 0.5 s like the pages'
    `st.fragment(run_every=0.5)`, takes the run's record (`job.record(run_id)`), builds the Train page's three
    figures (`ui.charts.LiveCharts`) AND the Weights page's heatmaps and biases (refreshed,
    as on the page, only when a new epoch's weights arrive), and turns each into JSON the way
    `st.plotly_chart` does. The figure objects persist from run to run, as they do in a page's
    session state. One browser tab shows one page, so building both pages' figures overstates
    the cost.
(c) As (b) plus the store's listener, which the pages attach to every run (it writes the
    run's curves and weights to the SQLite store).

Same configuration and seed for all; the variants alternate within each repeat and the
medians are compared, as are the medians of the per-repeat ratios (robust to the machine's
load drifting). Prints seconds for each and the ratios. Target: the dashboard at most 10%
slower than the CLI doing the same work (dashboard / cli, and dashboard+store / cli+store).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import plotly.io
import plotly.tools
# Streamlit's own plotly set-up (its template becomes the default), so figures are built as in the server
import streamlit.elements.plotly_chart  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lrcore import TrainConfig, load_dataset, train  # noqa: E402
from lrcore import events as ev  # noqa: E402
from lrcore.data import locate  # noqa: E402
from lrcore.jobs import TrainingJob  # noqa: E402
from lrcore.record import RunRecord, fold  # noqa: E402
from lrcore.store import Store  # noqa: E402
from ui import charts, maps  # noqa: E402

POLL_SECONDS = 0.5


@dataclass
class Result:
    seconds: float  # wall clock, start to finish
    cpu_seconds: float  # CPU time of the training thread from RunStarted to Finished
    test_accuracy: float


class TrainingThreadClock:
    """Reads the training thread's CPU clock at RunStarted and Finished (called in that thread).

    Work done by other threads (the poller) does not count; time spent waiting for the GIL or a
    core does not either, so this separates extra work done in the training thread from noise.
    """

    def __init__(self) -> None:
        self.started = self.finished = 0.0

    def __call__(self, _job, _record, event) -> None:
        if isinstance(event, ev.RunStarted):
            self.started = time.thread_time()
        elif isinstance(event, ev.Finished):
            self.finished = time.thread_time()

    @property
    def seconds(self) -> float:
        return self.finished - self.started


def cli_run(config: TrainConfig, dataset, run_store: Store | None = None) -> Result:
    """A plain loop over train()'s events, folding them into a record and saving it in `run_store`
    if given (as the CLI does)."""
    clock = TrainingThreadClock()
    started = time.perf_counter()
    finished = None
    record = RunRecord(f"bench-{time.time_ns()}", "bench", config, source="cli")
    writer = run_store.writer(record) if run_store is not None else None
    for event in train(config, dataset, batch_event_seconds=0.2):  # the CLI's batch event rate
        clock(None, None, event)
        fold(record, event)
        if writer is not None:
            writer.write(record, event)
        if isinstance(event, ev.Finished):
            finished = event
    if writer is not None:
        writer.close()  # everything committed, as the CLI waits for before it exits
    return Result(time.perf_counter() - started, clock.seconds, finished.test_accuracy)


def as_streamlit_sends(figure) -> str:
    """What st.plotly_chart does with a figure before sending it to the browser."""
    return plotly.io.to_json(plotly.tools.return_figure_from_figure_or_data(figure, validate_figure=True),
                             validate=False)


class PageState:
    """What the Train and Weights pages keep in session state between reruns and runs."""

    def __init__(self) -> None:
        self.live, self.maps, self.memo = charts.LiveCharts(), maps.WeightMaps(), charts.FigureMemo()


def poll(job: TrainingJob, stop: threading.Event, counts: dict, page: PageState) -> None:
    """The pages' fragments: snapshot, build the figures, serialise them, twice a second."""
    live, weight_maps, memo = page.live, page.maps, page.memo
    while not stop.wait(POLL_SECONDS):
        started = time.thread_time()  # CPU time of this thread: waits for the GIL or a core do not count
        record = job.record(job.run_ids[0])
        figures = list(live.figures(record).values())
        if record.snapshots:
            _epoch, weight, bias = record.snapshots[-1]
            source = (record.run_id, len(record.snapshots))
            figures += [weight_maps.figure(source, weight, record.class_names),
                        memo.get("biases", source, lambda: maps.bias_figure(bias, record.class_names))]
        counts["bytes"] += sum(len(as_streamlit_sends(figure)) for figure in figures)
        counts["polls"] += 1
        counts["seconds"] += time.thread_time() - started


def dashboard_run(config: TrainConfig, dataset, run_store: Store | None, page: PageState) -> tuple[Result, dict]:
    """The page's job with a polling thread; also returns the poll counts."""
    clock = TrainingThreadClock()
    listeners = [clock] + ([run_store.listener()] if run_store is not None else [])
    counts = {"polls": 0, "bytes": 0, "seconds": 0.0}
    stop = threading.Event()
    started = time.perf_counter()
    job = TrainingJob([config], dataset, listeners=listeners).start()
    poller = threading.Thread(target=poll, args=(job, stop, counts, page), daemon=True)
    poller.start()
    job.join()
    seconds = time.perf_counter() - started
    stop.set()
    poller.join()
    record = job.record(job.run_ids[0])
    assert record.status == "done", record.message
    return Result(seconds, clock.seconds, record.final["test_accuracy"]), counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", default=None, help="default: fashion-mnist when installed, else mnist-sample")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=11, help="runs of each variant (medians are compared)")
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()
    name = args.dataset or ("fashion-mnist" if locate("fashion-mnist") else "mnist-sample")
    dataset = load_dataset(name)
    config = TrainConfig(dataset=name, epochs=args.epochs, learning_rate=args.lr, device="cpu")
    print(f"{name}: {len(dataset.train_labels):,} train+validation images, {args.epochs} epochs, "
          f"batch size {config.batch_size}, {args.repeats} repeats")

    cli_run(config.replace(epochs=1), dataset)  # warm-up: first-call costs belong to neither side
    results: dict[str, list[Result]] = {"cli": [], "cli+store": [], "dashboard": [], "dashboard+store": []}
    baseline = {"dashboard": "cli", "dashboard+store": "cli+store"}  # the same work without the pages
    polls = {}
    pages = {variant: PageState() for variant in baseline}
    with tempfile.TemporaryDirectory(prefix="lrbench-runs-") as runs_dir:
        store = Store(Path(runs_dir) / "lrcore.db")
        for repeat in range(args.repeats):
            order = list(results)
            order = order[repeat % len(order):] + order[:repeat % len(order)]  # no variant always goes first
            for variant in order:
                recorded = store if variant.endswith("+store") else None
                if variant.startswith("cli"):
                    result = cli_run(config, dataset, recorded)
                else:
                    result, polls[variant] = dashboard_run(config, dataset, recorded, pages[variant])
                results[variant].append(result)
                print(f"  repeat {repeat + 1} {variant:16s} {result.seconds:7.2f} s   "
                      f"training thread CPU {result.cpu_seconds:6.2f} s")

    def median(variant: str, field: str) -> float:
        return statistics.median(getattr(result, field) for result in results[variant])

    def paired(variant: str, field: str, base: str = "cli") -> float:
        """Median of per-repeat ratios: each repeat runs all variants back to back, so drifts in load cancel."""
        return statistics.median(getattr(mine, field) / getattr(other, field)
                                 for mine, other in zip(results[variant], results[base]))

    print("\nratios are to the plain CLI loop")
    print(f"{'variant':18s}{'median s':>10s}{'ratio':>8s}{'paired':>8s}{'CPU s':>8s}{'ratio':>8s}{'test acc':>10s}")
    for variant, runs in results.items():
        wall, cpu = median(variant, "seconds"), median(variant, "cpu_seconds")
        print(f"{variant:18s}{wall:10.2f}{wall / median('cli', 'seconds'):8.3f}{paired(variant, 'seconds'):8.3f}"
              f"{cpu:8.2f}{cpu / median('cli', 'cpu_seconds'):8.3f}{runs[-1].test_accuracy:10.4f}")
    for variant, count in polls.items():
        per_poll = max(1, count["polls"])
        print(f"{variant}: last run {count['polls']} polls, {count['seconds'] / per_poll * 1e3:.0f} ms CPU and "
              f"{count['bytes'] / per_poll / 1e3:.0f} kB of figure JSON per poll")
    print("\nthe dashboard against the CLI doing the same work (wall clock):")
    for variant, base in baseline.items():
        ratio, paired_ratio = median(variant, "seconds") / median(base, "seconds"), paired(variant, "seconds", base)
        print(f"  {variant:16s} / {base:10s} median ratio {ratio:.3f}, median of per-repeat ratios {paired_ratio:.3f} "
              f"(target <= 1.10): {'OK' if max(ratio, paired_ratio) <= 1.10 else 'TOO SLOW'}")


if __name__ == "__main__":
    main()
