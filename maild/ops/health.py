"""Is maild healthy? The facts ``maild status`` prints, and the verdict a monitor acts on.

Three steps, so the verdict can be tested without servers: ``probe_mailbox``
looks at the mailbox itself (a quick connect and login with a short timeout,
or a look at a Maildir); ``gather`` reads the database (the heartbeat and
the last successful poll the daemon records, the outbox, the quarantine,
the next take-in and digest); ``assess`` turns those facts into problems
(unhealthy: exit code 1) and warnings (shown, exit code 0).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from maild.hours import ServiceCalendar
from maild.ops.digest import next_digest_at
from maild.ops.views import age, iso, when
from maild.poller import open_client
from maild.records import OutboxState, QuarantineState
from maild.settings import HEALTH_MAX_AGE, HEALTH_PROBE_TIMEOUT, Mailbox, Settings
from maild.store import Store
from maild.store.reader import READER_STATE
from maild.store.state import DIGEST_PREFIX

log = logging.getLogger("maild.health")

DAEMON = "daemon"
"""Heartbeat name the daemon records (``Store.heartbeat``)."""
LAST_POLL_KEY = "poll:last_ok"
"""State key of the last time the daemon read the mailbox without an error."""
EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1


@dataclass(frozen=True, slots=True)
class MailboxProbe:
    where: str
    reachable: bool
    waiting: int | None
    """Messages in the watched folder: the backlog maild has not taken yet."""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class HealthFacts:
    """Everything read; nothing judged yet."""

    now: datetime
    heartbeat_at: datetime | None
    last_poll_at: datetime | None
    mailbox: MailboxProbe
    outbox_pending: int
    outbox_failing: int
    """Pending replies that already failed at least once (being retried)."""
    outbox_failed: int
    outbox_held: int
    quarantined: int
    open_tickets: int
    waiting_take_in: int
    next_take_in: datetime | None
    next_digest: datetime | None
    reader: str | None = None
    """The daemon (``host:pid``) that reads the mailbox among those sharing a PostgreSQL database."""
    reader_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Health:
    facts: HealthFacts
    problems: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        return EXIT_HEALTHY if self.healthy else EXIT_UNHEALTHY


# --------------------------------------------------------------------------
# The mailbox


def describe_mailbox(box: Mailbox) -> str:
    """Where the mailbox is, without credentials."""
    if box.kind == "imap":
        return f"IMAP {box.username}@{box.host}:{box.port}/{box.folder}"
    return f"Maildir {box.path}"


def probe_mailbox(box: Mailbox, timeout: float = HEALTH_PROBE_TIMEOUT) -> MailboxProbe:
    """Connect and log in (IMAP) or look (Maildir); count what waits. Never raises."""
    where = describe_mailbox(box)
    if box.kind != "imap":
        return _probe_maildir(box.path, where)
    client = None
    try:
        client = open_client(box, timeout)
        status = client.folder_status(box.folder, ["MESSAGES"])
        return MailboxProbe(where, True, int(status[b"MESSAGES"]))
    except Exception as exc:  # any failure to reach the mailbox is the answer, not a fault
        return MailboxProbe(where, False, None, f"{type(exc).__name__}: {exc}"[:300])
    finally:
        if client is not None:
            try:
                client.logout()
            except Exception:  # the probe has its answer already
                log.debug("logout after the probe failed")


def _probe_maildir(path: Path, where: str) -> MailboxProbe:
    try:
        waiting = sum(1 for sub in ("new", "cur") for entry in (path / sub).iterdir() if entry.is_file())
    except OSError as exc:
        return MailboxProbe(where, False, None, f"{exc.strerror or exc}: {path}")
    return MailboxProbe(where, True, waiting)


# --------------------------------------------------------------------------
# The database


def gather(store: Store, settings: Settings, now: datetime, mailbox: MailboxProbe) -> HealthFacts:
    """Read the facts from the database."""
    beat = store.get_state("heartbeat:" + DAEMON)
    poll = store.get_state(LAST_POLL_KEY)
    reader = store.get_state(READER_STATE)
    stats = store.stats(now, now)
    by_state = dict(stats.outbox_by_state_now)
    calendar = ServiceCalendar(settings.service_hours)
    return HealthFacts(
        now=now, heartbeat_at=beat.updated_at if beat else None,
        last_poll_at=datetime.fromisoformat(poll.value) if poll and poll.value else None,
        mailbox=mailbox,
        outbox_pending=by_state.get(OutboxState.PENDING.value, 0) + by_state.get(OutboxState.SENDING.value, 0),
        outbox_failing=sum(1 for r in store.outbox(OutboxState.PENDING) if r.attempts > 0),
        outbox_failed=by_state.get(OutboxState.FAILED.value, 0),
        outbox_held=by_state.get(OutboxState.HELD.value, 0),
        quarantined=len(store.quarantine_list(QuarantineState.QUARANTINED))
        + len(store.quarantine_list(QuarantineState.RETRY)),
        open_tickets=stats.open_now, waiting_take_in=stats.waiting_take_in_now,
        next_take_in=store.next_take_in_at(),
        next_digest=next_digest_at(now, settings, calendar,
                                   lambda period: store.get_state(DIGEST_PREFIX + period) is not None),
        reader=reader.value if reader else None, reader_since=reader.updated_at if reader else None,
    )


# --------------------------------------------------------------------------
# The verdict


def assess(facts: HealthFacts, max_age: timedelta = HEALTH_MAX_AGE) -> Health:
    """Problems make maild unhealthy; warnings are worth a look."""
    problems: list[str] = []
    warnings: list[str] = []
    now = facts.now
    if facts.heartbeat_at is None:
        problems.append("daemon: no heartbeat was ever recorded (has `maild run` been started?)")
    elif now - facts.heartbeat_at > max_age:
        problems.append(f"daemon: not alive, last heartbeat {age(now - facts.heartbeat_at)} ago")
    if not facts.mailbox.reachable:
        problems.append(f"mailbox: {facts.mailbox.where} unreachable: {facts.mailbox.error}")
    alive = facts.heartbeat_at is not None and now - facts.heartbeat_at <= max_age
    if alive and (facts.last_poll_at is None or now - facts.last_poll_at > max_age):
        since = "ever" if facts.last_poll_at is None else f"for {age(now - facts.last_poll_at)}"
        problems.append(f"mailbox: the daemon has not read it successfully {since}")
    if facts.outbox_failing:
        warnings.append(f"outbox: {facts.outbox_failing} repl(ies) failed and are being retried")
    if facts.outbox_failed:
        warnings.append(f"outbox: {facts.outbox_failed} repl(ies) failed for good")
    if facts.quarantined:
        warnings.append(f"quarantine: {facts.quarantined} message(s) wait for an operator")
    if facts.next_digest is not None and facts.next_digest <= now:
        warnings.append(f"digest: the digest due {facts.next_digest.isoformat()} was not sent yet")
    return Health(facts=facts, problems=tuple(problems), warnings=tuple(warnings))


def check(store: Store, settings: Settings, now: datetime, *, max_age: timedelta = HEALTH_MAX_AGE,
          timeout: float = HEALTH_PROBE_TIMEOUT) -> Health:
    """Probe the mailbox, read the database, judge."""
    return assess(gather(store, settings, now, probe_mailbox(settings.mailbox, timeout)), max_age)


# --------------------------------------------------------------------------
# Output


def status_lines(health: Health, settings: Settings) -> list[str]:
    tz = settings.service_hours.timezone
    f = health.facts

    def ago(moment: datetime | None) -> str:
        return "never" if moment is None else f"{when(moment, tz)} ({age(f.now - moment)} ago)"

    mailbox = (f"{f.mailbox.where}: reachable, {f.mailbox.waiting} message(s) waiting" if f.mailbox.reachable
               else f"{f.mailbox.where}: UNREACHABLE ({f.mailbox.error})")
    take_in = (f"{when(f.next_take_in, tz)} ({f.waiting_take_in} ticket(s) waiting)" if f.next_take_in
               else "none pending")
    lines = [
        f"maild status: {'healthy' if health.healthy else 'UNHEALTHY'}",
        f"  daemon          last heartbeat {ago(f.heartbeat_at)}",
        f"  last poll       {ago(f.last_poll_at)}",
        f"  mailbox         {mailbox}",
        *([f"  read by         {f.reader} since {when(f.reader_since, tz)}"] if f.reader and f.reader_since else []),
        f"  outbox          {f.outbox_pending} pending, {f.outbox_failing} failing (being retried), "
        f"{f.outbox_failed} failed, {f.outbox_held} held",
        f"  quarantine      {f.quarantined} message(s)",
        f"  tickets         {f.open_tickets} open",
        f"  next take-in    {take_in}",
        f"  next digest     {when(f.next_digest, tz) if f.next_digest else 'none ([digest] recipients is empty)'}",
    ]
    lines += [f"  PROBLEM: {p}" for p in health.problems]
    lines += [f"  warning: {w}" for w in health.warnings]
    return lines


def status_json(health: Health) -> dict[str, object]:
    f = health.facts
    return {
        "healthy": health.healthy, "problems": list(health.problems), "warnings": list(health.warnings),
        "checked_at": iso(f.now), "heartbeat_at": iso(f.heartbeat_at), "last_poll_at": iso(f.last_poll_at),
        "mailbox": {"where": f.mailbox.where, "reachable": f.mailbox.reachable, "waiting": f.mailbox.waiting,
                    "error": f.mailbox.error},
        "outbox": {"pending": f.outbox_pending, "failing": f.outbox_failing, "failed": f.outbox_failed,
                   "held": f.outbox_held},
        "quarantined": f.quarantined, "open_tickets": f.open_tickets, "waiting_take_in": f.waiting_take_in,
        "next_take_in_at": iso(f.next_take_in), "next_digest_at": iso(f.next_digest),
        "reader": f.reader, "reader_since": iso(f.reader_since),
    }
