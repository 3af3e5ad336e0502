"""The daemon: drain the mailbox, send the outbox, take requests in on time.

Three activities, each small and restartable from the database alone:

- the intake loop (main thread): fetch, record each message in one
  transaction, then move it out of the mailbox; wait (IMAP IDLE, polling or a
  Maildir watch) for more;
- the sender (its own thread, so SMTP round trips overlap the intake work):
  drains the outbox whenever the intake queued replies, and retries deferred
  ones on a timer;
- the take-in job (APScheduler): at the earliest pending take-in time, takes
  due tickets in by priority then arrival, then schedules itself again from
  the database, which is the only source of truth after a restart.

Stopping (SIGTERM/SIGINT) sets ``stop``: the message in hand is finished, the
sender finishes the reply in hand, and ``run`` returns.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from maild.clock import Clock
from maild.errors import SourceError, SourceUnavailable, StoreError
from maild.intake import IntakeService, Outcome
from maild.logs import context
from maild.sender import OutboxSender
from maild.sources import Incoming, MailSource
from maild.store import Store

log = logging.getLogger("maild.daemon")

WAIT_SLICE = 1.0
"""Longest uninterrupted wait: how soon a stop request is noticed."""
SENDER_RETRY_POLL = 5.0
HEARTBEAT_EVERY = timedelta(seconds=10)
EXIT_PENDING = 75
"""``run --once`` exit code when replies could not be sent yet (EX_TEMPFAIL)."""


@dataclass
class Daemon:
    intake: IntakeService
    source: MailSource
    sender: OutboxSender
    store: Store
    clock: Clock
    max_message_bytes: int
    stop: threading.Event = field(default_factory=threading.Event)
    _wake_sender: threading.Event = field(default_factory=threading.Event)
    _scheduler: BackgroundScheduler | None = None
    _last_heartbeat: datetime | None = None

    # ------------------------------------------------------------ entry points

    def run(self, *, once: bool = False) -> int:
        """Run until stopped; with ``once``, drain mailbox and outbox, then return."""
        log.info("maild started (%s)", "drain once" if once else "daemon")
        self.sender.recover()
        if once:
            return self._run_once()
        sender = threading.Thread(target=self._sender_loop, name="maild-sender", daemon=True)
        sender.start()
        self._start_scheduler()
        try:
            self._intake_loop()
        finally:
            self.stop.set()
            self._wake_sender.set()
            sender.join(timeout=30)
            self._shutdown()
        log.info("maild stopped")
        return 0

    def drain_mailbox(self) -> int:
        """Process everything waiting now (and operator retries); return how many."""
        done = self._retry_quarantined()
        try:
            for item in self.source.fetch(self.max_message_bytes):
                if self.stop.is_set():
                    break
                self._handle(item)
                done += 1
        except SourceUnavailable as exc:
            log.warning("mailbox unavailable: %s", exc)
        self.take_in_due()
        return done

    def take_in_due(self) -> int:
        """Take in every ticket whose time has come, most urgent first."""
        taken = self.store.take_in(self.clock.now(), limit=10_000)
        for item in taken:
            log.info("taken in (priority %d, %s)", item.priority, item.category, extra=context(ticket=item.reference))
        self._schedule_next_take_in()
        return len(taken)

    # ------------------------------------------------------------ intake

    def _run_once(self) -> int:
        try:
            while self.drain_mailbox():
                pass
        finally:
            self.source.close()
        report = self.sender.drain()
        self._heartbeat(force=True)
        if report.transport_down:
            log.error("%d repl%s could not be sent yet; they stay queued", report.deferred,
                      "y" if report.deferred == 1 else "ies")
            return EXIT_PENDING
        return 0

    def _intake_loop(self) -> None:
        while not self.stop.is_set():
            try:
                if self.drain_mailbox():
                    continue
                self._heartbeat()
                self.source.wait(WAIT_SLICE)
            except StoreError as exc:
                log.error("database unavailable (%s); retrying in %ss", exc, WAIT_SLICE * 5)
                self.stop.wait(WAIT_SLICE * 5)
            except SourceError as exc:
                log.critical("mailbox unusable, stopping: %s", exc)
                raise

    def _handle(self, item: Incoming) -> None:
        report = self.intake.process(item, self.clock.now())
        if report.outcome is Outcome.QUARANTINED:
            self.source.quarantine(item)
        else:
            self.source.mark_processed(item)
        if report.replies:
            self._wake_sender.set()

    def _retry_quarantined(self) -> int:
        """Messages an operator asked to retry with ``maild quarantine retry``."""
        retries = self.store.pending_retries()
        for entry in retries:
            if entry.raw is None:
                continue
            item = Incoming(entry.source_id, entry.size, entry.raw, "")
            report = self.intake.process(item, self.clock.now(), quarantine_id=entry.id)
            log.info("quarantine entry %d retried: %s", entry.id, report.outcome.value,
                     extra=context(report.message_id, report.ticket))
            if report.replies:
                self._wake_sender.set()
        return len(retries)

    def _heartbeat(self, *, force: bool = False) -> None:
        now = self.clock.now()
        if force or self._last_heartbeat is None or now - self._last_heartbeat >= HEARTBEAT_EVERY:
            self.store.heartbeat("daemon", now, "ok")
            self._last_heartbeat = now

    # ------------------------------------------------------------ sender

    def _sender_loop(self) -> None:
        while not self.stop.is_set():
            self._wake_sender.clear()
            try:
                self.sender.drain()
            except StoreError as exc:
                log.error("outbox unavailable: %s", exc)
            except Exception:
                log.exception("sender loop fault; retrying")
            self._wake_sender.wait(SENDER_RETRY_POLL)

    # ------------------------------------------------------------ take-in scheduling

    def _start_scheduler(self) -> None:
        self._scheduler = BackgroundScheduler(timezone=UTC)
        self._scheduler.start()
        self.take_in_due()  # anything missed while the daemon was down happens now

    def _schedule_next_take_in(self) -> None:
        scheduler = self._scheduler
        if scheduler is None:
            return
        when = self.store.next_take_in_at()
        if when is None:
            if scheduler.get_job("take-in"):
                scheduler.remove_job("take-in")
            return
        # The job reads the injected clock when it runs; APScheduler only wakes it.
        scheduler.add_job(self.take_in_due, "date", run_date=max(when, datetime.now(UTC)), id="take-in",
                          replace_existing=True, misfire_grace_time=None, coalesce=True)

    def next_take_in_job(self) -> datetime | None:
        """When the take-in job will next run (for status and tests)."""
        job = self._scheduler.get_job("take-in") if self._scheduler else None
        return job.next_run_time if job else None

    def _shutdown(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        self.source.close()
        self.sender.transport.close()
