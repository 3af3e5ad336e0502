"""Is maild healthy? The facts ``maild status`` prints, and the verdict a monitor acts on.

Three steps, so the verdict can be tested without servers: ``probe_mailbox``
looks at the mailbox itself (a quick connect and login with a short timeout,
or a look at a Maildir); ``gather`` reads the database (every daemon's own row:
host, pid, start, heartbeat, last successful read of the mailbox, stop; the
outbox, the quarantine, the next take-in and digest); ``assess`` turns those
facts into problems and warnings. Exit codes follow the LSB convention
``systemctl`` uses: 0 a daemon runs and is healthy, 1 daemons run and none is
healthy, 3 none runs.
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
from maild.records import DaemonRecord, OutboxState, QuarantineState
from maild.settings import HEALTH_MAX_AGE, HEALTH_PROBE_TIMEOUT, HEALTH_STARTING_FOR, Mailbox, Settings
from maild.store import Store
from maild.store.reader import READER_STATE
from maild.store.state import DIGEST_PREFIX

log = logging.getLogger("maild.health")

EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1
EXIT_NOT_RUNNING = 3
STOPPED_SHOWN_FOR = timedelta(days=1)
"""Daemons that stopped within this time are still listed, so a stop is seen."""

RUNNING, STARTING, NOT_READING, VANISHED, STOPPED = "running", "starting", "not reading", "vanished", "stopped"
STANDBY = "standby"
"""Alive beside another daemon that reads the mailbox (PostgreSQL): it sends, takes in and waits to take over."""
ALIVE = (RUNNING, STARTING, NOT_READING, STANDBY)
"""Daemon states with a fresh heartbeat: the process is there."""


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
    daemons: tuple[DaemonRecord, ...]
    """Every daemon not recorded as stopped, and those stopped lately, the newest first."""
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
class Instance:
    """One daemon and what its row says about it now."""

    record: DaemonRecord
    state: str
    """``running``, ``starting`` (no read of the mailbox yet, for a bounded time), ``not reading``,
    ``vanished`` (its heartbeat stopped without a recorded stop: killed or crashed) or ``stopped``."""


@dataclass(frozen=True, slots=True)
class Health:
    facts: HealthFacts
    instances: tuple[Instance, ...]
    problems: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def running(self) -> bool:
        return any(i.state in ALIVE for i in self.instances)

    @property
    def healthy(self) -> bool:
        return self.running and not self.problems

    @property
    def verdict(self) -> str:
        return "healthy" if self.healthy else "UNHEALTHY" if self.running else "NOT RUNNING"

    @property
    def exit_code(self) -> int:
        return EXIT_HEALTHY if self.healthy else EXIT_UNHEALTHY if self.running else EXIT_NOT_RUNNING


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
    reader = store.get_state(READER_STATE)
    stats = store.stats(now, now)
    by_state = dict(stats.outbox_by_state_now)
    calendar = ServiceCalendar(settings.service_hours)
    return HealthFacts(
        now=now, daemons=store.daemons(now - STOPPED_SHOWN_FOR), mailbox=mailbox,
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


def daemon_state(record: DaemonRecord, now: datetime, max_age: timedelta = HEALTH_MAX_AGE,
                 starting_for: timedelta = HEALTH_STARTING_FOR) -> str:
    """What one daemon's row says about it at ``now``."""
    if record.stopped_at is not None:
        return STOPPED
    if now - record.heartbeat_at > max_age:
        return VANISHED
    if record.last_poll_at is not None and now - record.last_poll_at <= max_age:
        return RUNNING
    if record.last_poll_at is None and now - record.started_at <= starting_for:
        return STARTING
    return NOT_READING


