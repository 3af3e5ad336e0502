"""Who reads the mailbox: on a shared PostgreSQL database one daemon reads, the others stand by.

Two daemons reading one mailbox record every message once all the same (the
unique key), but each fetches and triages all of it: the second only doubles
the work and the load on the IMAP server. The reader holds a PostgreSQL
session advisory lock, keyed by the mailbox, on a connection of its own: the
server releases it the moment that session ends, so when the reader dies or
loses its connection a standby's next try (every few seconds) takes over.
A SQLite database is one host's, and its daemon always reads.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from maild.store.engine import describe

log = logging.getLogger("maild.store")

READER_STATE = "mailbox:reader"
"""State key naming the daemon that reads the mailbox (``host:pid``), for ``maild status``."""
_TRY_LOCK = text("SELECT pg_try_advisory_lock(hashtextextended(:key, 0))")
_ALIVE = text("SELECT 1")


class ReaderLock:
    """The mailbox ``mailbox`` (any string naming it) for this daemon, while its lock session lives."""

    def __init__(self, engine: Engine, mailbox: str) -> None:
        self._engine = engine
        self._key = f"maild reader {mailbox}"
        self._conn: Connection | None = None

    def hold(self) -> bool:
        """Whether this daemon reads the mailbox now: checks a held lock is still held, else tries to take it."""
        if self._engine.dialect.name != "postgresql":
            return True
        try:
            if self._conn is not None:
                self._conn.execute(_ALIVE)  # the lock lives exactly as long as this session
                return True
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                taken = bool(conn.execute(_TRY_LOCK, {"key": self._key}).scalar())
            except BaseException:
                conn.close()
                raise
            if taken:
                self._conn = conn
            else:
                conn.close()
            return taken
        except SQLAlchemyError as exc:
            log.warning("the mailbox lock's session is gone (%s)", describe(exc))
            self._forget()
            return False

    def release(self) -> None:
        """Give the mailbox up (closing the session releases the lock)."""
        self._forget()

    def _forget(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()  # never back to the pool: the session and its lock end here
                conn.close()
            except SQLAlchemyError:
                pass
