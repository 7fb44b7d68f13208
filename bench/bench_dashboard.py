"""Does the dashboard slow training down? A real server with the Train page watching, against the CLI.

    python bench/bench_dashboard.py                  # fashion-mnist if installed, 5 epochs, 5 repeats
    python bench/bench_dashboard.py --quick          # mnist-sample, 2 repeats, both extra tabs below (make bench)
    python bench/bench_dashboard.py --gc             # also: postScriptGC off, gc.freeze() off (see below)
    python bench/bench_dashboard.py --variant "no post-script GC" runner.postScriptGC=false
    python bench/bench_dashboard.py --pin-browser 1   # also: the browser held to CPU 1, off the worker's way
    python bench/bench_dashboard.py --websocket-tab   # also: the tab as a websocket client that draws nothing
    python bench/bench_dashboard.py --charts-off      # also: a Chromium tab whose charts are never drawn

dashboard: a real `streamlit run dashboard.py` server (this checkout's .streamlit/config.toml) and
    headless Chromium. Each repeat opens the Train page in a fresh browser session with the run's
    settings in the URL, presses Start and keeps the tab open while the page polls the run as it
    does for a user, until the run is over.
cli: `python -m lrcore train` with the same dataset, epochs and (dataset default) settings, in its
    own process.
Both record their runs in the same run store (a fresh data folder); the figures are the run's own
recorded times, read back from the store: the median of its trained epochs' `seconds` (per epoch),
and its `elapsed` (the whole run, first epoch-0 evaluation to the end). Python's and the server's
start-up are in neither. The variants alternate within each repeat (no variant always first) and
the medians are compared, as are the medians of the per-repeat ratios (robust to load drifting).
Target: dashboard / cli at most 1.10x, per epoch and for the whole run.

`--websocket-tab` adds a row whose tab is bench/streamlit_client.py: the same server, link, Start
press and polling (the frontend's own websocket messages and fragment timers), but nothing is
drawn. Side by side with the Chromium row it splits the dashboard's cost into the server's part
and the browser's drawing, which a student's browser does on the student's own computer and this
benchmark's Chromium does on the server's cores. `--charts-off` adds a Chromium row whose page never
loads the charts' script (Streamlit's ECharts element: the request is refused): everything but the charts is drawn, which splits the
browser's part into Streamlit's own page and the charts. Every Chromium row also reports the
browser's CPU time from the Start press to the run's end (all of Chromium's processes, read from
/proc): the load it puts on the cores the training shares.

Server variants (`--variant NAME OPTION=VALUE ...`, or `--gc` for the three below) start one more
server each: an OPTION is a Streamlit config option (`runner.postScriptGC=false`, passed as its
STREAMLIT_... environment variable) or an environment variable (`LRCORE_GC_FREEZE=0`: no
`gc.freeze()` after imports, see ui/serving.py).
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

from streamlit.string_util import to_snake_case

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.streamlit_client import StreamlitClient  # noqa: E402
from lrcore.data import locate  # noqa: E402
from lrcore.store import Store, StoreError  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, start_streamlit, stop, wait_for_app  # noqa: E402

# The Train page's three charts are drawn (ECharts, as SVG: one in each chart's container).
CHARTS_DRAWN = "document.querySelectorAll('[data-testid=stMain] [_echarts_instance_] svg').length >= 3"
GC_VARIANTS = {"postScriptGC off": ["runner.postScriptGC=false"],
               "no gc.freeze": ["LRCORE_GC_FREEZE=0"],
               "no gc.freeze, postScriptGC off": ["LRCORE_GC_FREEZE=0", "runner.postScriptGC=false"]}


@dataclass
class Result:
    epoch_seconds: float  # median of the trained epochs' recorded seconds
    run_seconds: float  # the run's recorded elapsed time
    wall_seconds: float  # Start pressed (or CLI started) to the run's end seen here: start-up included
    test_accuracy: float
    browser_cpu_seconds: float | None = None  # Chromium's CPU time from Start to the run's end (Chromium rows)


def server_env(options: list[str]) -> dict[str, str]:
    """`section.option=value` -> STREAMLIT_SECTION_OPTION=value; NAME=value as it is."""
    env = {}
    for option in options:
        key, _, value = option.partition("=")
        if "." in key:
            key = f"STREAMLIT_{to_snake_case(key.replace('.', '_')).upper()}"
        env[key] = value
    return env


def pinned_chromium(folder: Path, cpu: int) -> Path:
    """A launcher that starts Chromium held to one CPU (its child processes inherit the affinity)."""
    launcher = folder / "chromium-on-one-cpu"
    launcher.write_text(f'#!/bin/sh\nexec taskset -c {cpu} {CHROMIUM} "$@"\n')
    launcher.chmod(0o755)
    return launcher


def from_store(store: Store, run_id: str, wall: float, browser_cpu: float | None = None) -> Result:
    record = store.get(run_id)
    assert record.status == "done", (record.status, record.message)
    trained = [epoch["seconds"] for epoch in record.epochs if epoch["epoch"] > 0]
    return Result(statistics.median(trained), record.elapsed, wall, record.final.get("test_accuracy", float("nan")),
                  browser_cpu)


def chromium_cpu_seconds() -> float:
    """User + system CPU time of every Chromium process this benchmark started (its descendants named chrom*)."""
    # the benchmarks' one reading of /proc; imported here: bench_class imports bench_latency, which imports this
    from bench.bench_class import cpu_seconds, process_tree

    def is_chromium(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/comm").read_text().startswith("chrom")
        except OSError:  # it ended meanwhile
            return False

    return cpu_seconds([pid for pid in process_tree(os.getpid()) if is_chromium(pid)])


def cli_run(dataset: str, epochs: int, data_dir: Path, store: Store) -> Result:
    env = {**os.environ, "LRCORE_DATA_DIR": str(data_dir)}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lrcore", "train", "--dataset", dataset, "--epochs", str(epochs),
                    "--name", "bench cli", "--quiet"], cwd=ROOT, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    newest = next(run for run in store.list_runs() if run.source == "cli")
    return from_store(store, newest.run_id, wall)


def run_over(store: Store, run_id: str, deadline: float) -> bool:
    """Whether the store's record of the dashboard's run says it has ended (the benchmark waits on the store)."""
    assert time.monotonic() < deadline, "the dashboard's run did not end within 10 minutes"
    try:
        return not store.get(run_id).active
    except StoreError:  # the server's store thread has not written the run yet
        return False


def dashboard_run(browser, url: str, dataset: str, epochs: int, store: Store, charts: bool = True) -> Result:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    if not charts:  # Streamlit loads its ECharts element (and ECharts) as a script of its own: refuse it
        context.route("**/EChartsChart*.js", lambda route: route.abort())
    page = context.new_page()
    page.set_default_timeout(300_000)
    try:
        page.goto(f"{url}/train?dataset={dataset}&epochs={epochs}")
        page.get_by_text("Pick the settings above", exact=False).wait_for()
        wait_for_app(page)
        if charts:  # the page has loaded when its three (empty) charts are drawn: the charts' script is then compiled
            page.wait_for_function(CHARTS_DRAWN)
            page.wait_for_timeout(500)
        started, browser_cpu = time.perf_counter(), chromium_cpu_seconds()
        page.locator('[data-testid="stMain"]').get_by_role("button", name="Start", exact=False).first.click()
        page.wait_for_url("**run=*")
        run_id = page.url.split("run=")[1].split("&")[0]
        deadline = time.monotonic() + 600
        while not run_over(store, run_id, deadline):  # the tab stays open and polls by itself
            page.wait_for_timeout(100)
        wall = time.perf_counter() - started
        return from_store(store, run_id, wall, chromium_cpu_seconds() - browser_cpu)
    finally:
        context.close()


def websocket_run(url: str, dataset: str, epochs: int, store: Store) -> Result:
    """dashboard_run with bench/streamlit_client.py as the tab: the same requests, nothing drawn."""
    async def run() -> Result:
        client = StreamlitClient(url, f"/train?dataset={dataset}&epochs={epochs}")
        try:
            await client.connect(300)
            started = await client.press("train_start", 300)
            run_id = await client.wait_for(lambda: parse_qs(client.query_string).get("run", [""])[0], 300,
                                           "the run's id in the page's link")
            deadline = time.monotonic() + 600
            while not run_over(store, run_id, deadline):  # the client's fragment timers poll as the page does
                await asyncio.sleep(0.1)
            return from_store(store, run_id, time.perf_counter() - started)
        finally:
            await client.close()

    # In a thread of its own: sync Playwright keeps an event loop running in this one (asyncio.run refuses).
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, run()).result()


def browser_text(seconds: float | None) -> str:
    return "" if seconds is None else f"   browser CPU {seconds:5.2f} s"


def browser_median(runs: list[Result]) -> str:
    seconds = [run.browser_cpu_seconds for run in runs if run.browser_cpu_seconds is not None]
    return f"{statistics.median(seconds):.2f}" if seconds else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--dataset", default=None, help="default: fashion-mnist when installed, else mnist-sample")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true",
                        help="mnist-sample, 2 repeats, --websocket-tab and --charts-off (a minute or two)")
    parser.add_argument("--gc", action="store_true", help="also the garbage-collection variants of the server")
    parser.add_argument("--variant", nargs="+", action="append", default=[], metavar=("NAME", "OPTION=VALUE"),
                        help="one more server: a name, then Streamlit options or environment variables")
    parser.add_argument("--pin-browser", type=int, metavar="CPU",
                        help="also watch the default server's runs from a second Chromium held to this CPU "
                             "(taskset), as if the browser ran on the student's own computer")
    parser.add_argument("--websocket-tab", action="store_true",
                        help="also watch the default server's runs from a websocket client that draws nothing "
                             "(bench/streamlit_client.py): the server's own share of the cost")
    parser.add_argument("--charts-off", action="store_true",
                        help="also watch the default server's runs from a Chromium tab that never loads the charts' script "
                             "(no chart drawn): the browser's cost without the charts")
    args = parser.parse_args()
    if args.quick:
        args.dataset, args.repeats = args.dataset or "mnist-sample", min(args.repeats, 2)
        args.websocket_tab = args.charts_off = True
    dataset = args.dataset or ("fashion-mnist" if locate("fashion-mnist") else "mnist-sample")
    servers = {"dashboard": []} | (GC_VARIANTS if args.gc else {}) | {v[0]: v[1:] for v in args.variant}
    pinned = f"dashboard, browser on CPU {args.pin_browser}"
    if args.pin_browser is not None and not 0 <= args.pin_browser < os.cpu_count():
        sys.exit(f"--pin-browser {args.pin_browser}: this machine's CPUs are 0 to {os.cpu_count() - 1}")
    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()
    print(f"{dataset}, {args.epochs} epochs, {args.repeats} repeats; servers: "
          + "; ".join(f"{name} ({' '.join(options) or 'as configured'})" for name, options in servers.items()))
    results: dict[str, list[Result]] = {"cli": [], **{name: [] for name in servers}}
    if args.pin_browser is not None:
        results[pinned] = []
    websocket = "dashboard, websocket tab"
    if args.websocket_tab:
        results[websocket] = []
    no_charts = "dashboard, charts not drawn"
    if args.charts_off:
        results[no_charts] = []
    with tempfile.TemporaryDirectory(prefix="lrbench-dashboard-") as folder, sync_playwright() as playwright:
        data_dir = Path(folder)
        started = {name: start_streamlit(data_dir, data_dir / f"streamlit-{i}.log", server_env(options))
                   for i, (name, options) in enumerate(servers.items())}
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pinned_browser = (None if args.pin_browser is None else
                          playwright.chromium.launch(executable_path=str(pinned_chromium(data_dir, args.pin_browser)),
                                                     args=CHROMIUM_ARGS))
        store = Store(data_dir / "runs" / "lrcore.db")
        try:
            # warm-up, not measured: the CLI's first import, each server's first page, dataset and workers
            cli_run(dataset, 1, data_dir, store)
            for name, (_process, url) in started.items():
                dashboard_run(browser, url, dataset, 1, store)
            for repeat in range(args.repeats):
                order = list(results)
                order = order[repeat % len(order):] + order[:repeat % len(order)]
                for variant in order:
                    if variant == "cli":
                        result = cli_run(dataset, args.epochs, data_dir, store)
                    elif variant == websocket:
                        result = websocket_run(started["dashboard"][1], dataset, args.epochs, store)
                    elif variant == no_charts:
                        result = dashboard_run(browser, started["dashboard"][1], dataset, args.epochs, store, False)
                    elif variant == pinned:
                        result = dashboard_run(pinned_browser, started["dashboard"][1], dataset, args.epochs, store)
                    else:
                        result = dashboard_run(browser, started[variant][1], dataset, args.epochs, store)
                    results[variant].append(result)
                    print(f"  repeat {repeat + 1} {variant:32s} epoch {result.epoch_seconds * 1e3:7.1f} ms   run "
                          f"{result.run_seconds:6.2f} s   wall {result.wall_seconds:6.2f} s"
                          + browser_text(result.browser_cpu_seconds), flush=True)
        finally:
            browser.close()
            if pinned_browser is not None:
                pinned_browser.close()
            for process, _url in started.values():
                stop(process)
    load_after = os.getloadavg()

    def median(variant: str, field: str) -> float:
        return statistics.median(getattr(result, field) for result in results[variant])

    def paired(variant: str, field: str) -> float:
        return statistics.median(getattr(mine, field) / getattr(cli, field)
                                 for mine, cli in zip(results[variant], results["cli"]))

    print("\nratios are to the CLI (median ratio, median of per-repeat ratios); target <= 1.10")
    print(f"{'variant':32s}{'epoch ms':>10s}{'ratio':>7s}{'paired':>7s}{'run s':>8s}{'ratio':>7s}{'paired':>7s}"
          f"{'wall s':>8s}{'test acc':>9s}{'browser CPU s':>15s}")
    for variant, runs in results.items():
        epoch, run = median(variant, "epoch_seconds"), median(variant, "run_seconds")
        print(f"{variant:32s}{epoch * 1e3:10.1f}{epoch / median('cli', 'epoch_seconds'):7.2f}"
              f"{paired(variant, 'epoch_seconds'):7.2f}{run:8.2f}{run / median('cli', 'run_seconds'):7.2f}"
              f"{paired(variant, 'run_seconds'):7.2f}{median(variant, 'wall_seconds'):8.2f}{runs[-1].test_accuracy:9.4f}"
              f"{browser_median(runs):>15s}")
    for variant in [*servers, *([websocket] if args.websocket_tab else []), *([no_charts] if args.charts_off else [])]:
        worst = max(median(variant, field) / median("cli", field) for field in ("epoch_seconds", "run_seconds"))
        print(f"  {variant}: {'OK' if worst <= 1.10 else 'TOO SLOW'} (worst median ratio {worst:.2f})")
    print("wall: Start pressed to the run's end as the benchmark saw it (the CLI's includes Python's start-up)")
    print("browser CPU s: Chromium's CPU time (all its processes) from the Start press to the run's end, median")
    print(f"machine: {os.cpu_count()} CPUs, load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after")


if __name__ == "__main__":
    main()
