"""What a browser tab watching a live run costs the server: CPU per tab, measured with real tabs.

A real `streamlit run dashboard.py` server (fresh data folder) trains one long run, started
from the Train page like a user does; then 1, 5 and 10 headless Chromium tabs (one browser,
one page each) open that run's Train page, which polls every LRCORE_POLL_SECONDS (ui/polling.py). For each tab count the
server process's own CPU time (utime + stime of /proc/<pid>/stat, child processes excluded)
is read over a fixed window, minus the same window with no tab open (training runs in a
thread of the server, so the 0-tab window holds training and the idle server), divided by
the tab count: % of one core per watching tab. Also counted: the websocket bytes the tabs
received in the window and the script runs the server finished for them (`script_finished`
messages: the Train page's fragment and the sidebar's run line), so the
CPU is also given per run ("poll") and a server too busy to poll at full rate shows as such.

    .venv/bin/python bench/bench_tabs.py            # 0, 1, 5, 10 tabs, 20 s windows
    .venv/bin/python bench/bench_tabs.py --quick    # 0, 1, 5 tabs, 5 s windows (make bench)
    .venv/bin/python bench/bench_tabs.py --workers 0 --option runner.postScriptGC=false   # other settings
    .venv/bin/python bench/bench_tabs.py --quick --variant LRCORE_POLL_SECONDS=0.5 --variant runner.postScriptGC=false
"""
from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.browser.conftest import start_streamlit  # noqa: E402  (one way to start the dashboard)
from ui import polling  # noqa: E402
CHROMIUM = os.environ.get("LRCORE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 # every tab polls as a visible one would, none is throttled as a background tab
                 "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                 "--disable-backgrounding-occluded-windows"]
TICKS = os.sysconf("SC_CLK_TCK")
TARGET = 5.0  # % of one core per watching tab (issue 13)


def log(message: str) -> None:
    """Progress on stderr (the figures go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def start_server(data_dir: Path, log_path: Path, workers: str | None, options: list[str],
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """The dashboard as `make dashboard` serves it, on a free port; returns once /_stcore/health says ok."""
    extra = {**({"LRCORE_WORKERS": workers} if workers is not None else {}), **(env or {})}
    return start_streamlit(data_dir, log_path, extra or None, tuple(options))


def _stat_seconds(path: Path) -> float:
    fields = path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime: fields 14 and 15 of proc(5)


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process itself (all its threads, no children), in seconds."""
    return _stat_seconds(Path(f"/proc/{pid}/stat"))


def thread_seconds(pid: int) -> dict[int, float]:
    """utime + stime of each live thread of the process."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            times[int(task.name)] = _stat_seconds(task / "stat")
        except OSError:  # the thread ended meanwhile
            pass
    return times


def dataset_choice() -> tuple[str, str]:
    """A run that trains for longer than the benchmark: Fashion-MNIST if installed, else the bundled sample."""
    from lrcore.data import available_datasets

    if available_datasets().get("fashion-mnist"):
        return "fashion-mnist", "dataset=fashion-mnist&lr=0.05&batch_size=8&epochs=1000"
    return "mnist-sample", "lr=0.05&batch_size=1&epochs=1000"


class Tabs:
    """Pages of one headless Chromium, each with the run's Train page open; counts websocket bytes received."""

    def __init__(self, browser, url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.context.set_default_timeout(180_000)  # a loaded 2-core machine opens 10 tabs slowly
        self.url, self.pages, self.received, self.polls = url, [], 0, 0

    def _count(self, websocket) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        def received(payload) -> None:
            self.received += len(payload)
            if isinstance(payload, bytes):
                message = ForwardMsg()
                try:
                    message.ParseFromString(payload)
                except Exception:  # noqa: BLE001 - not a ForwardMsg: only counted in bytes
                    return
                # every script or fragment run ends with one: the polls the server really served
                self.polls += message.WhichOneof("type") == "script_finished"
        websocket.on("framereceived", received)

    def open(self, count: int) -> None:
        """Open tabs up to `count` at once, then wait until each shows the run's charts."""
        new = []
        while len(self.pages) + len(new) < count:
            page = self.context.new_page()
            page.on("websocket", self._count)
            page.goto(self.url, wait_until="commit")
            new.append(page)
        for page in new:
            page.get_by_text("Loss per minibatch").first.wait_for(timeout=180_000)
        self.pages += new

    def wait(self, seconds: float) -> None:
        """Sleep while Playwright delivers the tabs' websocket events (a plain sleep would hold them back)."""
        if self.pages:
            self.pages[0].wait_for_timeout(seconds * 1000)
        else:
            time.sleep(seconds)

    def close_all(self) -> None:
        for page in self.pages:
            page.close()
        self.pages = []


def start_run(browser, url: str, params: str) -> str:
    """Press Start on the Train page with `params`; return the run's id (from the page's URL)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(180_000)
    page = context.new_page()
    page.goto(f"{url}/train?{params}")
    page.locator('[data-testid="stMain"]').get_by_role("button", name=re.compile("Start$")).click()
    page.get_by_text("Loss per minibatch").first.wait_for(timeout=120_000)
    page.wait_for_url(re.compile(r"run="), timeout=30_000)
    run_id = re.search(r"run=([^&]+)", page.url).group(1)
    context.close()
    return run_id


def window(pid: int, seconds: float, tabs: Tabs, training: int | None = None) -> tuple[float, float, int | None]:
    """% of one core the server process used over `seconds` from now: in all, and without the thread
    `training` (None: the busiest one of this window is returned as the training thread)."""
    start_cpu, start_threads, start = cpu_seconds(pid), thread_seconds(pid), time.perf_counter()
    tabs.wait(seconds)  # the measuring window itself: nothing is asserted about it
    end_cpu, end_threads, elapsed = cpu_seconds(pid), thread_seconds(pid), time.perf_counter() - start
    used = {tid: end_threads[tid] - before for tid, before in start_threads.items() if tid in end_threads}
    if training is None and used:
        busiest = max(used, key=used.get)
        training = busiest if used[busiest] > 0.05 * elapsed else None  # an idle server has no busy thread
    total = 100 * (end_cpu - start_cpu) / elapsed
    return total, total - 100 * used.get(training, 0.0) / elapsed, training


def parse_variant(text: str) -> tuple[dict[str, str], list[str]]:
    """'LRCORE_POLL_SECONDS=0.5 runner.postScriptGC=false' -> ({env}, [Streamlit options])."""
    env, options = {}, []
    for pair in text.split():
        key, separator, value = pair.partition("=")
        if not separator or not key:
            sys.exit(f"--variant {text!r}: each part must be KEY=VALUE, not {pair!r}")
        if "." in key:
            options.append(pair)
        else:
            env[key] = value
    return env, options


def measure(args, env: dict[str, str], options: list[str], counts: list[int], seconds: float, settle: float,
            name: str, params: str) -> dict:
    """One server with `env`: the 0-tab windows before and after, and one window per tab count."""
    from playwright.sync_api import sync_playwright

    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        server, url = start_server(Path(folder), Path(folder) / "streamlit.log", args.workers,
                                   args.option + options, env)
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            log(f"server up at {url} ({' '.join([*(f'{k}={v}' for k, v in env.items()), *options]) or 'as configured'}); "
                f"starting the run")
            run_id = start_run(browser, url, params)
            log(f"run {run_id} training")
            tabs = Tabs(browser, f"{url}/train?run={run_id}")
            tabs.wait(settle)
            baseline, serving, training = window(server.pid, seconds, tabs)
            log(f"0 tabs: server {baseline:.1f}% of a core, {serving:.1f}% without the training thread {training}")
            for count in counts:
                tabs.open(count)
                log(f"{count} tabs open")
                tabs.wait(settle)
                received, polls = tabs.received, tabs.polls
                total, without, _ = window(server.pid, seconds, tabs, training)
                rows.append((count, total, without, tabs.received - received, tabs.polls - polls))
                log(f"{count} tabs: server {total:.1f}% of a core, {without:.1f}% without the training thread")
            tabs.close_all()
            tabs.wait(settle)
            baseline_after, serving_after, _ = window(server.pid, seconds, tabs, training)
            browser.close()
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
    return {"env": env, "options": options, "rows": rows, "baseline": (baseline, baseline_after), "serving": (serving, serving_after),
            "training": training, "load": (load_before, os.getloadavg())}


def report(args, result: dict, seconds: float) -> float:
    """Print one server's table; returns its worst per-tab figure (w/o training)."""
    (baseline, baseline_after), (serving, serving_after) = result["baseline"], result["serving"]
    base, idle = (baseline + baseline_after) / 2, (serving + serving_after) / 2
    load_before, load_after = result["load"]
    settings = [f"LRCORE_WORKERS={args.workers}"] * (args.workers is not None) + args.option + result["options"] + [
        f"{key}={value}" for key, value in result["env"].items()]
    print(f"-- server: {' '.join(settings) or 'as configured'} (poll every "
          f"{result['env'].get('LRCORE_POLL_SECONDS', polling.DEFAULT_SECONDS)} s)")
    print(f"load average (1, 5, 15 min) before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    training = result["training"]
    print(f"0 tabs: {baseline:.1f}% of a core before, {baseline_after:.1f}% after; without the training thread "
          f"({'none busy' if training is None else training}): {serving:.1f}% and {serving_after:.1f}%")
    print(f"{'tabs':>5} {'server %core':>13} {'per tab':>8} {'w/o training':>13} {'per tab':>8} {'ms/poll':>8} "
          f"{'kB/poll':>8} {'polls/s per tab':>16}")
    worst = -math.inf
    for count, total, without, received, polls in result["rows"]:
        per_tab, per_tab_serving = (total - base) / count, (without - idle) / count
        worst = max(worst, per_tab_serving)
        print(f"{count:>5} {total:>13.1f} {per_tab:>8.1f} {without:>13.1f} {per_tab_serving:>8.1f} "
              f"{(without - idle) * seconds * 10 / max(polls, 1):>8.1f} {received / 1000 / max(polls, 1):>8.1f} "
              f"{polls / seconds / count:>16.2f}")
    print(f"worst per tab (w/o training): {worst:.1f}% of a core (target under {TARGET:g}%: "
          f"{'met' if worst < TARGET else 'missed'})")
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="0, 1 and 5 tabs, 5 s windows (for make bench)")
    parser.add_argument("--seconds", type=float, help="window length (default 20, quick 5)")
    parser.add_argument("--tabs", type=int, nargs="+", help="tab counts (default 1 5 10, quick 1 5)")
    parser.add_argument("--workers", help="LRCORE_WORKERS for the server (0: training in a thread of the server; "
                                          "default: the server's own default)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a Streamlit option for the server, e.g. runner.postScriptGC=false (repeatable)")
    parser.add_argument("--variant", action="append", default=[], metavar="'KEY=VALUE ...'",
                        help="compare servers side by side in one run, one per --variant: KEY=VALUE pairs, a key "
                             "with a dot is a Streamlit option (runner.postScriptGC=false), else an environment "
                             "variable (LRCORE_POLL_SECONDS=0.5); default: the server as configured")
    args = parser.parse_args()
    seconds = args.seconds or (5.0 if args.quick else 20.0)
    counts = args.tabs or ([1, 5] if args.quick else [1, 5, 10])
    settle = 2.0 if args.quick else 5.0  # after opening tabs: their first full page runs are not polling
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")
    name, params = dataset_choice()
    variants = [parse_variant(text) for text in args.variant] or [({}, [])]
    results = [measure(args, env, options, counts, seconds, settle, name, params) for env, options in variants]
    print(f"bench_tabs: server CPU per watching tab, {name} run ({params}), {seconds:g} s windows")
    print("how: a real `streamlit run` server, one headless Chromium, one page per tab on the run's Train page "
          "(its fragment polls every LRCORE_POLL_SECONDS, the sidebar's half as often); the server process's "
          "utime+stime from /proc/<pid>/stat (no children) over "
          "each window; per tab = (window - mean of the 0-tab windows before and after) / tabs, in % of one "
          "core. Where training runs in a thread of the server (LRCORE_WORKERS=0), that thread (the busiest "
          "of the first 0-tab window) is also left out, in the 'w/o training' columns: on a loaded machine "
          "training's share swings by more than the tabs cost. Polls: the runs the server finished for the "
          "tabs (script_finished messages on their websockets); a busy server serves fewer than it asks; "
          "ms/poll = the tabs' CPU (w/o training, minus the 0-tab one) / polls.")
    print(f"machine: {os.cpu_count()} CPUs")
    for result in results:
        report(args, result, seconds)


if __name__ == "__main__":
    main()
