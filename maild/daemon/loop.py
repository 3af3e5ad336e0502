"""The daemon: drain the mailbox, send the outbox, take requests in on time.

Three activities, each small and restartable from the database alone:

- the intake loop (main thread): fetch, record each message in one
  transaction, then move it out of the mailbox; wait (IMAP IDLE, polling or a
  Maildir watch) for more, and read the mailbox again only when the wait says
  mail may be there, after a fault, or once a minute (``READ_AT_LEAST_EVERY``),
  so an IMAP IDLE stays open while nothing arrives;
- the sender (a process of its own, ``maild.daemon.outbox.process``, or a thread where no
  core is spare or the clock is not the system's; either way SMTP round trips
  overlap the intake work): drains the outbox whenever the intake queued
  replies, and retries deferred ones on a timer;
- the take-in job (APScheduler): at the earliest pending take-in time, takes
  due tickets in by priority then arrival, then schedules itself again from
  the database, which is the only source of truth after a restart.

Stopping (SIGTERM/SIGINT) sets ``stop``: the message in hand is finished, the
sender finishes the reply in hand, and ``run`` returns.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from maild.clock import Clock
from maild.daemon.intake import IntakeService, Outcome, Triaged
from maild.daemon.metrics import DaemonMetrics
from maild.daemon.notify import Notifier
from maild.daemon.outbox.journal import open_journal
from maild.daemon.outbox.process import SenderProcess
from maild.daemon.outbox.sender import SENDER_RETRY_POLL, OutboxSender, SendReport
from maild.daemon.processes import TriagePool
from maild.errors import MaildError, SourceError, SourceUnavailable, StoreError
from maild.logs import context
from maild.ops.digest import send_due_digest
from maild.sources import Incoming, MailSource
from maild.store import Store
from maild.store.reader import READER_STATE, ReaderLock

log = logging.getLogger("maild.daemon")

WAIT_SLICE = 1.0
"""Longest uninterrupted wait: how soon a stop request is noticed."""
HEARTBEAT_EVERY = timedelta(seconds=10)
READ_AT_LEAST_EVERY = timedelta(minutes=1)
"""The mailbox is read at least this often even when no new mail was announced: an announcement
lost anywhere (server, network, client library) then delays a message by a minute at most."""
EXIT_PENDING = 75
"""``run --once`` exit code when replies could not be sent or the mailbox not drained yet (EX_TEMPFAIL)."""
ONCE_RECONNECTS = 5
"""``run --once``: how many times an unreachable mailbox is retried before giving up."""
STANDBY_POLL = 2.0
"""Seconds between a standby daemon's tries at the mailbox: how soon it takes over from a reader gone."""
STORE_RETRY_CAP = 30.0
"""Longest pause, in seconds, between two tries at a database that is down (1, 2, 4 ... s before)."""
RECORD_BATCH = 100
"""Messages recorded in one transaction: one commit per batch instead of one per message."""
MOVE_EVERY = 1000
"""Recorded messages are moved out of the mailbox in one command once this many wait, and at the
end of every pass (so a message that arrives alone is moved at once). On Dovecot a move costs in
proportion to the size of the folder, however few it moves, so fewer, larger moves cost it less.
A crash before the move leaves at most this many recorded messages in the mailbox, which the next pass
recognises and only moves."""
BATCH_BYTES = 8 * 1024 * 1024
"""A batch also ends once its messages hold this many bytes: large messages go one by one."""


