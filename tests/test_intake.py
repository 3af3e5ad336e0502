"""Batched intake records exactly what one-by-one intake records, and a bad message stays alone.

``IntakeService.process_batch`` writes a whole fetch batch in one transaction
(``Store.record_intakes``). These tests hold it to ``process``, the
one-message path the daemon used before: same tickets, messages, events and
replies, byte for byte, on SQLite and PostgreSQL; a follow-up finds a ticket
opened earlier in the same batch; a message whose stages raise is quarantined
while the rest of its batch is recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from maild.certified import PecRead
from maild.daemon.intake import IntakeService, Outcome
from maild.daemon.wiring import build_intake
from maild.pipeline import Triager
from maild.records import Disposition, OutgoingMail, ParsedMessage
from maild.responder import Responder
from maild.sources import Incoming
from maild.store import Store
from tests.daemon_kit import HIGH_LIMITS
from tests.factories import settings
from tests.mailgen import corpus_mix, fresh_copy

NOW = datetime(2027, 1, 18, 10, 0, tzinfo=UTC)  # a Monday, in service hours
POISON = "VELENO"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers)])
def db_urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Two empty databases of the same backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/one.db", f"sqlite:///{tmp_path}/batch.db"
    first: str = request.getfixturevalue("pg_url")
    second: str = request.getfixturevalue("pg_url_2")
    return first, second


@pytest.fixture
def stores(db_urls: tuple[str, str]) -> Iterator[tuple[Store, Store]]:
    with Store.open(db_urls[0]) as one, Store.open(db_urls[1]) as batch:
        yield one, batch


def _incoming(raws: list[bytes]) -> list[Incoming]:
    return [Incoming(f"7:{index}", len(raw), raw, "7") for index, raw in enumerate(raws)]


def _follow_up(original: bytes, message_id: str, tag: str) -> bytes:
    """A reply of the original's sender: same headers and body, In-Reply-To the original."""
    _, raw = fresh_copy(original, tag)
    return raw.replace(b"\r\n\r\n", f"\r\nIn-Reply-To: {message_id}\r\n\r\n".encode(), 1)


def _mailbox() -> list[bytes]:
    """The corpus mix, follow-ups of messages earlier in the same batch, and a copy of one."""
    samples = corpus_mix(130, tag="batch")
    raws = [s.raw for s in samples]
    raws.insert(40, _follow_up(samples[3].raw, samples[3].message_id, "fu1"))
    raws.insert(90, _follow_up(samples[70].raw, samples[70].message_id, "fu2"))
    raws.append(samples[5].raw)  # the same message twice: recorded once
    return raws


