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
exempt: an operator asked for them.
On PostgreSQL an advisory lock per recipient, taken in sorted order, makes
two claimers count one after the other.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, undefer

from maild import models
from maild.errors import StoreError
from maild.logs import context
from maild.models import OutboxState
from maild.settings import Limits
from maild.store.common import add_event, is_postgresql, rowcount
from maild.store.types import EventKind, OutboxItem

log = logging.getLogger("maild.store")

REPLY_KINDS = ("ack", "refusal")
NOTICE_KINDS = ("referente_notice",)
BRAKES: dict[str, tuple[str, ...]] = {kind: group for group in (REPLY_KINDS, NOTICE_KINDS) for kind in group}
"""Braked kind -> the kinds counted together with it."""
BRAKED_KINDS = frozenset(BRAKES)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def retry_at(now: datetime, attempts: int, base: timedelta = timedelta(minutes=1),
             cap: timedelta = timedelta(hours=6)) -> datetime:
    """Exponential backoff: ``base * 2**(attempts-1)``, at most ``cap``, from ``now``."""
    exponent = max(0, min(attempts - 1, 30))
    return now + min(cap, base * (1 << exponent))


def claim(
    session: Session, *, now: datetime, limit: int, owner: str, lease: timedelta, limits: Limits
) -> list[OutboxItem]:
    """Lease up to ``limit`` due replies to ``owner``; hold those over the brake.

    Held replies do not count towards ``limit``: an empty result means nothing
    is due (or everything due is being claimed by another sender right now).
    """
    if lease <= timedelta(0):
        raise StoreError(f"a lease must be positive, not {lease}")
    items: list[OutboxItem] = []
    while len(items) < limit:
        rows = _due_rows(session, now, limit - len(items))
        if not rows:
            break
        items.extend(_lease_or_hold(session, rows, now=now, owner=owner, lease=lease, limits=limits))
    return items


def _due_rows(session: Session, now: datetime, limit: int) -> Sequence[models.Outbox]:
    o = models.Outbox
    due = or_(
        and_(o.state == OutboxState.PENDING.value, o.next_attempt_at <= now),
        and_(o.state == OutboxState.SENDING.value, o.lease_until < now),
    )
    return session.scalars(
        select(o).where(due).order_by(o.next_attempt_at, o.id).limit(limit)
        .options(undefer(o.data)).with_for_update(skip_locked=True)
    ).all()


def _lease_or_hold(
    session: Session, rows: Sequence[models.Outbox], *, now: datetime, owner: str, lease: timedelta,
    limits: Limits,
) -> list[OutboxItem]:
    counts = _recent_counts(session, rows, now)
    refs = _references(session, {r.ticket_id for r in rows if r.ticket_id is not None})
    items: list[OutboxItem] = []
    for row in rows:
        fresh = row.state == OutboxState.PENDING.value  # a re-claim was counted when first claimed
        if fresh and row.kind in BRAKED_KINDS:
            key = (row.rcpt_key, BRAKES[row.kind])
            reason = _over_limit(counts[key], limits, key)
            if reason:
                _hold(session, row, now, reason, refs.get(row.ticket_id) if row.ticket_id is not None else None)
                continue
            hour, day = counts[key]
            counts[key] = (hour + 1, day + 1)
        row.state = OutboxState.SENDING.value
        row.attempts += 1
        row.claimed_at = now
        row.lease_owner = owner
        row.lease_until = now + lease
        items.append(OutboxItem(
            id=row.id, ticket_id=row.ticket_id, kind=row.kind, message_id=row.message_id,
            envelope_from=row.envelope_from, recipients=tuple(row.recipients), data=row.data,
            attempts=row.attempts, lease_owner=owner, lease_until=row.lease_until,
            ticket=refs.get(row.ticket_id) if row.ticket_id is not None else None,
        ))
    session.flush()
    return items


def _references(session: Session, ticket_ids: set[int]) -> dict[int, str]:
    """Ticket references of a batch, so the sender's log lines can name them."""
    if not ticket_ids:
        return {}
    t = models.Ticket
    return {i: r for i, r in session.execute(select(t.id, t.reference).where(t.id.in_(ticket_ids)))}


BrakeKey = tuple[str, tuple[str, ...]]


def _recent_counts(session: Session, rows: Sequence[models.Outbox], now: datetime) -> dict[BrakeKey, tuple[int, int]]:
    keys = sorted({(r.rcpt_key, BRAKES[r.kind]) for r in rows
                   if r.kind in BRAKED_KINDS and r.state == OutboxState.PENDING.value})
    if is_postgresql(session):
        for rcpt in sorted({rcpt for rcpt, _ in keys}):  # sorted: claimers never wait on each other in a cycle
            session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(rcpt, 0))))
    return {key: (_count(session, key, now - HOUR), _count(session, key, now - DAY)) for key in keys}


