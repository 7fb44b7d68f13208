"""Latency where users feel it, measured in a real browser on a real `streamlit run dashboard.py` server.

    python bench/bench_latency.py              # 10 tries of each
    python bench/bench_latency.py --quick      # 3 tries of each (make bench)
    python bench/bench_latency.py --option LRCORE_GC_FREEZE=0 --option runner.postScriptGC=false

(a) Start -> epoch-0 point: on the Train page (mnist-sample, its defaults; each try a fresh
    browser session, so no earlier run is on the page), the time from the mouse press on Start to
    the accuracy chart holding its first point (epoch 0, the untrained model), read in the page
    itself (performance.now() at the press and when the chart's text description, which ECharts writes
    when it draws, lists the point). Also: when the
    server's script runs after the press ended (websocket `script_finished` messages), which
    shows where the time goes. Target: median under 1 s.
(b) Stroke -> probabilities: on the Draw page (a quick model trained first), the time from the
    mouse release that ends a stroke to the probability chart showing the new probabilities, and
    whether the server reran the whole page or the drawing fragment alone. The canvas itself
    waits up to ~200 ms before it sends a stroke; that is part of what a user feels. Target:
    median under 300 ms.

Prints each try, the medians and p95, and the machine's load average before and after.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.browser.conftest import CHART_POINTS, CHROMIUM, CHROMIUM_ARGS, start_streamlit, stop, wait_for_app  # noqa: E402
from tests.browser.script_runs import FRAGMENT, FULL, ScriptRuns  # noqa: E402
from tests.browser.test_draw import stroke  # noqa: E402  (the browser test's mouse stroke)
from bench.bench_dashboard import server_env  # noqa: E402

MARK_PRESS = """() => { window.__pressedAt = null;
  window.addEventListener('mousedown', () => { window.__pressedAt = performance.now(); },
                          {capture: true, once: true}); }"""
MARK_RELEASE = """() => { window.__releasedAt = null;
  window.addEventListener('mouseup', () => { window.__releasedAt = performance.now(); },
                          {capture: true, once: true}); }"""
FIRST_POINT = """() => {
  const points = (%s)(['Accuracy per epoch', 'validation']);
  return points && points.length >= 1 && window.__pressedAt !== null ? performance.now() - window.__pressedAt : null;
}""" % CHART_POINTS
PROBABILITIES = """() => {  // null while the bars are all 0 (nothing drawn: the page's empty chart)
  const chart = [...document.querySelectorAll('[data-testid="stMain"] .js-plotly-plot')].find(
      p => p.data && p.data.some(t => t.type === 'bar' && Array.from(t.y || []).some(y => y > 0)));
  return chart ? JSON.stringify(chart.data.filter(t => t.type === 'bar').map(t => [t.x, t.y])) : null;
}"""
CHANGED = f"""(before) => {{
  const now = ({PROBABILITIES})();
  return now !== null && now !== before && window.__releasedAt !== null ? performance.now() - window.__releasedAt : null;
}}"""
CANVAS = '[data-testid="stMain"] canvas.upper-canvas'
# strokes in fractions of the canvas; each changes the drawing, so the probabilities change
STROKES = [[(0.5, 0.15), (0.5, 0.85)], [(0.25, 0.22), (0.75, 0.22)], [(0.3, 0.5), (0.7, 0.5)],
           [(0.3, 0.8), (0.7, 0.8)], [(0.3, 0.2), (0.3, 0.5)]]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, values: list[float], target: float) -> str:
    median = statistics.median(values)
    return (f"{name}: median {median:.0f} ms, p95 {percentile(values, 0.95):.0f} ms, min {min(values):.0f}, "
            f"max {max(values):.0f} over {len(values)} tries (target median < {target:.0f} ms: "
            f"{'met' if median < target else 'MISSED'})")


def start_to_first_point(browser, url: str, tries: int) -> list[float]:
    times = []
    for attempt in range(tries):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(90_000)
        runs = ScriptRuns(page)
        page.goto(f"{url}/train")
        page.get_by_text("Pick the settings above", exact=False).wait_for()
        wait_for_app(page)
        page.evaluate(MARK_PRESS)
        mark, pressed = runs.mark(), time.perf_counter()
        page.locator('[data-testid="stMain"]').get_by_role("button", name="Start", exact=False).first.click()
        elapsed = page.wait_for_function(FIRST_POINT, polling="raf").json_value()
        after = [(round((at - pressed) * 1e3), "page" if status == FULL else "fragment" if status == FRAGMENT
                  else f"status {status}") for at, status in runs.finished[mark:]]
        times.append(elapsed)
        print(f"  start try {attempt + 1}: {elapsed:6.0f} ms; runs ended after the press (ms, kind): {after}")
        wait_for_app(page)
        context.close()
    return times



def stroke_to_probabilities(browser, url: str, tries: int) -> tuple[list[float], dict]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(120_000)
    runs = ScriptRuns(page)
    page.goto(f"{url}/draw")
    page.get_by_role("button", name="Train a quick model").click()
    page.locator(CANVAS).wait_for()
    wait_for_app(page)
    times, kinds = [], {"page": 0, "fragment": 0}
    for attempt in range(tries):
        if attempt and attempt % len(STROKES) == 0:  # a fresh canvas now and then
            page.get_by_role("button", name="Clear").click()
            page.wait_for_function(f"() => ({PROBABILITIES})() === null")
            wait_for_app(page)
        before = page.evaluate(PROBABILITIES)
        page.evaluate(MARK_RELEASE)
        mark = runs.mark()
        stroke(page, STROKES[attempt % len(STROKES)])
        elapsed = page.wait_for_function(CHANGED, arg=before, polling="raf").json_value()
        wait_for_app(page)
        statuses = runs.since(mark)
        kinds["page"] += statuses.count(FULL)
        kinds["fragment"] += statuses.count(FRAGMENT)
        times.append(elapsed)
        print(f"  stroke try {attempt + 1}: {elapsed:6.0f} ms ({statuses.count(FULL)} page and "
              f"{statuses.count(FRAGMENT)} fragment runs)")
    context.close()
    return times, kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 tries of each (a minute or so)")
    parser.add_argument("--option", action="append", default=[], metavar="OPTION=VALUE",
                        help="a Streamlit option (runner.postScriptGC=false) or environment variable for the server")
    args = parser.parse_args()
    tries = 3 if args.quick else args.tries
    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="lrbench-latency-") as data_dir, sync_playwright() as playwright:
        process, url = start_streamlit(Path(data_dir), Path(data_dir) / "streamlit.log", server_env(args.option))
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # Not a user's click: the first page load imports torch and loads the dataset, the first
            # run waits for the worker processes to start (spawned with the server, slow under load).
            warm = browser.new_page()
            warm.goto(f"{url}/train")
            warm.get_by_text("Pick the settings above", exact=False).wait_for(timeout=300_000)
            wait_for_app(warm)
            warm.evaluate(MARK_PRESS)
            warm.locator('[data-testid="stMain"]').get_by_role("button", name="Start", exact=False).first.click()
            warm.wait_for_function(FIRST_POINT, polling=200, timeout=300_000)
            warm.close()
            print(f"server {url} ({' '.join(args.option) or 'as configured'}), headless {CHROMIUM}, {tries} tries "
                  "each, mnist-sample")
            start_times = start_to_first_point(browser, url, tries)
            stroke_times, kinds = stroke_to_probabilities(browser, url, tries)
        finally:
            browser.close()
            stop(process)
    load_after = os.getloadavg()
    print()
    print(summary("Start -> epoch-0 point visible", start_times, 1000))
    print(summary("stroke -> probabilities shown ", stroke_times, 300))
    print(f"  server runs for the strokes: {kinds['page']} whole page, {kinds['fragment']} fragment")
    print(f"machine: {os.cpu_count()} CPUs, load average (1 min) {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after")


if __name__ == "__main__":
    main()