def _snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Everything intake writes, with row ids replaced by what they point at."""
    queries = {
        "tickets": "SELECT t.reference, t.requester, t.category, t.decision, t.priority, t.state, t.take_in_at, "
                   "t.in_hours, m.dedupe_key FROM tickets t LEFT JOIN messages m ON m.id = t.first_message_id "
                   "ORDER BY t.reference",
        "messages": "SELECT m.dedupe_key, m.source_id, m.kind, m.category, m.decision, m.priority, m.reasons, "
                    "m.body_text, t.reference, r.raw FROM messages m LEFT JOIN tickets t ON t.id = m.ticket_id "
                    "JOIN raw_messages r ON r.message_id = m.id ORDER BY m.id",
        "outbox": "SELECT o.kind, o.message_id, o.recipients, o.envelope_from, o.data, o.state, m.dedupe_key, "
                  "t.reference FROM outbox o LEFT JOIN messages m ON m.id = o.source_message_id "
                  "LEFT JOIN tickets t ON t.id = o.ticket_id ORDER BY o.id",
        "events": "SELECT e.kind, e.reasons, e.data, m.dedupe_key, t.reference, o.message_id FROM events e "
                  "LEFT JOIN messages m ON m.id = e.message_id LEFT JOIN tickets t ON t.id = e.ticket_id "
                  "LEFT JOIN outbox o ON o.id = e.outbox_id ORDER BY e.id",
    }
    with store.engine.connect() as conn:
        return {name: [tuple(row) for row in conn.execute(text(sql))] for name, sql in queries.items()}


def test_a_batch_records_exactly_what_one_by_one_intake_records(stores: tuple[Store, Store]) -> None:
    one, batched = stores
    config = settings(limits=HIGH_LIMITS)
    items = _incoming(_mailbox())
    plain = build_intake(config, one)
    single = [plain.process(item, NOW) for item in items]
    service = build_intake(config, batched)
    reports = [r for start in range(0, len(items), 50) for r in service.process_batch(items[start:start + 50], NOW)]
    assert reports == single
    assert [r.outcome for r in reports].count(Outcome.DUPLICATE) == 1 and reports[-1].outcome is Outcome.DUPLICATE
    expected, got = _snapshot(one), _snapshot(batched)
    assert got == expected
    followups = [row for row in got["messages"] if row[2] == "followup"]
    assert len(followups) == 2 and all(row[8] is not None for row in followups)
    assert len(got["messages"]) == len(items) - 1


def test_a_follow_up_finds_the_ticket_opened_earlier_in_its_own_batch(stores: tuple[Store, Store]) -> None:
    _, store = stores
    first = next(s for s in corpus_mix(60, tag="thread") if s.decision == "accepted")
    items = _incoming([first.raw, _follow_up(first.raw, first.message_id, "thread-fu")])
    opened, followed = build_intake(settings(limits=HIGH_LIMITS), store).process_batch(items, NOW)
    assert opened.outcome is followed.outcome is Outcome.RECORDED
    assert opened.ticket is not None and followed.ticket == opened.ticket
    assert len(store.queue()) == 1


class _PoisonedResponder(Responder):
    def acknowledgment(self, d: Disposition, ticket_ref: str, message_id: str, now: datetime) -> OutgoingMail:
        if POISON in d.message.subject:
            raise RuntimeError("template blew up")
        return super().acknowledgment(d, ticket_ref, message_id, now)


class _PoisonedTriager(Triager):
    def decide(self, message: ParsedMessage, *, received_at: datetime, pec: PecRead | None = None,
               received_why: str = "") -> Disposition:
        if "TOSSICO" in message.subject:
            raise ValueError("rule blew up")
        return super().decide(message, received_at=received_at, pec=pec, received_why=received_why)


def test_a_message_that_fails_is_quarantined_and_the_rest_of_its_batch_recorded(
        stores: tuple[Store, Store]) -> None:
    _, store = stores
    config = settings(limits=HIGH_LIMITS)
    plain = build_intake(config, store)
    service = IntakeService(config, _PoisonedTriager.from_settings(config),
                            _PoisonedResponder(config.templates.path, config.helpdesk,
                                               timezone=config.service_hours.timezone), store)
    samples = [s for s in corpus_mix(60, tag="poison") if s.decision == "accepted"][:6]
    raws = [s.raw for s in samples]
    raws[2] = raws[2].replace(b"Subject: ", f"Subject: {POISON} ".encode(), 1)  # fails inside the transaction
    raws[4] = raws[4].replace(b"Subject: ", b"Subject: TOSSICO ", 1)  # fails before it
    reports = service.process_batch(_incoming(raws), NOW)
    assert [r.outcome for r in reports] == [Outcome.RECORDED, Outcome.RECORDED, Outcome.QUARANTINED,
                                            Outcome.RECORDED, Outcome.QUARANTINED, Outcome.RECORDED]
    assert "template blew up" in (reports[2].error or "") and "rule blew up" in (reports[4].error or "")
    assert len(store.quarantine_list()) == 2
    assert len(store.queue()) == 4 and all(r.replies == 1 for r in reports if r.outcome is Outcome.RECORDED)
    # Recorded messages are known: the same batch again records nothing twice.
    again = plain.process_batch(_incoming([raws[0], raws[1]]), NOW)
    assert [r.outcome for r in again] == [Outcome.DUPLICATE, Outcome.DUPLICATE]
