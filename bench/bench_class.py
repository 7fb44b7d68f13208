"""A class on one server: N simulated students train at once against a real dashboard server.

A real `streamlit run dashboard.py` server (fresh data folder, started here for each N, as
`make dashboard` serves it). Each student opens the lesson link (or /train), waits for the Start
button, and when every student has the page open ("press Start now") presses Start within
--start-spread seconds of the others on a default `mnist-sample` run and waits until the Train page
says how the run ended. A teacher's test run warms the server first (imports, dataset, worker
processes), as a teacher would try it before class.

Two kinds of student (--client):
- websocket (the default): a client of Streamlit's own websocket protocol (bench/streamlit_client.py),
  one asyncio coroutine per student in this process: its own identity cookie, the frontend's
  handshake and rerun requests with the page's widget states, the fragments' polling timers; it
  reads the page from the protobuf deltas and renders nothing. The server does the same work as for
  a browser; the machine is not loaded with N browsers' rendering (in a class that happens on the
  students' laptops).
- browser: a Playwright browser context of one headless Chromium per student (its own cookies, so
  its own identity in class mode). Heavier: at N = 30 the browsers' plotly rendering saturates 2
  cores and the figures measure them more than the server.
Either way the probe (below) is a real Chromium page, so a click is timed as a user sees it.

Several servers (issue 15): --servers N starts N servers on one throwaway PostgreSQL store and
spreads the students over them (student i on server i mod N, as a proxy with sticky sessions
would); --compute ray trains on a Ray head started here with `ray start` (LRCORE_COMPUTE=ray) instead
of the servers' own worker processes. Memory and "wrk" CPU then include the local Ray cluster's
processes; "srv" is the servers' processes together.

Measured for each N:
- runs that ended "Done" with no error; errors counted: a page or run that timed out, an
  exception shown in the page, an uncaught exception in the page's JavaScript (browser), a closed
  websocket (websocket), a run that ended other than done (diverged, stopped, crashed), tracebacks
  in the server's log, and a store that does not hold one run per student who pressed Start, each
  with that student's own owner id and the lesson's id (read from the data folder after the class);
- time to open the page (goto or connect -> Start enabled), Start -> the first point on the accuracy
  chart, Start -> done (the progress bar says "Done" and the accuracy chart shows every epoch):
  median and p95. Browser: press, first point and done are read in the page itself
  (performance.now() at the mouse press; the page is checked every 100 ms). Websocket: press = the
  trigger request sent; first point and done = the delta that shows them received;
- server memory: RSS of the server process plus its children (the worker processes), sampled
  every second, before the students and at its peak (RSS counts shared pages once per process);
- server CPU over the load: utime + stime of the server and its children, % of one core;
- responsiveness: a separate "probe" context switches between Home and Train with the sidebar
  every --probe-every seconds during the load and measures the mouse press -> the other page's
  text drawn (a whole script run on the server); median, p95, max, and whether all are <= 2 s.

The students' clients share the server's cores here (pessimistic for the server, much less so with
websocket students). Targets (issue 14) at N = 30 on 2 cores: every run finishes, no error, p95
Start -> done under 60 s, every click answered within 2 s.

    .venv/bin/python bench/bench_class.py                 # N = 10, 30, 60; class mode with a lesson link
    .venv/bin/python bench/bench_class.py --quick         # N = 3 and 6 (make bench)
    .venv/bin/python bench/bench_class.py --students 3 --client browser  # Chromium students
    .venv/bin/python bench/bench_class.py --students 30 --personal       # no teacher key: today's dashboard
    .venv/bin/python bench/bench_class.py --students 30 --servers 2 --compute ray  # PostgreSQL + Ray
    .venv/bin/python bench/bench_class.py --teacher-key KEY --lesson-url 'http://host:8501/train?lesson=...'
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.bench_latency import percentile  # noqa: E402  (one definition of p95 for the benchmarks)
from bench.streamlit_client import ClientError, StreamlitClient  # noqa: E402
from lrcore.classroom import owner_id  # noqa: E402
from ui.identity import COOKIE  # noqa: E402  (the identity cookie: lrcore_id)
from tests.browser.conftest import CHART_POINTS, CHROMIUM, CHROMIUM_ARGS, start_streamlit, stop  # noqa: E402

# Every student's tab is in front on its own laptop: none is throttled as a background tab.
BROWSER_ARGS = [*CHROMIUM_ARGS, "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows"]
TICKS = os.sysconf("SC_CLK_TCK")
STUDENT_VIEWPORT = {"width": 1280, "height": 800}  # a laptop
# Ray 2.60 asks a driver joining a `ray start` cluster for a token unless the cluster is told otherwise
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
CLICK_TARGET = 2.0  # seconds: a click answered within 2 s (issue 14)
DONE_TARGET = 60.0  # seconds: p95 Start -> done at N = 30
TARGET_STUDENTS = 30
MAIN = '[data-testid="stMain"]'
START = re.compile("Start$")  # the button's accessible name carries its icon's ligature first
# The probe's two pages: their names in the sidebar and their titles (h1).
PROBE_PAGES = (("Train", "Train"), ("Home", "Logistic regression on MNIST"))
CLIENTS = ("websocket", "browser")
START_KEY = "train_start"  # the Start button's key: its widget id contains it
ACCURACY_TITLE = "Accuracy per epoch"
ENDED = re.compile(r"(Done|Stopped|Diverged|Crashed): (\d+) of \d+ epochs")  # the progress bar at the end

# Installed in every student's page before the app loads. It records, in the page's own clock: the
# press on Start (armed by the benchmark just before its click); the first point on the accuracy chart;
# how the run ended, as the progress bar says it ("Done: 10 of 10 epochs in 0.3 s"); and when the page
# shows the finished run, its chart holding every epoch. A short run ends in the rerun that draws its
# first point, and a rerun draws the bar before the charts: the point can come after the bar's "Done".
WATCHER = """(() => {
  window.__pressedAt = null; window.__firstAt = null; window.__outcome = null; window.__shownAt = null;
  window.__armed = false;
  window.addEventListener('mousedown', () => {
    if (window.__armed && window.__pressedAt === null) window.__pressedAt = performance.now();
  }, {capture: true});
  const points = main => {  // the points of the accuracy chart's validation curve (0: no chart yet)
    const shown = (__CHART_POINTS__)(['Accuracy per epoch', 'validation']);
    return shown ? shown.length : 0;
  };
  setInterval(() => {
    if (window.__pressedAt === null || window.__shownAt !== null) return;
    const now = performance.now();
    const exception = document.querySelector('[data-testid="stException"]');
    if (exception && window.__outcome === null) {
      window.__outcome = {kind: 'exception', text: exception.textContent.slice(0, 200), at: now, epochs: 0};
    }
    const main = document.querySelector('[data-testid="stMain"]');
    if (!main) return;
    const drawn = points(main);
    if (window.__firstAt === null && drawn >= 1) window.__firstAt = now;
    for (const bar of window.__outcome === null ? main.querySelectorAll('[data-testid="stProgress"]') : []) {
      const ended = bar.textContent.match(/(Done|Stopped|Diverged|Crashed): (\\d+) of \\d+ epochs/);
      if (ended) window.__outcome = {kind: ended[1].toLowerCase(), text: ended[0], at: now, epochs: +ended[2]};
    }
    // epochs 0 (the untrained model) to the last: all drawn
    if (window.__outcome !== null && window.__outcome.kind !== 'exception' && drawn >= window.__outcome.epochs + 1) {
      window.__shownAt = now;
    }
  }, 100);
})()""".replace("__CHART_POINTS__", CHART_POINTS)
RESULT = """() => ({outcome: window.__outcome, pressed: window.__pressedAt, first: window.__firstAt,
                  shown: window.__shownAt})"""
SHOWN_GRACE = 30.0  # seconds the charts may take to be drawn after the bar says the run ended
LESSON_SHOWN = """() => document.querySelector('[data-testid="stMain"]').textContent.includes('Lesson: ')"""
ALERTS = """() => [...document.querySelectorAll('[data-testid="stAlert"]')].map(a => a.textContent)
    .join(' | ').slice(0, 300)"""
PROBE_MARK = """() => { window.__probeAt = null;
  window.addEventListener('mousedown', () => { window.__probeAt = performance.now(); },
                          {capture: true, once: true}); }"""
# The probe's page notes when each websocket message arrives, so a click's time splits into the server's
# answer and the browser's drawing.
WS_SPY = """(() => { const Native = window.WebSocket; window.__wsIn = [];
  window.WebSocket = function(...args) { const socket = new Native(...args);
    socket.addEventListener('message', () => window.__wsIn.push(performance.now())); return socket; };
  window.WebSocket.prototype = Native.prototype; Object.assign(window.WebSocket, Native); })();"""
FIRST_ANSWER = """() => { const first = (window.__wsIn || []).find(t => t >= window.__probeAt);
  return first === undefined ? null : first - window.__probeAt; }"""
PROBE_ANSWERED = """(title) => window.__probeAt !== null &&
    [...document.querySelectorAll('[data-testid="stMain"] h1')].some(h => h.textContent.trim() === title)
    ? performance.now() - window.__probeAt : null"""


def log(message: str) -> None:
    """Progress on stderr (the figures go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the server's processes

def _children() -> dict[int, list[int]]:
    """{parent pid: child pids} of every process now (from /proc/<pid>/stat)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):  # the process ended meanwhile
                continue
            children.setdefault(parent, []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (the server and its worker processes)."""
    children, tree = _children(), [pid]
    for member in tree:
        tree.extend(children.get(member, []))
    return tree


def _memory(pids: list[int], file: str, line: str) -> int:
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/{file}").read_text()
        except OSError:  # ended meanwhile (or smaps_rollup not readable): not counted
            continue
        found = re.search(rf"^{line}:\s+(\d+) kB", text, re.MULTILINE)
        total += int(found.group(1)) * 1024 if found else 0
    return total


def rss_bytes(pids: list[int]) -> int:
    """Resident memory of these processes; pages they share (torch's libraries) count once per process."""
    return _memory(pids, "status", "VmRSS")


def pss_bytes(pids: list[int]) -> int:
    """Proportional set size: each shared page split among the processes sharing it (what they really add)."""
    return _memory(pids, "smaps_rollup", "Pss")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (fields 14 and 15 of proc(5)), in seconds."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


class Sampler:
    """The server tree's memory every second, in a task of its own."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self.pids, self.peak, self.peak_pss, self.processes = pids, 0, 0, 0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            pids = self.pids()
            self.processes = max(self.processes, len(pids))
            self.peak = max(self.peak, rss_bytes(pids))
            self.peak_pss = max(self.peak_pss, pss_bytes(pids))
            await asyncio.sleep(1.0)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


# ---------------------------------------------------------------- students and the probe

@dataclass
class Student:
    number: int
    load: float | None = None  # goto -> Start enabled, seconds
    first: float | None = None  # Start -> first point, seconds
    done: float | None = None  # Start -> "Done", seconds
    errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    owner: str = ""  # the owner id of its identity (class mode), as the server derives it from the cookie
    pressed: bool = False  # Start was pressed: the store should hold a run of this owner


async def start_enabled(page, timeout: float):
    """Wait until the Train page's Start is on screen and enabled; return it."""
    button = page.locator(MAIN).get_by_role("button", name=START).first
    await button.wait_for(state="visible", timeout=timeout * 1000)
    deadline = time.perf_counter() + timeout
    while not await button.is_enabled():  # the page's first runs (identity, lesson) may still be going
        if time.perf_counter() > deadline:
            raise TimeoutError(f"Start stayed disabled for {timeout:g} s")
        await asyncio.sleep(0.2)
    return button


async def open_student(browser, number: int, url: str, timeout: float) -> tuple[Student, object]:
    """A fresh context (its own identity) with the link open and Start enabled; (student, page)."""
    student = Student(number)
    context = await browser.new_context(viewport=STUDENT_VIEWPORT)
    await context.add_init_script(WATCHER)
    page = await context.new_page()
    page.on("pageerror", lambda error: student.page_errors.append(str(error)[:200]))
    opened = time.perf_counter()
    try:
        await page.goto(url, wait_until="commit", timeout=timeout * 1000)
        await start_enabled(page, timeout)
        student.load = time.perf_counter() - opened
        # the token the page's identity component made (class mode; none on a personal dashboard)
        token = next((cookie["value"] for cookie in await context.cookies() if cookie["name"] == COOKIE), "")
        student.owner = owner_id(token) if token else ""
        if "lesson=" in url and not await page.evaluate(LESSON_SHOWN):  # e.g. refused: signed with another key
            student.errors.append(f"the lesson is not on the page; it says: {await page.evaluate(ALERTS)}")
    except Exception as error:  # noqa: BLE001 - any failure is this student's error, counted, never fatal
        student.errors.append(f"opening the page: {type(error).__name__}: {str(error).splitlines()[0][:150]}")
    return student, page


async def train(student: Student, page, go: asyncio.Event, spread: float, timeout: float,
                shot: Path | None = None) -> None:
    """At "press Start now" (within `spread` s of the others): press Start, wait for how the run ended;
    save the page then as `shot` if given."""
    await go.wait()
    await asyncio.sleep(random.uniform(0, spread))
    try:
        await page.evaluate("() => { window.__armed = true; }")
        await page.locator(MAIN).get_by_role("button", name=START).first.click(timeout=timeout * 1000)
        student.pressed = True
        await page.wait_for_function("() => window.__outcome !== null", polling=250, timeout=timeout * 1000)
        try:
            await page.wait_for_function("() => window.__shownAt !== null || window.__outcome.kind === 'exception'",
                                         polling=250, timeout=SHOWN_GRACE * 1000)
        except Exception:  # noqa: BLE001 - the charts never caught up: said below
            pass
        result = await page.evaluate(RESULT)
        if shot is not None:  # once the page's last script run is over
            await page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidgetRunningIcon\"]')",
                                         polling=250, timeout=timeout * 1000)
            await page.wait_for_timeout(500)
            await page.screenshot(path=str(shot))
    except Exception as error:  # noqa: BLE001
        student.errors.append(f"training: {type(error).__name__}: {str(error).splitlines()[0][:150]}")
        return
    outcome, pressed = result["outcome"], result["pressed"]
    if result["first"] is not None:
        student.first = (result["first"] - pressed) / 1000
    if outcome["kind"] != "done":
        student.errors.append(f"run ended: {outcome['kind']}: {outcome['text']}")
    elif result["shown"] is None:
        student.errors.append(f"the bar said {outcome['text']!r} but the chart did not show every epoch within "
                              f"{SHOWN_GRACE:g} s")
    else:
        student.done = (result["shown"] - pressed) / 1000


