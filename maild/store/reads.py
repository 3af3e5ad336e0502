"""Read models for the operators' commands: queue, ticket story, outbox, stats."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from maild.records import (
    Event,
    MessageCount,
    MessageFact,
    MessageKind,
    MessageSummary,
    OutboxState,
    OutboxSummary,
    QuarantineState,
    Stats,
    TicketState,
    TicketStory,
    TicketSummary,
)
from maild.store import models
from maild.store.common import event_record, outbox_summary, ticket_summary


def queue(session: Session, state: TicketState | None, limit: int) -> tuple[TicketSummary, ...]:
    """Tickets in work order: priority, arrival, id."""
    t = models.Ticket
    query = select(t).order_by(t.priority, t.received_at, t.id).limit(limit)
    if state is not None:
        query = query.where(t.state == state.value)
    return tuple(ticket_summary(r) for r in session.scalars(query))


def channel_tickets(session: Session, since: datetime, until: datetime) -> tuple[TicketSummary, ...]:
    """Tickets opened in ``[since, until)`` from the web form, the phone or a fax, in arrival order."""
    t = models.Ticket
    query = (select(t).where(t.channel != "email", t.created_at >= since, t.created_at < until)
             .order_by(t.received_at, t.id))
    return tuple(ticket_summary(r) for r in session.scalars(query))


def ticket(session: Session, reference: str) -> TicketSummary | None:
    row = _ticket_row(session, reference)
    return None if row is None else ticket_summary(row)


def _ticket_row(session: Session, reference: str) -> models.Ticket | None:
    t = models.Ticket
    return session.scalars(select(t).where(t.reference == reference.strip().upper())).first()


def story(session: Session, reference: str) -> TicketStory | None:
    row = _ticket_row(session, reference)
    if row is None:
        return None
    m, e, o = models.Message, models.Event, models.Outbox
    messages = session.scalars(select(m).where(m.ticket_id == row.id).order_by(m.id))
    events = session.scalars(select(e).where(e.ticket_id == row.id).order_by(e.id))
    replies = session.scalars(select(o).where(o.ticket_id == row.id).order_by(o.id))
    return TicketStory(
        ticket=ticket_summary(row),
        messages=tuple(_message_summary(x) for x in messages),
        events=tuple(event_record(x) for x in events),
        replies=tuple(outbox_summary(x) for x in replies),
    )


def _message_summary(row: models.Message) -> MessageSummary:
    return MessageSummary(
        id=row.id, message_id=row.message_id, source_id=row.source_id, from_addr=row.from_addr,
        subject=row.subject, kind=MessageKind(row.kind), category=row.category, decision=row.decision,
        received_at=row.received_at, reasons=tuple(row.reasons), size=row.size,
    )


def outbox(session: Session, state: OutboxState | None, limit: int) -> tuple[OutboxSummary, ...]:
    o = models.Outbox
    query = select(o).order_by(o.id).limit(limit)
    if state is not None:
        query = query.where(o.state == state.value)
    return tuple(outbox_summary(r) for r in session.scalars(query))


def outbox_listing(session: Session, state: OutboxState | None, limit: int) -> tuple[OutboxSummary, ...]:
    """Replies newest first, each with its ticket's reference: what an operator looks for is recent."""
    o, t = models.Outbox, models.Ticket
    query = select(o, t.reference).outerjoin(t, o.ticket_id == t.id).order_by(o.id.desc()).limit(limit)
    if state is not None:
        query = query.where(o.state == state.value)
    return tuple(outbox_summary(row, reference) for row, reference in session.execute(query))


def outbox_entry(session: Session, outbox_id: int) -> OutboxSummary | None:
    """One reply with its ticket's reference; None when there is no such row."""
    o, t = models.Outbox, models.Ticket
    found = session.execute(select(o, t.reference).outerjoin(t, o.ticket_id == t.id).where(o.id == outbox_id)).first()
    return None if found is None else outbox_summary(found[0], found[1])


def recent_events(session: Session, limit: int) -> tuple[Event, ...]:
    """The last ``limit`` events, oldest first."""
    e = models.Event
    rows = list(session.scalars(select(e).order_by(e.id.desc()).limit(limit)))
    return tuple(event_record(r) for r in reversed(rows))


def events_of_kind(session: Session, kind: str, since: datetime, until: datetime) -> tuple[Event, ...]:
    """The events of ``kind`` in ``[since, until)``, oldest first."""
    e = models.Event
    rows = session.scalars(select(e).where(e.kind == kind, e.at >= since, e.at < until).order_by(e.at, e.id))
    return tuple(event_record(r) for r in rows)


