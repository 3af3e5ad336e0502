"""The intake unit of work: messages, their triage, tickets and replies, one transaction per batch.

Exactly-once rests on two facts. The raw message, its ticket and its outbox
rows are committed together, and the daemon moves the message out of the
inbox only after that commit: a crash before the commit leaves the message in
the inbox and nothing in the database; a crash after it leaves a message that
``dedupe_key`` recognises. And ``messages.dedupe_key`` is UNIQUE: a second
daemon recording the same message blocks on the first one's row and then
fails the insert, which ``Store.record_intake`` reports as a duplicate.

A batch (what the daemon fetched, up to its move batch) is written in one
transaction, table by table, with multi-row INSERTs: a transaction and a dozen
ORM statements per message would be most of maild's intake time. Every message
keeps its own rows, events and replies exactly as if it were written alone. A
message that may continue a thread finds what the messages ahead of it in
the batch wrote: they are written before its lookup when it names one of
their Message-IDs or continues the same ticket (``_BatchWriter.find_thread``).
Any fault rolls the whole batch back; the caller then records its messages
one by one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, cast

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from maild.mail.keys import message_key
from maild.records import (
    Decision,
    Disposition,
    EventKind,
    Intake,
    IntakeResult,
    MessageKind,
    OutgoingMail,
    QuarantineState,
    QueuedIntake,
    Renderer,
    ThreadQuery,
    TicketRef,
    TicketState,
    UnsentReply,
)
from maild.store import models
from maild.store.bulk import insert_returning_ids, insert_rows, table_of
from maild.store.common import add_event, event_row, insert_for, is_postgresql, outbox_row, queued_event, rowcount
from maild.store.tickets import find_thread, thread_keys

DUPLICATE = IntakeResult(duplicate=True)
KEY_CHUNK = 500
"""Dedupe keys looked up per query (under every backend's limit on bound parameters)."""
STREAM_RAW_OVER = 1024 * 1024
"""On SQLite, a raw message larger than this is written into its row a chunk at a time."""
_RAW_CHUNK = 1024 * 1024


def is_known(session: Session, dedupe_key: str) -> bool:
    return session.scalar(select(models.Message.id).where(models.Message.dedupe_key == dedupe_key)) is not None


def known_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` are recorded already: one query per ``KEY_CHUNK`` keys."""
    m = models.Message
    found: set[str] = set()
    for start in range(0, len(keys), KEY_CHUNK):
        found.update(session.scalars(select(m.dedupe_key).where(m.dedupe_key.in_(keys[start:start + KEY_CHUNK]))))
    return found


def record(session: Session, intake: Intake, render: Renderer, prefix: str, zone: tzinfo) -> IntakeResult:
    """Write everything for ``intake``; returns a duplicate result without writing if known."""
    item = QueuedIntake(intake, None, lambda ticket, _followup: render(ticket))
    return record_batch(session, [item], prefix, zone)[0]


def record_batch(session: Session, items: Sequence[QueuedIntake], prefix: str, zone: tzinfo) -> list[IntakeResult]:
    """Write every item not recorded yet, in order; one result per item (duplicates write nothing)."""
    known = known_keys(session, [item.intake.dedupe_key for item in items])
    results = [DUPLICATE] * len(items)
    writer = _BatchWriter(session, prefix, zone, results)
    for index, item in enumerate(items):
        intake = item.intake
        if intake.dedupe_key in known:
            if intake.quarantine_id is not None:
                mark_retried(session, intake.quarantine_id, intake.now, duplicate=True)
            continue
        known.add(intake.dedupe_key)
        thread = intake.thread if item.thread_query is None else writer.find_thread(item.thread_query)
        writer.add(_Pending(index, item, thread))
    writer.write()
    for item, result in zip(items, results, strict=True):
        if not result.duplicate and item.intake.quarantine_id is not None:
            mark_retried(session, item.intake.quarantine_id, item.intake.now, duplicate=False)
    return results


def _kind(d: Disposition, thread: TicketRef | None, ticket: TicketRef | None) -> MessageKind:
    if d.decision is Decision.IGNORED:
        return MessageKind.IGNORED
    if thread is not None:
        return MessageKind.FOLLOWUP
    return MessageKind.NEW if ticket is not None else MessageKind.REFUSED


def _opens_ticket(pending: _Pending) -> bool:
    d = pending.item.intake.disposition
    return pending.thread is None and d.decision is not Decision.IGNORED and d.take_in is not None


@dataclass(frozen=True, slots=True)
class _Pending:
    index: int
    item: QueuedIntake
    thread: TicketRef | None


class _BatchWriter:
    """Collects messages and writes them table by table; ``write`` empties it."""

    def __init__(self, session: Session, prefix: str, zone: tzinfo, results: list[IntakeResult]) -> None:
        self._session = session
        self._prefix = prefix
        self._zone = zone
        self._results = results
        self._pending: list[_Pending] = []
        self._pending_keys: set[str] = set()
        """The Message-IDs of the pending messages (``thread_keys``)."""

    def add(self, pending: _Pending) -> None:
        self._pending.append(pending)
        self._pending_keys.update(thread_keys([pending.item.intake.disposition.message.message_id]))

    def find_thread(self, query: ThreadQuery) -> TicketRef | None:
        """``tickets.find_thread`` as if the pending messages were written already.

        They are written first only when they can change the answer: when the
        query names one of their Message-IDs, or when the ticket found is one a
        pending message continues (it may reopen it). The tickets and replies
        they are about to create are not looked for: uncommitted and unsent,
        their references and Message-IDs cannot have reached anyone. Each write
        splits the batch into another round of INSERTs, a cost paid only when needed.
        """
        if self._pending_keys.intersection(thread_keys(query.message_ids)):
            self.write()
        thread = find_thread(self._session, query.message_ids, query.tags, query.from_addr)
        if thread is not None and any(p.thread is not None and p.thread.id == thread.id for p in self._pending):
            self.write()
            thread = find_thread(self._session, query.message_ids, query.tags, query.from_addr)
        return thread

    def write(self) -> None:
        if not self._pending:
            return
        results = self._results
        pending, self._pending = self._pending, []
        self._pending_keys.clear()
        conn = self._session.connection()
        opened = self._open_tickets(conn, pending)
        reopened = _reopen(conn, pending)
        tickets = {p.index: opened.get(p.index, p.thread) for p in pending}
        kinds = [_kind(p.item.intake.disposition, p.thread, tickets[p.index]) for p in pending]
        message_ids = _insert_returning(conn, models.Message, [
            _message_row(p.item.intake, kind, tickets[p.index]) for p, kind in zip(pending, kinds, strict=True)])
        if opened:
            t = models.Ticket
            conn.execute(update(t).where(t.id == bindparam("t_id")).values(first_message_id=bindparam("m_id")),
                         [{"t_id": opened[p.index].id, "m_id": mid}
                          for p, mid in zip(pending, message_ids, strict=True) if p.index in opened])
        _insert_raw(self._session, conn, [(mid, p.item.intake.raw) for p, mid in zip(pending, message_ids,
                                                                                        strict=True)])
        rendered = [_replies(p, tickets[p.index]) for p in pending]
        replies = [tuple(r for r in mails if isinstance(r, OutgoingMail)) for mails in rendered]
        outbox_ids = iter(_insert_returning(conn, models.Outbox, [
            outbox_row(mail, p.item.intake.now, ticket_id=_id(tickets[p.index]), source_message_id=mid)
            for p, mid, mails in zip(pending, message_ids, replies, strict=True) for mail in mails]))
        events: list[dict[str, Any]] = []
        for p, mid, kind, mails, every in zip(pending, message_ids, kinds, replies, rendered, strict=True):
            ticket = tickets[p.index]
            ids = tuple(next(outbox_ids) for _ in mails)
            events.extend(_events(p, mid, ticket, p.index in opened, p.index in reopened, mails, ids))
            events.extend(_unsent_events(p, mid, ticket, every))
            results[p.index] = IntakeResult(duplicate=False, message_id=mid, kind=kind, ticket=ticket,
                                            opened=p.index in opened, reopened=p.index in reopened,
                                            outbox_ids=ids)
        events.extend(_delivery_events(conn, pending, message_ids))
        insert_rows(conn, table_of(models.Event), events)

    def _open_tickets(self, conn: Connection, pending: list[_Pending]) -> dict[int, TicketRef]:
        """Open the tickets of the messages that open one; references in message order."""
        opening = [p for p in pending if _opens_ticket(p)]
        if not opening:
            return {}
        series = [f"{self._prefix}-{p.item.intake.now.astimezone(self._zone).year}"  # the year of recording
                  for p in opening]
        numbers = {name: iter(self._allocate(conn, name, series.count(name))) for name in dict.fromkeys(series)}
        rows = [_ticket_row(p.item.intake, f"{name}-{next(numbers[name]):06d}") for p, name in zip(opening, series,
                                                                                                  strict=True)]
        ids = _insert_returning(conn, models.Ticket, rows)
        return {p.index: TicketRef(id=tid, reference=row["reference"], requester=row["requester"],
                                   state=TicketState.OPEN)
                for p, tid, row in zip(opening, ids, rows, strict=True)}

    def _allocate(self, conn: Connection, series: str, count: int) -> range:
        """The next ``count`` numbers of ``series``, inside the caller's transaction.

        The counter row stays locked until commit (PostgreSQL row lock, SQLite
        write lock), so concurrent intakes get distinct, gap-free numbers.
        """
        counter = models.TicketCounter
        conn.execute(insert_for(self._session)(counter).values(series=series, last=0).on_conflict_do_nothing())
        last: int = conn.execute(
            update(counter).where(counter.series == series).values(last=counter.last + count)
            .returning(counter.last)
        ).scalar_one()
        return range(last - count + 1, last + 1)


def _reopen(conn: Connection, pending: list[_Pending]) -> set[int]:
    """Reopen the resolved tickets a person wrote to again; the indexes of the messages that did it.

    What a requester sends after the resolution notice ("it is still wrong")
    must reach a person again, as in every help desk; an ignored message
    (auto-reply, bounce) never reopens anything. Only a ticket still resolved
    when the UPDATE runs counts, once, for the first of its messages.
    """
    wanting = {p.index: p.thread.id for p in pending
               if p.thread is not None and p.thread.state is TicketState.RESOLVED
               and p.item.intake.disposition.decision is not Decision.IGNORED}
    if not wanting:
        return set()
    t = models.Ticket
    done = set(conn.execute(
        update(t).where(t.id.in_(sorted(set(wanting.values()))), t.state == TicketState.RESOLVED.value)
        .values(state=TicketState.OPEN.value, resolved_at=None).returning(t.id)
    ).scalars())
    first = {ticket_id: index for index, ticket_id in sorted(wanting.items(), reverse=True)}
    return {index for ticket_id, index in first.items() if ticket_id in done}


def _insert_returning(conn: Connection, model: type[models.Base], rows: list[dict[str, Any]]) -> list[int]:
    """INSERT ``rows`` and return their new ids in the same order (see ``maild.store.bulk``)."""
    return insert_returning_ids(conn, table_of(model), rows)


def _id(ticket: TicketRef | None) -> int | None:
    return ticket.id if ticket is not None else None


def _message_row(intake: Intake, kind: MessageKind, ticket: TicketRef | None) -> dict[str, Any]:
    d = intake.disposition
    m = d.message
    return {
        "dedupe_key": intake.dedupe_key, "source_id": intake.source_id, "message_id": m.message_id,
        "message_key": message_key(m.message_id),
        "from_addr": m.from_addresses[0].addr if m.from_addresses else "",
        "subject": m.subject, "received_at": d.received_at, "size": len(intake.raw),
        "body_text": m.body_text, "category": d.category.value, "decision": d.decision.value,
        "language": d.language, "administration": d.administration, "priority": d.priority,
        "reasons": list(d.reasons), "ticket_id": _id(ticket), "kind": kind.value, "created_at": intake.now,
        "channel": intake.channel.value,
    }


def _ticket_row(intake: Intake, reference: str) -> dict[str, Any]:
    d = intake.disposition
    m = d.message
    assert d.take_in is not None  # _opens_ticket
    return {
        "reference": reference, "requester": m.from_addresses[0].key if m.from_addresses else "",
        "administration": d.administration, "category": d.category.value, "decision": d.decision.value,
        "priority": d.priority, "language": d.language, "subject": m.subject, "state": TicketState.OPEN.value,
        "received_at": d.received_at, "take_in_at": d.take_in.take_in_at, "in_hours": d.take_in.in_hours,
        "taken_in_at": None, "resolved_at": None, "created_at": intake.now, "first_message_id": None,
        "review": d.review or None,
        "channel": intake.channel.value,
    }


def _replies(pending: _Pending, ticket: TicketRef | None) -> tuple[OutgoingMail | UnsentReply, ...]:
    """Never rendered for an ignored message: no reply may ever be queued for one."""
    if pending.item.intake.disposition.decision is Decision.IGNORED:
        return ()
    return pending.item.render(ticket, pending.thread is not None)


def _insert_raw(session: Session, conn: Connection, raws: list[tuple[int, bytes]]) -> None:
    """The raw bytes, each in its ``raw_messages`` row; large ones streamed in on SQLite."""
    stream = not is_postgresql(session)
    small = [{"message_id": mid, "raw": raw} for mid, raw in raws if not (stream and len(raw) > STREAM_RAW_OVER)]
    insert_rows(conn, table_of(models.RawMessage), small)
    for mid, raw in raws:
        if stream and len(raw) > STREAM_RAW_OVER:
            _stream_raw(conn, mid, raw)


def _stream_raw(conn: Connection, row_id: int, raw: bytes) -> None:
    """Write ``raw`` into a new ``raw_messages`` row 1 MiB at a time (SQLite).

    Bound as a parameter, a value is copied by SQLite to bind it and again to
    build the row, and the bound copy stays with the cached statement: two
    more copies of the message in memory. Here the row gets a
    zero-filled blob of the right size (no memory: it is the row's last column,
    so SQLite only writes zero pages) and the blob API fills it chunk by chunk.
    """
    conn.execute(insert(models.RawMessage).values(message_id=row_id, raw=func.zeroblob(len(raw))))
    dbapi = cast(sqlite3.Connection, conn.connection.dbapi_connection)
    view = memoryview(raw)
    with dbapi.blobopen(models.RawMessage.__tablename__, "raw", row_id) as blob:
        for start in range(0, len(raw), _RAW_CHUNK):
            blob.write(view[start:start + _RAW_CHUNK])


def _events(pending: _Pending, message_id: int, ticket: TicketRef | None, opened: bool, reopened: bool,
            mails: tuple[OutgoingMail, ...], outbox_ids: tuple[int, ...]) -> list[dict[str, Any]]:
    """One message's events, in the order they happened: triage, ticket, queued replies."""
    intake = pending.item.intake
    ticket_id = _id(ticket)
    rows = _triage_events(intake, message_id, ticket_id)
    ticket_event = _ticket_event(intake, message_id, ticket, opened)
    if ticket_event is not None:
        rows.append(ticket_event)
    if reopened:
        rows.append(event_row(EventKind.REOPENED, intake.now, ticket_id=ticket_id, message_id=message_id,
                              reasons=("a follow-up arrived on the resolved ticket",), data={"by": "follow-up"}))
    rows.extend(event_row(EventKind.QUEUED, intake.now, **queued_event(mail, ticket_id, message_id, oid))
                for mail, oid in zip(mails, outbox_ids, strict=True))
    return rows


def _unsent_events(pending: _Pending, message_id: int, ticket: TicketRef | None,
                   rendered: Iterable[OutgoingMail | UnsentReply]) -> list[dict[str, Any]]:
    """A ``not_sent`` event, on the ticket, for each reply whose recipient cannot or must not be written to."""
    return [event_row(EventKind.NOT_SENT, pending.item.intake.now, ticket_id=_id(ticket), message_id=message_id,
                      reasons=(r.description,),
                      data={"kind": r.kind, "recipient": r.recipient, "ticket": ticket.reference if ticket else "-"})
            for r in rendered if isinstance(r, UnsentReply)]


def _triage_events(intake: Intake, message_id: int, ticket_id: int | None) -> list[dict[str, Any]]:
    d = intake.disposition
    m = d.message
    rows: list[dict[str, Any]] = []

    def event(kind: EventKind, reasons: Iterable[str] = (), data: Mapping[str, object] | None = None) -> None:
        rows.append(event_row(kind, intake.now, ticket_id=ticket_id, message_id=message_id, reasons=reasons,
                              data=data))

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
        event(EventKind.IGNORED, d.reasons, {"screen_kind": d.screen_kind.value} if d.screen_kind else None)
    return rows


def _ticket_event(intake: Intake, message_id: int, ticket: TicketRef | None, opened: bool) -> dict[str, Any] | None:
    d = intake.disposition
    if ticket is None or d.decision is Decision.IGNORED:
        return None
    if opened:
        assert d.take_in is not None  # _opens_ticket
        return event_row(EventKind.OPENED, intake.now, ticket_id=ticket.id, message_id=message_id,
                         reasons=d.reasons, data={
                             "reference": ticket.reference, "category": d.category.value,
                             "priority": d.priority, "take_in_at": d.take_in.take_in_at,
                             "in_hours": d.take_in.in_hours, "administration": d.administration,
                         })
    return event_row(EventKind.FOLLOWUP, intake.now, ticket_id=ticket.id, message_id=message_id,
                     data={"reference": ticket.reference, "state": ticket.state})


def _delivery_events(conn: Connection, pending: list[_Pending], message_ids: list[int]) -> list[dict[str, Any]]:
    """PEC receipts for replies we sent, as events on those replies' tickets; unmatched ones stay ignored mail."""
    receipts = [(p.item.intake, mid) for p, mid in zip(pending, message_ids, strict=True)
                if (pec := p.item.intake.disposition.pec) is not None and pec.delivery and pec.refers_to]
    if not receipts:
        return []
    keys = {mid: message_key(intake.disposition.pec.refers_to or "")  # type: ignore[union-attr]
            for intake, mid in receipts}
    o, t = models.Outbox, models.Ticket
    replies = {row.message_key: row for row in conn.execute(
        select(o.id, o.ticket_id, o.message_key, o.message_id, t.reference).join(t, t.id == o.ticket_id)
        .where(o.message_key.in_(set(keys.values()))))}
    rows = []
    for intake, mid in receipts:
        pec = intake.disposition.pec
        reply = replies.get(keys[mid])
        if pec is None or reply is None:
            continue
        rows.append(event_row(
            EventKind.DELIVERY if pec.delivered else EventKind.UNDELIVERED, intake.now, ticket_id=reply.ticket_id,
            message_id=mid, outbox_id=reply.id, reasons=(f"PEC {pec.receipt_type} from {pec.provider}",),
            data={"outcome": pec.delivery, "receipt": pec.receipt_type, "reply": reply.message_id,
                  "ticket": reply.reference},
        ))
    return rows


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