async def open_ws_student(number: int, url: str, path: str, class_mode: bool,
                          timeout: float) -> tuple[Student, StreamlitClient]:
    """A websocket student (its own identity cookie, as a browser that has been here before) connected
    to the link, with Start enabled; (student, client)."""
    student = Student(number)
    token = secrets.token_urlsafe(24)  # 32 characters, as the page's identity component makes them
    student.owner = owner_id(token) if class_mode else ""
    client = StreamlitClient(url, path, cookies={COOKIE: token})
    opened = time.perf_counter()
    try:
        await client.connect(timeout)
        await client.wait_for(lambda: client.enabled_button(START_KEY), timeout, "Start enabled")
        student.load = time.perf_counter() - opened
        if client.exceptions:
            student.errors.append(f"exception in the page: {client.exceptions[0][:200]}")
        if "lesson=" in path and not any("Lesson: " in text for text in client.texts("markdown")):
            student.errors.append(f"the lesson is not on the page; it says: {' | '.join(client.texts('alert'))[:300]}")
    except Exception as error:  # noqa: BLE001 - any failure is this student's error, counted, never fatal
        student.errors.append(f"opening the page: {type(error).__name__}: {str(error).splitlines()[0][:150]}")
    return student, client


async def train_ws(student: Student, client: StreamlitClient, go: asyncio.Event, spread: float,
                   timeout: float) -> None:
    """train() for a websocket student: the same press, outcome and chart checks, read from the deltas
    as they arrive (each message is checked: no 100 ms polling, no rendering)."""
    await go.wait()
    await asyncio.sleep(random.uniform(0, spread))
    first: float | None = None

    def points() -> int:
        nonlocal first
        drawn = client.chart_points(ACCURACY_TITLE) or 0
        if first is None and drawn >= 1:
            first = time.perf_counter()
        return drawn

    def outcome() -> tuple[str, str, int] | None:
        points()
        if client.exceptions:
            return "exception", client.exceptions[-1][:200], 0
        for text in client.texts("progress"):
            ended = ENDED.search(text)
            if ended:
                return ended.group(1).lower(), ended.group(0), int(ended.group(2))
        return None

    try:
        pressed = await client.press(START_KEY, timeout)
        student.pressed = True
        kind, text, epochs = await client.wait_for(outcome, timeout, "how the run ended")
        shown = None
        if kind != "exception":
            try:  # a short run ends in the rerun that draws its first point; the chart may come after the bar
                shown = await client.wait_for(lambda: points() >= epochs + 1 and time.perf_counter(), SHOWN_GRACE,
                                              "every epoch on the accuracy chart")
            except ClientError:
                pass
    except Exception as error:  # noqa: BLE001
        student.errors.append(f"training: {type(error).__name__}: {str(error).splitlines()[0][:150]}"
                              + (f"; the page says: {' | '.join(client.texts('alert'))[:200]}"
                                 if client.texts("alert") else ""))
        return
    if first is not None:
        student.first = first - pressed
    if kind != "done":
        student.errors.append(f"run ended: {kind}: {text}")
    elif shown is None:
        student.errors.append(f"the bar said {text!r} but the chart did not show every epoch within "
                              f"{SHOWN_GRACE:g} s")
    else:
        student.done = shown - pressed


