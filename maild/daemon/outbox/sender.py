"""The sender loop: replies leave the outbox over one reused SMTP connection.

A reply is claimed with a lease (committed before any SMTP traffic), sent,
then marked sent in its own commit: while the server considers the next
reply's MAIL command, so the commit costs no round trip, and always before
that reply's data leaves. Like an MTA, a reply the server refuses for now
(4xx, or a connection dropped under it) waits alone, by its own exponential
backoff (``Backoff``), while the others go on over a new connection if need
be; it is given up after ``smtp.give_up_after_hours``. A server out of reach
stops the drain: the rest of the claim waits for it, its claim not counted
as an attempt. A permanent refusal (5xx for every recipient) fails that reply
alone, recorded for the operators.

What the sender knows it does not forget: a 250 whose mark cannot be written
(database restarting, journal disk full) is kept in memory (``Unsettled``),
stops the next reply before its data leaves, and is written before anything
else at every later drain; the untried rest of the claim is handed back at
once, or as soon as the database takes it, never left to its lease. The only
double-send window is a process death between the server's 250 and the mark;
the re-sent copy carries the same Message-ID.

A sender with a ``SentJournal`` (``maild run``'s sender process on SQLite)
appends the mark to its journal instead of committing it, and folds the
journal into the database before each claim, before handing replies back and
at the end of each drain; the window stays one reply (see ``maild.daemon.outbox.journal``).
"""

from __future__ import annotations

import functools
import logging
import os
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from maild.clock import Clock
from maild.daemon.outbox.journal import SentJournal, fold_journals
from maild.daemon.outbox.transport import MailTransport
from maild.errors import StoreError, TransportDeferred, TransportError, TransportUnavailable
from maild.logs import context
from maild.records import OutboxItem, OutgoingMail
from maild.settings import RETRY_CAP, Limits, Smtp
from maild.store import Store
from maild.store.outbox import retry_at

log = logging.getLogger("maild.sender")

LEASE_SECONDS = 120.0
SENDER_RETRY_POLL = 5.0
"""How often an idle sender looks for replies whose retry time has come."""
SETTLE_RETRY = 1.0
"""How often a sender that keeps marks it could not write tries again."""
SHORTEST_WAIT = 0.2
"""The least an idle sender sleeps, even when a reply is due already (another sender may be claiming it)."""
BATCH = 200
"""Replies claimed at once: one claim (one transaction, one fsync) serves them all, while each
reply is still marked sent on its own right after its 250 (a commit, or a journal line)."""
GROWTH = 1.5
"""Each wait of a reply refused for now is half as long again as the one before (up to the cap), not
twice: a relay refusing one message in five at random refuses a few of a thousand five or six times
in a row by chance alone, and doubling would make those wait minutes."""
LEASE_LEFT_TO_SEND = timedelta(seconds=LEASE_SECONDS / 2)
"""A reply is sent only while this much of its lease is left; a slow server makes the sender
hand the rest of the batch back and claim it again, so a lease never runs out mid-send
(another daemon could then claim and send the same reply)."""


def worker_name() -> str:
    """A lease owner unique to this process, readable in the database."""
    return f"{socket.gethostname()}:{os.getpid()}"


def is_dead(owner: str) -> bool:
    """True when ``owner`` was a process of this host that no longer runs.

    Owners on other hosts are never judged: their leases simply expire.
    """
    host, _, pid_text = owner.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _exited(int(pid_text))


