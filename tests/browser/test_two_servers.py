"""Beyond one machine (issue 15), on this machine: one PostgreSQL store, a local Ray head, two
`streamlit run` servers on different ports sharing both, and real browsers.

A run Ana starts through server 1 trains on Ray (neither server has local worker processes), streams
live on server 1, is listed with its curves on server 2, is read-only there for Ben, and Ana stops it
through server 2 (the request goes through the store to server 1, which trains it). Killing the Ray
worker that trains a second run ends that run crashed, its completed epochs kept.

Cookies belong to a host, not a port: one browser context is the same student on both servers, as
behind a proxy with sticky sessions.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from playwright.sync_api import expect

from lrcore.store import Store, StoreError
from tests.browser.conftest import ROOT, screenshots_at_sizes, start_streamlit, stop, wait_for_app
from tests.browser.conftest import _free_port as free_port
from tests.browser.test_ownership import FORCE_CLICK, identified, main_button
from tests.browser.test_runs import table_names, tick_row
from tests.postgres_server import postgres_server  # noqa: F401  (the session's throwaway PostgreSQL)

KEY = "two-servers-test-key"
LONG_RUN = "batch_size=1&epochs=1000"  # about a second an epoch: trains until it is stopped
expect.set_options(timeout=60_000)
# Ray 2.60 asks a driver joining a `ray start` cluster for a token unless the cluster is told otherwise
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def ray_cli() -> str:
    return shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A local Ray head both servers connect to (as a cluster would be)."""
    pytest.importorskip("ray", reason="Ray has no wheel for this machine (pip install -r requirements-ray.txt)")
    folder = tmp_path_factory.mktemp("ray")
    port = 6300 + os.getpid() % 500
    env = {**os.environ, **RAY_ENV}
    subprocess.run([ray_cli(), "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    "--disable-usage-stats", f"--temp-dir={folder}"], check=True, env=env, capture_output=True,
                   timeout=180)
    yield f"127.0.0.1:{port}"
    subprocess.run([ray_cli(), "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.fixture
def two_servers(tmp_path, postgres_server, ray_head):  # noqa: F811
    store_url = postgres_server.create_database()
    env = {"LRCORE_STORE_URL": store_url, "LRCORE_COMPUTE": "ray", "LRCORE_RAY_ADDRESS": ray_head,
           "LRCORE_TEACHER_KEY": KEY, "LRCORE_WORKERS": "1", **RAY_ENV}  # one actor each: the cluster has 2 CPUs
    servers = [start_streamlit(tmp_path / "data", tmp_path / f"server{n}.log", env) for n in (1, 2)]
    yield [url for _, url in servers], store_url, ray_head
    for process, _ in servers:
        stop(process)


def record(store_url: str, run_id: str):
    store = Store(store_url)
    try:
        return store.get(run_id)
    finally:
        store.close()


def wait_for(store_url: str, run_id: str, wanted, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while True:
        try:
            current = record(store_url, run_id)
        except StoreError:  # the URL names the run a moment before the server's store thread writes its row
            current = None
        if current is not None and wanted(current):
            return current
        assert time.monotonic() < deadline, \
            f"run {run_id}: {what} never came (status {current.status if current else 'not in the store'})"
        time.sleep(0.5)


def local_workers(server_pid: int) -> list[int]:
    """The server's child processes that run lrcore's local workers (none with Ray)."""
    found = subprocess.run(["pgrep", "-P", str(server_pid), "-f", "lrcore.workers_main"], capture_output=True,
                           text=True).stdout.split()
    return [int(pid) for pid in found]


def start_long_run(page, url: str) -> str:
    identified(page, url, f"/train?{LONG_RUN}")
    main_button(page, "Start").click()
    page.wait_for_url(re.compile(r"[?&]run="))
    return re.search(r"[?&]run=([^&]+)", page.url).group(1)


def test_a_run_started_on_one_server_trains_on_ray_and_is_seen_and_stopped_through_the_other(
        two_servers, new_browser):
    (one, two), store_url, _ = two_servers
    ana, ben = new_browser(), new_browser()

    identified(ana, one, "/train")
    name_box = ana.get_by_label("Your name (the class sees it)", exact=True)
    name_box.fill("Ana")
    name_box.press("Enter")
    ana.get_by_test_id("stSidebar").get_by_text("You: Ana").wait_for()
    run_id = start_long_run(ana, one)
    # live on server 1: the epochs come in while the page is open
    wait_for(store_url, run_id, lambda r: r.status == "training" and r.epochs_done >= 2, "two epochs")
    ana.locator('[data-testid="stProgress"]', has_text=re.compile(r"Epoch \d+ of 1000")).wait_for()

    # server 2 lists it, with its curves, for the whole class; Ben may watch, not stop
    identified(ben, two, "/runs")
    ben.get_by_test_id("stCheckbox").get_by_text("Whole class").click()
    ben.locator('[data-testid="stDataFrame"]').wait_for()
    wait_for_app(ben)
    [name] = table_names(ben)
    tick_row(ben, name)
    expect(ben.locator('.js-plotly-plot').first).to_be_visible()
    screenshots_at_sizes(ben, "two-servers-runs")
    identified(ben, two, f"/train?run={run_id}")
    ben.get_by_text("This run belongs to Ana: you can watch it, not change it.", exact=False).wait_for()
    expect(main_button(ben, "Stop")).to_be_disabled()
    ben.evaluate(FORCE_CLICK, "Stop")
    ben.wait_for_timeout(3000)
    assert record(store_url, run_id).status == "training"

    # Ana stops it through server 2: the request goes through the store to the server training it
    identified(ana, two, f"/train?run={run_id}")
    expect(main_button(ana, "Stop")).to_be_enabled()
    screenshots_at_sizes(ana, "two-servers-train-remote")
    main_button(ana, "Stop").click()
    stopped = wait_for(store_url, run_id, lambda r: r.status == "stopped", "the stop")
    assert stopped.epochs_done >= 2 and stopped.final


def test_killing_the_ray_worker_ends_its_run_crashed_with_its_epochs(two_servers, new_browser):
    (one, _), store_url, _ = two_servers
    page = new_browser()
    run_id = start_long_run(page, one)
    wait_for(store_url, run_id, lambda r: r.epochs_done >= 2, "two epochs")
    # the actors' processes on this machine (Ray names them after the actor's class)
    pids = [int(pid) for pid in subprocess.run(["pgrep", "-f", "ray::TaskActor"], capture_output=True,
                                               text=True).stdout.split()]
    assert pids, "no lrcore worker actor on the Ray cluster"
    done_before = record(store_url, run_id).epochs_done
    for pid in pids:  # the run's worker is one of them; the others are idle
        os.kill(pid, signal.SIGKILL)
    crashed = wait_for(store_url, run_id, lambda r: r.status == "crashed", "the crash")
    assert crashed.epochs_done >= done_before and "ended unexpectedly" in crashed.message
    page.get_by_text(re.compile("ended unexpectedly")).wait_for()


@pytest.fixture
def proxied_servers(tmp_path, postgres_server):  # noqa: F811
    """deploy/haproxy.cfg (Debian's haproxy) in front of two servers on one PostgreSQL store, local workers."""
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.path.exists(haproxy):
        pytest.fail("haproxy not found: ./setup.sh --test installs Debian's haproxy")
    env = {"LRCORE_STORE_URL": postgres_server.create_database(), "LRCORE_TEACHER_KEY": KEY, "LRCORE_WORKERS": "1"}
    servers = [start_streamlit(tmp_path / "data", tmp_path / f"server{n}.log", env) for n in (1, 2)]
    port = free_port()
    config = (ROOT / "deploy" / "haproxy.cfg").read_text()
    for n, (_, url) in enumerate(servers, 1):
        config = config.replace(f"dashboard-{n}:8501", url.removeprefix("http://"))
    config = config.replace("bind :80", f"bind 127.0.0.1:{port}").replace("log stdout format raw local0", "")
    (tmp_path / "haproxy.cfg").write_text(config)
    proxy = subprocess.Popen([haproxy, "-db", "-f", str(tmp_path / "haproxy.cfg")], stdout=subprocess.DEVNULL,
                             stderr=open(tmp_path / "haproxy.log", "w"))
    yield f"http://127.0.0.1:{port}", [url for _, url in servers]
    proxy.terminate()
    proxy.wait(10)
    for process, _ in servers:
        stop(process)


def test_the_proxy_of_compose_yaml_keeps_each_browser_on_one_server(proxied_servers, new_browser):
    proxy, _ = proxied_servers
    chosen = []
    for _ in range(2):
        page = new_browser()
        identified(page, proxy, "/train")  # the page's websocket works through the proxy
        server = {c["name"]: c["value"] for c in page.context.cookies()}.get("LRCORE_SERVER")
        assert server in ("d1", "d2")
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Runs").click()  # another page: same server
        page.get_by_role("heading", name="Runs").wait_for()
        page.reload()
        identified(page, proxy, "/runs")
        assert {c["name"]: c["value"] for c in page.context.cookies()}["LRCORE_SERVER"] == server
        chosen.append(server)
    assert sorted(chosen) == ["d1", "d2"]  # round robin for new browsers, sticky after
