"""The run store's ground floor: its settings and limits, its errors in words for a page, where it
lives (URLs, the SQLite file), one engine per URL and process with the tables created, and the
checks of run ids and names. The other store modules build on this one; it imports none of them.
"""
from __future__ import annotations

import errno
import logging
import math
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from . import store_schema as schema
from .data import default_data_dir

log = logging.getLogger("lrcore.store")  # one logger for the whole store, as before it was split

MAX_NAME_LENGTH = 100
MAX_MESSAGE_LENGTH = 1000
DEFAULT_STORE_MAX_MB = 500.0
DB_NAME = "lrcore.db"
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
HOST = socket.gethostname()
FINAL_METRICS = ("test_loss", "test_accuracy", "validation_loss", "validation_accuracy", "epochs_completed")


class StoreError(ValueError):
    """A run or sweep cannot be found, renamed or deleted, or the store cannot be used; says why."""


class StoreFullError(StoreError, OSError):
    """The store is over its size limit ($LRCORE_STORE_MAX_MB): a new run is not saved."""


RunStoreError = StoreError  # the name the pages and the CLI used with lrcore.runstore

_WRITE_ERRORS = {
    errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the run store is on a read-only file system",
    errno.EACCES: "the server is not allowed to write to the run store",
    errno.EPERM: "the server is not allowed to write to the run store",
    errno.EFBIG: "a file grew larger than the server allows", errno.EIO: "the disk reported an input/output error",
}
_DB_ERRORS = (("disk is full", "the disk is full"), ("no space", "the disk is full"),
              ("readonly", "the run store is read-only"), ("read-only", "the run store is read-only"),
              ("disk i/o", "the disk reported an input/output error"),
              ("unable to open", "the run store's database file cannot be opened"),
              ("database is locked", "the run store stayed locked by another process"),
              ("connect", "the database server cannot be reached"),
              ("terminat", "the connection to the database server was lost"))


def disk_error(error: BaseException | None) -> OSError | None:
    """The OSError behind `error`, if any (torch.save wraps a full disk in a RuntimeError)."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError):
            return error
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def describe_write_error(error: BaseException) -> str:
    """Why something could not be saved, in words for a page: no server paths or SQL in it."""
    if isinstance(error, StoreError):
        return str(error)
    if isinstance(error, sa_exc.DBAPIError):
        text = " ".join(str(error.orig).split())[:200]
        for key, what in _DB_ERRORS:
            if key in text.lower():
                return f"{what} ({text.split(':')[0] if 'connect' in key else text})"
        return f"the database refused the write ({text})"
    error = disk_error(error) or error
    if isinstance(error, OSError):
        what = _WRITE_ERRORS.get(error.errno, "the run store could not be written to")
        return f"{what} ({error.strerror or type(error).__name__})"
    return f"an internal error ({type(error).__name__}: {error})"


def _is_expected(error: BaseException) -> bool:
    """A disk's or database's fault (one log line), not a bug (a traceback)."""
    return isinstance(error, (StoreError, sa_exc.OperationalError)) or disk_error(error) is not None


_BAD_LIMITS: set[str] = set()


def store_limit_mb() -> float | None:
    """The store's size limit in MB: $LRCORE_STORE_MAX_MB (0 = no limit), else DEFAULT_STORE_MAX_MB."""
    text = os.environ.get("LRCORE_STORE_MAX_MB", "").strip()
    if not text:
        return DEFAULT_STORE_MAX_MB
    try:
        value = float(text)
        if not math.isfinite(value) or value < 0:
            raise ValueError
    except ValueError:
        if text not in _BAD_LIMITS:  # said once per value, not at every run
            _BAD_LIMITS.add(text)
            log.warning("LRCORE_STORE_MAX_MB=%r is not a size in MB (a number >= 0; 0 = no limit): using %g",
                        text[:40], DEFAULT_STORE_MAX_MB)
        return DEFAULT_STORE_MAX_MB
    return value or None


def _megabytes(size: float) -> str:
    if size < 1e6:
        return f"{size / 1e3:,.0f} kB"
    return f"{size / 1e6:,.1f} MB" if size < 10e6 else f"{size / 1e6:,.0f} MB"


def default_runs_dir() -> Path:
    """$LRCORE_RUNS_DIR, else runs/ in the data folder: where the default SQLite store lives."""
    folder = os.environ.get("LRCORE_RUNS_DIR")
    return Path(folder) if folder else default_data_dir() / "runs"


def default_store_url() -> str:
    """$LRCORE_STORE_URL, else the SQLite file lrcore.db in default_runs_dir()."""
    configured = os.environ.get("LRCORE_STORE_URL", "").strip()
    return configured or str(default_runs_dir() / DB_NAME)


