"""Failed PIN attempts: what the lockout counts and the digest lists; never the PIN itself."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.records import EventKind, OutgoingMail, PinFailureFact, TicketSummary
from maild.store import models
from maild.store.common import add_event, queue_replies, ticket_summary


def record_failure(session: Session, fact: PinFailureFact, notice: OutgoingMail | None) -> None:
    """The failure, its security event and the referente's notice (braked by the outbox like any notice)."""
    session.add(models.PinFailure(administration=fact.administration, client=fact.client, channel=fact.channel,
                                  at=fact.at))
    add_event(session, EventKind.PIN_FAILED, fact.at, reasons=(f"a wrong PIN for {fact.administration}",),
              data={"administration": fact.administration, "client": fact.client, "channel": fact.channel})
    if notice is not None:
        queue_replies(session, (notice,), fact.at, ticket_id=None, source_message_id=None)


def failures_since(session: Session, since: datetime, *, administration: str | None = None,
                   client: str | None = None) -> tuple[PinFailureFact, ...]:
    """Failures at or after ``since``, oldest first; for one Administration and/or one client."""
    f = models.PinFailure
    query = select(f).where(f.at >= since).order_by(f.at, f.id)
    if administration is not None:
        query = query.where(f.administration == administration)
    if client is not None:
        query = query.where(f.client == client)
    return tuple(PinFailureFact(r.administration, r.client, r.channel, r.at) for r in session.scalars(query))


def ticket_of_key(session: Session, dedupe_key: str) -> TicketSummary | None:
    """The ticket the message recorded with ``dedupe_key`` belongs to (a request submitted twice)."""
    m, t = models.Message, models.Ticket
    row = session.scalars(select(t).join(m, m.ticket_id == t.id).where(m.dedupe_key == dedupe_key)).first()
    return None if row is None else ticket_summary(row)
