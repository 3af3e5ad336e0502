"""Key/value state: heartbeats, digest periods, anything the daemon must remember; and the daemons' own rows.

A digest period is recorded in the same transaction as the digest's outbox
rows, under a unique key: two daemons (or a restart) never send one twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from maild.records import DaemonRecord, EventKind, OutgoingMail, StateEntry
from maild.store import models
from maild.store.common import add_event, insert_for, queue_replies

DIGEST_PREFIX = "digest:"
HEARTBEAT_PREFIX = "heartbeat:"
DAEMONS_KEPT = timedelta(days=7)
"""Stopped or vanished daemons older than this are forgotten when another one starts."""


def _entry(row: models.State) -> StateEntry:
    return StateEntry(key=row.key, value=row.value, updated_at=row.updated_at)


def put(session: Session, key: str, value: str, now: datetime) -> None:
    insert = insert_for(session)
    statement = insert(models.State).values(key=key, value=value, updated_at=now)
    session.execute(statement.on_conflict_do_update(
        index_elements=[models.State.key], set_={"value": value, "updated_at": now}))


def get(session: Session, key: str) -> StateEntry | None:
    row = session.get(models.State, key)
    return None if row is None else _entry(row)


def with_prefix(session: Session, prefix: str) -> tuple[StateEntry, ...]:
    s = models.State
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = session.scalars(select(s).where(s.key.like(escaped + "%", escape="\\")).order_by(s.key))
    return tuple(_entry(r) for r in rows)


def record_digest(session: Session, period: str, now: datetime, replies: Iterable[OutgoingMail]) -> bool:
    """Queue the digest for ``period`` unless it was recorded already.

    The row insert conflicts with a concurrent daemon's (PostgreSQL raises on
    commit of the second; the caller turns that into False).
    """
    key = DIGEST_PREFIX + period
    if session.get(models.State, key) is not None:
        return False
    session.add(models.State(key=key, value=now.isoformat(), updated_at=now))
    session.flush()
    ids = queue_replies(session, replies, now, ticket_id=None, source_message_id=None)
    add_event(session, EventKind.DIGEST, now, data={"period": period, "replies": len(ids)})
    return True


def start_daemon(session: Session, host: str, pid: int, now: datetime) -> int:
    """Record a daemon that starts; forget the long-gone ones. Returns its row id."""
    d = models.DaemonRun
    session.execute(delete(d).where(d.heartbeat_at < now - DAEMONS_KEPT))
    row = d(host=host, pid=pid, started_at=now, heartbeat_at=now, last_poll_at=None, stopped_at=None)
    session.add(row)
    session.flush()
    return row.id


def beat_daemon(session: Session, daemon_id: int, now: datetime, last_poll_at: datetime | None) -> None:
    values: dict[str, object] = {"heartbeat_at": now}
    if last_poll_at is not None:
        values["last_poll_at"] = last_poll_at
    session.execute(update(models.DaemonRun).where(models.DaemonRun.id == daemon_id).values(**values))


def stop_daemon(session: Session, daemon_id: int, now: datetime) -> None:
    session.execute(update(models.DaemonRun).where(models.DaemonRun.id == daemon_id)
                    .values(heartbeat_at=now, stopped_at=now))


def daemons(session: Session, since: datetime) -> tuple[DaemonRecord, ...]:
    """Daemons not recorded as stopped, and those stopped since ``since``, the newest first."""
    d = models.DaemonRun
    rows = session.scalars(select(d).where(or_(d.stopped_at.is_(None), d.stopped_at >= since))
                           .order_by(d.started_at.desc(), d.id.desc()))
    return tuple(DaemonRecord(id=r.id, host=r.host, pid=r.pid, started_at=r.started_at, heartbeat_at=r.heartbeat_at,
                              last_poll_at=r.last_poll_at, stopped_at=r.stopped_at) for r in rows)
