"""Helpers shared by the store modules: events, upserts, row-to-record conversion."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Result
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from maild.errors import StoreError
from maild.mail.keys import message_key
from maild.records import Event, EventKind, OutboxState, OutboxSummary, OutgoingMail, TicketState, TicketSummary
from maild.store import models


def add_event(session: Session, kind: EventKind, at: datetime, **fields: Any) -> None:
    """Append one event; ``fields`` are those of ``event_row``."""
    session.add(models.Event(**event_row(kind, at, **fields)))


def event_row(
    kind: EventKind,
    at: datetime,
    *,
    ticket_id: int | None = None,
    message_id: int | None = None,
    outbox_id: int | None = None,
    reasons: Iterable[str] = (),
    data: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """The column values of one event, for ``add_event`` or a many-row INSERT."""
    return {
        "ticket_id": ticket_id, "message_id": message_id, "outbox_id": outbox_id, "kind": kind.value,
        "reasons": [str(r) for r in reasons],
        "data": {k: event_text(v) for k, v in (data or {}).items() if v is not None},
        "at": at,
    }


def event_text(value: object) -> str:
    """How a value is written into an event's data: every value is stored as a string."""
    if type(value) is str:  # most values: no conversion, and no isinstance tests to pay for
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple | list):
        return ", ".join(str(v) for v in value)
    return str(value)


def insert_for(session: Session) -> Any:
    """The dialect's ``insert`` (with ``on_conflict_do_*``): SQLite or PostgreSQL."""
    name = session.get_bind().dialect.name
    return postgresql.insert if name == "postgresql" else sqlite.insert


def rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE (how conditional updates tell who won)."""
    return cast(CursorResult[Any], result).rowcount


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def queue_replies(
    session: Session,
    replies: Iterable[OutgoingMail],
    now: datetime,
    *,
    ticket_id: int | None,
    source_message_id: int | None,
) -> tuple[int, ...]:
    """Insert ``replies`` into the outbox as pending, with one ``queued`` event each."""
    ids: list[int] = []
    for mail in replies:
        row = models.Outbox(**outbox_row(mail, now, ticket_id=ticket_id, source_message_id=source_message_id))
        session.add(row)
        session.flush()
        ids.append(row.id)
        add_event(session, EventKind.QUEUED, now, **queued_event(mail, ticket_id, source_message_id, row.id))
    return tuple(ids)


def outbox_row(mail: OutgoingMail, now: datetime, *, ticket_id: int | None,
               source_message_id: int | None) -> dict[str, Any]:
    """The column values of one pending reply; a reply without a recipient is a fault."""
    if not mail.recipients:
        raise StoreError(f"reply {mail.message_id} ({mail.kind}) has no recipient")
    return {
        "ticket_id": ticket_id, "source_message_id": source_message_id, "kind": mail.kind,
        "message_id": mail.message_id, "message_key": message_key(mail.message_id),
        "recipients": list(mail.recipients), "rcpt_key": mail.recipients[0].strip().lower(),
        "envelope_from": mail.envelope_from, "data": mail.data, "state": OutboxState.PENDING.value,
        "attempts": 0, "next_attempt_at": now, "created_at": now,
    }


def queued_event(mail: OutgoingMail, ticket_id: int | None, source_message_id: int | None,
                 outbox_id: int) -> dict[str, Any]:
    """Keyword arguments of the ``queued`` event of one reply (``add_event``/``event_row``)."""
    return {"ticket_id": ticket_id, "message_id": source_message_id, "outbox_id": outbox_id,
            "data": {"kind": mail.kind, "message_id": mail.message_id, "recipients": mail.recipients}}


def ticket_summary(row: models.Ticket) -> TicketSummary:
    return TicketSummary(
        id=row.id, reference=row.reference, requester=row.requester, administration=row.administration,
        category=row.category, decision=row.decision, priority=row.priority, language=row.language,
        subject=row.subject, state=TicketState(row.state), received_at=row.received_at,
        take_in_at=row.take_in_at, in_hours=row.in_hours, taken_in_at=row.taken_in_at,
        resolved_at=row.resolved_at, channel=row.channel, review=row.review,
    )


def event_record(row: models.Event) -> Event:
    return Event(
        id=row.id, ticket_id=row.ticket_id, message_id=row.message_id, outbox_id=row.outbox_id,
        kind=row.kind, reasons=tuple(row.reasons), data=tuple((k, str(v)) for k, v in row.data.items()),
        at=row.at,
    )


def outbox_summary(row: models.Outbox, ticket: str | None = None) -> OutboxSummary:
    return OutboxSummary(
        id=row.id, ticket_id=row.ticket_id, kind=row.kind, message_id=row.message_id,
        recipients=tuple(row.recipients), state=OutboxState(row.state), attempts=row.attempts,
        next_attempt_at=row.next_attempt_at, last_error=row.last_error, created_at=row.created_at,
        sent_at=row.sent_at, claimed_at=row.claimed_at, released_at=row.released_at, ticket=ticket,
    )
