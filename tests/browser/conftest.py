"""Fixtures for browser tests: a real `streamlit run dashboard.py` and headless Debian Chromium.

Each test session starts its own server on a free port with a fresh data directory (so
runs written by one test session never leak into another) and saves screenshots under
artifacts/screenshots/ for people to look at.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("LRCORE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_streamlit(data_dir: Path, log_path: Path, extra_env: dict | None = None,
                    options: tuple[str, ...] = (), script: str = "dashboard.py") -> tuple[subprocess.Popen, str]:
    """Start the dashboard (or another `script`; `options`: more Streamlit flags, "runner.postScriptGC=false")
    and wait until /_stcore/health answers ok."""
    port = _free_port()
    env = {**os.environ, "LRCORE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    if "LRCORE_WORKERS" not in (extra_env or {}):  # the real server trains in worker processes (the AppTests don't)
        from tests.conftest import SERVER_WORKERS

        if SERVER_WORKERS is None:
            env.pop("LRCORE_WORKERS", None)
        else:
            env["LRCORE_WORKERS"] = SERVER_WORKERS
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none",  # edits elsewhere in the checkout must not rerun the app
         *(f"--{option}" for option in options)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited early; see {log_path}:\n{log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().decode().strip() == "ok":
                    return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"streamlit did not answer /_stcore/health within 90 s; see {log_path}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def dashboard_data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dashboard-data")


@pytest.fixture(scope="session")
def dashboard_url(dashboard_data_dir, tmp_path_factory) -> str:
    """URL of a dashboard server shared by the browser tests of this session."""
    log_path = tmp_path_factory.mktemp("logs") / "streamlit.log"
    process, url = start_streamlit(dashboard_data_dir, log_path)
    yield url
    stop(process)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def wait_for_app(page, timeout: float = 30_000) -> None:
    """Wait until the Streamlit app has rendered and finished its current script run."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout)
    page.wait_for_selector('[data-testid="stMain"]', timeout=timeout)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"] [data-testid=\"stStatusWidgetRunningIcon\"]')",
        timeout=timeout)
    page.wait_for_timeout(300)


def screenshot(page, name: str) -> Path:
    """Save the whole page as artifacts/screenshots/<name>.png.

    Streamlit scrolls inside its own container, so a plain full-page screenshot stops at
    the window's edge: grow the window to the content's height first, then restore it.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    size = page.viewport_size
    height = size["height"]
    page.wait_for_function("() => [...document.images].every(image => image.complete)")
    for _ in range(3):  # images laid out below the fold can lengthen the page once more
        needed = page.evaluate("""() => {
          const block = document.querySelector('[data-testid="stMainBlockContainer"]');
          return block ? Math.ceil(block.scrollHeight + block.getBoundingClientRect().top + 40) : 0;
        }""")
        if needed <= height:
            break
        height = min(needed, 8000)
        page.set_viewport_size({"width": size["width"], "height": height})
        page.wait_for_timeout(800)
    page.screenshot(path=str(path), full_page=True)
    if height != size["height"]:
        page.set_viewport_size(size)
    return path


def open_page_from_home(page, url: str, title: str, marker: str) -> None:
    """Open the dashboard's home, then switch pages with the sidebar like a user; wait for `marker`."""
    page.goto(url)
    page.get_by_text("Device:").wait_for(timeout=90_000)
    wait_for_app(page)
    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=title, exact=True).click()
    page.get_by_text(marker).first.wait_for(timeout=90_000)
    wait_for_app(page)


def quick_model(epochs: int = 1):
    """The Finished event of a short default run on the bundled sample (for checkpoint files)."""
    from lrcore import TrainConfig, train

    config = TrainConfig(epochs=epochs)
    for event in train(config):
        pass
    return config, event


SIZES = {"wide": (1400, 1000), "projector": (1024, 768), "phone": (390, 844)}


def screenshots_at_sizes(page, name: str, pause_ms: int = 500) -> None:
    """`screenshot` at each of SIZES (name-wide, name-projector, name-phone), then back to 1400x1000."""
    for size, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(pause_ms)
        screenshot(page, f"{name}-{size}")
    page.set_viewport_size({"width": 1400, "height": 1000})


# The Train page's live charts are ECharts drawn as SVG (ui/live_charts.py). Their numbers are in each chart's
# text description (aria-label: '... representing validation.The data is as follows: 0; 10.15; 1; 80.2. ...'),
# what a screen reader reads. CHART_POINTS, with [chart title, series name]: that series' [[x, y], ...], or null
# while there is no such chart or series. CHART_TEXTS, with a chart title: the texts drawn in it (ticks, marks).
_CHART = """const labelled = c => [c, ...c.querySelectorAll('[aria-label]')].filter(e => e.hasAttribute('aria-label'));
  const chart = [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stEChartsChart"]')]
    .find(c => labelled(c).some(e => e.getAttribute('aria-label').includes(`about "${title}"`)));"""
CHART_POINTS = """([title, name]) => {
  %s
  if (!chart) return null;
  const label = labelled(chart).map(e => e.getAttribute('aria-label')).join(' ');
  const marker = `representing ${name}.`;
  const start = label.indexOf(marker);
  if (start < 0) return null;
  const rest = label.slice(start + marker.length).replace(/^(The data is as follows: |The first \\d+ items are: )/, '');
  const end = rest.indexOf('. ');
  const body = (end < 0 ? rest : rest.slice(0, end)).trim();
  const values = body ? body.split('; ').map(Number) : [];
  const points = [];
  for (let i = 0; i + 1 < values.length; i += 2) points.push([values[i], values[i + 1]]);
  return points;
}""" % _CHART
CHART_TEXTS = """(title) => {
  %s
  return chart ? [...chart.querySelectorAll('svg text')].map(t => t.textContent) : null;
}""" % _CHART


def open_train(page, url: str) -> None:
    """Load the Train page and wait for its settings (the first load of a server imports torch: slow)."""
    page.goto(url)
    page.get_by_label("Exact learning rate", exact=True).wait_for(timeout=90_000)
    wait_for_app(page)


def set_number(page, label: str, value: str) -> None:
    """Type `value` into the number box `label` and wait for the page's run."""
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    wait_for_app(page)


@pytest.fixture
def new_browser(browser):
    """A new browser (context) per call: its own cookies, so its own identity."""
    contexts = []

    def make():
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        return page

    yield make
    for context in contexts:
        context.close()
