"""The intake unit of work: one message, its triage, its ticket and replies, one transaction.

Exactly-once rests on two facts. The raw message, its ticket and its outbox
rows are committed together, and the daemon moves the message out of the
inbox only after that commit: a crash before the commit leaves the message in
the inbox and nothing in the database; a crash after it leaves a message that
``dedupe_key`` recognises. And ``messages.dedupe_key`` is UNIQUE: a second
daemon recording the same message blocks on the first one's row and then
fails the insert, which ``Store.record_intake`` reports as a duplicate.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from datetime import datetime, tzinfo
from typing import cast

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from maild import models
from maild.errors import StoreError
from maild.models import MessageKind, QuarantineState, TicketState
from maild.records import Decision, Disposition
from maild.store.common import add_event, insert_for, is_postgresql, queue_replies, rowcount, ticket_ref
from maild.store.text import message_key
from maild.store.types import EventKind, Intake, IntakeResult, Renderer, TicketRef


def is_known(session: Session, dedupe_key: str) -> bool:
    return session.scalar(select(models.Message.id).where(models.Message.dedupe_key == dedupe_key)) is not None


def record(session: Session, intake: Intake, render: Renderer, prefix: str, zone: tzinfo) -> IntakeResult:
    """Write everything for ``intake``; returns a duplicate result without writing if known."""
    if is_known(session, intake.dedupe_key):
        if intake.quarantine_id is not None:
            mark_retried(session, intake.quarantine_id, intake.now, duplicate=True)
        return IntakeResult(duplicate=True)
    d = intake.disposition
    stream = len(intake.raw) > STREAM_RAW_OVER and not is_postgresql(session)
    message = _message_row(intake, stream_raw=stream)
    session.add(message)
    session.flush()  # PostgreSQL: waits here for a concurrent insert of the same key
    ticket, opened = _ticket_for(session, intake, message, prefix, zone)
    message.kind = _kind(d, intake.thread, ticket).value
    message.ticket_id = ticket.id if ticket else None
    _triage_events(session, intake, message.id, ticket.id if ticket else None)
    _ticket_event(session, intake, message.id, ticket, opened)
    outbox_ids: tuple[int, ...] = ()
    if d.decision is not Decision.IGNORED:
        ref = ticket_ref(ticket) if ticket else None
        outbox_ids = queue_replies(session, render(ref), intake.now,
                                   ticket_id=ticket.id if ticket else None, source_message_id=message.id)
    if intake.quarantine_id is not None:
        mark_retried(session, intake.quarantine_id, intake.now, duplicate=False)
    if stream:
        session.flush()  # the row's last change: an UPDATE after the raw is in would rewrite all of it
        _write_raw(session, message.id, intake.raw)
    return IntakeResult(
        duplicate=False, message_id=message.id, kind=MessageKind(message.kind),
        ticket=ticket_ref(ticket) if ticket else None, opened=opened, outbox_ids=outbox_ids,
    )


def _kind(d: Disposition, thread: TicketRef | None, ticket: models.Ticket | None) -> MessageKind:
    if d.decision is Decision.IGNORED:
        return MessageKind.IGNORED
    if thread is not None:
        return MessageKind.FOLLOWUP
    return MessageKind.NEW if ticket is not None else MessageKind.REFUSED


STREAM_RAW_OVER = 1024 * 1024
"""On SQLite, a raw message larger than this is written into its row a chunk at a time."""
_RAW_CHUNK = 1024 * 1024


def _message_row(intake: Intake, *, stream_raw: bool) -> models.Message:
    d = intake.disposition
    m = d.message
    return models.Message(
        dedupe_key=intake.dedupe_key, source_id=intake.source_id, message_id=m.message_id,
        message_key=message_key(m.message_id),
        from_addr=m.from_addresses[0].addr if m.from_addresses else "",
        subject=m.subject, received_at=d.received_at,
        raw=b"" if stream_raw else intake.raw, size=len(intake.raw),
        body_text=m.body_text, category=d.category.value, decision=d.decision.value, language=d.language,
        administration=d.administration, priority=d.priority, reasons=list(d.reasons),
        ticket_id=None, kind=MessageKind.REFUSED.value, created_at=intake.now,
    )


def _write_raw(session: Session, row_id: int, raw: bytes) -> None:
    """Write ``raw`` into message ``row_id`` in place, 1 MiB at a time (SQLite).

    Bound as a parameter, a value is copied by SQLite to bind it, copied again
    to build the row, and the bound copy stays with the cached statement; any
    UPDATE of the row later reads and rewrites all of it. A 34 MB message took
    three times its size in memory. Here the row gets a zero-filled blob of the
    right size (no memory: SQLite writes zero pages) once nothing else will
    change it, and the blob API fills it chunk by chunk.
    """
    m = models.Message
    session.execute(update(m).where(m.id == row_id).values(raw=func.zeroblob(len(raw)))
                    .execution_options(synchronize_session=False))
    dbapi = cast(sqlite3.Connection, session.connection().connection.dbapi_connection)
    view = memoryview(raw)
    with dbapi.blobopen(models.Message.__tablename__, "raw", row_id) as blob:
        for start in range(0, len(raw), _RAW_CHUNK):
            blob.write(view[start:start + _RAW_CHUNK])


def _ticket_for(
    session: Session, intake: Intake, message: models.Message, prefix: str, zone: tzinfo
) -> tuple[models.Ticket | None, bool]:
    """The thread's ticket, a newly opened one, or None; and whether it was opened."""
    d = intake.disposition
    if intake.thread is not None:
        existing = session.get(models.Ticket, intake.thread.id)
        if existing is None:
            raise StoreError(f"thread ticket {intake.thread.reference} does not exist")
        return existing, False
    if d.decision is Decision.IGNORED or d.take_in is None:
        return None, False
    m = d.message
    ticket = models.Ticket(
        reference=next_reference(session, prefix, d.received_at.astimezone(zone).year),
        requester=m.from_addresses[0].key if m.from_addresses else "",
        administration=d.administration, category=d.category.value, decision=d.decision.value,
        priority=d.priority, language=d.language, subject=m.subject, state=TicketState.OPEN.value,
        received_at=d.received_at, take_in_at=d.take_in.take_in_at, in_hours=d.take_in.in_hours,
        taken_in_at=None, resolved_at=None, created_at=intake.now, first_message_id=message.id,
    )
    session.add(ticket)
    session.flush()
    return ticket, True