def traceback_end(text: str, start: int) -> str:
    """The exception line(s) that end the traceback starting at `start` (the first unindented line after it)."""
    lines = text[start:].splitlines()[1:]
    end = next((index for index, line in enumerate(lines) if line and not line[0].isspace()), len(lines) - 1)
    return "\n".join(lines[max(0, end - 2):end + 1])


class Probe:
    """A separate visitor switching pages with the sidebar; times each click until the page answers."""

    def __init__(self, page, every: float, timeout: float) -> None:
        self.page, self.every, self.timeout = page, every, timeout
        self.times: list[float] = []
        self.failures = 0
        self._turn = 0

    async def click(self) -> float:
        """One page switch: seconds from the mouse press to the other page's text drawn."""
        title, marker = PROBE_PAGES[self._turn % len(PROBE_PAGES)]
        self._turn += 1
        await self.page.evaluate(PROBE_MARK)
        await self.page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=title, exact=True).click()
        handle = await self.page.wait_for_function(PROBE_ANSWERED, arg=marker, polling=50,
                                                   timeout=self.timeout * 1000)
        seconds = await handle.json_value() / 1000
        # where a slow click's time went: waiting for the server's first answer, or drawing the page
        first = await self.page.evaluate(FIRST_ANSWER)
        log(f"probe: -> {title}: drawn {seconds:.2f} s after the press; the server's first message after "
            f"{'–' if first is None else f'{first / 1000:.2f} s'}")
        return seconds

    async def run(self, stop_event: asyncio.Event) -> None:
        while not stop_event.is_set():
            try:
                self.times.append(await self.click())
            except Exception:  # noqa: BLE001 - unanswered within the timeout: counted as that long
                self.failures += 1
                self.times.append(self.timeout)
            try:
                await asyncio.wait_for(stop_event.wait(), self.every)
            except asyncio.TimeoutError:
                pass


