"""Outbox claims for the sender loop, with leases and the per-sender reply brake.

A reply goes ``pending -> sending`` (claimed with a lease, committed before
any SMTP traffic) ``-> sent`` (after the server's 250). A sender that dies
while ``sending`` leaves a lease that expires; the row is then claimed again
and re-sent with the SAME Message-ID. That is the one documented window for a
double delivery: a crash between the server's 250 and the commit of ``sent``;
the recipient's duplicate has the same Message-ID, which clients collapse.

Two daemons never claim the same row: PostgreSQL claims use ``FOR UPDATE SKIP
LOCKED``; SQLite claims run under ``BEGIN IMMEDIATE`` (one writer at a time).

The brake: automatic replies to a sender (``BRAKED_KINDS``) are counted per
recipient over the last hour and day; a claim beyond
``max_replies_per_sender_per_hour``/``_per_day`` puts the reply in ``held``
(final) with a ``held`` event, so two auto-responders cannot loop forever.
Notices to a referente about refused attempts have a brake of their own
(``max_referente_notices_per_hour``/``_per_day``), counted apart so that a
flood of spoofed requests can neither flood the referente nor use up the
budget of the referente's own acknowledgments. Resolutions and digests are
exempt: an operator asked for them. So is a held reply an operator released
(``release_held``): it is ``pending`` again with ``released_at`` set, and the
brake, which would hold it again at once, lets it pass.
On PostgreSQL an advisory lock per recipient, taken in sorted order, makes
two claimers count one after the other.

Speed: this is the sender's bookkeeping for every reply, so it runs as Core
statements on a plain connection (no ORM session, no identity map), built
once at import and parameterized, so SQLAlchemy compiles each shape once.
A claim is a fixed number of statements per batch (due rows, one grouped
brake count, one lease UPDATE); marking a reply is one ``UPDATE ... RETURNING``
and its event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BindParameter, Connection, Row, and_, bindparam, case, func, insert, or_, select, text, update

from maild.errors import StoreError
from maild.logs import context
from maild.records import EventKind, OutboxItem, OutboxState
from maild.settings import Limits
from maild.store import models
from maild.store.bulk import insert_rows, table_of
from maild.store.common import event_row
from maild.store.models import UTCDateTime

log = logging.getLogger("maild.store")

REPLY_KINDS = ("ack", "refusal")
NOTICE_KINDS = ("referente_notice",)
BRAKES: dict[str, tuple[str, ...]] = {kind: group for group in (REPLY_KINDS, NOTICE_KINDS) for kind in group}
"""Braked kind -> the kinds counted together with it."""
BRAKED_KINDS = frozenset(BRAKES)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
CHUNK = 500
"""Most rows one pass of a claim reads, so its ``IN (...)`` lists stay far below SQLite's limit."""

_O = models.Outbox
_PENDING, _SENDING, _SENT, _HELD, _FAILED = (s.value for s in (
    OutboxState.PENDING, OutboxState.SENDING, OutboxState.SENT, OutboxState.HELD, OutboxState.FAILED))


def _at(name: str) -> BindParameter[datetime]:
    """A datetime parameter, typed so it is stored like the columns (UTC, naive on SQLite)."""
    return bindparam(name, type_=UTCDateTime())