def next_reference(session: Session, prefix: str, year: int) -> str:
    """Allocate the next ``PREFIX-YYYY-NNNNNN`` inside the caller's transaction.

    The counter row stays locked until commit (PostgreSQL row lock, SQLite
    write lock), so concurrent intakes get distinct, gap-free numbers.
    """
    series = f"{prefix}-{year}"
    insert = insert_for(session)
    session.execute(insert(models.TicketCounter).values(series=series, last=0).on_conflict_do_nothing())
    last = session.execute(
        update(models.TicketCounter)
        .where(models.TicketCounter.series == series)
        .values(last=models.TicketCounter.last + 1)
        .returning(models.TicketCounter.last)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    return f"{series}-{last:06d}"


def _triage_events(session: Session, intake: Intake, message_id: int, ticket_id: int | None) -> None:
    d = intake.disposition
    m = d.message

    def event(kind: EventKind, reasons: Iterable[str] = (), data: Mapping[str, object] | None = None) -> None:
        add_event(session, kind, intake.now, ticket_id=ticket_id, message_id=message_id, reasons=reasons,
                  data=data)

    event(EventKind.RECEIVED, data={
        "source_id": intake.source_id, "message_id": m.message_id, "size": len(intake.raw),
        "from": m.from_addresses[0].addr if m.from_addresses else "", "subject": m.subject,
        "received_at": d.received_at,
    })
    if intake.screen is not None:
        event(EventKind.SCREENED, intake.screen.reasons, {"human": intake.screen.human})
    if intake.classification is not None:
        c = intake.classification
        event(EventKind.CLASSIFIED, c.reasons, {"category": c.category.value, "language": c.language})
    if intake.auth is not None and intake.auth.authorized:
        event(EventKind.AUTHORIZED, intake.auth.reasons)
    if d.decision is Decision.REJECTED:
        event(EventKind.REJECTED, intake.auth.reasons if intake.auth is not None else d.reasons,
              {"category": d.category.value})
    elif d.decision is Decision.IGNORED:
        event(EventKind.IGNORED, d.reasons)


def _ticket_event(
    session: Session, intake: Intake, message_id: int, ticket: models.Ticket | None, opened: bool
) -> None:
    if ticket is None or intake.disposition.decision is Decision.IGNORED:
        return
    if opened:
        add_event(session, EventKind.OPENED, intake.now, ticket_id=ticket.id, message_id=message_id,
                  reasons=intake.disposition.reasons, data={
                      "reference": ticket.reference, "category": ticket.category,
                      "priority": ticket.priority, "take_in_at": ticket.take_in_at,
                      "in_hours": ticket.in_hours, "administration": ticket.administration,
                  })
    else:
        add_event(session, EventKind.FOLLOWUP, intake.now, ticket_id=ticket.id, message_id=message_id,
                  data={"reference": ticket.reference, "state": ticket.state})


def mark_retried(session: Session, quarantine_id: int, now: datetime, *, duplicate: bool) -> bool:
    """Close a quarantine entry whose message has now been recorded (or was already)."""
    done = rowcount(session.execute(
        update(models.Quarantine)
        .where(models.Quarantine.id == quarantine_id,
               models.Quarantine.state.in_([QuarantineState.QUARANTINED.value, QuarantineState.RETRY.value]))
        .values(state=QuarantineState.RETRIED.value, updated_at=now)
        .execution_options(synchronize_session=False)
    ))
    if done:
        add_event(session, EventKind.RETRIED, now, data={"quarantine_id": quarantine_id,
                                                         "duplicate": duplicate})
    return bool(done)
