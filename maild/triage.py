"""The stages before the database, for one message: dedupe key, parse, triage, thread query.

Pure (no I/O) and apart from ``maild.intake`` so that the triage worker
(``maild.workers``), which runs only this, imports neither the database layer
nor the mailbox and network code: a spawned worker imports everything its
modules import, and SQLAlchemy with Alembic alone costs more CPU than the rest
of its start. ``maild.intake`` re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from maild.parsing import parse_message
from maild.pipeline import Triager, received_time
from maild.records import Decision, Disposition, pickled_by_fields
from maild.responder import find_ticket_refs
from maild.settings import Settings
from maild.store.text import dedupe_key
from maild.store.types import ThreadQuery


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Triaged:
    """One message through the stages before the database; plain frozen records, so it can
    cross from a worker process (``maild.workers``)."""

    dedupe_key: str
    disposition: Disposition
    thread_query: ThreadQuery | None


def triage(raw: bytes, now: datetime, triager: Triager, settings: Settings) -> Triaged:
    """Dedupe key, parse, triage and thread query of one message: pure, no I/O, may raise."""
    message = parse_message(raw, settings.limits)
    d = triager.decide(message, received_at=min(received_time(message, now), now))
    return Triaged(dedupe_key(raw), d, thread_query(d, settings.helpdesk.ticket_prefix))


def thread_query(d: Disposition, ticket_prefix: str) -> ThreadQuery | None:
    """What the message may follow up: None when nothing (ignored mail never follows anything up)."""
    if d.decision is Decision.IGNORED or not d.message.from_addresses:
        return None
    message = d.message
    ids = (*message.in_reply_to, *reversed(message.references))
    tags = find_ticket_refs(message.subject, ticket_prefix)
    if not ids and not tags:
        return None
    return ThreadQuery(ids, tags, message.from_addresses[0].key)
