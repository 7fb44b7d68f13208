"""Does the dashboard slow training down? The same run with and without the dashboard's machinery.

    python bench/bench_dashboard.py                  # fashion-mnist if installed, else mnist-sample
    python bench/bench_dashboard.py --dataset mnist-sample --epochs 10 --repeats 3

(a) CLI path: a plain loop consuming `lrcore.train.train(...)` events.
(b) Dashboard path: the Train page's worker (`lrcore.worker.TrainingWorker`, which folds every
    event into its locked record) with a polling thread that, every 0.5 s like the pages'
    `st.fragment(run_every=0.5)`, takes `worker.snapshot()`, builds the Train page's three
    figures (`pages.charts.LiveCharts`) AND the Weights page's heatmaps and biases (refreshed,
    as on the page, only when a new epoch's weights arrive), and turns each into JSON the way
    `st.plotly_chart` does. One browser tab shows one page, so building both pages' figures
    overstates the cost.
(c) As (b) plus the run store's listener, which the pages attach to every run (it writes the
    run's curves and weights to disk).

Same configuration and seed for all; the variants alternate within each repeat and the
medians are compared, as are the medians of the per-repeat ratios (robust to the machine's
load drifting). Prints seconds for each and the ratios (target: dashboard at most 10% slower
than the CLI path).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import plotly.io
import plotly.tools

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lrcore import TrainConfig, load_dataset, train  # noqa: E402
from lrcore import events as ev  # noqa: E402
from lrcore.data import locate  # noqa: E402
from lrcore.runstore import RunStore  # noqa: E402
from lrcore.worker import TrainingWorker  # noqa: E402
from pages import charts  # noqa: E402

POLL_SECONDS = 0.5


def cli_run(config: TrainConfig, dataset) -> tuple[float, float]:
    """(seconds, test accuracy) for a plain loop over train()'s events."""
    started = time.perf_counter()
    finished = None
    for event in train(config, dataset):
        if isinstance(event, ev.Finished):
            finished = event
    return time.perf_counter() - started, finished.test_accuracy


def as_streamlit_sends(figure) -> str:
    """What st.plotly_chart does with a figure before sending it to the browser."""
    return plotly.io.to_json(plotly.tools.return_figure_from_figure_or_data(figure, validate_figure=True),
                             validate=False)


def poll(worker: TrainingWorker, stop: threading.Event, counts: dict) -> None:
    """The pages' fragments: snapshot, build the figures, serialise them, twice a second."""
    # the pages keep these in session state
    live, maps, memo = charts.LiveCharts(), charts.WeightMaps(), charts.FigureMemo()
    while not stop.wait(POLL_SECONDS):
        started = time.thread_time()  # CPU time of this thread: waits for the GIL or a core do not count
        record = worker.snapshot()
        figures = list(live.figures(record).values())
        if record.snapshots:
            _epoch, weight, bias = record.snapshots[-1]
            source = (record.run_id, len(record.snapshots))
            figures += [maps.figure(source, weight, record.class_names),
                        memo.get("biases", source, lambda: charts.bias_figure(bias, record.class_names))]
        counts["bytes"] += sum(len(as_streamlit_sends(figure)) for figure in figures)
        counts["polls"] += 1
        counts["seconds"] += time.thread_time() - started


def dashboard_run(config: TrainConfig, dataset, run_store: RunStore | None) -> tuple[float, float, dict]:
    """(seconds, test accuracy, poll counts) for the page's worker with a polling thread."""
    listeners = [run_store.listener()] if run_store is not None else []
    counts = {"polls": 0, "bytes": 0, "seconds": 0.0}
    stop = threading.Event()
    started = time.perf_counter()
    worker = TrainingWorker(config, dataset, listeners=listeners).start()
    poller = threading.Thread(target=poll, args=(worker, stop, counts), daemon=True)
    poller.start()
    worker.join()
    seconds = time.perf_counter() - started
    stop.set()
    poller.join()
    record = worker.snapshot()
    assert record.status == "done", record.message
    return seconds, record.final["test_accuracy"], counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", default=None, help="default: fashion-mnist when installed, else mnist-sample")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant (medians are compared)")
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()
    name = args.dataset or ("fashion-mnist" if locate("fashion-mnist") else "mnist-sample")
    dataset = load_dataset(name)
    config = TrainConfig(dataset=name, epochs=args.epochs, learning_rate=args.lr, device="cpu")
    print(f"{name}: {len(dataset.train_labels):,} train+validation images, {args.epochs} epochs, "
          f"batch size {config.batch_size}, {args.repeats} repeats")

    cli_run(config.replace(epochs=1), dataset)  # warm-up: first-call costs belong to neither side
    times = {"cli": [], "dashboard": [], "dashboard+store": []}
    accuracy = {}
    polls = {}
    with tempfile.TemporaryDirectory(prefix="lrbench-runs-") as runs_dir:
        store = RunStore(runs_dir)
        for repeat in range(args.repeats):
            order = ["cli", "dashboard", "dashboard+store"]
            order = order[repeat % 3:] + order[:repeat % 3]  # no variant always goes first
            for variant in order:
                if variant == "cli":
                    seconds, accuracy[variant] = cli_run(config, dataset)
                else:
                    seconds, accuracy[variant], polls[variant] = dashboard_run(
                        config, dataset, store if variant == "dashboard+store" else None)
                times[variant].append(seconds)
                print(f"  repeat {repeat + 1} {variant:16s} {seconds:7.2f} s")

    base = statistics.median(times["cli"])
    print(f"\n{'variant':18s}{'median s':>10s}{'ratio':>8s}{'test acc':>10s}")
    for variant, values in times.items():
        median = statistics.median(values)
        print(f"{variant:18s}{median:10.2f}{median / base:8.3f}{accuracy[variant]:10.4f}")
    for variant, count in polls.items():
        per_poll = max(1, count["polls"])
        print(f"{variant}: last run {count['polls']} polls, {count['seconds'] / per_poll * 1e3:.0f} ms CPU and "
              f"{count['bytes'] / per_poll / 1e3:.0f} kB of figure JSON per poll")
    # Each repeat runs all variants back to back, so per-repeat ratios cancel slow drifts in machine load.
    paired = {variant: statistics.median(v / c for v, c in zip(times[variant], times["cli"]))
              for variant in times if variant != "cli"}
    print("median of per-repeat ratios: " + ", ".join(f"{variant} {ratio:.3f}" for variant, ratio in paired.items()))
    worst = max(paired.values())
    print(f"\nslowest dashboard variant / CLI = {worst:.3f} (target <= 1.10): {'OK' if worst <= 1.10 else 'TOO SLOW'}")


if __name__ == "__main__":
    main()