def _count(session: Session, key: BrakeKey, since: datetime) -> int:
    o = models.Outbox
    rcpt, kinds = key
    return session.scalar(
        select(func.count()).select_from(o).where(
            o.rcpt_key == rcpt, o.kind.in_(kinds),
            o.state.in_([OutboxState.SENDING.value, OutboxState.SENT.value]), o.claimed_at > since,
        )
    ) or 0


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


def _hold(session: Session, row: models.Outbox, now: datetime, reason: str, ticket: str | None) -> None:
    row.state = OutboxState.HELD.value
    row.last_error = reason
    log.warning("reply %s (%s) to %s held: %s", row.message_id, row.kind, row.rcpt_key, reason,
                extra=context(row.message_id, ticket, outbox_id=row.id))
    add_event(session, EventKind.HELD, now, ticket_id=row.ticket_id, message_id=row.source_message_id,
              outbox_id=row.id, reasons=(reason,), data={"kind": row.kind, "recipient": row.rcpt_key})


def mark_sent(session: Session, outbox_id: int, now: datetime) -> bool:
    """Record the server's acceptance; False if the row is already ``sent`` or unknown.

    Not conditional on the lease owner: once a server said 250, that is the truth.
    """
    o = models.Outbox
    row = session.scalar(select(o).where(o.id == outbox_id).with_for_update())
    if row is None or row.state in (OutboxState.SENT.value, OutboxState.HELD.value):
        return False
    row.state = OutboxState.SENT.value
    row.sent_at = now
    row.lease_owner = None
    row.lease_until = None
    kind = EventKind.ACKNOWLEDGED if row.kind == "ack" else EventKind.SENT
    add_event(session, kind, now, ticket_id=row.ticket_id, message_id=row.source_message_id, outbox_id=row.id,
              data={"kind": row.kind, "message_id": row.message_id, "recipients": row.recipients,
                    "attempts": row.attempts})
    return True


def mark_retry(session: Session, outbox_id: int, *, owner: str, now: datetime, error: str,
               next_attempt_at: datetime) -> bool:
    """Give a leased reply back for a later attempt; False if ``owner`` lost the lease."""
    return _release(session, outbox_id, owner=owner, now=now, error=error, state=OutboxState.PENDING,
                    next_attempt_at=next_attempt_at)


def mark_failed(session: Session, outbox_id: int, *, owner: str, now: datetime, error: str) -> bool:
    """Give up on a leased reply (refused recipient, too many attempts)."""
    return _release(session, outbox_id, owner=owner, now=now, error=error, state=OutboxState.FAILED,
                    next_attempt_at=None)


def _release(session: Session, outbox_id: int, *, owner: str, now: datetime, error: str,
             state: OutboxState, next_attempt_at: datetime | None) -> bool:
    o = models.Outbox
    values: dict[str, object] = {"state": state.value, "last_error": error, "lease_owner": None,
                                 "lease_until": None}
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    done = rowcount(session.execute(
        update(o).where(o.id == outbox_id, o.state == OutboxState.SENDING.value, o.lease_owner == owner)
        .values(**values).execution_options(synchronize_session=False)
    ))
    if done:
        row = session.get_one(o, outbox_id)
        kind = EventKind.SEND_FAILED if state is OutboxState.PENDING else EventKind.FAILED
        add_event(session, kind, now, ticket_id=row.ticket_id, message_id=row.source_message_id,
                  outbox_id=row.id, reasons=(error,),
                  data={"kind": row.kind, "attempts": row.attempts, "next_attempt_at": next_attempt_at})
    return bool(done)


def lease_owners(session: Session) -> list[str]:
    """Owners of replies being sent now, for crash recovery at start."""
    o = models.Outbox
    rows = session.scalars(select(o.lease_owner).where(o.state == OutboxState.SENDING.value).distinct())
    return sorted(owner for owner in rows if owner)


def release_leases(session: Session, owners: Sequence[str], now: datetime) -> int:
    """Make replies leased to dead ``owners`` due again at once, keeping their Message-IDs.

    A sender killed between claim and send would otherwise hold its replies
    until the lease expires; a restarted daemon that knows the owner is dead
    (same host, process gone) hands them back now.
    """
    if not owners:
        return 0
    o = models.Outbox
    result = session.execute(
        update(o).where(o.state == OutboxState.SENDING.value, o.lease_owner.in_(list(owners)))
        .values(state=OutboxState.PENDING.value, lease_owner=None, lease_until=None, next_attempt_at=now)
    )
    return rowcount(result)