_DUE_ROWS = (  # no ``data``: sorting every due row by time need not carry the messages along
    select(_O.id, _O.ticket_id, _O.source_message_id, _O.kind, _O.message_id, _O.state, _O.rcpt_key,
           _O.released_at, _O.claimed_at)
    .where(or_(and_(_O.state == _PENDING, _O.next_attempt_at <= _at("now")),
               and_(_O.state == _SENDING, _O.lease_until < _at("now"))))
    .order_by(_O.next_attempt_at, _O.id).limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_NEXT_DUE = select(func.min(_O.next_attempt_at)).where(_O.state == _PENDING)  # ix_outbox_due: one index probe
_COUNTED = _O.state.in_([_SENDING, _SENT])
_RECENT = (  # the state is counted, not filtered: filtered, SQLite walks every sent reply by ix_outbox_due
    select(_O.rcpt_key, _O.kind, func.sum(case((and_(_COUNTED, _O.claimed_at > _at("hour_ago")), 1), else_=0)),
           func.sum(case((_COUNTED, 1), else_=0)))
    .where(_O.rcpt_key.in_(bindparam("rcpts", expanding=True)), _O.kind.in_(sorted(BRAKED_KINDS)),
           _O.claimed_at > _at("day_ago"))
    .group_by(_O.rcpt_key, _O.kind)  # ix_outbox_brake's order: no sort, and it covers the query
)
_ADVISORY_LOCKS = text(  # unnest keeps the array's (sorted) order
    "SELECT pg_advisory_xact_lock(hashtextextended(rcpt, 0)) FROM unnest(CAST(:rcpts AS text[])) AS rcpt")
_REFERENCES = select(models.Ticket.id, models.Ticket.reference).where(
    models.Ticket.id.in_(bindparam("ids", expanding=True)))
_LEASE = (
    update(_O).where(_O.id.in_(bindparam("ids", expanding=True)))
    .values(state=_SENDING, attempts=_O.attempts + 1, claimed_at=_at("now"), lease_owner=bindparam("owner"),
            lease_until=_at("until"))
    .returning(_O.id, _O.envelope_from, _O.recipients, _O.data, _O.attempts, _O.created_at)
)
_HOLD = update(_O).where(_O.id == bindparam("oid")).values(state=_HELD, last_error=bindparam("reason"))
_RELEASE_HELD = (  # the brake's reason is no error of the reply's: it stays in the ``held`` event only
    update(_O).where(_O.id == bindparam("oid"), _O.state == _HELD)
    .values(state=_PENDING, released_at=_at("now"), next_attempt_at=_at("now"), last_error=None)
    .returning(_O.ticket_id, _O.source_message_id, _O.kind, _O.rcpt_key)
)
_SENT_STMT = (
    update(_O).where(_O.id == bindparam("oid"), _O.state != _SENT, _O.state != _HELD)  # no IN: no expanding
    .values(state=_SENT, sent_at=_at("now"), lease_owner=None, lease_until=None)
    .returning(_O.id, _O.ticket_id, _O.source_message_id, _O.kind, _O.message_id, _O.recipients, _O.attempts)
)
_SENT_MANY = (
    update(_O).where(_O.id.in_(bindparam("oids", expanding=True)), _O.state != _SENT, _O.state != _HELD)
    .values(state=_SENT, sent_at=_at("now"), lease_owner=None, lease_until=None)
    .returning(_O.id, _O.ticket_id, _O.source_message_id, _O.kind, _O.message_id, _O.recipients, _O.attempts)
)
_LEASED = and_(_O.id == bindparam("oid"), _O.state == _SENDING, _O.lease_owner == bindparam("owner"))
_RELEASED = (_O.ticket_id, _O.source_message_id, _O.kind, _O.attempts)
_RETRY = (
    update(_O).where(_LEASED)
    .values(state=_PENDING, last_error=bindparam("error"), lease_owner=None, lease_until=None,
            next_attempt_at=_at("next_at"))
    .returning(*_RELEASED)
)
_FAIL = (
    update(_O).where(_LEASED)
    .values(state=_FAILED, last_error=bindparam("error"), lease_owner=None, lease_until=None)
    .returning(*_RELEASED)
)
_UNTRIED = (  # the claim is taken back: attempts count tries, not claims
    update(_O).where(_O.id.in_(bindparam("ids", expanding=True)), _O.state == _SENDING,
                     _O.lease_owner == bindparam("owner"))
    .values(state=_PENDING, attempts=_O.attempts - 1, lease_owner=None, lease_until=None,
            next_attempt_at=_at("next_at"))
)
_EVENT = insert(models.Event)


def retry_at(now: datetime, attempts: int, base: timedelta = timedelta(minutes=1),
             cap: timedelta = timedelta(hours=6), factor: float = 2.0) -> datetime:
    """Exponential backoff: ``base * factor**(attempts-1)``, at most ``cap``, from ``now``."""
    exponent = max(0, min(attempts - 1, 64))  # in float seconds: a timedelta would overflow first
    return now + timedelta(seconds=min(cap.total_seconds(), base.total_seconds() * factor ** exponent))


def claim(
    conn: Connection, *, now: datetime, limit: int, owner: str, lease: timedelta, limits: Limits
) -> list[OutboxItem]:
    """Lease up to ``limit`` due replies to ``owner``; hold those over the brake.

    Held replies do not count towards ``limit``: an empty result means nothing
    is due (or everything due is being claimed by another sender right now).
    """
    if lease <= timedelta(0):
        raise StoreError(f"a lease must be positive, not {lease}")
    items: list[OutboxItem] = []
    while len(items) < limit:
        rows = conn.execute(_DUE_ROWS, {"now": now, "limit": min(limit - len(items), CHUNK)}).all()
        if not rows:
            break
        items.extend(_lease_or_hold(conn, rows, now=now, owner=owner, lease=lease, limits=limits))
    return items


BrakeKey = tuple[str, tuple[str, ...]]
AnyRow = Row[*tuple[Any, ...]]


def _lease_or_hold(
    conn: Connection, rows: Sequence[AnyRow], *, now: datetime, owner: str, lease: timedelta, limits: Limits,
) -> list[OutboxItem]:
    counts = _recent_counts(conn, rows, now)
    refs = _references(conn, {r.ticket_id for r in rows if r.ticket_id is not None})
    chosen: list[AnyRow] = []
    held: list[tuple[AnyRow, str]] = []
    for row in rows:
        if _braked(row):
            key = (row.rcpt_key, BRAKES[row.kind])
            hour, day = counts.get(key, (0, 0))
            reason = _over_limit((hour, day), limits, key)
            if reason:
                held.append((row, reason))
                continue
            counts[key] = (hour + 1, day + 1)
        chosen.append(row)
    if held:
        _hold(conn, held, now, refs)
    return _lease(conn, chosen, now=now, owner=owner, until=now + lease, refs=refs) if chosen else []


def _lease(conn: Connection, rows: Sequence[AnyRow], *, now: datetime, owner: str, until: datetime,
           refs: Mapping[int, str]) -> list[OutboxItem]:
    """Lease ``rows`` in one UPDATE, which also returns the messages to send (in due order)."""
    leased = {r.id: r for r in conn.execute(_LEASE, {"ids": [r.id for r in rows], "now": now, "owner": owner,
                                                      "until": until})}
    items: list[OutboxItem] = []
    for row in rows:
        mail = leased[row.id]
        items.append(OutboxItem(
            id=row.id, ticket_id=row.ticket_id, kind=row.kind, message_id=row.message_id,
            envelope_from=mail.envelope_from, recipients=tuple(mail.recipients), data=mail.data,
            attempts=mail.attempts, lease_owner=owner, lease_until=until, queued_at=mail.created_at,
            ticket=refs.get(row.ticket_id) if row.ticket_id is not None else None,
        ))
    return items


def _references(conn: Connection, ticket_ids: set[int]) -> dict[int, str]:
    """Ticket references of a batch, so the sender's log lines can name them."""
    if not ticket_ids:
        return {}
    return {i: r for i, r in conn.execute(_REFERENCES, {"ids": sorted(ticket_ids)})}


def _braked(row: AnyRow) -> bool:
    """Whether the brake decides on this due row: at its first claim only (a retry passed it), never after a release."""
    return (row.state == _PENDING and row.kind in BRAKED_KINDS and row.released_at is None
            and row.claimed_at is None)


def _recent_counts(conn: Connection, rows: Sequence[AnyRow], now: datetime) -> dict[BrakeKey, tuple[int, int]]:
    """(last hour, last day) claims per recipient and brake group, in one grouped query."""
    rcpts = sorted({r.rcpt_key for r in rows if _braked(r)})
    if not rcpts:
        return {}
    if conn.dialect.name == "postgresql":  # sorted: claimers never wait on each other in a cycle
        conn.execute(_ADVISORY_LOCKS, {"rcpts": rcpts})
    counts: dict[BrakeKey, tuple[int, int]] = {}
    for rcpt, kind, hour, day in conn.execute(_RECENT, {"rcpts": rcpts, "hour_ago": now - HOUR,
                                                        "day_ago": now - DAY}):
        key = (rcpt, BRAKES[kind])
        before = counts.get(key, (0, 0))
        counts[key] = (before[0] + int(hour or 0), before[1] + int(day or 0))
    return counts


def _over_limit(counts: tuple[int, int], limits: Limits, key: BrakeKey) -> str | None:
    hour, day = counts
    rcpt, kinds = key
    if kinds == NOTICE_KINDS:
        per_hour, per_day = limits.max_referente_notices_per_hour, limits.max_referente_notices_per_day
        what, name = "notices", "max_referente_notices_per"
    else:
        per_hour, per_day = limits.max_replies_per_sender_per_hour, limits.max_replies_per_sender_per_day
        what, name = "replies", "max_replies_per_sender_per"
    if hour >= per_hour:
        return f"{name}_hour: {hour} {what} to {rcpt} in the last hour"
    if day >= per_day:
        return f"{name}_day: {day} {what} to {rcpt} in the last day"
    return None


def _hold(conn: Connection, held: Sequence[tuple[AnyRow, str]], now: datetime, refs: Mapping[int, str]) -> None:
    conn.execute(_HOLD, [{"oid": row.id, "reason": reason} for row, reason in held])
    for row, reason in held:
        ticket = refs.get(row.ticket_id) if row.ticket_id is not None else None
        log.warning("reply %s (%s) to %s held: %s", row.message_id, row.kind, row.rcpt_key, reason,
                    extra=context(row.message_id, ticket, outbox_id=row.id))
    conn.execute(_EVENT, [
        event_row(EventKind.HELD, now, ticket_id=row.ticket_id, message_id=row.source_message_id, outbox_id=row.id,
               reasons=(reason,), data={"kind": row.kind, "recipient": row.rcpt_key})
        for row, reason in held
    ])


def release_held(conn: Connection, outbox_id: int, now: datetime, *, by: str) -> bool:
    """Put a held reply back in the queue, due now and let through by the brake; False if it is not held."""
    row = conn.execute(_RELEASE_HELD, {"oid": outbox_id, "now": now}).first()
    if row is None:
        return False
    conn.execute(_EVENT, event_row(
        EventKind.RELEASED, now, ticket_id=row.ticket_id, message_id=row.source_message_id, outbox_id=outbox_id,
        data={"by": by, "kind": row.kind, "recipient": row.rcpt_key}))
    return True


def mark_sent(conn: Connection, outbox_id: int, now: datetime) -> bool:
    """Record the server's acceptance; False if the row is already ``sent``, ``held`` or unknown.

    Not conditional on the lease owner: once a server said 250, that is the truth.
    """
    row = conn.execute(_SENT_STMT, {"oid": outbox_id, "now": now}).first()
    if row is None:
        return False
    conn.execute(_EVENT, _sent_event(row, now))
    return True


def mark_sent_many(conn: Connection, outbox_ids: Sequence[int], now: datetime) -> int:
    """``mark_sent`` for many replies in two statements; how many were not marked yet.

    Marks kept in a sender's journal (``maild.daemon.outbox.journal``) are folded in this way,
    a claim's worth at a time, and may be folded twice: a row already ``sent``
    is left alone and gets no second event.
    """
    marked = 0
    for start in range(0, len(outbox_ids), CHUNK):
        rows = conn.execute(_SENT_MANY, {"oids": list(outbox_ids[start:start + CHUNK]), "now": now}).all()
        if rows:
            insert_rows(conn, table_of(models.Event), [_sent_event(row, now) for row in rows])
        marked += len(rows)
    return marked


def _sent_event(row: AnyRow, now: datetime) -> dict[str, Any]:
    kind = EventKind.ACKNOWLEDGED if row.kind == "ack" else EventKind.SENT
    return event_row(kind, now, ticket_id=row.ticket_id, message_id=row.source_message_id, outbox_id=row.id,
                     data={"kind": row.kind, "message_id": row.message_id, "recipients": row.recipients,
                           "attempts": row.attempts})


def mark_retry(conn: Connection, outbox_id: int, *, owner: str, now: datetime, error: str,
               next_attempt_at: datetime) -> bool:
    """Give a leased reply back for a later attempt; False if ``owner`` lost the lease."""
    row = conn.execute(_RETRY, {"oid": outbox_id, "owner": owner, "error": error,
                                "next_at": next_attempt_at}).first()
    return _released(conn, row, EventKind.SEND_FAILED, outbox_id, now, error, next_attempt_at)


def mark_failed(conn: Connection, outbox_id: int, *, owner: str, now: datetime, error: str,
                given_up: bool = False) -> bool:
    """Fail a leased reply for good: refused (5xx), or ``given_up`` after refusals for now for too long."""
    row = conn.execute(_FAIL, {"oid": outbox_id, "owner": owner, "error": error}).first()
    return _released(conn, row, EventKind.GIVEN_UP if given_up else EventKind.FAILED, outbox_id, now, error, None)


def release_untried(conn: Connection, outbox_ids: Sequence[int], *, owner: str, next_attempt_at: datetime) -> int:
    """Hand back replies ``owner`` leased and never tried, due at ``next_attempt_at``, their claim not counted."""
    if not outbox_ids:
        return 0
    return conn.execute(_UNTRIED, {"ids": list(outbox_ids), "owner": owner, "next_at": next_attempt_at}).rowcount


def _released(conn: Connection, row: AnyRow | None, kind: EventKind, outbox_id: int, now: datetime, error: str,
              next_attempt_at: datetime | None) -> bool:
    if row is None:
        return False
    conn.execute(_EVENT, event_row(
        kind, now, ticket_id=row.ticket_id, message_id=row.source_message_id, outbox_id=outbox_id,
        reasons=(error,), data={"kind": row.kind, "attempts": row.attempts, "next_attempt_at": next_attempt_at}))
    return True


def next_due(conn: Connection) -> datetime | None:
    """When the first reply waiting to be sent is due (None: none waits)."""
    due: datetime | None = conn.execute(_NEXT_DUE).scalar()
    return due


def lease_owners(conn: Connection) -> list[str]:
    """Owners of replies being sent now, for crash recovery at start."""
    rows = conn.scalars(select(_O.lease_owner).where(_O.state == _SENDING).distinct())
    return sorted(owner for owner in rows if owner)


def release_leases(conn: Connection, owners: Sequence[str], now: datetime) -> int:
    """Make replies leased to dead ``owners`` due again at once, keeping their Message-IDs.

    A sender killed between claim and send would otherwise hold its replies
    until the lease expires; a restarted daemon that knows the owner is dead
    (same host, process gone) hands them back now. A live sender whose batch
    outlasts half its lease hands back its own unsent rest the same way.
    """
    if not owners:
        return 0
    result = conn.execute(
        update(_O).where(_O.state == _SENDING, _O.lease_owner.in_(list(owners)))
        .values(state=_PENDING, lease_owner=None, lease_until=None, next_attempt_at=now)
    )
    return result.rowcount