def _exited(pid: int) -> bool:
    """True for a process that has exited but was not reaped yet (a zombie).

    The daemon's sender is a child process: when the daemon is killed, the
    sender exits at once but stays a zombie until init reaps it, which some
    inits do only every second or two. ``kill(pid, 0)`` still succeeds then,
    and a restarted daemon would take the sender for alive and leave its
    replies leased until the lease expires.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc (or gone meanwhile: the next look says so): the lease expires
    return stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"])


@dataclass(frozen=True, slots=True)
class SendReport:
    sent: int = 0
    deferred: int = 0
    failed: int = 0

    @property
    def transport_down(self) -> bool:
        return self.deferred > 0

    def __add__(self, other: SendReport) -> SendReport:
        return SendReport(self.sent + other.sent, self.deferred + other.deferred, self.failed + other.failed)


@dataclass(frozen=True, slots=True)
class Backoff:
    """When a reply refused for now is tried again: its own exponential backoff, jittered, capped; and
    when it is given up. Injected, so that tests drive it with their clock instead of waiting."""

    base: timedelta = timedelta(seconds=Smtp().first_retry_seconds)
    factor: float = GROWTH
    cap: timedelta = RETRY_CAP
    give_up_after: timedelta = timedelta(hours=Smtp().give_up_after_hours)
    jitter: Callable[[], float] = random.random
    """A fraction in [0, 1): the delay is between half and all of the exponential one, so replies
    refused together are not all tried again in the same second."""

    @classmethod
    def of(cls, smtp: Smtp) -> Backoff:
        return cls(base=timedelta(seconds=smtp.first_retry_seconds),
                   give_up_after=timedelta(hours=smtp.give_up_after_hours))

    def next_try(self, now: datetime, attempts: int) -> datetime:
        delay = retry_at(now, attempts, base=self.base, cap=self.cap, factor=self.factor) - now
        return now + delay * (0.5 + self.jitter() / 2)


@dataclass(slots=True)
class Unsettled:
    """What a living sender knows and could not write yet: replies the server accepted (never sent
    again by this process, written at every chance) and the untried rest of an interrupted claim."""

    accepted: set[int] = field(default_factory=set)
    untried: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class OutboxSender:
    store: Store
    transport: MailTransport
    clock: Clock
    limits: Limits
    owner: str
    backoff: Backoff = Backoff()
    journal: SentJournal | None = None
    """Where this sender keeps its sent marks (``maild.daemon.outbox.journal``); None: one commit per reply."""
    unsettled: Unsettled = field(default_factory=Unsettled)

    @property
    def settled(self) -> bool:
        """Nothing this sender knows is waiting to be written (else: retry soon, see ``SETTLE_RETRY``)."""
        return not self.unsettled.accepted and not self.unsettled.untried

    def idle_wait(self) -> float:
        """Seconds to sleep before the next drain: until the first reply refused for now is due, so its
        retry is not held up to the next poll, and never longer than ``SENDER_RETRY_POLL``."""
        if not self.settled:
            return SETTLE_RETRY
        try:
            due = self.store.next_reply_due()
        except StoreError:
            return SENDER_RETRY_POLL  # the drain says why; keep the usual pace
        if due is None:
            return SENDER_RETRY_POLL
        return min(SENDER_RETRY_POLL, max(SHORTEST_WAIT, (due - self.clock.now()).total_seconds()))

    def recover(self) -> int:
        """Release replies leased by senders of this host that died (crash recovery at start)."""
        self._fold()  # their journaled marks first: those replies were sent
        dead = [owner for owner in self.store.lease_owners() if is_dead(owner)]
        released = self.store.release_leases(dead, self.clock.now())
        if released:
            log.warning("%d repl%s left by stopped sender(s) %s will be sent again with the same Message-ID",
                        released, "y" if released == 1 else "ies", ", ".join(dead))
        return released

    def drain(self) -> SendReport:
        """Send everything due now; a reply refused for now waits alone, an unreachable server stops the drain.

        Raises ``StoreError`` when what it knows cannot be written; it keeps it and writes it first next time.
        """
        self.settle()
        total = SendReport()
        while True:
            self._fold()  # marks of the last batch, and of any stopped sender, before a claim could retake them
            items = self.store.claim_outbox(self.clock.now(), BATCH, self.owner, LEASE_SECONDS, self.limits)
            if not items:
                return total
            report, down = self._send_claim(items)
            total += report
            if down:
                return total

    def _send_claim(self, items: list[OutboxItem]) -> tuple[SendReport, bool]:
        """Send one claim's replies; whether the server is out of reach (the rest then waits for it)."""
        sent = deferred = failed = 0
        accepted: OutboxItem | None = None  # the server said 250; marked sent during the next send
        index = 0
        try:
            for index, item in enumerate(items):
                if index and item.lease_until - self.clock.now() < LEASE_LEFT_TO_SEND:  # index 0: progress
                    self._mark_sent(accepted)  # before the hand-back
                    accepted = None
                    self._hand_back(items[index:], "SMTP is slow")
                    break
                previous, accepted = accepted, None
                try:
                    self.transport.send(_mail(item), meanwhile=functools.partial(self._mark_sent, previous))
                except TransportDeferred as exc:
                    given_up, _ = self._defer(item, exc)
                    failed += given_up
                    deferred += not given_up
                    continue
                except TransportUnavailable as exc:
                    _, when = self._defer(item, exc, quiet=True)
                    self.store.release_untried([i.id for i in items[index + 1:]], self.owner, when)
                    log.warning("SMTP unavailable (%s); %d repl%s wait for it", exc, len(items) - index,
                                "y" if len(items) - index == 1 else "ies")
                    return SendReport(sent, deferred + len(items) - index, failed), True
                except TransportError as exc:
                    self.store.mark_failed(item.id, self.owner, self.clock.now(), str(exc))
                    log.error("reply refused for good: %s", exc,
                              extra=context(item.message_id, item.ticket, outbox_id=item.id))
                    failed += 1
                    continue
                accepted = item
                sent += 1
            else:
                index = len(items)
            self._mark_sent(accepted)
        except StoreError:
            self._interrupted(items[index:])
            raise
        return SendReport(sent, deferred, failed), False

    def _mark_sent(self, item: OutboxItem | None) -> None:
        """Record the server's 250 for ``item``: in its own commit, before the next reply's data leaves,
        so a crash can re-send at most the one reply whose 250 is not recorded yet.

        Kept in memory first: when neither the journal nor the database takes it, ``StoreError``
        stops the next reply before its data leaves, and the mark is written at the next chance.
        """
        if item is None:
            return
        self.unsettled.accepted.add(item.id)
        self._write_marks()
        log.info("%s sent to %s", item.kind, ", ".join(item.recipients),
                 extra=context(item.message_id, item.ticket, outbox_id=item.id))

    def _write_marks(self) -> None:
        """Write every mark kept in memory: to the journal, else (it cannot be written) to the database."""
        ids = sorted(self.unsettled.accepted)
        if self.journal is not None:
            try:
                for outbox_id in ids:
                    self.journal.record(outbox_id)
            except StoreError as exc:
                log.warning("%s; marking in the database instead", exc)
            else:
                self.unsettled.accepted.clear()
                return
        try:
            if len(ids) == 1:
                self.store.mark_sent(ids[0], self.clock.now())
            else:
                self.store.mark_sent_many(ids, self.clock.now())
        except StoreError as exc:
            log.error("%d repl%s accepted by the server cannot be marked sent yet (%s); kept until it can",
                      len(ids), "y" if len(ids) == 1 else "ies", exc)
            raise
        self.unsettled.accepted.clear()

    def _interrupted(self, rest: list[OutboxItem]) -> None:
        """A write failed mid-claim: hand the untried rest back now, or at the next chance."""
        self.unsettled.untried.extend(item.id for item in rest)
        try:
            self._settle_untried()
        except StoreError as exc:
            log.error("cannot hand %d repl%s back yet (%s); retried with the marks", len(rest),
                      "y" if len(rest) == 1 else "ies", exc)

    def settle(self) -> None:
        """Write what this sender keeps (its marks, then the claim it had to interrupt); ``StoreError`` if it cannot."""
        if self.unsettled.accepted:
            self._write_marks()
            log.info("the sent marks kept in memory are written")
        self._settle_untried()

    def _settle_untried(self) -> None:
        ids, self.unsettled.untried = self.unsettled.untried, []
        try:
            released = self.store.release_untried(ids, self.owner, self.clock.now()) if ids else 0
        except StoreError:
            self.unsettled.untried = ids
            raise
        if released:
            log.info("%d repl%s of an interrupted claim handed back", released, "y" if released == 1 else "ies")

    def _hand_back(self, rest: list[OutboxItem], why: str) -> None:
        """Release the untried rest of the batch, due at once, for a fresh claim."""
        self._fold()  # the batch's journaled marks first
        released = self.store.release_untried([item.id for item in rest], self.owner, self.clock.now())
        log.info("%s: %d of %d repl%s handed back for a fresh lease", why, released, len(rest),
                 "y" if len(rest) == 1 else "ies")

    def _fold(self) -> None:
        """Fold the sent journals into the database: this sender's own, and any another sender left."""
        if self.journal is not None:
            self.journal.fold(self.store, self.clock.now(), is_dead)
        else:
            fold_journals(self.store.journal_dir, self.store, self.clock.now(), is_dead)

    def _defer(self, item: OutboxItem, exc: Exception, *, quiet: bool = False) -> tuple[bool, datetime]:
        """Put ``item`` back for its next try by its own backoff, or give it up once it is old enough.
        Returns whether it was given up, and when it would be tried again."""
        now = self.clock.now()
        when = self.backoff.next_try(now, item.attempts)
        where = context(item.message_id, item.ticket, outbox_id=item.id)
        age = now - item.queued_at
        if age >= self.backoff.give_up_after:
            hours = age.total_seconds() / 3600
            self.store.mark_failed(item.id, self.owner, now, f"given up after {hours:.0f} h and {item.attempts} "
                                   f"attempt(s) refused for now: {exc}", given_up=True)
            log.error("reply given up after %.0f h: %s", hours, exc, extra=where)
            return True, when
        self.store.mark_retry(item.id, self.owner, now, str(exc), when)
        if not quiet:
            log.warning("reply refused for now (%s); attempt %d, next at %s", exc, item.attempts,
                        when.isoformat(timespec="seconds"), extra=where)
        return False, when


def _mail(item: OutboxItem) -> OutgoingMail:
    """The reply to send; ``first_attempt`` from the claim count, which only ever grows (+1 per claim,
    committed before sending), so a reply written and then lost to a crash is claimed again as a retry."""
    return OutgoingMail(kind=item.kind, message_id=item.message_id, envelope_from=item.envelope_from,
                        recipients=item.recipients, data=item.data, first_attempt=item.attempts == 1)