@dataclass
class _Recorded:
    """Messages whose intake is committed and that are still in the mailbox."""

    processed: list[Incoming] = field(default_factory=list)
    quarantined: list[Incoming] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.processed) + len(self.quarantined)

    def add(self, item: Incoming, *, quarantined: bool) -> None:
        """Keep ``item`` without its bytes: only its place in the mailbox matters to the move."""
        (self.quarantined if quarantined else self.processed).append(replace(item, raw=None))


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
    notifier: Notifier = field(default_factory=Notifier.disabled)
    metrics: DaemonMetrics = field(default_factory=DaemonMetrics)
    _last_poll: datetime | None = None
    _last_read: datetime | None = None
    """When the mailbox was last read through (see READ_AT_LEAST_EVERY)."""
    _mailbox_down: bool = False
    parallel_triage: bool = False
    """``run`` triages in a worker process (``maild.daemon.processes``) when the machine has a core to spare."""
    triage_pool: TriagePool | None = None
    """Where batches are triaged while the previous one is recorded; None: in this process."""
    _in_flight: _Flight | None = None
    _recorded: _Recorded = field(default_factory=_Recorded)
    """Recorded in this pass and still in the mailbox: moved by ``MOVE_EVERY`` and at the pass's end."""
    parallel_sending: bool = False
    """``run`` sends from a process of its own (``maild.daemon.outbox.process``) when a core is spare."""
    sender_process: SenderProcess | None = None
    _run_id: int | None = None
    """This run's row in the database's list of daemons (``maild status``)."""
    reader: ReaderLock | None = None
    """Who reads the mailbox among daemons sharing a PostgreSQL database (``maild.store.reader``); None: this one."""
    _reading: bool | None = None

    # ------------------------------------------------------------ entry points

    def run(self, *, once: bool = False) -> int:
        """Run until stopped; with ``once``, drain mailbox and outbox, then return."""
        log.info("maild started (%s)", "drain once" if once else "daemon")
        self._run_id = self.store.start_daemon(socket.gethostname(), os.getpid(), self.clock.now())
        try:
            return self._run(once=once)
        finally:
            self._record_stop()

    def _run(self, *, once: bool) -> int:
        self.sender.recover()
        # The sender first: the triage pool starts a thread, after which a child is spawned, not forked.
        if self.parallel_sending and self.sender_process is None:
            self.sender_process = SenderProcess.for_machine(self.intake.settings, self.store.drop_connections)
        if self.parallel_triage and self.triage_pool is None:
            self.triage_pool = TriagePool.for_machine(self.intake.settings, self.intake.triager,
                                                      self.store.drop_connections)
        if self.triage_pool is None:
            self.intake.triager.rules.compile()  # triaged here: now, so that a bad rule stops the start
        if once:
            return self._run_once()
        self.metrics.start()
        process = self.sender_process
        sender = (threading.Thread(target=self._sender_loop, name="maild-sender", daemon=True) if process is None
                  else threading.Thread(target=self._watch_sender_process, args=(process,),
                                        name="maild-sender-watch", daemon=True))
        sender.start()
        self._start_scheduler()
        self.notifier.ready("processing mail")
        try:
            self._intake_loop()
        finally:
            self.notifier.stopping()
            self.stop.set()
            self._wake_sender.set()
            sender.join(timeout=30)
            self._shutdown()
        log.info("maild stopped")
        return 0

    def drain_mailbox(self, *, fetch: bool = True) -> int:
        """Process everything waiting now (and operator retries); return how many.

        ``fetch=False`` leaves the mailbox alone: the daemon's wait said nothing new came.
        """
        done = self._retry_quarantined()
        if fetch:
            done += self._drain_source()
        self.take_in_due()
        return done

    def _drain_source(self) -> int:
        done = 0
        batch = _Batch()
        try:
            for item in self.source.fetch(self.max_message_bytes):
                batch.add(item)
                if batch.full:
                    done += self._advance(batch.take())
                if self.stop.is_set():
                    break
            done += self._advance(batch.take())
            done += self._advance([])  # the batch still with the triage worker
            self._move(everything=True)
            first_read = self._last_poll is None
            self._last_poll = self._last_read = self.clock.now()
            if first_read:
                self._heartbeat(force=True)  # `maild status` stops calling it starting at once
        except SourceUnavailable as exc:
            self.metrics.mailbox_error("poll")
            self._mailbox_down = True
            log.warning("mailbox unavailable: %s", exc)
        finally:
            self._in_flight = None  # not recorded: it stays in the mailbox for the next pass
            self._recorded = _Recorded()  # recorded, not moved: the next pass recognises and moves them
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
        intake_done = threading.Event()
        deferred: list[int] = []
        sender = None if self.sender_process is not None else threading.Thread(
            target=self._send_during_intake, args=(intake_done, deferred), name="maild-sender", daemon=True)
        if sender is not None:
            sender.start()
        try:
            self._drain_until_empty()
            if self.triage_pool is not None:
                self.triage_pool.started()  # even with nothing to triage, rules that do not compile fail the run
            deferred.extend(self._send_beside_sender_process())
        finally:
            intake_done.set()
            self._wake_sender.set()
            if sender is not None:
                sender.join()
            deferred.extend(report.deferred for report in self._finish_sender_process() if report.deferred)
            self._release_mailbox()
            self.source.close()
            self._close_triage_pool()
        self.send_digest()
        report = self.sender.drain()
        self._heartbeat(force=True)
        if report.transport_down or deferred:
            pending = report.deferred + sum(deferred)
            log.error("%d repl%s could not be sent yet; they stay queued", pending, "y" if pending == 1 else "ies")
            return EXIT_PENDING
        if self._mailbox_down:
            log.error("the mailbox stayed unreachable: it was not drained")
            return EXIT_PENDING
        return 0

    def _drain_until_empty(self) -> None:
        """Drain until a pass finds nothing; ride out a mailbox outage with the source's backoff."""
        if not self._reads_mailbox():
            return
        outages = 0
        while True:
            self._mailbox_down = False
            if self.drain_mailbox():
                continue
            if not self._mailbox_down or outages == ONCE_RECONNECTS:
                return
            outages += 1
            self.source.wait(WAIT_SLICE * 5)  # reconnects, with backoff

    def _intake_loop(self) -> None:
        fetch = True  # the mailbox is read at start, then when _wait says so
        outages = 0
        while not self.stop.is_set():
            self.notifier.watchdog()
            if self.triage_pool is not None:
                self.triage_pool.check()  # an idle daemon too stops on rules its worker could not compile
            try:
                if not self._reads_mailbox():
                    self._heartbeat()
                    fetch, outages = True, 0
                    self.stop.wait(STANDBY_POLL)
                    continue
                self._mailbox_down = False
                if self.drain_mailbox(fetch=fetch):
                    fetch, outages = True, 0
                    continue
                self._heartbeat()
                fetch, outages = self._wait(), 0
            except StoreError as exc:
                pause = min(STORE_RETRY_CAP, WAIT_SLICE * 2 ** outages)
                outages += 1
                log.error("database unavailable (%s): nothing quarantined, the messages stay in the mailbox; "
                          "retrying in %.0f s", exc, pause)
                fetch = True
                self.stop.wait(pause)
            except SourceError as exc:
                log.critical("mailbox unusable, stopping: %s", exc)
                raise

    def _reads_mailbox(self) -> bool:
        """Whether this daemon reads the mailbox now (it holds the reader lock); says so when that changes."""
        reader = self.reader
        if reader is None:
            return True
        held = reader.hold()
        if held != self._reading:
            if held:
                log.info("this daemon reads the mailbox")
                self.store.set_state(READER_STATE, self.sender.owner, self.clock.now())
            elif self._reading:
                log.warning("this daemon lost the mailbox lock (its database session ended); standing by")
                self.source.close()
            else:
                holder = self.store.get_state(READER_STATE)
                log.info("another daemon reads the mailbox (%s); this one sends, takes in and stands by",
                         holder.value if holder else "unknown")
            self._reading = held
        return held

    def _wait(self) -> bool:
        """Wait one slice; whether the mailbox must be read before the next one.

        Only when the source says new mail may be there, after a fault in the last
        pass (a Maildir that could not file a message still holds it, and its wait
        only reports new names), or when the last read is READ_AT_LEAST_EVERY old.
        Reading the mailbox every slice would end an IMAP IDLE every second: a watch
        that ends without a fault counts as a poll.
        """
        mail = self.source.wait(WAIT_SLICE)
        if not getattr(self.source, "connected", True):
            self.metrics.mailbox_error("idle")
            return mail
        now = self.clock.now()
        if not mail:
            self._last_poll = now
        read_due = self._last_read is None or now - self._last_read >= READ_AT_LEAST_EVERY
        return mail or self._mailbox_down or read_due

    def _advance(self, items: list[Incoming]) -> int:
        """Hand ``items`` to the triage worker, then record the batch handed over before it: the
        worker triages one batch while this process records the other. Returns how many were recorded."""
        now = self.clock.now()
        pool = self.triage_pool
        previous, self._in_flight = self._in_flight, None
        if pool is None or (previous is None and not pool.forked and not pool.ready()):
            return self._record_batch(items, now, None)  # a spawned worker is still starting: no wait for it
        if items:
            future = pool.submit([item.raw for item in items], now, [item.arrived_at for item in items])
            self._in_flight = _Flight(items, now, future)
        if previous is None:
            return 0
        pool.started()
        return self._record_batch(previous.items, previous.now, pool.result(previous.triage, len(previous.items)))

    def _record_batch(self, items: list[Incoming], now: datetime, triaged: list[Triaged | None] | None) -> int:
        """Record the batch in one transaction, then move it out of the mailbox; return how many."""
        if not items:
            return 0
        started = time.monotonic()
        reports = self.intake.process_batch(items, now, triaged)
        each = (time.monotonic() - started) / len(items)
        for item, report in zip(items, reports, strict=True):
            self.metrics.message_done(report.outcome.value, report.decision, each)
            self._recorded.add(item, quarantined=report.outcome is Outcome.QUARANTINED)
        if any(report.replies for report in reports):
            self._wake()
        self._move(everything=False)
        self._heartbeat()
        return len(items)

    def _move(self, *, everything: bool) -> None:
        """Move what is recorded out of the mailbox (by ``MOVE_EVERY`` unless ``everything``): only
        ever after the commits that recorded it are durable, so not even a power cut can leave a
        moved message unrecorded."""
        recorded = self._recorded
        if not recorded or (len(recorded) < MOVE_EVERY and not everything):
            return
        self.store.sync()
        if recorded.quarantined:
            self.source.quarantine(*recorded.quarantined)
        if recorded.processed:
            self.source.mark_processed(*recorded.processed)
        self._recorded = _Recorded()

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
                self._wake()
        return len(retries)

    def _heartbeat(self, *, force: bool = False) -> None:
        self.notifier.watchdog()
        now = self.clock.now()
        if force or self._last_heartbeat is None or now - self._last_heartbeat >= HEARTBEAT_EVERY:
            if self._run_id is not None:
                self.store.beat_daemon(self._run_id, now, self._last_poll)
            self._last_heartbeat = now

    def _record_stop(self) -> None:
        """A clean stop, recorded: ``maild status`` then tells it from a crash."""
        if self._run_id is None:
            return
        try:
            self.store.stop_daemon(self._run_id, self.clock.now())
        except StoreError as exc:
            log.warning("could not record the stop in the database: %s", exc)

    # ------------------------------------------------------------ sender

    def _wake(self) -> None:
        """Replies were queued: have them sent now."""
        if self.sender_process is not None:
            self.sender_process.wake()
        else:
            self._wake_sender.set()

    def _watch_sender_process(self, process: SenderProcess) -> None:
        """The daemon's side of the sender process: its reports to the metrics, a new one if it dies."""
        while not self.stop.is_set():
            self._count_replies(process.collect(timeout=WAIT_SLICE))
            if not process.alive() and not self.stop.is_set():
                log.error("the sender process stopped unexpectedly; starting another in %.0f s", SENDER_RETRY_POLL)
                self._recover_sender()
                if not self.stop.wait(SENDER_RETRY_POLL):  # a sender that cannot start does not spin
                    process.restart()

    def _finish_sender_process(self) -> tuple[SendReport, ...]:
        """Stop the sender process after a last drain; recover what it leaves if it did not end cleanly."""
        process, self.sender_process = self.sender_process, None
        if process is None:
            return ()
        finished = process.finish()
        self._count_replies(finished.reports)
        if not finished.clean:
            log.error("the sender process ended with exit code %s; its replies are recovered", finished.exit_code)
            self._recover_sender()
        return finished.reports

    def _send_beside_sender_process(self) -> list[int]:
        """``run --once``, the mailbox drained: send the replies still queued from this process too.

        The sender process may still have a backlog (during the intake it keeps
        pace with it only roughly), and with the intake done one core would
        idle while it works through it. This process sends beside it, over an
        SMTP connection of its own, with a journal of its own: leases keep the
        two senders apart exactly as they keep two daemons apart. Returns the
        deferred count, if any.
        """
        if self.sender_process is None:
            return []
        self.sender_process.wake()
        journal = open_journal(self.store, self.sender.owner)
        try:
            report = replace(self.sender, journal=journal).drain()
        finally:
            if journal is not None:
                journal.close()
        self._count_replies([report])
        return [report.deferred] if report.deferred else []

    def _recover_sender(self) -> None:
        try:
            self.sender.recover()
        except StoreError as exc:
            log.error("cannot recover the sender's replies yet (%s); their leases expire", exc)

    def _count_replies(self, reports: tuple[SendReport, ...] | list[SendReport]) -> None:
        for report in reports:
            self.metrics.replies_done(report.sent, report.failed, report.deferred)

    def _send_during_intake(self, intake_done: threading.Event, deferred: list[int]) -> None:
        """``run --once``: send while the mailbox is still being drained, so SMTP overlaps intake."""
        while True:
            self._wake_sender.wait()
            self._wake_sender.clear()
            try:
                report = self.sender.drain()
                self.metrics.replies_done(report.sent, report.failed, report.deferred)
                if report.deferred:
                    deferred.append(report.deferred)
            except StoreError as exc:
                log.error("outbox unavailable: %s", exc)
            except Exception:
                log.exception("sender fault; the final drain retries")
            if intake_done.is_set():
                return

    def _sender_loop(self) -> None:
        while not self.stop.is_set():
            self._wake_sender.clear()
            try:
                report = self.sender.drain()
                self.metrics.replies_done(report.sent, report.failed, report.deferred)
            except StoreError as exc:
                log.error("outbox unavailable: %s", exc)
            except Exception:
                log.exception("sender loop fault; retrying")
            self._wake_sender.wait(self.sender.idle_wait())

    # ------------------------------------------------------------ take-in scheduling

    def _start_scheduler(self) -> None:
        self._scheduler = BackgroundScheduler(timezone=UTC)
        self._scheduler.start()
        self.take_in_due()  # anything missed while the daemon was down happens now
        self._schedule_digest()

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

    # ------------------------------------------------------------ digest

    def send_digest(self) -> bool:
        """Queue the operators' digest if it is due and not sent yet (idempotent); wake the sender."""
        try:
            sent = send_due_digest(self.store, self.intake.settings, self.clock.now())
        except MaildError as exc:
            log.error("digest not sent: %s", exc)
            return False
        if sent:
            self._wake()
        return sent

    def _schedule_digest(self) -> None:
        settings = self.intake.settings
        if self._scheduler is None or not settings.digest.recipients:
            return
        at = settings.digest.time
        trigger = CronTrigger(hour=at.hour, minute=at.minute, timezone=settings.service_hours.timezone)
        # A wake-up up to an hour late (busy or suspended host) still runs; the job checks the opening day.
        self._scheduler.add_job(self.send_digest, trigger, id="digest", replace_existing=True,
                                misfire_grace_time=3600, coalesce=True)
        self.send_digest()  # a digest missed while the daemon was down goes out now

    def next_digest_job(self) -> datetime | None:
        """When the digest job will next run (for tests)."""
        job = self._scheduler.get_job("digest") if self._scheduler else None
        return job.next_run_time if job else None

    def _close_triage_pool(self) -> None:
        pool, self.triage_pool = self.triage_pool, None
        if pool is not None:
            pool.close()

    def _release_mailbox(self) -> None:
        if self.reader is not None:
            self.reader.release()
        self._reading = None

    def _shutdown(self) -> None:
        self._release_mailbox()
        self._finish_sender_process()
        self.metrics.stop()
        self._close_triage_pool()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        self.source.close()
        self.sender.transport.close()


@dataclass
class _Batch:
    """Fetched messages not recorded yet."""

    items: list[Incoming] = field(default_factory=list)
    size: int = 0

    def add(self, item: Incoming) -> None:
        self.items.append(item)
        self.size += len(item.raw) if item.raw is not None else 0

    @property
    def full(self) -> bool:
        return len(self.items) >= RECORD_BATCH or self.size >= BATCH_BYTES

    def take(self) -> list[Incoming]:
        items, self.items, self.size = self.items, [], 0
        return items


@dataclass(frozen=True, slots=True)
class _Flight:
    """A batch fetched and handed to the triage worker, not recorded yet."""

    items: list[Incoming]
    now: datetime
    triage: Future[list[Triaged | None]]
