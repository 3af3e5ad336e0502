"""maild's database layer: the source of truth for messages, tickets, events and replies.

Use ``Store.open(url)``; every method is one transaction and returns frozen
records. ``dedupe_key(raw)`` gives the key a received message is recorded under.
"""

from __future__ import annotations

from maild.models import clean_text
from maild.store.core import Store
from maild.store.migrate import upgrade
from maild.store.outbox import BRAKED_KINDS, retry_at
from maild.store.text import content_hash, dedupe_key, message_key
from maild.store.types import (
    Event,
    EventKind,
    Intake,
    IntakeResult,
    MessageCount,
    MessageFact,
    MessageKind,
    MessageSummary,
    OutboxItem,
    OutboxState,
    OutboxSummary,
    QuarantineEntry,
    QuarantineState,
    QueuedIntake,
    Renderer,
    StateEntry,
    Stats,
    TakeInItem,
    ThreadQuery,
    TicketRef,
    TicketState,
    TicketStory,
    TicketSummary,
)

__all__ = [
    "BRAKED_KINDS",
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
    "StateEntry",
    "Stats",
    "Store",
    "TakeInItem",
    "ThreadQuery",
    "TicketRef",
    "TicketState",
    "TicketStory",
    "TicketSummary",
    "clean_text",
    "content_hash",
    "dedupe_key",
    "message_key",
    "retry_at",
    "upgrade",
]
