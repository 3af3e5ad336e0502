"""Key/value state: heartbeats, digest periods, anything the daemon must remember.

A digest period is recorded in the same transaction as the digest's outbox
rows, under a unique key: two daemons (or a restart) never send one twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.records import EventKind, OutgoingMail, StateEntry
from maild.store import models
from maild.store.common import add_event, insert_for, queue_replies

DIGEST_PREFIX = "digest:"
HEARTBEAT_PREFIX = "heartbeat:"


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
