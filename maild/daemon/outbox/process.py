"""The sender in a process of its own, so its SMTP round trips never wait for the intake.

CPython runs one thread of Python at a time. A sender thread beside the
intake makes four round trips per reply, and after each one it waits for the
intake thread to hand the interpreter back (up to a switch interval each time),
so during a backlog the replies fall far behind the intake. ``SenderProcess`` runs the same
``OutboxSender`` in a process with its own database connection and
SMTP connection. The daemon only wakes it when replies were queued and reads
back one ``SendReport`` per drain (for metrics and ``run --once``'s exit code).

The two talk over two pipes, never shared locks: a process killed while it
held the lock of a shared ``multiprocessing.Event`` would leave the other
waiting forever. A wake is one byte-sized message written without blocking (a
full pipe already holds a wake); a report is three counts, folded into the
next one while the daemon is not reading.

Exactly-once is the outbox's, as in a sender thread: claims with leases, one mark per
reply before the next one's data leaves. On SQLite the marks go to the
sender's journal (``maild.daemon.outbox.journal``) so that the process never queues on
SQLite's write lock per reply. The process ignores SIGINT and SIGTERM, which
are meant for the daemon, and exits when the daemon is gone. If it dies, the
daemon folds its journal, releases its leases (``OutboxSender.recover``) and
starts another; ``run --once`` sends the rest itself.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

from maild import logs
from maild.clock import SystemClock
from maild.daemon.outbox.journal import open_journal
from maild.daemon.outbox.sender import (
    SETTLE_RETRY,
    Backoff,
    OutboxSender,
    SendReport,
    worker_name,
)
from maild.daemon.outbox.transport import make_transport
from maild.daemon.processes import bind_to_parent, child_context, start_on_spare_core
from maild.errors import MaildError
from maild.settings import Settings
from maild.store import Store

log = logging.getLogger("maild.sender")

WAKE, DONE = b"w", b"d"
_COUNTS = struct.Struct("!III")
SETTLE_AT_EXIT = 20.0
"""How long a finishing sender keeps trying to write the sent marks it holds in memory (within STOP_TIMEOUT)."""
STOP_TIMEOUT = 30.0
"""How long a stopping daemon waits for the sender to finish its drain before killing it."""


@dataclass(frozen=True, slots=True)
class Finished:
    """What a sender process reported before it ended, and whether it ended on request."""

    reports: tuple[SendReport, ...]
    exit_code: int | None

    @property
    def clean(self) -> bool:
        """It exited by itself after its last drain (exit code 0), not killed or crashed."""
        return self.exit_code == 0


class SenderProcess:
    """One sender process; ``wake`` it when replies are queued, ``finish`` it to stop."""

    def __init__(self, settings: Settings, drop_connections: Callable[[], None] | None = None) -> None:
        """``drop_connections`` closes the daemon's database connections before a fork
        (``maild.daemon.processes.child_context``)."""
        self._settings = settings
        self._process, self._orders, self._reports = self._start(drop_connections)

    @classmethod
    def for_machine(cls, settings: Settings,
                    drop_connections: Callable[[], None] | None = None) -> SenderProcess | None:
        """A sender process when this machine has a core to spare for it, else None (a thread sends)."""
        return start_on_spare_core(lambda: cls(settings, drop_connections), "sender process")

    def _start(self, drop_connections: Callable[[], None] | None,
               ) -> tuple[multiprocessing.process.BaseProcess, Connection, Connection]:
        context = child_context(drop_connections)
        orders_in, orders = context.Pipe(duplex=False)
        reports, reports_out = context.Pipe(duplex=False)
        process = context.Process(target=serve, name="maild-sender", daemon=True,
                                  args=(self._settings, logs.current(), orders_in, reports_out))
        process.start()
        orders_in.close()  # the child's ends: EOF and EPIPE tell each side the other is gone
        reports_out.close()
        os.set_blocking(orders.fileno(), False)
        return process, orders, reports

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def wake(self) -> None:
        """Replies were queued: the sender drains the outbox now instead of at its next poll."""
        self._order(WAKE)

    def _order(self, order: bytes) -> bool:
        try:
            self._orders.send_bytes(order)  # a few bytes: written whole or not at all
        except BlockingIOError:
            return order == WAKE  # the pipe is full of wakes: one more adds nothing
        except OSError:
            return False  # the sender is gone: the watch or finish notices
        return True

    def alive(self) -> bool:
        return self._process.is_alive()

    def collect(self, timeout: float = 0.0) -> list[SendReport]:
        """The reports sent since the last call, waiting up to ``timeout`` for the first one."""
        reports: list[SendReport] = []
        wait = timeout
        try:
            while self._reports.poll(wait):
                reports.append(SendReport(*_COUNTS.unpack(self._reports.recv_bytes())))
                wait = 0.0
        except (EOFError, OSError):
            pass  # the sender is gone
        return reports

    def restart(self) -> None:
        """Start a new sender after this one died (the caller recovered its leases first)."""
        self._close_pipes()
        self._process.join(timeout=0)
        self._process, self._orders, self._reports = self._start(None)  # spawned: see child_context
        self.wake()  # the new sender drains at once: it may have inherited work

    def finish(self, timeout: float = STOP_TIMEOUT) -> Finished:
        """Ask for a last drain and wait for the process to end; kill it after ``timeout`` seconds."""
        if not self._order(DONE) and self._process.is_alive():
            log.error("the sender process cannot be told to finish; it is stopped after %.0f s", timeout)
        reports: list[SendReport] = []
        deadline = time.monotonic() + timeout
        while self._process.is_alive() and time.monotonic() < deadline:
            reports.extend(self.collect(timeout=min(0.5, max(0.0, deadline - time.monotonic()))))
        if self._process.is_alive():
            log.error("the sender process did not finish within %.0f s; stopping it", timeout)
            self._process.kill()
        self._process.join()
        reports.extend(self.collect())
        self._close_pipes()
        code = self._process.exitcode
        return Finished(tuple(reports), code)

    def _close_pipes(self) -> None:
        self._orders.close()
        self._reports.close()


def serve(settings: Settings, log_setup: tuple[str, str], orders: Connection, reports: Connection) -> None:
    """In the sender process: drain when woken or when a retry falls due (``idle_wait``) until told to finish."""
    bind_to_parent()
    logs.configure(*log_setup)
    store = Store(settings.database.url, ticket_prefix=settings.helpdesk.ticket_prefix,
                  timezone=settings.service_hours.timezone)
    owner = worker_name()
    journal = open_journal(store, owner)
    sender = OutboxSender(store, make_transport(settings), SystemClock(), settings.limits, owner,
                          backoff=Backoff.of(settings.smtp), journal=journal)
    os.set_blocking(reports.fileno(), False)
    unreported = SendReport()
    try:
        while True:
            finishing = _read_orders(orders, sender.idle_wait())  # before the drain, which then sees all queued
            unreported = _report(reports, unreported + _drain(sender), last=finishing)
            if finishing:
                return
    finally:
        _settle_before_exit(sender)
        sender.transport.close()
        if journal is not None:
            journal.close()
        store.close()


def _settle_before_exit(sender: OutboxSender) -> None:
    """Marks kept in memory die with the process: try to write them a while longer before exiting."""
    deadline = time.monotonic() + SETTLE_AT_EXIT
    while not sender.settled:
        try:
            sender.settle()
        except MaildError as exc:
            if time.monotonic() >= deadline:
                log.error("exiting with sent marks not written (%s): those replies may be sent again", exc)
                return
            time.sleep(SETTLE_RETRY)


def _read_orders(orders: Connection, timeout: float) -> bool:
    """Wait up to ``timeout`` for a wake, then take every order waiting; whether one says finish."""
    done = False
    try:
        if orders.poll(timeout):
            while orders.poll(0):
                done = orders.recv_bytes() == DONE or done
    except (EOFError, OSError):
        return True  # the daemon closed its end: it is gone, and the parent watch exits us anyway
    return done


def _report(reports: Connection, report: SendReport, *, last: bool) -> SendReport:
    """Send ``report``; what could not be sent yet (the daemon is not reading) is kept for the next one."""
    if last:
        os.set_blocking(reports.fileno(), True)  # the daemon reads until we exit
    try:
        reports.send_bytes(_COUNTS.pack(report.sent, report.deferred, report.failed))
    except BlockingIOError:
        return report
    except OSError:
        pass  # the daemon is gone
    return SendReport()


def _drain(sender: OutboxSender) -> SendReport:
    try:
        return sender.drain()
    except MaildError as exc:
        log.error("outbox unavailable: %s", exc)
    except Exception:
        log.exception("sender fault; retrying at the next wake")
    return SendReport()
