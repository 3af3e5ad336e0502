"""Where a message's time goes: maild's stages one by one, in one process, no network.

The backlog rate says how fast; this says why. Each stage of the intake is
timed on the same corpus mix, in a fresh interpreter (``python -m bench.stages
COUNT OUT_JSON``), on a SQLite file configured exactly as the daemon's:

- ``dedupe``: the content hash that makes intake exactly-once;
- ``parse``: raw bytes to ``ParsedMessage`` (the floor pays this too);
- ``triage``: screen, classify, authorize, schedule;
- ``render``: the Jinja2 templates and the RFC 5322 composition of the replies;
- ``record``: the intake transaction (message, ticket, events, outbox) of a batch of
  ``RECORD_BATCH`` messages, as the daemon writes them, per message, render excluded;
- ``send_bookkeeping``: claiming a reply and marking it sent, per message, as the
  sender process does it on SQLite (claims of ``BATCH``, each mark a journal line,
  the journal folded before the next claim).

Seconds are wall time on one thread, so a stage that waits on the disk shows it.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

from maild.daemon.intake import IntakeService, replies_for
from maild.daemon.loop import RECORD_BATCH
from maild.daemon.outbox.journal import SentJournal
from maild.daemon.outbox.sender import BATCH
from maild.daemon.wiring import build_intake
from maild.mail.keys import dedupe_key
from maild.mail.parsing import parse_message
from maild.pipeline import received_time
from maild.records import Intake, OutgoingMail, QueuedIntake, TicketRef, UnsentReply
from maild.settings import Settings
from maild.store import Store
from tests.daemon_kit import HIGH_LIMITS
from tests.factories import settings
from tests.mailgen import corpus_mix

NOW = datetime(2027, 1, 18, 10, 0, tzinfo=UTC)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StageCosts:
    """Milliseconds per message for each stage."""

    messages: int
    dedupe: float
    parse: float
    triage: float
    render: float
    record: float
    send_bookkeeping: float

    @property
    def total(self) -> float:
        return self.dedupe + self.parse + self.triage + self.render + self.record + self.send_bookkeeping


class _Clock:
    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def time(self, stage: str, call: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return call()
        finally:
            self.spent[stage] = self.spent.get(stage, 0.0) + time.perf_counter() - start


def measure(count: int, folder: Path) -> StageCosts:
    config = settings(limits=HIGH_LIMITS)
    clock = _Clock()
    with Store.open(f"sqlite:///{folder / 'stages.db'}") as store:
        service = build_intake(config, store)
        batch: list[QueuedIntake] = []
        for index, sample in enumerate(corpus_mix(count, tag="stages")):
            batch.append(_triaged(service, clock, f"1:{index}", sample.raw))
            if len(batch) == RECORD_BATCH:
                clock.time("record", partial(store.record_intakes, batch))
                batch = []
        if batch:
            clock.time("record", partial(store.record_intakes, batch))
        _send_bookkeeping(store, clock, config)
    per = {stage: seconds * 1000 / count for stage, seconds in clock.spent.items()}
    per["record"] = per["record"] - per["render"]
    return StageCosts(count, per["dedupe"], per["parse"], per["triage"], per["render"], per["record"],
                      per["send_bookkeeping"])


def _send_bookkeeping(store: Store, clock: _Clock, config: Settings) -> None:
    """What the sender process does on SQLite around the SMTP traffic: claim ``BATCH`` replies,
    append each one's mark to its journal, fold the journal before the next claim."""
    if store.journal_dir is None:
        raise ValueError("the stages run on a SQLite file, which has a journal folder")
    journal = SentJournal(store.journal_dir, "bench:1")
    while True:
        journal_fold = partial(journal.fold, store, NOW, lambda owner: False)
        clock.time("send_bookkeeping", journal_fold)
        claimed = clock.time("send_bookkeeping", lambda: store.claim_outbox(NOW, BATCH, "bench:1", 600,
                                                                            config.limits))
        if not claimed:
            break
        for item in claimed:
            clock.time("send_bookkeeping", partial(journal.record, item.id))
    journal.close()


def _triaged(service: IntakeService, clock: _Clock, source_id: str, raw: bytes) -> QueuedIntake:
    """The stages before the database, each timed; the daemon records these a batch at a time."""
    key = clock.time("dedupe", lambda: dedupe_key(raw))
    message = clock.time("parse", lambda: parse_message(raw, service.settings.limits))
    received = min(received_time(message, NOW), NOW)
    d = clock.time("triage", lambda: service.triager.decide(message, received_at=received))

    def render(ticket: TicketRef | None, followup: bool) -> tuple[OutgoingMail | UnsentReply, ...]:
        if ticket is None:
            return ()
        return clock.time("render", lambda: replies_for(d, ticket.reference, key, NOW, service.responder,
                                                        service.settings, service.triager.screening,
                                                        followup=followup))

    intake = Intake(dedupe_key=key, source_id=source_id, raw=raw, disposition=d, now=NOW)
    return QueuedIntake(intake, None, render)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="maild-stages-") as tmp:
        costs = measure(int(sys.argv[1]), Path(tmp))
    Path(sys.argv[2]).write_text(json.dumps(asdict(costs)), encoding="utf-8")