async def warm_page(browser, url: str, timeout: float):
    """A page of `url`'s Train page with Start enabled (the server has imported and loaded its dataset)."""
    page = await (await browser.new_context(viewport={"width": 1400, "height": 1000})).new_page()
    await page.goto(f"{url}/train", timeout=timeout * 1000)
    await start_enabled(page, timeout)
    return page


async def warm_up(browser, url: str, timeout: float):
    """The teacher's test run before class; returns the page, left on Home, for the probe."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    await context.add_init_script(WS_SPY)
    await context.add_init_script(WATCHER)
    page = await context.new_page()
    await page.goto(f"{url}/train", timeout=timeout * 1000)
    button = await start_enabled(page, timeout)
    await page.evaluate("() => { window.__armed = true; }")
    await button.click()
    await page.wait_for_function("() => window.__outcome !== null", polling=250, timeout=timeout * 1000)
    result = await page.evaluate(RESULT)
    if result["outcome"]["kind"] != "done":
        raise RuntimeError(f"the warm-up run did not finish: {result['outcome']}")
    await page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Home", exact=True).click()
    await page.get_by_text(PROBE_PAGES[1][1]).first.wait_for(timeout=timeout * 1000)
    return page


# ---------------------------------------------------------------- one class

@dataclass
class Level:
    students: list[Student]
    probe: list[float]
    probe_failures: int
    memory_before: int
    memory_peak: int
    pss_before: int
    pss_peak: int
    processes: int
    cpu_percent: float  # the server process (page scripts: one process, one GIL), % of one core
    worker_cpu_percent: float  # its worker processes (training)
    seconds: float
    log_tracebacks: int
    client_cpu_percent: float = 0.0  # this process (the websocket students; Playwright's driver side), % of one core
    store: str = ""  # what the store check found
    store_ok: bool = True  # one run per student who pressed Start, each with its owner and the lesson
    since: float = 0.0  # time.time() when the students came: runs created since then are theirs


class ClassFailed(RuntimeError):
    """A class size that could not be measured at all (no server, or the teacher's test run failed)."""


def store_url(folder: Path, env: dict) -> str:
    """The run store the server started here writes to (its environment: ours, its data folder, `env`)."""
    merged = {**os.environ, "LRCORE_DATA_DIR": str(folder), **env}
    if merged.get("LRCORE_STORE_URL", "").strip():
        return merged["LRCORE_STORE_URL"].strip()
    return merged.get("LRCORE_RUNS_DIR") or str(folder / "runs")


def check_store(url: str, students: list[Student], since: float, class_mode: bool,
                lesson_id: str | None) -> tuple[str, bool]:
    """The runs started since `since` against the students who pressed Start: one each, each with that
    student's owner id (class mode: the server's own derivation from its cookie; "" otherwise) and the
    lesson's id. Proves the students were real sessions with their own identities. (note, ok)"""
    from lrcore.store import Store, StoreError

    try:
        store = Store(url)
        try:
            runs = [run for run in store.list_runs() if run.created >= since]
        finally:
            store.close()
    except (StoreError, OSError) as error:
        return f"MISMATCH: the store {url} could not be read: {error}", False
    pressed = [student for student in students if student.pressed]
    owners = {run.owner for run in runs}
    expected = {student.owner for student in pressed}
    lessons = {run.lesson for run in runs}
    note = (f"{len(runs)} runs started during the class for {len(pressed)} students who pressed Start, "
            f"{len(owners)} distinct owner{'s' if len(owners) != 1 else ''}"
            + (f" (each a student's own identity: {len(owners & expected)} of {len(expected)})" if class_mode else
               " (personal mode: runs have no owner)")
            + (f"; lesson {lesson_id} on every run" if lesson_id and lessons == {lesson_id} else
               f"; lessons {sorted(lessons)}" if lesson_id else ""))
    problems = []
    if len(runs) != len(pressed):
        problems.append(f"{len(runs)} runs for {len(pressed)} presses")
    if class_mode and (owners != expected or len(owners) != len(pressed) or "" in owners):
        problems.append(f"owners {sorted(owners)} are not the students' {sorted(expected)}")
    if not class_mode and owners - {""}:
        problems.append(f"owners {sorted(owners)} on a personal dashboard")
    if runs and lessons != {lesson_id or ""}:
        problems.append(f"lesson ids {sorted(lessons)}, expected {lesson_id or 'none'}")
    return (f"MISMATCH: {'; '.join(problems)}; " if problems else "ok: ") + note, not problems


async def one_class(count: int, args, env: dict, path: str, lesson_id: str | None) -> Level:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="lrbench-class-") as folder, contextlib.ExitStack() as deployment:
        env = {**env, **shared_parts(Path(folder), args, deployment)}
        logs = [Path(folder) / f"streamlit-{n}.log" for n in range(1, args.servers + 1)]
        servers = []
        try:
            for log_path in logs:
                servers.append(start_streamlit(Path(folder), log_path, env))
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
                try:
                    level = await _class(browser, [server.pid for server, _ in servers], [url for _, url in servers],
                                         count, args, path, logs)
                except Exception as error:  # noqa: BLE001 - e.g. the warm-up run failed: say why, with the log
                    tail = logs[0].read_text(errors="replace")[-1500:]
                    raise ClassFailed(f"{type(error).__name__}: {str(error).splitlines()[0][:300]}; the server's "
                                      f"log ends:\n{tail}") from error
                finally:
                    await browser.close()
            level.store, level.store_ok = check_store(store_url(Path(folder), env), level.students, level.since,
                                                      args.class_mode, lesson_id)
            log(f"N={count}: store check: {level.store}")
            return level
        finally:
            for server, _ in servers:
                stop(server)


