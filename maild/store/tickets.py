"""Ticket operations after intake: threading, take-in, resolve and reopen."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Connection, Row, bindparam, select, update
from sqlalchemy.orm import Session

from maild.mail.keys import message_key
from maild.records import EventKind, OutgoingMail, TakeInItem, TicketRef, TicketState
from maild.store import models
from maild.store.bulk import insert_rows, table_of
from maild.store.common import add_event, event_row, queue_replies, rowcount
from maild.store.models import UTCDateTime, clean_text


def find_thread(
    session: Session, message_ids: Iterable[str], tag_refs: Iterable[str], from_addr: str
) -> TicketRef | None:
    """The ticket a message continues, or None.

    ``message_ids`` (In-Reply-To, then References) are tried in the order given
    against our sent Message-IDs and the Message-IDs of every message of a
    ticket. A subject tag counts only when the ticket's requester wrote it:
    anyone else quoting a reference opens a new ticket. The ticket is read as
    it is now in the transaction (Core, not the session's cached objects): a
    message recorded ahead of this one in the same batch may have reopened it.
    """
    t = models.Ticket
    conn = session.connection()
    keys = thread_keys(message_ids)
    if keys:
        found = _tickets_by_message_key(conn, keys)
        for key in keys:
            if key in found:
                return _ref(conn.execute(_TICKET_COLUMNS.where(t.id == found[key])).one())
    refs = [r for r in dict.fromkeys(clean_text(tag).strip().upper() for tag in tag_refs) if r]
    sender = clean_text(from_addr).strip().lower()
    if refs and sender:
        rows = {row.reference: row for row in conn.execute(_TICKET_COLUMNS.where(t.reference.in_(refs)))}
        for ref in refs:
            if ref in rows and rows[ref].requester == sender:
                return _ref(rows[ref])
    return None


def thread_keys(message_ids: Iterable[str]) -> list[str]:
    """The Message-IDs a message names, as ``messages.message_key`` and ``outbox.message_key`` hold them."""
    return [k for k in dict.fromkeys(clean_text(message_key(m)) for m in message_ids) if k]


_TICKET_COLUMNS = select(models.Ticket.id, models.Ticket.reference, models.Ticket.requester, models.Ticket.state)


def _ref(row: Row[int, str, str, str]) -> TicketRef:
    return TicketRef(id=row.id, reference=row.reference, requester=row.requester, state=TicketState(row.state))


def _tickets_by_message_key(conn: Connection, keys: list[str]) -> dict[str, int]:
    o, m = models.Outbox, models.Message
    found: dict[str, int] = {}
    for key, ticket_id in conn.execute(
        select(o.message_key, o.ticket_id).where(o.message_key.in_(keys), o.ticket_id.is_not(None))
        .union_all(select(m.message_key, m.ticket_id).where(m.message_key.in_(keys), m.ticket_id.is_not(None)))
    ):
        if ticket_id is not None:
            found.setdefault(key, ticket_id)
    return found


def _waiting(now: datetime | BindParameter[datetime] | None = None) -> list[ColumnElement[bool]]:
    t = models.Ticket
    conditions: list[ColumnElement[bool]] = [t.taken_in_at.is_(None), t.state == TicketState.OPEN.value]
    if now is not None:
        conditions.append(t.take_in_at <= now)
    return conditions


def _now() -> BindParameter[datetime]:
    """The ``now`` parameter, typed so it is compared and stored like the columns (UTC)."""
    return bindparam("now", type_=UTCDateTime())


# Take-in runs as Core statements, built once at import so SQLAlchemy compiles each shape once:
# after a backlog it is thousands of tickets, and per ticket the ORM costs more than the database.
_T = models.Ticket
_DUE = (
    select(_T.id, _T.reference, _T.priority, _T.category, _T.administration, _T.received_at, _T.take_in_at)
    .where(*_waiting(_now())).order_by(_T.priority, _T.received_at, _T.id).limit(bindparam("limit"))
)
_DUE_LOCKED = _DUE.with_for_update(skip_locked=True)
_MARK = (  # still waiting: a ticket someone else took in (or resolved) meanwhile is not ours
    update(_T).where(_T.id.in_(bindparam("ids", expanding=True)), *_waiting())
    .values(taken_in_at=_now()).returning(_T.id)
)
CHUNK = 500
"""Most tickets one UPDATE marks, so its ``IN (...)`` list stays far below SQLite's limit."""


def _take_in_item(row: Row[*tuple[Any, ...]]) -> TakeInItem:
    return TakeInItem(
        ticket_id=row.id, reference=row.reference, priority=row.priority, category=row.category,
        administration=row.administration, received_at=row.received_at, take_in_at=row.take_in_at,
    )


def due_take_ins(conn: Connection, now: datetime, limit: int, *, lock: bool = False) -> list[TakeInItem]:
    """Open tickets due for take-in by ``now``: priority, then arrival, then id."""
    rows = conn.execute(_DUE_LOCKED if lock else _DUE, {"now": now, "limit": limit})
    return [_take_in_item(row) for row in rows]


def take_in(conn: Connection, now: datetime, limit: int) -> list[TakeInItem]:
    """Claim and mark the due take-ins in one go (safe with two daemons).

    One SELECT (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's ``BEGIN
    IMMEDIATE`` already keeps other writers out), then per chunk one UPDATE and
    one batched INSERT of the events: a handful of statements for a whole
    backlog. Only the tickets the UPDATE reports as marked are returned and
    evented, in due order: the same rows ``mark_taken_in`` one by one writes.
    """
    items = due_take_ins(conn, now, limit, lock=True)
    taken: list[TakeInItem] = []
    for start in range(0, len(items), CHUNK):
        taken.extend(_mark_all(conn, items[start:start + CHUNK], now))
    return taken


def _mark_all(conn: Connection, items: Sequence[TakeInItem], now: datetime) -> list[TakeInItem]:
    marked = set(conn.execute(_MARK, {"ids": [item.ticket_id for item in items], "now": now}).scalars())
    done = [item for item in items if item.ticket_id in marked]
    if done:
        insert_rows(conn, table_of(models.Event), [
            event_row(EventKind.TAKEN_IN, now, ticket_id=item.ticket_id, data=_taken_in_data(
                item.reference, item.priority, item.take_in_at))
            for item in done
        ])
    return done


def _taken_in_data(reference: str, priority: int, take_in_at: datetime) -> dict[str, object]:
    return {"reference": reference, "priority": priority, "take_in_at": take_in_at}


def mark_taken_in(session: Session, ticket_id: int, now: datetime) -> bool:
    """Mark one ticket taken in; False if it already was (or is not open)."""
    t = models.Ticket
    done = rowcount(session.execute(
        update(t).where(t.id == ticket_id, *_waiting()).values(taken_in_at=now)
        .execution_options(synchronize_session=False)
    ))
    if done:
        row = session.get_one(t, ticket_id)
        add_event(session, EventKind.TAKEN_IN, now, ticket_id=ticket_id,
                  data=_taken_in_data(row.reference, row.priority, row.take_in_at))
    return bool(done)


def next_take_in_at(session: Session) -> datetime | None:
    t = models.Ticket
    return session.scalar(select(t.take_in_at).where(*_waiting()).order_by(t.take_in_at).limit(1))


def change_state(
    session: Session, reference: str, now: datetime, *, to: TicketState, by: str, reasons: Iterable[str],
    replies: Iterable[OutgoingMail],
) -> bool:
    """Resolve or reopen; False (and nothing written) if the ticket is missing or already there."""
    t = models.Ticket
    frm = TicketState.RESOLVED if to is TicketState.OPEN else TicketState.OPEN
    done = rowcount(session.execute(
        update(t).where(t.reference == reference.strip().upper(), t.state == frm.value)
        .values(state=to.value, resolved_at=now if to is TicketState.RESOLVED else None)
        .execution_options(synchronize_session=False)
    ))
    if not done:
        return False
    row = session.scalars(select(t).where(t.reference == reference.strip().upper())).one()
    kind = EventKind.RESOLVED if to is TicketState.RESOLVED else EventKind.REOPENED
    add_event(session, kind, now, ticket_id=row.id, reasons=reasons, data={"by": by})
    queue_replies(session, replies, now, ticket_id=row.id, source_message_id=None)
    return True
