"""Whether a stored run's writer is still alive, and the end of a run whose writer is gone.

On the same host a writer holds an OS lock (flock) on <lock dir>/<run id>.lock for as long as its
run is open: a kill -9 drops it. From another host, a heartbeat older than STALE_SECONDS says the
writer is gone. Readers `settle` the rows of active runs they read: a dead writer's run becomes
crashed (written so, quietly) with its completed epochs. This process's own open writers and the
ends it could not write are kept here too (_OPEN, _UNSAVED), one registry for the whole store.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from . import store_schema as schema
from .record import ACTIVE_STATUSES, RunRecord
from .status import Status
from .store_setup import HOST, sqlite_file

if TYPE_CHECKING:
    from .store_writer import RunWriter

STALE_SECONDS = 600.0  # a run written from another host counts as crashed after this long silent

# (url, run id) -> the writer of this process that has the run open
_OPEN: dict[tuple[str, str], "RunWriter"] = {}
# (url, run id) -> the final record of a run whose writer could not write its end: this process
# lists it as ended (with its save error) rather than as training or crashed
_UNSAVED: dict[tuple[str, str], RunRecord] = {}
_LIVE_LOCK = threading.Lock()


def _lock_dir(url: sa.engine.URL) -> Path:
    if url.get_backend_name() == "sqlite":
        return sqlite_file(url).parent / "locks"
    digest = hashlib.sha1(url.render_as_string(hide_password=True).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "lrcore-locks" / digest


def _try_lock(path: Path) -> int | None:
    """An exclusive flock on `path` (created if missing), or None while someone holds it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(handle)
        return None
    return handle


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host and is not a zombie (killed, not yet reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's, but there
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rfind(")") + 2:].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def settle(store: Any, rows: list[dict]) -> list[dict]:
    """Rows of active runs whose writer is gone become crashed (and are written so, quietly)."""
    now = time.time()
    for values in rows:
        if values["status"] not in ACTIVE_STATUSES:
            continue
        key = (store._key, values["id"])
        with _LIVE_LOCK:
            unsaved, mine = _UNSAVED.get(key), key in _OPEN
        if unsaved is not None:  # its writer here could not write the end: the end it knew
            values.update(schema.run_values(unsaved), save_error=unsaved.save_error)
            continue
        if mine:
            continue
        stale = now - float(values["heartbeat"] or 0.0) >= STALE_SECONDS
        handle = None
        if values["host"] == HOST and not stale:
            handle = _try_lock(store.lock_dir / f"{values['id']}.lock")
            if handle is None:
                continue  # its writer holds the lock: alive
            pid = int(values["pid"] or 0)
            if pid != os.getpid() and _pid_alive(pid):  # this process knows its writers (_OPEN)
                # a free lock but its process is there: another temp folder (a service's private
                # /tmp holding a PostgreSQL store's locks) or a reused pid; the heartbeat decides
                os.close(handle)
                continue
        elif not stale:
            continue
        try:
            _crashed(store, values)
        finally:
            if handle is not None:
                (store.lock_dir / f"{values['id']}.lock").unlink(missing_ok=True)
                os.close(handle)
    return rows


def _crashed(store: Any, values: dict) -> None:
    epochs = _epochs_done(store, values["id"])
    total = (values.get("config") or {}).get("epochs", "?") if isinstance(values.get("config"), dict) else "?"
    message = (f"the process training it (pid {values['pid']} on {values['host']}) ended without finishing "
               f"(server restart, crash or kill) after epoch {epochs} of {total}; the completed epochs are kept")
    values.update(status=Status.CRASHED, message=message, progress={})
    try:
        with store.engine.begin() as connection:
            connection.execute(sa.update(schema.Run).where(
                schema.Run.id == values["id"], schema.Run.status.in_([str(s) for s in ACTIVE_STATUSES]))
                .values(status=str(Status.CRASHED), message=message, progress={}))
    except sa_exc.SQLAlchemyError:  # a read-only store just shows it
        pass


def _epochs_done(store: Any, run_id: str) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.max(schema.Epoch.epoch))
                                      .where(schema.Epoch.run_id == run_id)).scalar() or 0)