def shared_parts(folder: Path, args, deployment: contextlib.ExitStack) -> dict[str, str]:
    """Several servers (--servers) share a throwaway PostgreSQL store, and --compute ray a Ray head started
    here with `ray start` (both ended with `deployment`); the servers' environment for them."""
    env: dict[str, str] = {}
    if args.servers > 1:
        from tests.postgres_server import PostgresServer, _binaries

        if _binaries() is None:
            raise ClassFailed("--servers > 1 needs PostgreSQL (./setup.sh --test installs Debian's postgresql)")
        database = PostgresServer(_binaries())
        deployment.callback(database.stop)
        database.start()
        env["LRCORE_STORE_URL"] = database.create_database()
    if args.compute == "ray":
        ray_env = {**os.environ, **RAY_ENV}
        port = 6300 + os.getpid() % 500
        ray = str(Path(sys.executable).with_name("ray"))
        started = subprocess.run([ray, "start", "--head", f"--port={port}", f"--num-cpus={os.cpu_count()}",
                                  "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={folder / 'ray'}"],
                                 env=ray_env, capture_output=True, text=True, timeout=180)
        if started.returncode:
            raise ClassFailed(f"ray start failed: {started.stderr[-500:]}")
        deployment.callback(subprocess.run, [ray, "stop", "--force"], env=ray_env, capture_output=True, timeout=120)
        env.update(RAY_ENV, LRCORE_COMPUTE="ray", LRCORE_RAY_ADDRESS=f"127.0.0.1:{port}")
        if args.workers is None:  # each server's actors hold their CPUs: the servers share the cluster's
            env["LRCORE_WORKERS"] = str(max(1, (os.cpu_count() or 1) // args.servers))
    return env


def ray_processes() -> list[int]:
    """The local Ray cluster's processes (its actors train): GCS, raylet, workers."""
    found = subprocess.run(["pgrep", "-f", "ray::|raylet|gcs_server"], capture_output=True, text=True).stdout
    return [int(pid) for pid in found.split()]


async def _class(browser, pids: list[int], urls: list[str], count: int, args, path: str,
                 logs: list[Path]) -> Level:
    url = urls[0]  # the teacher's test run and the probe; students are spread over every server
    log(f"N={count}: {len(urls)} server(s) up at {', '.join(urls)}; the teacher's test run warms it")
    probe_page = await warm_up(browser, url, args.timeout)
    for other in urls[1:]:  # each server's first page view imports and loads its dataset
        await (await warm_page(browser, other, args.timeout)).context.close()

    def tree() -> list[int]:  # the servers and their workers, and a local Ray cluster's processes
        return [p for pid in pids for p in process_tree(pid)] + (ray_processes() if args.compute == "ray" else [])

    server_pids = list(pids)
    memory_before, pss_before = rss_bytes(tree()), pss_bytes(tree())
    sampler, probe = Sampler(tree), Probe(probe_page, args.probe_every, args.click_timeout)
    sampler.start()
    finished = asyncio.Event()
    probing = asyncio.get_running_loop().create_task(probe.run(finished))
    since = time.time()  # runs created from now on are the students' (the warm-up run is over)
    cpu_before, tree_before, started = cpu_seconds(server_pids), cpu_seconds(tree()), time.perf_counter()
    own_before = time.process_time()
    websocket = args.client == "websocket"

    async def arrive(number: int):  # students open the link within --join-spread s of each other
        await asyncio.sleep(random.uniform(0, args.join_spread))
        if websocket:
            return await open_ws_student(number, urls[number % len(urls)], path, args.class_mode, args.timeout)
        return await open_student(browser, number, f"{urls[number % len(urls)]}{path}", args.timeout)

    log(f"N={count}: {count} {args.client} students open {path[:60]}{'…' if len(path) > 60 else ''}")
    opened = await asyncio.gather(*(arrive(number) for number in range(count)))
    log(f"N={count}: {sum(s.load is not None for s, _ in opened)} pages ready; press Start now")
    go = asyncio.Event()
    shots = Path(args.screenshots) if args.screenshots else None
    if websocket:
        tasks = [train_ws(student, client, go, args.start_spread, args.timeout)
                 for student, client in opened if student.load is not None]
    else:
        tasks = [train(student, page, go, args.start_spread, args.timeout,
                       shots / f"class-{count}-student-{student.number}.png" if shots and student.number == 0 else None)
                 for student, page in opened if student.load is not None]
    go.set()
    await asyncio.gather(*tasks)
    seconds = time.perf_counter() - started
    cpu = cpu_seconds(server_pids) - cpu_before
    workers = cpu_seconds(tree()) - tree_before - cpu  # workers live on: their time is still there
    own = time.process_time() - own_before
    finished.set()
    await probing
    await sampler.stop()
    if websocket:  # the polling a browser would do, seen from the clients' side
        clients = [client for _, client in opened]
        log(f"N={count}: the websocket students sent {sum(c.sent for c in clients)} requests and received "
            f"{sum(c.received for c in clients)} messages ({sum(c.received_bytes for c in clients) / 2**20:.1f} MB)")
    for student, handle in opened:
        if websocket:
            if handle.closed and not student.errors:  # the server closed it during the class
                student.errors.append(f"the websocket closed: {handle.closed}")
            await handle.close()
        else:
            await handle.context.close()
    students = [student for student, _ in opened]
    server_log = "\n".join(log_path.read_text(errors="replace") for log_path in logs)
    tracebacks = server_log.count("Traceback")
    if tracebacks:  # the first one, so the report says what went wrong
        first = server_log.index("Traceback")
        log(f"N={count}: the server's log has {tracebacks} traceback(s); the first:\n"
            f"{server_log[max(0, first - 300):first + 2500]}\n...\n{traceback_end(server_log, first)}")
    log(f"N={count}: {sum(s.done is not None and not s.errors for s in students)} of {count} done "
        f"in {seconds:.0f} s")
    return Level(students, probe.times, probe.failures, memory_before, sampler.peak, pss_before, sampler.peak_pss,
                 sampler.processes, 100 * cpu / seconds, 100 * workers / seconds, seconds, tracebacks,
                 client_cpu_percent=100 * own / seconds, since=since)


# ---------------------------------------------------------------- lesson link and report

def lesson_path(args, key: str | None) -> tuple[str, str]:
    """(path and query the students open, what it is): the given lesson link, a lesson built here, or /train."""
    if args.lesson_url:
        parts = urlsplit(args.lesson_url)  # the link's own host is another server: keep its path and query
        return f"{parts.path or '/'}{'?' + parts.query if parts.query else ''}", "the lesson link given"
    if key is None or args.no_lesson:
        return "/train", "/train (no lesson)"
    try:
        from lrcore.lessons import Lesson, encode
    except ImportError:
        return "/train", "/train (lrcore.lessons is not there: no lesson)"
    # the default run, as a teacher would fix it: its settings fixed, the optimizer's control hidden
    lesson = Lesson(title="Load test", text="Press Start and wait until the run is done.",
                    fixed={"epochs": 10, "learning_rate": 0.5, "optimizer": "sgd"}, hidden=("optimizer",),
                    pages=("train", "weights"))
    return f"/train?lesson={encode(lesson, key)}", ("a lesson link built here (the default run's epochs, lr and "
                                                    "optimizer fixed, the optimizer hidden, Train and Weights only)")


def lesson_id_of(path: str, key: str | None) -> str | None:
    """The id of the lesson the link opens (None: no lesson, or one this server's key refuses)."""
    from urllib.parse import parse_qs

    token = parse_qs(urlsplit(path).query).get("lesson", [""])[0]
    if not token or not key:
        return None
    from lrcore.lessons import LessonError, decode

    try:
        return decode(token, key).lesson_id
    except LessonError:
        return None


def figures(values: list[float]) -> str:
    return f"{statistics.median(values):6.1f} {percentile(values, 0.95):6.1f}" if values else f"{'–':>6} {'–':>6}"


def report(levels: dict[int, Level], args, mode: str, opened: str, load_before, load_after) -> None:
    print(f"bench_class: N students at once on one server, each a default mnist-sample run from {opened}; "
          f"{mode}")
    if args.client == "websocket":
        students = (f"students: N websocket clients (Streamlit's protocol, no rendering) + 1 Chromium probe. Each "
                    "student is an asyncio coroutine in this process speaking Streamlit's websocket protocol as its "
                    "frontend does (bench/streamlit_client.py: its own identity cookie, rerun requests with the "
                    "page's widget states, the fragments' 1 s polling); it renders nothing. Start = the trigger "
                    "request sent; first point and done (the bar says Done and the chart shows every epoch) = the "
                    "delta showing them received. ")
        sharing = ("The clients and the probe's browser run on this machine and share the server's cores (far less "
                   "than N browsers would; the clients' CPU is this process's, below).")
    else:
        students = ("students: N Chromium browser contexts + 1 Chromium probe: one headless Chromium, one browser "
                    "context per student (its own cookies), driven concurrently with asyncio (Playwright). Start, "
                    "first point and done (the bar says Done and the chart shows every epoch) are timed in the page "
                    "(checked every 0.1 s). ")
        sharing = ("The browsers run on this machine and share the server's cores: pessimistic for the server (in a "
                   "class they run on the students' laptops).")
    print("how: a real `streamlit run dashboard.py` server started here for each N (fresh data folder, worker "
          "processes as configured), warmed by one test run; " + students +
          f"Students open the page within {args.join_spread:g} s of each other, then all press Start within "
          f"{args.start_spread:g} s (\"press Start now\"). "
          "Memory: RSS of the server and its worker processes (shared pages counted in each). CPU over the load, "
          "% of one core: srv = the server process (every page's script runs there: one Python, one GIL), wrk = "
          "its worker processes (training). A probe visitor (a Chromium page) "
          f"switches Home <-> Train with the sidebar every {args.probe_every:g} s during the load: mouse press -> "
          "the other page drawn. Store check: after the class the run store holds one run per student who "
          "pressed Start, with that student's owner id and the lesson's id. " + sharing)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {os.cpu_count()} CPUs ({cores} usable); load average (1, 5, 15 min) before "
          f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, after {load_after[0]:.2f} "
          f"{load_after[1]:.2f} {load_after[2]:.2f}")
    for count, level in levels.items():
        for student in level.students:
            for problem in student.errors + [f"page error: {text}" for text in student.page_errors]:
                print(f"  N={count} student {student.number}: {problem}")
    print(f"{'N':>4} {'done ok':>8} {'errors':>7} {'open s':>13} {'1st point s':>13} {'done s':>13} "
          f"{'server MB':>11} {'CPU %':>9} {'clicks':>7} {'click s':>20} {'<= 2 s':>7}")
    print(f"{'':>4} {'':>8} {'':>7} {'p50':>6} {'p95':>6} {'p50':>6} {'p95':>6} {'p50':>6} {'p95':>6} "
          f"{'idle':>5} {'peak':>5} {'srv':>4} {'wrk':>4} {'':>7} {'p50':>6} {'p95':>6} {'max':>6} {'':>7}")
    for count, level in levels.items():
        students = level.students
        ok = sum(s.done is not None and not s.errors and not s.page_errors for s in students)
        errors = sum(len(s.errors) + len(s.page_errors) for s in students) + level.log_tracebacks + \
            (not level.store_ok)
        probe = level.probe
        clicks = (f"{statistics.median(probe):6.2f} {percentile(probe, 0.95):6.2f} {max(probe):6.2f}"
                  if probe else f"{'–':>6} {'–':>6} {'–':>6}")
        within = "yes" if probe and max(probe) <= CLICK_TARGET else "no" if probe else "–"
        print(f"{count:>4} {f'{ok}/{count}':>8} {errors:>7} "
              f"{figures([s.load for s in students if s.load is not None])} "
              f"{figures([s.first for s in students if s.first is not None])} "
              f"{figures([s.done for s in students if s.done is not None])} "
              f"{level.memory_before / 2**20:5.0f} {level.memory_peak / 2**20:5.0f} "
              f"{level.cpu_percent:4.0f} {level.worker_cpu_percent:4.0f} "
              f"{len(probe):>7} {clicks} {within:>7}")
    clients = ("the websocket students" if args.client == "websocket" else
               "Playwright's side only: the browsers are processes of their own, not counted")
    for count, level in levels.items():
        print(f"N={count}: load lasted {level.seconds:.0f} s; server log tracebacks {level.log_tracebacks}; "
              f"probe clicks unanswered within {args.click_timeout:g} s: {level.probe_failures}; "
              f"server processes (peak) {level.processes}; server PSS idle {level.pss_before / 2**20:.0f} MB, "
              f"peak {level.pss_peak / 2**20:.0f} MB; CPU per student: server process "
              f"{level.cpu_percent * level.seconds / 100 / count:.2f} s, workers "
              f"{level.worker_cpu_percent * level.seconds / 100 / count:.2f} s; this process "
              f"{level.client_cpu_percent:.0f}% of one core ({clients})")
        print(f"N={count}: store check: {level.store}")
    if TARGET_STUDENTS in levels:
        level = levels[TARGET_STUDENTS]
        done = [s.done for s in level.students if s.done is not None]
        met = (all(s.done is not None and not s.errors and not s.page_errors for s in level.students)
               and not level.log_tracebacks and level.store_ok and done and percentile(done, 0.95) < DONE_TARGET
               and level.probe and max(level.probe) <= CLICK_TARGET)
        print(f"target at N={TARGET_STUDENTS} (every run done, no error, p95 done < {DONE_TARGET:g} s, every click "
              f"<= {CLICK_TARGET:g} s): {'met' if met else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, nargs="+", help="class sizes (default 10 30 60; quick 3 6)")
    parser.add_argument("--quick", action="store_true", help="3 and 6 students (make bench)")
    parser.add_argument("--personal", action="store_true",
                        help="no teacher key: the personal single-user dashboard (default: class mode)")
    parser.add_argument("--teacher-key", help="the server's LRCORE_TEACHER_KEY (default: a random one; needed "
                                              "to open a --lesson-url signed with it)")
    parser.add_argument("--lesson-url", help="the lesson link the students open (its host is replaced by the "
                                             "server started here); default: a lesson built here in class mode")
    parser.add_argument("--no-lesson", action="store_true", help="students open /train, no lesson")
    parser.add_argument("--join-spread", type=float, default=5.0,
                        help="students open the page within this many seconds (default 5)")
    parser.add_argument("--start-spread", type=float, default=3.0,
                        help="then press Start within this many seconds (default 3)")
    parser.add_argument("--probe-every", type=float, default=3.0, help="seconds between probe clicks (default 3)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds a student waits for the page, and then for the run's end (default 300)")
    parser.add_argument("--click-timeout", type=float, default=30.0, help="seconds a probe click may take (30)")
    parser.add_argument("--workers", help="LRCORE_WORKERS for the server (default: its own: one per core)")
    parser.add_argument("--client", choices=CLIENTS, default="websocket",
                        help="what a student is: a websocket client of Streamlit's protocol, no rendering (default), "
                             "or a Chromium browser context (heavy: N browsers on this machine)")
    parser.add_argument("--screenshots", metavar="DIR",
                        help="save the first student's page when its run ended (--client browser)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the arrival and press times")
    parser.add_argument("--servers", type=int, default=1,
                        help="dashboard servers sharing one store (more than 1: a throwaway PostgreSQL); students "
                             "are spread over them as a proxy with sticky sessions would (default 1)")
    parser.add_argument("--compute", choices=("local", "ray"), default="local",
                        help="LRCORE_COMPUTE of the servers: their own worker processes, or a Ray head started "
                             "here with `ray start` (default local)")
    args = parser.parse_args()
    counts = args.students or ([3, 6] if args.quick else [10, 30, 60])
    if args.servers < 1:
        sys.exit(f"--servers: at least 1, got {args.servers}")
    if min(counts) < 1:
        sys.exit(f"--students: each class size must be at least 1, got {' '.join(map(str, counts))}")
    if args.personal and (args.teacher_key or args.lesson_url):
        sys.exit("--personal runs without a teacher key: leave out --teacher-key and --lesson-url")
    if args.lesson_url and not args.teacher_key:
        sys.exit("--lesson-url needs --teacher-key: the key the link was signed with (the server started here "
                 "must have it)")
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")
    random.seed(args.seed)
    if args.screenshots and args.client != "browser":
        sys.exit("--screenshots needs --client browser: websocket students draw no page")
    if args.screenshots:
        Path(args.screenshots).mkdir(parents=True, exist_ok=True)
    key = None if args.personal else args.teacher_key or secrets.token_urlsafe(24)
    env = {"LRCORE_TEACHER_KEY": key or ""}  # "" overrides one set in this shell: no key
    if args.workers is not None:
        env["LRCORE_WORKERS"] = args.workers
    path, opened = lesson_path(args, key)
    args.class_mode = key is not None
    lesson_id = lesson_id_of(path, key)
    mode = ("class mode (LRCORE_TEACHER_KEY set)" if key else "personal mode (no teacher key)") + \
        (f"; LRCORE_WORKERS={args.workers}" if args.workers is not None else "") + \
        (f"; {args.servers} servers on one PostgreSQL store" if args.servers > 1 else "; one server") + \
        ("; training on a local Ray cluster (LRCORE_COMPUTE=ray)" if args.compute == "ray" else "; local workers")
    if (ROOT / ".streamlit" / "secrets.toml").exists():
        mode += "; note: .streamlit/secrets.toml exists and may hold a teacher key of its own"
    load_before = os.getloadavg()
    levels, failed = {}, {}
    for count in counts:
        try:
            levels[count] = asyncio.run(one_class(count, args, env, path, lesson_id))
        except (ClassFailed, RuntimeError) as error:  # start_streamlit's RuntimeError: the server did not start
            log(f"N={count}: not measured: {error}")
            failed[count] = str(error).splitlines()[0]
    report(levels, args, mode, opened, load_before, os.getloadavg())
    for count, reason in failed.items():
        print(f"N={count}: NOT MEASURED: {reason}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
