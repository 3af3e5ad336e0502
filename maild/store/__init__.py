"""maild's database layer: the source of truth for messages, tickets, events and replies.

Use ``Store.open(url)``; every method is one transaction and returns frozen
records. ``dedupe_key(raw)`` gives the key a received message is recorded under.

The records and key helpers are imported with the package; ``Store`` and the
other names that need SQLAlchemy and Alembic are imported on first use. So
``maild.store.types`` and ``maild.store.text`` can be imported alone (every
submodule import runs this file first): the triage worker and the quick
commands need them, and not the ~0.4 s of CPU the database layer costs to
import.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from maild.models import clean_text
    from maild.store.core import Store
    from maild.store.migrate import upgrade
    from maild.store.outbox import BRAKED_KINDS, retry_at

_DATABASE_NAMES = MappingProxyType({
    "Store": "maild.store.core",
    "upgrade": "maild.store.migrate",
    "BRAKED_KINDS": "maild.store.outbox",
    "retry_at": "maild.store.outbox",
    "clean_text": "maild.models",
})
"""The names that need the database layer, and the module each is imported from on first use."""


def __getattr__(name: str) -> object:
    module = _DATABASE_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
