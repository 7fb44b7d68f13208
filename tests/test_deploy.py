"""deploy/: compose.yaml and haproxy.cfg agree with each other and with the settings the code reads.

(No container engine here: the compose file is checked as data; the HAProxy config runs for real in
front of two servers in tests/browser/test_two_servers.py.)"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from lrcore import compute
from lrcore.store_setup import default_store_url

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_every_dashboard_trains_on_the_ray_head_and_shares_the_postgresql_store():
    services = compose()["services"]
    dashboards = [name for name in services if name.startswith("dashboard-")]
    assert len(dashboards) >= 2
    for name in dashboards:
        env = services[name]["environment"]
        assert env["LRCORE_COMPUTE"] == "ray" and env["LRCORE_RAY_ADDRESS"].split(":")[0] in services
        assert env["LRCORE_STORE_URL"].startswith("postgresql+psycopg://") and "@postgres:" in env["LRCORE_STORE_URL"]
        assert "LRCORE_TEACHER_KEY" in env  # one key for all: lesson links are signed with it
    head = " ".join(services["ray-head"]["command"])
    assert "--head" in head and f"--port={env['LRCORE_RAY_ADDRESS'].split(':')[1]}" in head


def test_the_settings_named_in_compose_are_the_ones_the_code_reads():
    source = "\n".join(path.read_text() for path in (Path(compute.__file__), Path(default_store_url.__code__.co_filename)))
    env = compose()["services"]["dashboard-1"]["environment"]
    for name in ("LRCORE_COMPUTE", "LRCORE_RAY_ADDRESS", "LRCORE_STORE_URL"):
        assert name in env and name in source, name


def test_the_proxy_balances_over_exactly_the_compose_dashboards_with_a_sticky_cookie():
    config = (DEPLOY / "haproxy.cfg").read_text()
    servers = re.findall(r"^\s*server (\S+) (\S+):8501 .*cookie (\S+)", config, re.M)
    dashboards = sorted(name for name in compose()["services"] if name.startswith("dashboard-"))
    assert sorted(name for name, host, _ in servers) == dashboards == sorted(host for _, host, _ in servers)
    assert len({cookie for *_, cookie in servers}) == len(servers)
    assert re.search(r"^\s*cookie \S+ insert", config, re.M)
    assert "proxy" in compose()["services"] and "./haproxy.cfg" in compose()["services"]["proxy"]["volumes"][0]
