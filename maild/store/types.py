"""Frozen records going in and out of the store: never ORM objects, never dicts.

This module and the states it defines import no SQLAlchemy, so the triage
worker can build a ``ThreadQuery`` without loading the database layer.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from maild.records import AuthDecision, Classification, Disposition, OutgoingMail, ScreenResult, pickled_by_fields

__all__ = [
    "Event",
    "EventKind",
    "Intake",
    "IntakeResult",
    "MessageCount",
    "MessageFact",
    "MessageKind",
    "MessageSummary",
    "OutboxItem",
    "OutboxState",
    "OutboxSummary",
    "QuarantineEntry",
    "QuarantineState",
    "QueuedIntake",
    "Renderer",
    "ReplyRenderer",
    "StateEntry",
    "Stats",
    "TakeInItem",
    "ThreadQuery",
    "TicketRef",
    "TicketState",
    "TicketStory",
    "TicketSummary",
]


class MessageKind(enum.StrEnum):
    """What the intake did with one received message."""

    NEW = "new"
    FOLLOWUP = "followup"
    IGNORED = "ignored"
    REFUSED = "refused"
    """Not ignored, but no ticket was opened (a refusal may have been queued)."""


class TicketState(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class OutboxState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    HELD = "held"
    FAILED = "failed"


class QuarantineState(enum.StrEnum):
    QUARANTINED = "quarantined"
    RETRY = "retry"
    """An operator asked for a retry; the daemon has not processed it yet."""
    RETRIED = "retried"
    RELEASED = "released"


class EventKind(enum.StrEnum):
    """Kinds written to the append-only event log."""

    RECEIVED = "received"
    SCREENED = "screened"
    CLASSIFIED = "classified"
    AUTHORIZED = "authorized"
    REJECTED = "rejected"
    IGNORED = "ignored"
    OPENED = "opened"
    """A ticket was opened (data: reference, take_in_at, in_hours)."""
    FOLLOWUP = "followup"
    QUEUED = "queued"
    """A reply entered the outbox (data: kind, message_id, recipients)."""
    ACKNOWLEDGED = "acknowledged"
    """An acknowledgment was accepted by the SMTP server."""
    SENT = "sent"
    """Any other reply was accepted by the SMTP server."""
    SEND_FAILED = "send_failed"
    """A transient failure; retried later."""
    FAILED = "failed"
    HELD = "held"
    """The per-sender reply brake held a reply back."""
    TAKEN_IN = "taken_in"
    QUARANTINED = "quarantined"
    RETRY_REQUESTED = "retry_requested"
    RETRIED = "retried"
    RELEASED = "released"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    DIGEST = "digest"
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class TicketRef:
    """Enough of a ticket to thread to it and to render a reply about it."""

    id: int
    reference: str
    requester: str
    state: TicketState


Renderer = Callable[[TicketRef | None], tuple[OutgoingMail, ...]]
"""Pure function giving the replies for one intake, called inside its transaction.

