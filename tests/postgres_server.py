"""A throwaway PostgreSQL server for the store's tests: Debian's binaries (`apt-get install postgresql`,
which ./setup.sh --test does), a fresh cluster in a temp folder, loopback only, trust auth.

`postgres_server` (session) yields the server's base URL; `postgres_url(name)` makes a new, empty
database on it, so each test starts from nothing. Skipped, saying why, only when the binaries are
missing. initdb refuses to run as root: as root it runs as the `postgres` user.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid

import pytest


def _binaries() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    def __init__(self, bin_dir: str):
        self.bin_dir = bin_dir
        self.folder = tempfile.mkdtemp(prefix="lrcore-pg-")
        self.data = os.path.join(self.folder, "data")
        self.port = _free_port()
        self.user = None
        if os.geteuid() == 0:  # postgres will not run as root
            self.user = pwd.getpwnam("postgres")
            os.chown(self.folder, self.user.pw_uid, self.user.pw_gid)
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = [os.path.join(self.bin_dir, args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.folder)
        if result.returncode:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr[-2000:]}")

    def start(self) -> None:
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=300 -c synchronous_commit=off")
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", os.path.join(self.folder, "log"), "-w",
                  "-t", "60", "start")

    def create_database(self, name: str | None = None) -> str:
        import sqlalchemy as sa

        name = name or f"t_{uuid.uuid4().hex[:10]}"
        engine = sa.create_engine(f"{self.url}/postgres", isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            engine.dispose()
        return f"{self.url}/{name}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", timeout=60)
        except Exception:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    bin_dir = _binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb): "
                    "./setup.sh --test installs Debian's postgresql")
    try:
        import psycopg  # noqa: F401  (the driver the store's URLs name)
    except ImportError:
        pytest.skip("the psycopg driver is not installed: ./setup.sh --test installs it")
    server = PostgresServer(bin_dir)
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    yield server
    server.stop()
