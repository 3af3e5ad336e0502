"""Wiring: build the daemon's parts from the settings, in one place."""

from __future__ import annotations

import os

from maild.clock import Clock, SystemClock
from maild.daemon.intake import IntakeService
from maild.daemon.loop import Daemon
from maild.daemon.metrics import DaemonMetrics
from maild.daemon.notify import Notifier
from maild.daemon.outbox.sender import Backoff, OutboxSender, worker_name
from maild.daemon.outbox.transport import make_transport
from maild.errors import ConfigError
from maild.mail.maildir import MaildirSource
from maild.pipeline import Triager
from maild.poller import ImapSource
from maild.responder import Responder
from maild.settings import Mailbox, Settings
from maild.sources import MailSource
from maild.store import Store
from maild.store.reader import ReaderLock


def open_store(settings: Settings) -> Store:
    """The database, migrated to the current schema."""
    return Store.open(settings.database.url, ticket_prefix=settings.helpdesk.ticket_prefix,
                      timezone=settings.service_hours.timezone)


def build_intake(settings: Settings, store: Store, *, compiled: bool = True) -> IntakeService:
    """``compiled``: whether the rules' templates are compiled now (see ``Rules.compile``)."""
    responder = Responder(settings.templates.path, settings.helpdesk, timezone=settings.service_hours.timezone)
    return IntakeService(settings, Triager.from_settings(settings, compiled=compiled), responder, store)


def build_daemon(settings: Settings, clock: Clock | None = None) -> Daemon:
    # A sender process keeps the system's time: a daemon given another clock (a test's) sends from here.
    parallel_sending = clock is None or isinstance(clock, SystemClock)
    clock = clock or SystemClock()
    store = open_store(settings)
    intake = build_intake(settings, store, compiled=False)  # Daemon.run has them compiled where they are used
    sender = OutboxSender(store, make_transport(settings), clock, settings.limits, worker_name(),
                          backoff=Backoff.of(settings.smtp))
    return Daemon(intake=intake, source=make_source(settings), sender=sender, store=store, clock=clock,
                  max_message_bytes=settings.limits.max_message_bytes,
                  notifier=Notifier.from_environ(os.environ),
                  metrics=DaemonMetrics(store, settings.metrics.listen, clock),
                  parallel_triage=True, parallel_sending=parallel_sending,
                  reader=ReaderLock(store.engine, mailbox_name(settings.mailbox)))


def mailbox_name(mailbox: Mailbox) -> str:
    """The mailbox as daemons sharing a database tell it: two daemons on one name read it one at a time."""
    if mailbox.kind == "maildir":
        return f"maildir:{mailbox.path.resolve()}"
    return f"imap://{mailbox.username}@{mailbox.host}:{mailbox.port}/{mailbox.folder}"


def make_source(settings: Settings) -> MailSource:
    """Build the source ``settings.mailbox.kind`` names."""
    box = settings.mailbox
    if box.kind == "imap":
        return ImapSource(box)
    if box.kind == "maildir":
        return MaildirSource.from_settings(box)
    raise ConfigError("mailbox.kind", f"unknown mailbox kind {box.kind!r}")