def _url(url: str | Path | None) -> sa.engine.URL:
    text = str(url) if url is not None else default_store_url()
    if "://" not in text:  # a path: an SQLite file (*.db, *.sqlite), else a folder with lrcore.db in it
        path = Path(text).expanduser()
        if path.is_dir() or path.suffix.lower() not in SQLITE_SUFFIXES:
            path = path / DB_NAME
        return sa.engine.make_url(f"sqlite:///{path.resolve()}")
    parsed = sa.engine.make_url(text)
    if parsed.drivername in ("postgresql", "postgres"):  # psycopg 3 is the driver we install
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def check_run_id(run_id: str, kind: str = "run") -> None:
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise StoreError(f"invalid {kind} id {str(run_id)[:120]!r}: use letters, digits, '-', '_' and '.' "
                         "(at most 100)")


def capped(text: Any, limit: int) -> str:
    """Stored text on one line and at most `limit` characters ("…" marks a cut)."""
    if text is None:
        return ""
    line = " ".join(str(text)[:limit * 4].split())
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


def clean_name(name: str) -> str:
    text = " ".join(str(name).split())
    if not text:
        raise StoreError("a run name cannot be empty")
    if len(text) > MAX_NAME_LENGTH:
        raise StoreError(f"a run name is at most {MAX_NAME_LENGTH} characters, got {len(text)}")
    return text


# ---------------------------------------------------------------- engines (one per URL and process)

_ENGINES: dict[str, sa.Engine] = {}
_IMPORTED: dict[str, str] = {}  # url -> the import message of this process's first start of that store
_ENGINES_LOCK = threading.Lock()


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    cursor.execute("PRAGMA busy_timeout=30000")  # writers of other processes wait their turn
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; a commit costs no fsync
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_size_limit=1048576")  # the WAL file shrinks back to 1 MB after checkpoints
    cursor.close()


def sqlite_file(url: sa.engine.URL) -> Path:
    """The database file of a SQLite URL, also in SQLite's URI form (file:/path?mode=ro&uri=true)."""
    database = url.database or ""
    if database.startswith("file:"):
        database = database[len("file:"):].split("?")[0]
    return Path(database)


def _engine(url: sa.engine.URL) -> tuple[sa.Engine, str]:
    key = url.render_as_string(hide_password=False)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            if url.get_backend_name() == "sqlite":
                sqlite_file(url).parent.mkdir(parents=True, exist_ok=True)
                engine = sa.create_engine(url, connect_args={"timeout": 30})
                sa.event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = sa.create_engine(url, pool_pre_ping=True)
            try:
                _create_schema(engine, url.render_as_string(hide_password=True))
            except BaseException:
                engine.dispose()
                raise
            _ENGINES[key] = engine
        return engine, key


def _create_schema(engine: sa.Engine, shown: str) -> None:
    """Create the tables if missing; refuse a store written by a newer version."""
    for attempt in range(3):  # two processes creating one PostgreSQL schema at once: the loser retries
        try:
            with engine.begin() as connection:
                if sa.inspect(connection).has_table(schema.Meta.__tablename__):
                    found = connection.execute(sa.select(schema.Meta.value).where(
                        schema.Meta.key == "schema_version")).scalar()
                    if found is not None and int(found) > schema.SCHEMA_VERSION:
                        raise StoreError(
                            f"the run store {shown} was written by a newer version of lrcore (schema {int(found)}; "
                            f"this version knows schema {schema.SCHEMA_VERSION} and older): upgrade lrcore, "
                            "or set LRCORE_STORE_URL to another store")
                schema.Base.metadata.create_all(connection)
                _upgrade(connection)
                found = connection.execute(sa.select(schema.Meta.value).where(
                    schema.Meta.key == "schema_version")).scalar()
                if found is None:
                    connection.execute(sa.insert(schema.Meta).values(key="schema_version",
                                                                      value=str(schema.SCHEMA_VERSION)))
                elif int(found) < schema.SCHEMA_VERSION:
                    connection.execute(sa.update(schema.Meta).where(schema.Meta.key == "schema_version")
                                       .values(value=str(schema.SCHEMA_VERSION)))
            return
        except (sa_exc.IntegrityError, sa_exc.ProgrammingError, sa_exc.OperationalError) as error:
            # another process created the same table or added the same column a moment before (PostgreSQL:
            # a duplicate; SQLite: "table ... already exists", as when a test opened the store a page was creating)
            message = str(error).lower()
            if attempt == 2 or (isinstance(error, sa_exc.OperationalError) and "duplicate" not in message
                                and "already exists" not in message):
                raise
            time.sleep(0.2)


def _upgrade(connection: sa.Connection) -> None:
    """Add the columns (and their indexes) a store of an older schema lacks; create_all made new tables."""
    inspector = sa.inspect(connection)
    for table_name, column_name in schema.ADDED_COLUMNS:
        if column_name in {column["name"] for column in inspector.get_columns(table_name)}:
            continue
        table = schema.Base.metadata.tables[table_name]
        column = table.c[column_name]
        kind = column.type.compile(dialect=connection.dialect)
        default = column.server_default.arg if column.server_default is not None else ""
        connection.exec_driver_sql(f"ALTER TABLE {table_name} ADD COLUMN {column_name} {kind} "
                                   f"NOT NULL DEFAULT '{default}'")
        for index in table.indexes:
            if [c.name for c in index.columns] == [column_name]:
                index.create(connection, checkfirst=True)