def _grouped(session: Session, column: InstrumentedAttribute[str], *where: ColumnElement[bool]
             ) -> tuple[tuple[str, int], ...]:
    rows = session.execute(select(column, func.count()).where(*where).group_by(column).order_by(column))
    return tuple((str(k), int(n)) for k, n in rows)


def _count(session: Session, model: Any, *where: ColumnElement[bool]) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _events(session: Session, kinds: tuple[str, ...], since: datetime, until: datetime) -> int:
    e = models.Event
    return _count(session, e, e.kind.in_(kinds), e.at >= since, e.at < until)


def stats(session: Session, since: datetime, until: datetime) -> Stats:
    m, t, o, q = models.Message, models.Ticket, models.Outbox, models.Quarantine
    return Stats(
        since=since, until=until,
        messages_by_kind=_grouped(session, m.kind, m.created_at >= since, m.created_at < until),
        tickets_by_category=_grouped(session, t.category, t.created_at >= since, t.created_at < until),
        tickets_opened=_count(session, t, t.created_at >= since, t.created_at < until),
        tickets_resolved=_events(session, ("resolved",), since, until),
        tickets_taken_in=_events(session, ("taken_in",), since, until),
        replies_sent=_events(session, ("sent", "acknowledged"), since, until),
        replies_held=_events(session, ("held",), since, until),
        open_now=_count(session, t, t.state == TicketState.OPEN.value),
        waiting_take_in_now=_count(session, t, t.state == TicketState.OPEN.value, t.taken_in_at.is_(None)),
        outbox_by_state_now=_grouped(session, o.state),
        quarantined_now=_count(session, q, q.state.in_([QuarantineState.QUARANTINED.value,
                                                         QuarantineState.RETRY.value])),
    )


# ------------------------------------------------------------------ operators' reports


def message_raw(session: Session, message_id: int) -> bytes | None:
    """The raw bytes of one recorded message (row id), as received."""
    r = models.RawMessage
    raw: bytes | None = session.scalar(select(r.raw).where(r.message_id == message_id))
    return raw


def messages_recorded(session: Session, since: datetime, until: datetime, decision: str | None,
                      limit: int) -> tuple[MessageFact, ...]:
    """Messages recorded in ``[since, until)``, oldest first, without raw or body."""
    m, t = models.Message, models.Ticket
    query = (select(m.id, m.message_id, m.from_addr, m.subject, m.kind, m.category, m.decision,
                    m.administration, t.reference, m.received_at, m.created_at, m.reasons)
             .outerjoin(t, m.ticket_id == t.id)
             .where(m.created_at >= since, m.created_at < until).order_by(m.id).limit(limit))
    if decision is not None:
        query = query.where(m.decision == decision)
    return tuple(
        MessageFact(id=r[0], message_id=r[1], from_addr=r[2], subject=r[3], kind=MessageKind(r[4]), category=r[5],
                    decision=r[6], administration=r[7], ticket=r[8], received_at=r[9], recorded_at=r[10],
                    reasons=tuple(r[11]))
        for r in session.execute(query)
    )


def message_counts(session: Session, since: datetime, until: datetime) -> tuple[MessageCount, ...]:
    """Messages recorded in ``[since, until)`` counted by category, decision, Administration and kind."""
    m = models.Message
    columns = (m.category, m.decision, m.administration, m.kind)
    rows = session.execute(select(*columns, func.count()).where(m.created_at >= since, m.created_at < until)
                           .group_by(*columns).order_by(*columns))
    return tuple(MessageCount(category=c, decision=d, administration=a, kind=MessageKind(k), count=int(n))
                 for c, d, a, k, n in rows)


def outbox_trouble(session: Session, since: datetime, until: datetime) -> tuple[OutboxSummary, ...]:
    """Replies held by a brake, failed or given up for good by an event in ``[since, until)``."""
    o, e = models.Outbox, models.Event
    events = select(e.outbox_id).where(e.kind.in_(("held", "failed", "given_up")), e.at >= since, e.at < until,
                                       e.outbox_id.is_not(None))
    query = select(o).where(o.state.in_((OutboxState.HELD.value, OutboxState.FAILED.value)),
                            o.id.in_(events)).order_by(o.id)
    return tuple(outbox_summary(r) for r in session.scalars(query))