def assess(facts: HealthFacts, max_age: timedelta = HEALTH_MAX_AGE,
           starting_for: timedelta = HEALTH_STARTING_FOR) -> Health:
    """Problems make maild unhealthy; warnings are worth a look."""
    now = facts.now
    instances = tuple(_standing_by(Instance(d, daemon_state(d, now, max_age, starting_for)), facts.reader)
                      for d in facts.daemons)
    problems = _daemon_problems(instances, now)
    warnings: list[str] = [f"daemon {_who(i.record)}: {_not_reading(i.record, now)}"
                           for i in instances if i.state == NOT_READING and problems == []]
    if not facts.mailbox.reachable:
        problems.append(f"mailbox: {facts.mailbox.where} unreachable: {facts.mailbox.error}")
    if facts.outbox_failing:
        warnings.append(f"outbox: {facts.outbox_failing} repl(ies) failed and are being retried")
    if facts.outbox_failed:
        warnings.append(f"outbox: {facts.outbox_failed} repl(ies) failed for good")
    if facts.quarantined:
        warnings.append(f"quarantine: {facts.quarantined} message(s) wait for an operator")
    if facts.next_digest is not None and facts.next_digest <= now:
        warnings.append(f"digest: the digest due {facts.next_digest.isoformat()} was not sent yet")
    return Health(facts=facts, instances=instances, problems=tuple(problems), warnings=tuple(warnings))


def _standing_by(instance: Instance, reader: str | None) -> Instance:
    """A live daemon that does not read while another one holds the mailbox stands by: nothing is wrong with it."""
    if reader and instance.state in (STARTING, NOT_READING) and _who(instance.record) != reader:
        return Instance(instance.record, STANDBY)
    return instance


def _daemon_problems(instances: tuple[Instance, ...], now: datetime) -> list[str]:
    """None while one daemon runs and reads (or is starting); otherwise why not."""
    alive = [i for i in instances if i.state in ALIVE]
    if any(i.state in (RUNNING, STARTING) for i in alive):
        return []
    if alive:
        return [f"daemon {_who(i.record)}: {_not_reading(i.record, now)}" for i in alive]
    if not instances:
        return ["daemon: none is running (no daemon recorded itself lately: has `maild run` been started?)"]
    last = instances[0].record
    if last.stopped_at is not None:
        return [f"daemon: none is running ({_who(last)} stopped {age(now - last.stopped_at)} ago)"]
    return [f"daemon: none is running ({_who(last)} vanished: last heartbeat {age(now - last.heartbeat_at)} ago, "
            "no stop recorded)"]


def _who(record: DaemonRecord) -> str:
    return f"{record.host}:{record.pid}"


def _not_reading(record: DaemonRecord, now: datetime) -> str:
    since = ("since its start " + age(now - record.started_at) + " ago" if record.last_poll_at is None
             else "for " + age(now - record.last_poll_at))
    return f"has not read the mailbox successfully {since}"


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
    daemons = [f"  daemon          {_who(i.record)} {i.state}, started {when(i.record.started_at, tz)}, "
               + (f"stopped {ago(i.record.stopped_at)}" if i.record.stopped_at else
                  f"heartbeat {ago(i.record.heartbeat_at)}, last read {ago(i.record.last_poll_at)}")
               for i in health.instances] or ["  daemon          none recorded"]
    lines = [
        f"maild status: {health.verdict}",
        *daemons,
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
    alive = [i.record for i in health.instances if i.state in ALIVE]
    return {
        "healthy": health.healthy, "running": health.running, "status": health.verdict.lower(),
        "problems": list(health.problems), "warnings": list(health.warnings), "checked_at": iso(f.now),
        "heartbeat_at": iso(max((d.heartbeat_at for d in alive), default=None)),
        "last_poll_at": iso(max((d.last_poll_at for d in alive if d.last_poll_at), default=None)),
        "daemons": [{"host": i.record.host, "pid": i.record.pid, "state": i.state,
                     "started_at": iso(i.record.started_at), "heartbeat_at": iso(i.record.heartbeat_at),
                     "last_poll_at": iso(i.record.last_poll_at), "stopped_at": iso(i.record.stopped_at)}
                    for i in health.instances],
        "mailbox": {"where": f.mailbox.where, "reachable": f.mailbox.reachable, "waiting": f.mailbox.waiting,
                    "error": f.mailbox.error},
        "outbox": {"pending": f.outbox_pending, "failing": f.outbox_failing, "failed": f.outbox_failed,
                   "held": f.outbox_held},
        "quarantined": f.quarantined, "open_tickets": f.open_tickets, "waiting_take_in": f.waiting_take_in,
        "next_take_in_at": iso(f.next_take_in), "next_digest_at": iso(f.next_digest),
        "reader": f.reader, "reader_since": iso(f.reader_since),
    }
