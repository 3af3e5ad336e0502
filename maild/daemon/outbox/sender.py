"""The sender loop: replies leave the outbox over one reused SMTP connection.

A reply is claimed with a lease (committed before any SMTP traffic), sent,
then marked sent in its own commit: while the server considers the next
reply's MAIL command, so the commit costs no round trip, and always before
that reply's data leaves. A down SMTP server delays replies, never loses them:
the claim is released with an exponential backoff and retried. A permanent
refusal (5xx for every recipient) marks the reply failed, recorded for the
operators. The only double-send window is a crash between the server's 250
and our commit; the re-sent copy carries the same Message-ID.

A sender with a ``SentJournal`` (``maild run``'s sender process on SQLite)
appends the mark to its journal instead of committing it, and folds the
journal into the database before each claim, before handing replies back and
at the end of each drain; the window stays one reply (see ``maild.daemon.outbox.journal``).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from maild.clock import Clock
from maild.daemon.outbox.journal import SentJournal, fold_journals
from maild.daemon.outbox.transport import MailTransport
from maild.errors import TransportError, TransportUnavailable
from maild.logs import context
from maild.records import OutboxItem, OutgoingMail
from maild.settings import Limits
from maild.store import Store
from maild.store.outbox import retry_at

log = logging.getLogger("maild.sender")

LEASE_SECONDS = 120.0
SENDER_RETRY_POLL = 5.0
"""How often an idle sender looks for replies whose retry time has come."""
BATCH = 200
"""Replies claimed at once: one claim (one transaction, one fsync) serves them all, while each
reply is still marked sent on its own right after its 250 (a commit, or a journal line)."""
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


@dataclass(frozen=True, slots=True)
class OutboxSender:
    store: Store
    transport: MailTransport
    clock: Clock
    limits: Limits
    owner: str
    retry_base: timedelta = timedelta(seconds=30)
    journal: SentJournal | None = None
    """Where this sender keeps its sent marks (``maild.daemon.outbox.journal``); None: one commit per reply."""

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
        """Send everything due now; stop at the first sign the server is down."""
        sent = failed = 0
        while True:
            self._fold()  # marks of the last batch, and of any stopped sender, before a claim could retake them
            items = self.store.claim_outbox(self.clock.now(), BATCH, self.owner, LEASE_SECONDS, self.limits)
            if not items:
                return SendReport(sent, 0, failed)
            accepted: OutboxItem | None = None  # the server said 250; marked sent during the next send
            for index, item in enumerate(items):
                if index and item.lease_until - self.clock.now() < LEASE_LEFT_TO_SEND:  # index 0: progress
                    self._mark_sent(accepted)  # before the hand-back, which would release it too
                    accepted = None
                    self._hand_back(len(items) - index)
                    break
                previous, accepted = accepted, None
                try:
                    self.transport.send(_mail(item), meanwhile=functools.partial(self._mark_sent, previous))
                except TransportUnavailable as exc:
                    self._defer(items[index:], exc)
                    self._fold()
                    return SendReport(sent, len(items) - index, failed)
                except TransportError as exc:
                    self.store.mark_failed(item.id, self.owner, self.clock.now(), str(exc))
                    log.error("reply refused for good: %s", exc,
                              extra=context(item.message_id, item.ticket, outbox_id=item.id))
                    failed += 1
                    continue
                accepted = item
                sent += 1
            self._mark_sent(accepted)

    def _mark_sent(self, item: OutboxItem | None) -> None:
        """Record the server's 250 for ``item``: in its own commit, before the next reply's data leaves,
        so a crash can re-send at most the one reply whose 250 is not recorded yet."""
        if item is None:
            return
        if self.journal is not None:
            self.journal.record(item.id)
        else:
            self.store.mark_sent(item.id, self.clock.now())
        log.info("%s sent to %s", item.kind, ", ".join(item.recipients),
                 extra=context(item.message_id, item.ticket, outbox_id=item.id))

    def _hand_back(self, count: int) -> None:
        """Release this sender's leases (the rest of the batch), due at once, for a fresh claim."""
        self._fold()  # the batch's journaled marks first: a release would make those replies due again
        released = self.store.release_leases([self.owner], self.clock.now())
        log.info("SMTP is slow: %d of %d repl%s handed back for a fresh lease", released, count,
                 "y" if count == 1 else "ies")

    def _fold(self) -> None:
        """Fold the sent journals into the database: this sender's own, and any another sender left."""
        if self.journal is not None:
            self.journal.fold(self.store, self.clock.now(), is_dead)
        else:
            fold_journals(self.store.journal_dir, self.store, self.clock.now(), is_dead)

    def _defer(self, items: list[OutboxItem], exc: Exception) -> None:
        now = self.clock.now()
        for item in items:
            when = retry_at(now, item.attempts, base=self.retry_base, cap=timedelta(minutes=30))
            self.store.mark_retry(item.id, self.owner, now, str(exc), when)
        log.warning("SMTP unavailable (%s); %d repl%s deferred", exc, len(items), "y" if len(items) == 1 else "ies")


def _mail(item: OutboxItem) -> OutgoingMail:
    """The reply to send; ``first_attempt`` from the claim count, which only ever grows (+1 per claim,
    committed before sending), so a reply written and then lost to a crash is claimed again as a retry."""
    return OutgoingMail(kind=item.kind, message_id=item.message_id, envelope_from=item.envelope_from,
                        recipients=item.recipients, data=item.data, first_attempt=item.attempts == 1)
