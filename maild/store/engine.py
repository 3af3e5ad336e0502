"""Engines for the two supported databases, and the one place errors are translated.

SQLite (the embedded default) runs in WAL mode with a busy timeout, foreign
keys on, and every transaction started with ``BEGIN IMMEDIATE``: the write
lock is taken up front, so two writers queue on the busy timeout instead of
failing when a read lock cannot be upgraded, and claims made inside one
transaction are serialized like ``FOR UPDATE`` would. PostgreSQL is reached
through psycopg 3 and relies on row locks and ``SKIP LOCKED``.

Durability: SQLite commits with ``synchronous=NORMAL``. A commit is then
written to the WAL (it survives the process being killed) but not fsynced;
only a power cut or an OS crash can lose the last ones. What must survive
those is made durable by ``sync`` (one fsync of the WAL, which covers every
commit before it) just before anything leaves the database: before recorded
messages are moved out of the mailbox and once replies are claimed for
sending. One fsync per batch, not one per message (``synchronous=FULL``):
an fsync costs more than the rest of a message's intake.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import StaticPool

from maild.errors import StoreError, StoreUnavailable

log = logging.getLogger("maild.store")

SQLITE_BUSY_TIMEOUT_MS = 30_000
WAL_RETRY_PAUSE = 0.005
"""Seconds between two tries at switching a new SQLite file to WAL (see ``_enter_wal``)."""


def parse_url(url: str) -> URL:
    """The URL with the driver maild uses: ``postgresql://`` means psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed
    raise StoreError(f"unsupported database {backend!r}: use sqlite:/// or postgresql+psycopg://")


def make_engine(url: str) -> Engine:
    """An engine configured for maild; creates the parent folder of a SQLite file."""
    parsed = parse_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed)
        return create_engine(parsed, pool_pre_ping=True, hide_parameters=True)
    except (SQLAlchemyError, ImportError) as exc:
        raise StoreError(f"cannot create database engine: {exc}") from exc


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not memory:
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of {database}: {exc.strerror}") from exc
    extra: dict[str, Any] = {"poolclass": StaticPool} if memory else {}
    engine = create_engine(url, hide_parameters=True, connect_args={"check_same_thread": False}, **extra)
    event.listen(engine, "connect", configure_sqlite_connection)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def configure_sqlite_connection(dbapi_connection: Any, _record: object) -> None:
    """What every new SQLite connection runs first (a ``connect`` event listener)."""
    # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE instead of pysqlite.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _enter_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable at ``sync``, see the module docstring
    finally:
        cursor.close()


def _enter_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another connection holds the lock it needs.

    Switching a fresh file to WAL takes an exclusive lock, and SQLite answers "database is
    locked" at once, without its busy handler, to a connection that raced another for it: two
    daemons starting on a new database would see one of them fail. The mode is kept in the
    file, so this races only once.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(WAL_RETRY_PAUSE)


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def sqlite_file(engine: Engine) -> str | None:
    """The path of a SQLite database file; None for PostgreSQL, an in-memory or a URI database."""
    database = engine.url.database or ""
    if engine.dialect.name != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    return database


def sync(engine: Engine) -> None:
    """Make every transaction committed so far durable (see the module docstring).

    SQLite: fsync the write-ahead log, which is what a ``synchronous=FULL``
    commit does; the WAL is written in order, so this covers every earlier
    commit of every connection. PostgreSQL: nothing to do, a commit is as
    durable as the server's ``synchronous_commit`` makes it.
    """
    database = sqlite_file(engine)
    if database is None:
        return
    try:
        fd = os.open(f"{database}-wal", os.O_RDONLY)
    except FileNotFoundError:
        return  # no WAL yet: nothing was committed through it
    except OSError as exc:
        raise StoreError(f"cannot sync {database}: {exc.strerror}") from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        raise StoreUnavailable(f"cannot sync {database}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def describe(exc: BaseException) -> str:
    """A one-line reason without SQL text or parameters (raw mail stays out of logs)."""
    if isinstance(exc, DBAPIError | StatementError) and exc.orig is not None:
        orig = exc.orig
        first = str(orig).strip().splitlines()
        return f"{type(orig).__name__}: {first[0] if first else ''}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


_UNAVAILABLE_SQLSTATES = ("08", "53", "57P", "58", "55P03", "57014", "40001", "40P01")
"""PostgreSQL error classes that are the server's state, not the data's: connection exception,
insufficient resources (disk full, out of memory), shutting down or starting up, system I/O
error, lock not available, statement or lock timeout, serialization failure, deadlock."""
_UNAVAILABLE_SQLITE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN",
                       "SQLITE_NOMEM", "SQLITE_PROTOCOL", "SQLITE_READONLY")
"""The same for SQLite: locked past the busy timeout, disk full, I/O error, file out of reach."""


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` is a fault of the database itself (the same work succeeds later), not of the data."""
    if isinstance(exc, DisconnectionError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    name = getattr(orig, "sqlite_errorname", None)
    if isinstance(name, str):
        return name.startswith(_UNAVAILABLE_SQLITE)
    return isinstance(exc, OperationalError)  # no code at all: the connection never came up


def store_error(action: str, exc: SQLAlchemyError) -> StoreError:
    """``StoreUnavailable`` for a fault of the database, ``StoreError`` for one of the data."""
    kind = StoreUnavailable if unavailable(exc) else StoreError
    return kind(f"{action}: {describe(exc)}")


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Turn any SQLAlchemy/DBAPI error raised inside into ``StoreError`` (``StoreUnavailable`` when the
    database itself is at fault, see ``unavailable``)."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise store_error(action, exc) from exc