It gets the ticket (just opened, or the thread's ticket) or None when no
ticket is involved (a refused request that opens none). It is never called
for an ignored message: no reply may ever be queued for one.
"""


@dataclass(frozen=True, slots=True)
class Intake:
    """One received message and its triage, to be recorded in one transaction.

    ``dedupe_key`` comes from ``maild.store.dedupe_key(raw)``. With ``thread``
    set, the message is a follow-up of that ticket (no ticket is opened).
    Otherwise a ticket is opened when the decision is not ``ignored`` and
    ``disposition.take_in`` is set. The three stage results are optional and
    only add their reasons to the event log. ``quarantine_id`` names the
    quarantine entry this intake retries; it is marked retried in the same
    transaction.
    """

    dedupe_key: str
    source_id: str
    raw: bytes
    disposition: Disposition
    now: datetime
    thread: TicketRef | None = None
    screen: ScreenResult | None = None
    classification: Classification | None = None
    auth: AuthDecision | None = None
    quarantine_id: int | None = None


ReplyRenderer = Callable[[TicketRef | None, bool], tuple[OutgoingMail, ...]]
"""``Renderer`` that is also told whether the message is a follow-up of its ticket (True)."""


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class ThreadQuery:
    """What a message may continue: its In-Reply-To/References and subject tags, and its sender.

    Resolved inside the intake transaction (``_BatchWriter.find_thread`` in
    ``maild.store.intake``): a follow-up of a message ahead of it in the same
    batch finds the ticket that message opened a moment earlier.
    """

    message_ids: tuple[str, ...]
    tags: tuple[str, ...]
    from_addr: str


@dataclass(frozen=True, slots=True)
class QueuedIntake:
    """One message of a batch for ``Store.record_intakes``: its intake, its thread query, its replies.

    ``intake.thread`` may already be resolved (then ``thread_query`` is None).
    """

    intake: Intake
    thread_query: ThreadQuery | None
    render: ReplyRenderer


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """What ``record_intake`` did. ``duplicate``: nothing was written."""

    duplicate: bool
    message_id: int | None = None
    """Row id in ``messages``."""
    kind: MessageKind | None = None
    ticket: TicketRef | None = None
    opened: bool = False
    reopened: bool = False
    """A follow-up that reopened its resolved ticket."""
    outbox_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A claimed reply, leased to one sender until ``lease_until``."""

    id: int
    ticket_id: int | None
    kind: str
    message_id: str
    envelope_from: str
    recipients: tuple[str, ...]
    data: bytes
    attempts: int
    """Including the attempt this claim is for."""
    lease_owner: str
    lease_until: datetime
    ticket: str | None = None
    """Reference of the ticket the reply is about, for log lines."""


@dataclass(frozen=True, slots=True)
class OutboxSummary:
    id: int
    ticket_id: int | None
    kind: str
    message_id: str
    recipients: tuple[str, ...]
    state: OutboxState
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class TakeInItem:
    ticket_id: int
    reference: str
    priority: int
    category: str
    administration: str | None
    received_at: datetime
    take_in_at: datetime


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    ticket_id: int | None
    message_id: int | None
    """Row id in ``messages``, not a Message-ID header."""
    outbox_id: int | None
    kind: str
    reasons: tuple[str, ...]
    data: tuple[tuple[str, str], ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class TicketSummary:
    id: int
    reference: str
    requester: str
    administration: str | None
    category: str
    decision: str
    priority: int
    language: str
    subject: str
    state: TicketState
    received_at: datetime
    take_in_at: datetime
    in_hours: bool
    taken_in_at: datetime | None
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class MessageSummary:
    id: int
    message_id: str
    source_id: str
    from_addr: str
    subject: str
    kind: MessageKind
    category: str
    decision: str
    received_at: datetime
    reasons: tuple[str, ...]
    size: int


@dataclass(frozen=True, slots=True)
class MessageFact:
    """One recorded message as reports see it: who, what, the decision and why."""

    id: int
    message_id: str
    from_addr: str
    subject: str
    kind: MessageKind
    category: str
    decision: str
    administration: str | None
    ticket: str | None
    """Reference of its ticket (None for ignored mail)."""
    received_at: datetime
    recorded_at: datetime
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MessageCount:
    """Messages recorded in a window with the same category, decision, Administration and kind."""

    category: str
    decision: str
    administration: str | None
    kind: MessageKind
    count: int


@dataclass(frozen=True, slots=True)
class TicketStory:
    """A ticket with every message, event and reply, oldest first."""

    ticket: TicketSummary
    messages: tuple[MessageSummary, ...]
    events: tuple[Event, ...]
    replies: tuple[OutboxSummary, ...]


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """A quarantined message; ``raw`` is None in listings (use ``get_quarantine``)."""

    id: int
    source_id: str
    dedupe_key: str | None
    size: int
    error: str
    state: QuarantineState
    at: datetime
    updated_at: datetime
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class StateEntry:
    key: str
    value: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts for ``[since, until)``; the ``*_now`` counts are current totals."""

    since: datetime
    until: datetime
    messages_by_kind: tuple[tuple[str, int], ...]
    tickets_by_category: tuple[tuple[str, int], ...]
    tickets_opened: int
    tickets_resolved: int
    tickets_taken_in: int
    replies_sent: int
    replies_held: int
    open_now: int
    waiting_take_in_now: int
    outbox_by_state_now: tuple[tuple[str, int], ...]
    quarantined_now: int
