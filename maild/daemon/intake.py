"""Intake of one message: triage it, then record everything in one transaction.

Order matters for exactly-once: the raw message, its triage, the ticket and
the outbox entries are committed together by ``Store.record_intake``; only
after that commit does the caller move the message out of the mailbox. A crash
before the commit leaves the message in the mailbox to be processed again; a
crash after it leaves a message whose dedupe key is already known, which is
then only moved.

Any failure of one message (parse, rule, template, a constraint on its row)
quarantines it, with the error recorded, so the messages behind it go on. A
fault of the database itself (``StoreUnavailable``: connection, shutdown, disk
full, lock timeout) is not the message's: nothing is quarantined, the fault is
raised and the batch stays in the mailbox for the caller to retry.

The stages before the database (``triage``, ``Triaged``) live in
``maild.pipeline``, which the triage worker imports alone; they are re-exported
here.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from maild.errors import StoreError, StoreUnavailable
from maild.logs import context
from maild.mail.keys import dedupe_key, header_value
from maild.pipeline import Triaged, Triager, thread_query, triage
from maild.records import (
    Disposition,
    Intake,
    IntakeResult,
    MessageKind,
    OutgoingMail,
    QueuedIntake,
    Renderer,
    ReplyRenderer,
    TicketRef,
    UnsentReply,
)
from maild.responder import Responder, replies_for
from maild.settings import Settings
from maild.sources import Incoming
from maild.store import Store

__all__ = [
    "IntakeReport",
    "IntakeService",
    "Outcome",
    "Triaged",
    "raw_message_id",
    "replies_for",
    "thread_query",
    "triage",
]

log = logging.getLogger("maild.intake")


class Outcome(enum.StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"


@dataclass(frozen=True, slots=True)
class IntakeReport:
    """What happened to one message; the caller moves it accordingly."""

    outcome: Outcome
    source_id: str
    message_id: str | None = None
    ticket: str | None = None
    decision: str | None = None
    replies: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class IntakeService:
    settings: Settings
    triager: Triager
    responder: Responder
    store: Store

    def process(self, item: Incoming, now: datetime, *, quarantine_id: int | None = None) -> IntakeReport:
        """Record ``item`` exactly once, or quarantine it; never raise for the message's sake.

        Raises ``StoreUnavailable`` when the database is at fault: the message stays where it is.
        """
        if item.raw is None:
            return self._quarantine(item, f"message of {item.size} bytes is over limits.max_message_bytes "
                                          f"({self.settings.limits.max_message_bytes}); not downloaded", now)
        try:
            return self._record(item, item.raw, now, quarantine_id)
        except StoreUnavailable:
            raise  # the database's fault, not the message's: retried, never quarantined
        except StoreError as exc:
            log.warning("recording failed for this message, quarantining: %s", exc,
                        extra=context(raw_message_id(item.raw), source_id=item.source_id))
            return self._quarantine(item, f"{type(exc).__name__}: {exc}", now, retry_of=quarantine_id)
        except Exception as exc:  # the poison message: any stage that raises
            log.exception("processing failed, quarantining",
                          extra=context(raw_message_id(item.raw), source_id=item.source_id))
            return self._quarantine(item, f"{type(exc).__name__}: {exc}", now, retry_of=quarantine_id)

    def process_batch(self, items: Sequence[Incoming], now: datetime,
                      triaged: Sequence[Triaged | None] | None = None) -> list[IntakeReport]:
        """``process`` for each item, recording the batch in one transaction; one report per item.

        ``triaged`` may bring the stages before the database already done (by a
        ``TriagePool``), item by item; a None there is done here. A message
        whose stages fail, and every message of a batch whose transaction
        fails, goes through ``process`` alone: the poison message is quarantined
        there and the others are recorded as if never batched.
        """
        done = triaged if triaged is not None else [None] * len(items)
        reports: dict[int, IntakeReport] = {}
        queued: list[tuple[int, Incoming, Triaged]] = []
        for index, (item, given) in enumerate(zip(items, done, strict=True)):
            ready = given or (self.triage(item.raw, now, item.arrived_at) if item.raw is not None else None)
            if ready is None:
                reports[index] = self.process(item, now)
            else:
                queued.append((index, item, ready))
        if queued:
            try:
                results = self.store.record_intakes([self._queued(item, t, now) for _, item, t in queued])
            except StoreUnavailable:
                raise  # one by one would fail alike: the caller retries the batch
            except Exception as exc:
                log.warning("a batch of %d messages could not be recorded in one transaction (%s: %s); "
                            "recording them one by one", len(queued), type(exc).__name__, exc)
                results = None
            for position, (index, item, ready) in enumerate(queued):
                reports[index] = (self._reported(item, ready, results[position]) if results is not None
                                  else self.process(item, now))
        return [reports[index] for index in range(len(items))]

    def triage(self, raw: bytes, now: datetime, arrived_at: datetime | None = None) -> Triaged | None:
        """``triage`` with this service's stages; None when one raises (``process`` then handles it)."""
        try:
            return triage(raw, now, self.triager, self.settings, arrived_at)
        except Exception:
            return None

    def _queued(self, item: Incoming, ready: Triaged, now: datetime) -> QueuedIntake:
        assert item.raw is not None
        intake = Intake(dedupe_key=ready.dedupe_key, source_id=item.source_id, raw=item.raw,
                        disposition=ready.disposition, now=now)
        return QueuedIntake(intake, ready.thread_query, self._reply_renderer(ready.disposition, ready.dedupe_key,
                                                                             now))

    def _reported(self, item: Incoming, ready: Triaged, result: IntakeResult) -> IntakeReport:
        d = ready.disposition
        if result.duplicate:
            return self._known(item, d.message.message_id)
        return self._log_recorded(item, d, result, followup=result.kind is MessageKind.FOLLOWUP)

    def _record(self, item: Incoming, raw: bytes, now: datetime, quarantine_id: int | None) -> IntakeReport:
        # No lookup of the key before the work: ``record_intake`` finds a known message inside
        # its own transaction, which saves a transaction per message; a message seen before is
        # rare (a crash between commit and move, a copy moved back) and only costs its triage.
        key = dedupe_key(raw)
        try:
            ready = triage(raw, now, self.triager, self.settings, item.arrived_at)
            query = ready.thread_query
            thread = self.store.find_thread(query.message_ids, query.tags, query.from_addr) if query else None
        except Exception:
            if quarantine_id is None and self.store.is_known(key):  # recorded before: only move it
                return self._known(item, raw_message_id(raw) or "")
            raise
        d = ready.disposition
        intake = Intake(dedupe_key=key, source_id=item.source_id, raw=raw, disposition=d, now=now,
                        thread=thread, quarantine_id=quarantine_id)
        result = self.store.record_intake(intake, self._renderer(d, key, now, followup=thread is not None))
        if result.duplicate:
            return self._known(item, d.message.message_id)
        return self._log_recorded(item, d, result, followup=thread is not None)

    def _log_recorded(self, item: Incoming, d: Disposition, result: IntakeResult, *, followup: bool) -> IntakeReport:
        ref = result.ticket.reference if result.ticket else None
        log.info("%s %s %s%s%s, %d repl%s queued", "follow-up" if followup else "new", d.decision.value,
                 d.category.value, f" take-in {d.take_in.take_in_at.isoformat()}" if d.take_in else "",
                 ", ticket reopened" if result.reopened else "",
                 len(result.outbox_ids), "y" if len(result.outbox_ids) == 1 else "ies",
                 extra=context(d.message.message_id, ref, source_id=item.source_id))
        return IntakeReport(Outcome.RECORDED, item.source_id, d.message.message_id, ref, d.decision.value,
                            len(result.outbox_ids))

    def _known(self, item: Incoming, message_id: str) -> IntakeReport:
        log.info("already recorded (its Message-ID and content are known): not answered again, only moved",
                 extra=context(message_id, source_id=item.source_id))
        return IntakeReport(Outcome.DUPLICATE, item.source_id, message_id)

    def _reply_renderer(self, d: Disposition, key: str, now: datetime
                        ) -> ReplyRenderer:
        """``_renderer`` for a batch: whether it is a follow-up is known only inside the transaction."""

        def render(ticket: TicketRef | None, followup: bool) -> tuple[OutgoingMail | UnsentReply, ...]:
            if ticket is None:
                return ()
            return replies_for(d, ticket.reference, key, now, self.responder, self.settings, self.triager.screening,
                               followup=followup)

        return render

    def _renderer(self, d: Disposition, key: str, now: datetime, *, followup: bool
                  ) -> Renderer:
        """The pure reply function the store calls inside the intake transaction."""
        render = self._reply_renderer(d, key, now)
        return lambda ticket: render(ticket, followup)

    def _quarantine(self, item: Incoming, error: str, now: datetime, *, retry_of: int | None = None) -> IntakeReport:
        """Record the failure; a failed operator retry goes back to its own entry, not a new one."""
        key = dedupe_key(item.raw) if item.raw is not None else None
        self.store.record_quarantine(item.source_id, item.raw, item.size, error[:2000], now, dedupe_key=key,
                                     retry_of=retry_of)
        log.warning("quarantined: %s", error, extra=context(raw_message_id(item.raw), source_id=item.source_id))
        return IntakeReport(Outcome.QUARANTINED, item.source_id, error=error)


def raw_message_id(raw: bytes | None) -> str | None:
    """The Message-ID header of a message not parsed (yet), for log lines."""
    return (header_value(raw, "Message-ID") or None) if raw is not None else None
